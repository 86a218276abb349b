// gemm_int8_avx512.cpp — the int8-activation prefill GEMM (toggle actQuant = int8) for W8/W4 weights with
// AVX-512 VNNI (vpdpbusd). Compiled with -mavx512f/bw/vl; the VNNI instructions are enabled for this file
// only (vnni_target.hpp), and act_quant_cpu.cpp calls it only after cpu_has_vnni().
//
// Math. Activations are quantized per token and per weight group of G columns, as llama.cpp's q8_0 does:
// d = max|x| / 127, xq = round(x / d) in [-127, 127]. Weights are their exact codes (w = s * q + o). Then
//   y[t, r] = sum_g s[r, g] * d[t, g] * sum_{k in g} q[r, k] xq[t, k]   +   sum_g o[r, g] * xsum[t, g]
// where the inner sums are exact int32 and xsum are the fp32 group sums of the unquantized x (so the offset
// term of Q4_K/Q5_K/Q4_0 adds no quantization error). Only xq carries error: |x - d xq| <= d / 2 per element.
// vpdpbusd multiplies unsigned by signed bytes, so x enters as xq + 128 (u8) and the int32 accumulator of
// each group starts at -128 * sum_k q[r, k] (stored with the panel), which cancels the +128 exactly.
//
// Orientation: lanes are 16 weight rows (outer product), so no horizontal sums. A micro-tile is MR = 6 tokens
// x 32 rows: per 4 columns, 2 panel loads, 6 broadcasts of 4 x bytes, 12 vpdpbusd (768 multiply-adds);
// per group, 12 int32 -> fp32 conversions and scale FMAs. Weight rows are repacked, per call, 32 rows at a
// time into [group][column quad][32 rows][4 bytes] (the VNNI operand layout; W4 nibbles widened to bytes):
// the packed panel (K bytes per row, ~150 KiB for K = 4864) stays in L2 while every token tile passes over it.
// Weights in memory stay in their native 8/4-bit layout; the panel is a per-thread scratch.
//
// Determinism: each output lane is one fixed sequence of integer sums and fp32 FMAs over the groups, the
// same whichever rows share a panel and whichever tokens share a tile: 1 vs 2 threads are bitwise equal.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "act_quant_cpu.hpp"

#include "vnni_target.hpp"

namespace qw {
namespace cpu {

namespace {

constexpr int MR = 6;    // tokens per micro-tile
constexpr int NR = 32;   // weight rows per panel (two zmm of int32 lanes)

// One packed panel of up to 32 rows (rows past nr are zero codes and zero scales).
struct Panel {
  std::vector<uint8_t> codes;  // [K / 4][32][4] = [gpr][G / 4][32][4]
  std::vector<int32_t> corr;   // [gpr][32]: -128 * sum of the group's codes
  std::vector<float> scale;    // [gpr][32]
  std::vector<float> offset;   // [gpr][32] (only when the weight has offsets)
};

// Repacks rows [r, r + nr) (zero rows past nr) into the panel: gathers of one 4-byte column quad from 16
// rows at a time. Row code sums for the +128 correction come from vpdpbusd(0x80 bytes, codes) = 128 * sum.
void pack_panel(Panel &p, const NativeTensor &w, int64_t r, int nr, bool with_offset) {
  const int64_t K = w.cols, G = w.group, gpr = K / G, QG = G / 4, K4 = K / 4;
  p.codes.resize(size_t(K4 * NR * 4));
  p.corr.resize(size_t(gpr * NR));
  p.scale.assign(size_t(gpr * NR), 0.0f);
  if (with_offset) p.offset.assign(size_t(gpr * NR), 0.0f);
  thread_local std::vector<int8_t> rows;  // W4 widened to bytes, or W8 rows of a partial panel (zero padded)
  const int8_t *base = reinterpret_cast<const int8_t *>(w.data.data()) + r * K;
  if (w.type == NativeType::W4 || nr < NR) {
    rows.assign(size_t(NR * K), 0);
    for (int j = 0; j < nr; ++j) {
      int8_t *o = rows.data() + j * K;
      if (w.type == NativeType::W8) {
        std::memcpy(o, base + j * K, size_t(K));
      } else {  // low nibble = even column
        const uint8_t *b = w.data.data() + (r + j) * K / 2;
        for (int64_t c = 0; c < K; c += 2) {
          o[c] = int8_t(b[c / 2] & 0x0F);
          o[c + 1] = int8_t(b[c / 2] >> 4);
        }
      }
    }
    base = rows.data();
  }
  const __m512i idx0 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(int32_t(K4)));
  const __m512i idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(int32_t(16 * K4)));
  const __m512i b128 = _mm512_set1_epi8(char(0x80));
  int32_t *codes = reinterpret_cast<int32_t *>(p.codes.data());
  for (int64_t g = 0; g < gpr; ++g) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0;
    for (int64_t q = 0; q < QG; ++q) {
      const int64_t c4 = g * QG + q;
      const __m512i v0 = _mm512_i32gather_epi32(idx0, base + c4 * 4, 4);
      const __m512i v1 = _mm512_i32gather_epi32(idx1, base + c4 * 4, 4);
      _mm512_storeu_si512(codes + c4 * NR, v0);
      _mm512_storeu_si512(codes + c4 * NR + 16, v1);
      s0 = _mm512_dpbusd_epi32(s0, b128, v0);
      s1 = _mm512_dpbusd_epi32(s1, b128, v1);
    }
    _mm512_storeu_si512(p.corr.data() + g * NR, _mm512_sub_epi32(_mm512_setzero_si512(), s0));
    _mm512_storeu_si512(p.corr.data() + g * NR + 16, _mm512_sub_epi32(_mm512_setzero_si512(), s1));
  }
  for (int j = 0; j < nr; ++j)
    for (int64_t g = 0; g < gpr; ++g) {
      p.scale[size_t(g * NR + j)] = w.scale[size_t((r + j) * gpr + g)];
      if (with_offset) p.offset[size_t(g * NR + j)] = w.offset[size_t((r + j) * gpr + g)];
    }
}

