// gemv_int8_avx512.cpp — the int8-activation arm (toggle actQuant = int8) for decode-sized calls (T < kDequantMinT
// tokens) with W8/W4 weights and AVX-512 VNNI: the weights' native rows are read in place (no repacking: a decode
// step reads each weight once, so the prefill GEMM's per-call panel packing would cost more than the dot products).
//
// Why: the exact W8 GEMV widens and converts every code (vpmovsxbd + vcvtdq2ps + FMA: 3 ops per 16 weights), which
// makes it compute-bound on weights in cache (a small model) and near it on DRAM (0.5B Q8_0). vpdpbusd does 64
// multiply-adds per op; with the per-group scaling this is ~6 ops per 64 weights. llama.cpp's CPU decode does
// the same (q8_0 activations against q8_0/q4 weights). Measured on the 2-vCPU build box (build/bench_gemv, 1 thread,
// the model shapes of tiny and 0.5B): 1.3-2.1x the exact GEMV at 4 tokens per call (batched decode, verify steps);
// at 1 token within +-15 % of it either way (inside the box's run-to-run swing): both stream the weights at the
// memory's rate there, so the dot products are not what bounds a single token.
//
// Math (as gemm_int8_avx512.cpp): x is quantized per token and weight group, d = max|x| / 127, xq in [-127, 127];
//   y[t, r] = sum_g s[r, g] d[t, g] sum_{k in g} q[r, k] xq[t, k]  +  sum_g o[r, g] xsum[t, g]  (+ bias[r]).
// vpdpbusd multiplies unsigned by signed bytes. W4 codes are unsigned (0..15): they are the unsigned operand as
// they are. W8 codes are signed: flipped to q + 128 (xor 0x80), and each int32 lane starts at -128 * (sum of its
// four xq), precomputed once per call, which cancels the +128 exactly.
//
// Layout. A span is 64 columns: one zmm of codes (W8: 64 bytes of the row; W4: 32 bytes = 64 nibbles, low nibbles
// (even columns) in the low half, high nibbles (odd columns) in the high half, so that xq is stored in that order for
// W4). Lane j of a span holds 4 columns of one group (G >= 16). Per span and row: one int32 vector of 16 lane sums,
// converted and scaled by s[r, group of lane] * d[t, group of lane], accumulated in fp32 lanes; one horizontal sum
// per row at the end. The scales of a row are loaded 16 groups at a time and spread over the lanes with vpermps
// (idx = the lane's group within that 16-group block). Columns past K (K % 64 != 0) read masked zero codes and
// zero xq, so they add nothing.
//
// Determinism: each output is one fixed sequence over its row's spans (lanes), then _mm512_reduce_add_ps; rows never
// share accumulators, so 1 vs 2 threads and any row chunking give the same bits. The result is not bitwise the
// prefill GEMM's (that one sums per group in another order); both are checked against an fp64 reference.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "act_quant_cpu.hpp"
#include "hsum_avx512.hpp"

#include "vnni_target.hpp"

