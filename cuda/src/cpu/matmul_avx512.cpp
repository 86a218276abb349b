// matmul_avx512.cpp — the decode GEMV (T == 1) for W8 weights with 512-bit vectors, used at run time when
// the CPU has AVX-512 F/BW (this file alone is compiled with -mavx512f -mavx512bw; matmul.cpp checks the
// CPU before calling it, so the library still runs on AVX2-only machines).
//
// Why only this kernel: int8 codes must be widened and converted (vpmovsxbd + vcvtdq2ps) before the FMA,
// which makes W8 decode compute-bound when the weights sit in L2/L3 (a small model). 16 lanes per
// instruction halve that work. f16/bf16/f32 decode is bound by memory bandwidth and gains nothing.
// Same math and row order as tile<4, 1, true, LW8> in matmul.cpp (4 long row streams per thread).
#include <immintrin.h>

#include "cpu.hpp"
#include "hsum_avx512.hpp"

// GCC 12 warns about the intentionally undefined pass-through operand inside _mm512_cvtepi8_epi32.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace qw {
namespace cpu {

namespace {

inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

// RB rows (r, r + rs, ...) of one token. G is 16, 32 or 128.
template <int RB, int G>
inline void rows_w8(const int8_t *codes, const float *scale, int64_t cols, int64_t gpr, const float *x, int64_t r,
                    int64_t rs, float *y) {
  __m512 acc[RB];
  for (int i = 0; i < RB; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < gpr; ++g) {
    const int64_t c0 = g * G;
    __m512 ag[RB];
    for (int i = 0; i < RB; ++i) ag[i] = _mm512_setzero_ps();
    for (int i = 0; i < RB; ++i)
      _mm_prefetch(reinterpret_cast<const char *>(codes + (r + i * rs) * cols + c0) + 1024, _MM_HINT_T0);
    for (int64_t c = c0; c < c0 + G; c += 16) {
      const __m512 xv = _mm512_loadu_ps(x + c);
      for (int i = 0; i < RB; ++i) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i *>(codes + (r + i * rs) * cols + c));
        ag[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), xv, ag[i]);
      }
    }
    for (int i = 0; i < RB; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(scale[(r + i * rs) * gpr + g]), ag[i], acc[i]);
  }
  if constexpr (RB % 4 == 0) {
    for (int i = 0; i < RB; i += 4) hsum512x4(acc + i, y + i);
  } else {
    for (int i = 0; i < RB; ++i) y[i] = hsum512(acc[i]);
  }
}

template <int G, int RB>
void gemv(const MatJob &job, const float *x, const float *xsum, int64_t r0, int64_t r1) {
  const NativeTensor &w = *job.w.t;
  const int8_t *codes = reinterpret_cast<const int8_t *>(w.data.data());
  const int64_t cols = w.cols, gpr = cols / G;
  auto finish = [&](int64_t r, float y) {
    if (xsum) {  // offset term (Q5_K): sum_g offset_g * sum(x in g)
      const float *of = w.offset.data() + r * gpr;
      float s = 0;
      for (int64_t g = 0; g < gpr; ++g) s += of[g] * xsum[g];
      y += s;
    }
    job.out[r] = y + (job.bias ? job.bias[r] : 0.0f);
  };
  const int64_t q = (r1 - r0) / RB;
  float y[RB];
  for (int64_t i = 0; i < q; ++i) {
    rows_w8<RB, G>(codes, w.scale.data(), cols, gpr, x, r0 + i, q, y);
    for (int k = 0; k < RB; ++k) finish(r0 + i + k * q, y[k]);
  }
  for (int64_t r = r0 + RB * q; r < r1; ++r) {
    rows_w8<1, G>(codes, w.scale.data(), cols, gpr, x, r, 0, y);
    finish(r, y[0]);
  }
}

template <int RB>
void gemv_rb(const MatJob &job, const float *x, const float *xsum, int64_t r0, int64_t r1) {
  switch (job.w.t->group) {
    case 16: gemv<16, RB>(job, x, xsum, r0, r1); break;
    case 32: gemv<32, RB>(job, x, xsum, r0, r1); break;
    case 128: gemv<128, RB>(job, x, xsum, r0, r1); break;  // weights = q8 (opt/weights/requant.hpp)
    default: throw Error(QW_ERR_INTERNAL, "gemv_w8_avx512: group " + std::to_string(job.w.t->group) + " has no kernel");
  }
}

}  // namespace

void gemv_w8_avx512(const MatJob &job, const float *x, const float *xsum, int64_t r0, int64_t r1, int rb) {
  switch (rb) {  // row streams (toggle tile); a row's sum does not depend on them
    case 1: gemv_rb<1>(job, x, xsum, r0, r1); break;
    case 2: gemv_rb<2>(job, x, xsum, r0, r1); break;
    case 8: gemv_rb<8>(job, x, xsum, r0, r1); break;
    default: gemv_rb<4>(job, x, xsum, r0, r1); break;
  }
}

}  // namespace cpu
}  // namespace qw
