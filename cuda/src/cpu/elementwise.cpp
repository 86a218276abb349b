// elementwise.cpp — residual add and SwiGLU's silu(gate) * up, fp32.
#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "cpu.hpp"
#include "vexp.hpp"

namespace qw {
namespace cpu {

void residual_add(float *x, const float *y, int64_t n, Pool &pool) {
  parallel_range(pool, n, 1 << 16, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) x[i] += y[i];  // vectorizes (vaddps ymm)
  });
}


#if defined(__AVX2__) && defined(__FMA__)
// silu(g) = g / (1 + exp(-g)) of 8 lanes. -g is clamped to [-87, 88] (exp stays finite and normal: the result differs
// from the limit only below 1e-37 in magnitude); NaN gates pass through.
static inline __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 ng = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), g), _mm256_set1_ps(-87.0f)),
                                  _mm256_set1_ps(88.0f));
  const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(ng)));
  const __m256 y = _mm256_mul_ps(s, u);
  return _mm256_blendv_ps(y, _mm256_add_ps(g, u), _mm256_cmp_ps(g, g, _CMP_UNORD_Q));
}
#endif

void swiglu_span(float *out, const float *gate, const float *up, int64_t n) {
#if defined(__AVX2__) && defined(__FMA__)
  // The tail goes through the same vector code (padded), so every element gets the same bits wherever a span
  // boundary falls: the fused gate/up + SwiGLU arm (opt/ffn) cuts spans per row chunk.
  const int64_t i0 = n & ~int64_t(7);
  for (int64_t i = 0; i < i0; i += 8)
    _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i0 < n) {
    alignas(32) float g[8] = {}, u[8] = {}, y[8];
    std::copy(gate + i0, gate + n, g);
    std::copy(up + i0, up + n, u);
    _mm256_store_ps(y, swiglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
    std::copy(y, y + (n - i0), out + i0);
  }
#else
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
#endif
}

void swiglu(float *out, const float *gate, const float *up, int64_t n, Pool &pool) {
  // Split in multiples of 8 so every part but the last runs the vector loop only.
  const int64_t n8 = (n + 7) / 8;
  parallel_range(pool, n8, 1 << 12, [&](int64_t a, int64_t b) {
    const int64_t i0 = a * 8, i1 = std::min(n, b * 8);
    swiglu_span(out + i0, gate + i0, up + i0, i1 - i0);
  });
}

}  // namespace cpu
}  // namespace qw