namespace qw {
namespace cpu {

namespace {

constexpr int64_t kSpan = 64;  // columns per zmm of codes
constexpr int kPrefetchBytes = 1024;  // ahead in each row stream, as the exact GEMV (matmul.cpp kPrefetch)
constexpr int kScalePrefetchBytes = 1024;  // ahead in each row's scale stream (~9 rows of a 896-column G = 32 matrix)

// The first column of lane j in span p: W8 holds columns 4j..4j+3; W4 holds {c, c+2, c+4, c+6} with
// c = 8 (j % 8) + (j >= 8) (low nibbles = even columns in lanes 0..7, high nibbles = odd columns in lanes 8..15).
inline int64_t lane_col(int64_t p, int j, bool w4) {
  return p * kSpan + (w4 ? 8 * (j % 8) + (j >= 8 ? 1 : 0) : 4 * j);
}

// Rows r, r + rs, ..., r + (RB - 1) rs x MT tokens [t0, t0 + MT).
template <int RB, int MT, bool W4>
void rows_tokens(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r, int64_t rs, int64_t t0) {
  const NativeTensor &w = *job.w.t;
  const GemvOperands &gv = qa.gv;
  const int64_t K = w.cols, G = w.group, gpr = K / G, spans = gv.spans, L = spans * 16;
  const int64_t row_bytes = W4 ? K / 2 : K;
  constexpr int64_t span_bytes = W4 ? 32 : 64;
  const int64_t spb = 16 * G / kSpan;  // spans per block of 16 groups (one zmm of a row's scales)
  const uint8_t *base = w.data.data() + r * row_bytes;
  const float *scale = w.scale.data() + r * gpr;
  __m512 acc[RB][MT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < MT; ++t) acc[i][t] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  for (int64_t p0 = 0, g0 = 0; p0 < spans; p0 += spb, g0 += 16) {
    __m512 sblk[RB];  // the block's scales of each row (masked past the row's last group)
    const __mmask16 m = __mmask16(gpr - g0 >= 16 ? 0xFFFF : (1u << (gpr - g0)) - 1);
    for (int i = 0; i < RB; ++i) {
      // Every span's scaling waits on these loads, so a miss here stalls the whole block while the codes could
      // stream on: fetch the scale stream ahead as well (in one A/B on a DRAM-resident G = 32 matrix, 0.5B's
      // lm_head, it streamed ~30 % slower than the exact GEMV without this; with G = 128 it was not slower).
      _mm_prefetch(reinterpret_cast<const char *>(scale + i * rs * gpr + g0) + kScalePrefetchBytes, _MM_HINT_T0);
      sblk[i] = _mm512_maskz_loadu_ps(m, scale + i * rs * gpr + g0);
    }
    const int64_t pe = std::min(spans, p0 + spb);
    for (int64_t p = p0; p < pe; ++p) {
      const __m512i idx = _mm512_loadu_si512(gv.idx.data() + p * 16);
      const int64_t left = row_bytes - p * span_bytes;  // bytes of this span inside the row
      __m512i xv[MT], cr[MT];  // shared by the RB rows: loaded once per span (a 512-bit load is a cycle of Zen 4's
      __m512 dv[MT];           // load ports, and 4 per row and span made the kernel load-bound)
      for (int t = 0; t < MT; ++t) {
        const int64_t o = (t0 + t) * L + p * 16;
        xv[t] = _mm512_loadu_si512(gv.xs.data() + 4 * o);
        cr[t] = W4 ? _mm512_setzero_si512() : _mm512_loadu_si512(gv.corr.data() + o);
        dv[t] = _mm512_loadu_ps(gv.dl.data() + o);
      }
      for (int i = 0; i < RB; ++i) {
        const uint8_t *src = base + i * rs * row_bytes + p * span_bytes;
        _mm_prefetch(reinterpret_cast<const char *>(src) + kPrefetchBytes, _MM_HINT_T0);
        __m512i wv;
        if constexpr (W4) {
          const __m256i b = left >= 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src))
                                       : _mm256_maskz_loadu_epi8(__mmask32((1ull << left) - 1), src);
          const __m256i lo = _mm256_and_si256(b, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), lo4);
          wv = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        } else {  // a masked tail byte becomes 0x80 here; its xq is 0, so it adds nothing
          wv = _mm512_xor_si512(
              left >= 64 ? _mm512_loadu_si512(src) : _mm512_maskz_loadu_epi8(__mmask64((1ull << left) - 1), src), flip);
        }
        const __m512 sv = _mm512_permutexvar_ps(idx, sblk[i]);
        for (int t = 0; t < MT; ++t) {
          const __m512i is = _mm512_dpbusd_epi32(cr[t], wv, xv[t]);
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(sv, dv[t]), acc[i][t]);
        }
      }
    }
  }
  for (int t = 0; t < MT; ++t) {
    float y[RB];
    if constexpr (RB % 4 == 0) {
      for (int i = 0; i < RB; i += 4) {
        const __m512 a4[4] = {acc[i][t], acc[i + 1][t], acc[i + 2][t], acc[i + 3][t]};
        hsum512x4(a4, y + i);
      }
    } else {
      for (int i = 0; i < RB; ++i) y[i] = _mm512_reduce_add_ps(acc[i][t]);
    }
    for (int i = 0; i < RB; ++i) {
      if (xsum) y[i] += offset_dot(w.offset.data() + (r + i * rs) * gpr, xsum + (t0 + t) * gpr, gpr);
      job.out[(t0 + t) * job.out_stride + r + i * rs] = y[i] + (job.bias ? job.bias[r + i * rs] : 0.0f);
    }
  }
}

template <int MT, bool W4>
void rows_range(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1, int64_t t0) {
  // RB equal sub-ranges of [r0, r1), one row of each at a time: RB long sequential streams, as the exact GEMV reads
  // (gemv_grouped_avx512). Measured on a DRAM-resident 151936 x 896 W8 matrix (1 thread): 4 adjacent rows per step
  // streamed at half the exact kernel's rate. RB x MT fp32 accumulators + RB scale blocks stay in the 32 zmm.
  constexpr int RB = MT <= 2 ? 4 : 2;
  const int64_t q = (r1 - r0) / RB;
  for (int64_t i = 0; i < q; ++i) rows_tokens<RB, MT, W4>(job, qa, xsum, r0 + i, q, t0);
  for (int64_t r = r0 + RB * q; r < r1; ++r) rows_tokens<1, MT, W4>(job, qa, xsum, r, 0, t0);
}

