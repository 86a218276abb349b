// gemm_int8_avx2.cpp — the int8-activation prefill GEMM (toggle actQuant = int8) for CPUs with AVX2 but no
// AVX-512 VNNI: the same arm as gemm_int8_avx512.cpp (same quantized activations, same integer group sums,
// same fp32 scale sequence), with vpmaddubsw + vpmaddwd in place of vpdpbusd.
//
// Math: y[t, r] = sum_g s[r, g] d[t, g] sum_{k in g} q[r, k] xq[t, k]  +  sum_g o[r, g] xsum[t, g]
// (see gemm_int8_avx512.cpp). vpmaddubsw multiplies unsigned by signed bytes and adds pairs into int16 with
// saturation. The AVX-512 file feeds x as xq + 128 (u8), which could saturate here (255 * 127 * 2 > 32767), so
// this kernel uses the sign trick instead: |q| (u8, at most 128) times sign(q) * xq (s8, |xq| <= 127) gives
// the same products, and a pair sums to at most 2 * 128 * 127 = 32512: no saturation, every int16 and int32
// sum is exact. The integer group sums therefore equal vpdpbusd's, and the fp32 steps are the same operations
// in the same order, so this arm's outputs are bitwise those of the VNNI kernel (a test checks it).
//
// Orientation: lanes are 8 weight rows (one ymm of int32); a micro-tile is MR = 4 tokens x NR = 8 rows: per
// column quad 1 panel load, 1 vpabsb, and per token 1 broadcast, 1 vpsignb, 1 vpmaddubsw, 1 vpmaddwd, 1 add.
// Rows are repacked per call, 8 at a time, into [group][column quad][8 rows][4 bytes] (W4 nibbles widened).
//
// Determinism: each output lane is one fixed sequence of exact integer sums and fp32 FMAs over the groups,
// independent of the rows and tokens sharing a tile: 1 vs 2 threads are bitwise equal.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "act_quant_cpu.hpp"