// MT tokens (MT <= MR) x the 32 rows of panel p; QG = G / 4 column quads per group.
template <int MT, int QG, bool OFFSET>
void micro(const Panel &p, int64_t gpr, const uint8_t *xq, int64_t K, const float *xd, const float *xsum,
           const float *bias, float *out, int64_t os, int nr) {
  constexpr int G = QG * 4;
  __m512 fa[MT][2];
  for (int i = 0; i < MT; ++i) fa[i][0] = fa[i][1] = _mm512_setzero_ps();
  const uint8_t *codes = p.codes.data();
  for (int64_t g = 0; g < gpr; ++g) {
    const __m512i c0 = _mm512_loadu_si512(p.corr.data() + g * NR), c1 = _mm512_loadu_si512(p.corr.data() + g * NR + 16);
    __m512i ia[MT][2];
    for (int i = 0; i < MT; ++i) {
      ia[i][0] = c0;
      ia[i][1] = c1;
    }
    const uint8_t *cg = codes + g * QG * NR * 4;
    for (int q = 0; q < QG; ++q) {
      const __m512i w0 = _mm512_loadu_si512(cg + q * NR * 4), w1 = _mm512_loadu_si512(cg + q * NR * 4 + 64);
      for (int i = 0; i < MT; ++i) {
        int32_t b;
        std::memcpy(&b, xq + i * K + g * G + q * 4, 4);
        const __m512i xb = _mm512_set1_epi32(b);
        ia[i][0] = _mm512_dpbusd_epi32(ia[i][0], xb, w0);
        ia[i][1] = _mm512_dpbusd_epi32(ia[i][1], xb, w1);
      }
    }
    const __m512 s0 = _mm512_loadu_ps(p.scale.data() + g * NR), s1 = _mm512_loadu_ps(p.scale.data() + g * NR + 16);
    for (int i = 0; i < MT; ++i) {
      const __m512 d = _mm512_set1_ps(xd[i * gpr + g]);
      fa[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[i][0]), _mm512_mul_ps(s0, d), fa[i][0]);
      fa[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[i][1]), _mm512_mul_ps(s1, d), fa[i][1]);
    }
    if (OFFSET) {
      const __m512 o0 = _mm512_loadu_ps(p.offset.data() + g * NR), o1 = _mm512_loadu_ps(p.offset.data() + g * NR + 16);
      for (int i = 0; i < MT; ++i) {
        const __m512 xs = _mm512_set1_ps(xsum[i * gpr + g]);
        fa[i][0] = _mm512_fmadd_ps(o0, xs, fa[i][0]);
        fa[i][1] = _mm512_fmadd_ps(o1, xs, fa[i][1]);
      }
    }
  }
  const __mmask16 m0 = __mmask16(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 m1 = __mmask16(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
  __m512 b0 = _mm512_setzero_ps(), b1 = b0;
  if (bias) {
    b0 = _mm512_maskz_loadu_ps(m0, bias);
    b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
  for (int i = 0; i < MT; ++i) {
    _mm512_mask_storeu_ps(out + i * os, m0, _mm512_add_ps(fa[i][0], b0));
    _mm512_mask_storeu_ps(out + i * os + 16, m1, _mm512_add_ps(fa[i][1], b1));
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
    case 4: return micro<4, QG, OFFSET>;
    case 5: return micro<5, QG, OFFSET>;
    default: return micro<6, QG, OFFSET>;
  }
}

MicroFn micro_for(int G, bool offset, int mt) {
  return with_int8_group(G, offset, [mt](auto qg, auto off) { return micro_for<qg(), off()>(mt); });
}

}  // namespace

void quantize_act_int8(QuantAct &qa, const float *x, int64_t x_stride, Pool &pool) {
  const int64_t T = qa.T, K = qa.K;
  const int32_t G = qa.G;
  qa.q.resize(size_t(T * K));
  qa.d.resize(size_t(T * qa.gpr));
  // Tokens are independent: shared out over the pool (serially, the other threads would wait T x K elements).
  parallel_range(pool, T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t g = 0; g < qa.gpr; ++g) {
        const float *p = x + t * x_stride + g * G;
        float amax = 0;
        for (int32_t e = 0; e < G; ++e) amax = std::max(amax, std::fabs(p[e]));
        const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        qa.d[size_t(t * qa.gpr + g)] = d;
        uint8_t *o = &qa.q[size_t(t * K + g * G)];
        for (int32_t e = 0; e < G; ++e) o[e] = uint8_t(int32_t(std::nearbyint(p[e] * id)) + 128);
      }
  });
}

void gemm_int8_avx512(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
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

bool cpu_has_vnni() {
  return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
}

}  // namespace cpu
}  // namespace qw
