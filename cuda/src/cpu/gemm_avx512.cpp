// gemm_avx512.cpp — the exact prefill GEMM (fp32 arm) with 512-bit vectors: out[t, i] = w[i, :] . x[t, :]
// for a block of fp32 weight rows (already dequantized exactly, or F32 weights in place) and T tokens.
// Compiled with -mavx512f/bw/vl; matmul.cpp calls it only after cpu_has_avx512().
//
// Orientation: dot products along K (both operands are K-contiguous, so neither is transposed or packed
// beyond the exact dequantization matmul.cpp already does per block of rows). A micro-tile holds RB = 4
// weight rows x NT = 6 tokens = 24 zmm accumulators (16 K-lanes each); per 16 columns it loads 4 weight
// and 6 x vectors for 24 FMAs. K tails use masked loads, so any K works.
//
// Blocking: K is cut into nkb equal blocks of at most kKc columns. For each K block, a tile of 6 tokens
// (6 x kc fp32, <= 24 KiB) stays in L1 while the weight rows of the block (the caller passes about 512 KiB
// of them: L2) stream past it 4 rows at a time; each weight vector then feeds 6 FMAs, each x vector 4.
// Partial sums of a K block are reduced 4 rows at once (reduce4) and added to out in a fixed order.
// Measured on the 2-core EPYC (Zen 5) build box, one thread, thread CPU time (the box was loaded):
// ~120 GFLOP/s for 64 x 4864 x 896 and 64 x 256 x 4864, against a zmm FMA peak of ~205 GFLOP/s.
//
// Determinism: every output element is one FMA chain per lane over its K block, a fixed reduction tree,
// and a fixed sequence of K-block additions. None of that depends on which rows or tokens share a tile,
// so the result is the same for any row split over threads (1 vs 2 threads: bitwise equal) and any T.
#include <immintrin.h>

#include <algorithm>

#include "cpu.hpp"

// GCC 12 warns about the intentionally undefined pass-through operand inside the 512-bit extract intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace qw {
namespace cpu {

namespace {

constexpr int64_t kKc = 1024;  // max columns per K block (6 tokens x 1024 x 4 B = 24 KiB: L1); tile may pick another

// Sums of four accumulators as [s0, s1, s2, s3]. The tree is the same for every lane position, so a
// row's sum does not depend on the other three vectors.
inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  auto half = [](__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  };
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half(a0), half(a1)), _mm256_hadd_ps(half(a2), half(a3)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// RB rows (w, w + ldw, ...) x NT tokens (x, x + xs, ...) over columns [0, n) of the K block; adds (or
// stores, when first) the sums into out[j * os + i]. TAIL: n may not be a multiple of 16 (kept out of the
// common kernels: the masked path made GCC keep the accumulators in memory).
template <int RB, int NT, bool TAIL>
void micro(const float *w, int64_t ldw, const float *x, int64_t xs, int64_t n, float *out, int64_t os, bool first) {
  __m512 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t n16 = TAIL ? n & ~int64_t(15) : n;
  for (int64_t c = 0; c < n16; c += 16) {
    __m512 wv[RB];
    for (int i = 0; i < RB; ++i) wv[i] = _mm512_loadu_ps(w + i * ldw + c);
    for (int j = 0; j < NT; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * xs + c);
      for (int i = 0; i < RB; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  if (TAIL && n16 < n) {  // masked last vector: lanes past n load 0 and add 0 * 0
    const __mmask16 m = __mmask16((1u << (n - n16)) - 1);
    __m512 wv[RB];
    for (int i = 0; i < RB; ++i) wv[i] = _mm512_maskz_loadu_ps(m, w + i * ldw + n16);
    for (int j = 0; j < NT; ++j) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + j * xs + n16);
      for (int i = 0; i < RB; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  const __m512 z = _mm512_setzero_ps();
  for (int j = 0; j < NT; ++j) {
    alignas(16) float s[4];
    _mm_store_ps(s, reduce4(acc[0][j], RB > 1 ? acc[RB > 1 ? 1 : 0][j] : z, RB > 2 ? acc[RB > 2 ? 2 : 0][j] : z,
                            RB > 3 ? acc[RB > 3 ? 3 : 0][j] : z));
    float *o = out + j * os;
    for (int i = 0; i < RB; ++i) o[i] = first ? s[i] : o[i] + s[i];
  }
}

using MicroFn = void (*)(const float *, int64_t, const float *, int64_t, int64_t, float *, int64_t, bool);

template <int RB, bool TAIL>
MicroFn micro_for(int nt) {
  switch (nt) {
    case 1: return micro<RB, 1, TAIL>;
    case 2: return micro<RB, 2, TAIL>;
    case 3: return micro<RB, 3, TAIL>;
    case 4: return micro<RB, 4, TAIL>;
    case 5: return micro<RB, 5, TAIL>;
    default: return micro<RB, 6, TAIL>;
  }
}

template <bool TAIL>
MicroFn micro_for(int rb, int nt) {
  switch (rb) {
    case 1: return micro_for<1, TAIL>(nt);
    case 2: return micro_for<2, TAIL>(nt);
    case 3: return micro_for<3, TAIL>(nt);
    default: return micro_for<4, TAIL>(nt);
  }
}

}  // namespace

void gemm_f32_avx512(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t x_stride, int64_t T,
                     int64_t K, float *out, int64_t out_stride, int64_t kc_max) {
  constexpr int RB = 4, NT = 6;
  const int64_t kcm = kc_max > 0 ? kc_max : kKc;
  const int64_t nkb = (K + kcm - 1) / kcm;
  const int64_t kc = ((K + nkb - 1) / nkb + 15) / 16 * 16;
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t n = std::min(kc, K - k0);
    const bool first = k0 == 0;
    for (int64_t t = 0; t < T; t += NT) {
      const int nt = int(std::min<int64_t>(NT, T - t));
      for (int64_t i = 0; i < n_rows; i += RB) {
        const int rb = int(std::min<int64_t>(RB, n_rows - i));
        (n % 16 ? micro_for<true>(rb, nt) : micro_for<false>(rb, nt))(w + i * ldw + k0, ldw, x + t * x_stride + k0, x_stride, n, out + t * out_stride + i,
                          out_stride, first);
      }
    }
  }
}

}  // namespace cpu
}  // namespace qw