namespace qw {
namespace cpu {

namespace {

constexpr int MR = 4;  // tokens per micro-tile
constexpr int NR = 8;  // weight rows per panel (one ymm of int32 lanes)

struct Panel {
  std::vector<int8_t> codes;  // [K / 4][8][4] = [gpr][G / 4][8][4], signed codes (W4: 0..15)
  std::vector<float> scale;   // [gpr][8]
  std::vector<float> offset;  // [gpr][8] (only when the weight has offsets)
};

// Repacks rows [r, r + nr) of w (rows past nr: zero codes and zero scales).
void pack_panel(Panel &p, const NativeTensor &w, int64_t r, int nr, bool with_offset) {
  const int64_t K = w.cols, gpr = K / w.group, K4 = K / 4;
  p.codes.assign(size_t(K4 * NR * 4), 0);
  p.scale.assign(size_t(gpr * NR), 0.0f);
  if (with_offset) p.offset.assign(size_t(gpr * NR), 0.0f);
  for (int j = 0; j < nr; ++j) {
    const int64_t row = r + j;
    if (w.type == NativeType::W8) {
      const int8_t *src = reinterpret_cast<const int8_t *>(w.data.data()) + row * K;
      for (int64_t c4 = 0; c4 < K4; ++c4) std::memcpy(&p.codes[size_t((c4 * NR + j) * 4)], src + c4 * 4, 4);
    } else {  // W4: low nibble = even column
      const uint8_t *src = w.data.data() + row * K / 2;
      for (int64_t c4 = 0; c4 < K4; ++c4) {
        int8_t *o = &p.codes[size_t((c4 * NR + j) * 4)];
        o[0] = int8_t(src[c4 * 2] & 0x0F);
        o[1] = int8_t(src[c4 * 2] >> 4);
        o[2] = int8_t(src[c4 * 2 + 1] & 0x0F);
        o[3] = int8_t(src[c4 * 2 + 1] >> 4);
      }
    }
    for (int64_t g = 0; g < gpr; ++g) {
      p.scale[size_t(g * NR + j)] = w.scale[size_t(row * gpr + g)];
      if (with_offset) p.offset[size_t(g * NR + j)] = w.offset[size_t(row * gpr + g)];
    }
  }
}

// MT tokens (MT <= MR) x the 8 rows of panel p; QG = G / 4 column quads per group. xq holds xq + 128 (u8) as
// quantize_act writes it: xor 0x80 gives the signed code back.
template <int MT, int QG, bool OFFSET>
void micro(const Panel &p, int64_t gpr, const uint8_t *xq, int64_t K, const float *xd, const float *xsum,
           const float *bias, float *out, int64_t os, int nr) {
  constexpr int G = QG * 4;
  const __m256i flip = _mm256_set1_epi8(char(0x80)), ones = _mm256_set1_epi16(1);
  __m256 fa[MT];
  for (int i = 0; i < MT; ++i) fa[i] = _mm256_setzero_ps();
  for (int64_t g = 0; g < gpr; ++g) {
    __m256i ia[MT];
    for (int i = 0; i < MT; ++i) ia[i] = _mm256_setzero_si256();
    const int8_t *cg = p.codes.data() + g * QG * NR * 4;
    for (int q = 0; q < QG; ++q) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(cg + q * NR * 4));
      const __m256i wa = _mm256_abs_epi8(wv);  // |q| as u8 (|-128| = 128 fits)
      for (int i = 0; i < MT; ++i) {
        int32_t b;
        std::memcpy(&b, xq + i * K + g * G + q * 4, 4);
        const __m256i xs = _mm256_xor_si256(_mm256_set1_epi32(b), flip);  // signed xq in [-127, 127]
        const __m256i prod = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xs, wv));
        ia[i] = _mm256_add_epi32(ia[i], _mm256_madd_epi16(prod, ones));
      }
    }
    const __m256 s = _mm256_loadu_ps(p.scale.data() + g * NR);
    for (int i = 0; i < MT; ++i) {
      const __m256 d = _mm256_set1_ps(xd[i * gpr + g]);
      fa[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i]), _mm256_mul_ps(s, d), fa[i]);
    }
    if (OFFSET) {
      const __m256 o = _mm256_loadu_ps(p.offset.data() + g * NR);
      for (int i = 0; i < MT; ++i) fa[i] = _mm256_fmadd_ps(o, _mm256_set1_ps(xsum[i * gpr + g]), fa[i]);
    }
  }
  for (int i = 0; i < MT; ++i) {
    float v[NR];
    _mm256_storeu_ps(v, fa[i]);
    for (int j = 0; j < nr; ++j) out[i * os + j] = v[j] + (bias ? bias[j] : 0.0f);
  }
}

using MicroFn = void (*)(const Panel &, int64_t, const uint8_t *, int64_t, const float *, const float *,
                         const float *, float *, int64_t, int);

template <int QG, bool OFFSET>
MicroFn micro_for(int mt) {
  switch (mt) {
    case 1: return micro<1, QG, OFFSET>;
    case 2: return micro<2, QG, OFFSET>;
    case 3: return micro<3, QG, OFFSET>;
    default: return micro<4, QG, OFFSET>;
  }
}

MicroFn micro_for(int G, bool offset, int mt) {
  return with_int8_group(G, offset, [mt](auto qg, auto off) { return micro_for<qg(), off()>(mt); });
}

}  // namespace

void gemm_int8_avx2(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
  const NativeTensor &w = *job.w.t;
  const bool offset = xsum != nullptr;
  thread_local Panel panel;
  const int64_t T = qa.T, gpr = qa.gpr;
  for (int64_t r = r0; r < r1; r += NR) {
    const int nr = int(std::min<int64_t>(NR, r1 - r));
    pack_panel(panel, w, r, nr, offset);
    const float *bias = job.bias ? job.bias + r : nullptr;
    for (int64_t t = 0; t < T; t += MR) {
      const int mt = int(std::min<int64_t>(MR, T - t));
      micro_for(qa.G, offset, mt)(panel, gpr, qa.q.data() + t * qa.K, qa.K, qa.d.data() + t * gpr,
                                  offset ? xsum + t * gpr : nullptr, bias, job.out + t * job.out_stride + r,
                                  job.out_stride, nr);
    }
  }
}

}  // namespace cpu
}  // namespace qw