template <bool W4>
void gemv_tokens(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
  for (int64_t t0 = 0; t0 < qa.T; t0 += 4) {
    switch (std::min<int64_t>(4, qa.T - t0)) {
      case 1: rows_range<1, W4>(job, qa, xsum, r0, r1, t0); break;
      case 2: rows_range<2, W4>(job, qa, xsum, r0, r1, t0); break;
      case 3: rows_range<3, W4>(job, qa, xsum, r0, r1, t0); break;
      default: rows_range<4, W4>(job, qa, xsum, r0, r1, t0); break;
    }
  }
}

}  // namespace

void quantize_gemv(QuantAct &qa, const float *x, int64_t x_stride, bool w4) {
  GemvOperands &gv = qa.gv;
  const int64_t T = qa.T, K = qa.K, G = qa.G, gpr = qa.gpr;
  const int64_t spans = (K + kSpan - 1) / kSpan, L = spans * 16, spb = 16 * G / kSpan;
  if (gv.w4 != w4 || gv.K != K || gv.G != G) {  // the lane map depends on K, G and the layout only
    gv.idx.assign(size_t(L), 0);
    for (int64_t p = 0; p < spans; ++p)
      for (int j = 0; j < 16; ++j) {
        const int64_t c = lane_col(p, j, w4);  // lanes past K read zero codes and zero xq: any index in 0..15
        gv.idx[size_t(p * 16 + j)] = c < K ? int32_t(c / G - p / spb * 16) : 0;
      }
  }
  gv.w4 = w4;
  gv.K = K;
  gv.G = int32_t(G);
  gv.spans = spans;
  qa.q.resize(size_t(T * K));
  qa.d.resize(size_t(T * gpr));
  gv.xs.resize(size_t(T * L * 4));
  gv.corr.resize(size_t(T * L));
  gv.dl.resize(size_t(T * L));
  thread_local std::vector<int8_t> nat;  // one token's xq in column order, zero past K (columns < K: written per token)
  nat.resize(size_t(spans * kSpan));
  std::fill(nat.begin() + K, nat.end(), int8_t(0));
  const __m512i flip = _mm512_set1_epi8(char(0x80)), ones = _mm512_set1_epi8(1);
  for (int64_t t = 0; t < T; ++t) {
    const float *xt = x + t * x_stride;
    float *dt = qa.d.data() + t * gpr;
    // Per group: d = max|x| / 127 and xq = round-to-nearest-even(x / d) (the current rounding mode, as nearbyint in
    // quantize_act_int8: the same codes and scales bit for bit; test_act_quant checks it).
    for (int64_t g = 0; g < gpr; ++g) {
      __m512 m = _mm512_setzero_ps();
      for (int64_t c = g * G; c < (g + 1) * G; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xt + c)));
      const float amax = _mm512_reduce_max_ps(m), d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
      dt[g] = d;
      const __m512 vid = _mm512_set1_ps(id);
      for (int64_t c = g * G; c < (g + 1) * G; c += 16) {
        const __m128i q = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xt + c), vid)));
        _mm_storeu_si128(reinterpret_cast<__m128i *>(nat.data() + c), q);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(qa.q.data() + t * K + c), _mm_xor_si128(q, _mm512_castsi512_si128(flip)));
      }
    }
    int8_t *xs = gv.xs.data() + t * L * 4;
    for (int64_t p = 0; p < spans; ++p) {
      __m512i v = _mm512_loadu_si512(nat.data() + p * kSpan);
      if (w4) {  // even columns (low nibbles) then odd columns (high nibbles): the low / high byte of each word
        const __m256i ev = _mm512_cvtepi16_epi8(v), od = _mm512_cvtepi16_epi8(_mm512_srli_epi16(v, 8));
        v = _mm512_inserti64x4(_mm512_castsi256_si512(ev), od, 1);
      }
      _mm512_storeu_si512(xs + p * kSpan, v);
      const __m512i lane_sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v);  // sum of the lane's 4 xq
      _mm512_storeu_si512(gv.corr.data() + t * L + p * 16, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(lane_sum, 7)));
      const int64_t g0 = p / spb * 16;
      const __mmask16 m = __mmask16(gpr - g0 >= 16 ? 0xFFFF : (1u << (gpr - g0)) - 1);
      _mm512_storeu_ps(gv.dl.data() + t * L + p * 16,
                       _mm512_permutexvar_ps(_mm512_loadu_si512(gv.idx.data() + p * 16), _mm512_maskz_loadu_ps(m, dt + g0)));
    }
  }
}

void gemv_int8_avx512(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
  if (job.w.t->type == NativeType::W4)
    gemv_tokens<true>(job, qa, xsum, r0, r1);
  else
    gemv_tokens<false>(job, qa, xsum, r0, r1);
}

}  // namespace cpu
}  // namespace qw
