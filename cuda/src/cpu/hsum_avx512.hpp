// hsum_avx512.hpp — horizontal sums of zmm accumulators shared by the AVX-512 kernels (include only from files
// compiled with -mavx512f: *_avx512.cpp).
#pragma once

#include <immintrin.h>

namespace qw {
namespace cpu {

// Four hsum512 at once, bit for bit: GCC's _mm512_reduce_add_ps adds the 256-bit halves, then the 128-bit halves,
// then lanes {2,3} onto {0,1}, then lane 1 onto lane 0. The same adds run here on four rows packed into one vector
// (a + b == b + a exactly, so only the pairing has to match): 13 shuffles/adds instead of 4 x 8. For the embedded
// model's 256-wide rows that reduction was ~1/8 of a row's instructions. test_tile checks rb 4/8 == rb 1 bitwise.
inline void hsum512x4(const __m512 *a, float *y) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], 0xEE), _mm512_shuffle_f32x4(a[0], a[1], 0x44));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], 0xEE), _mm512_shuffle_f32x4(a[2], a[3], 0x44));
  const __m512 t6 = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0xDD), _mm512_shuffle_f32x4(ab, cd, 0x88));
  const __m512 t8 = _mm512_add_ps(t6, _mm512_permute_ps(t6, 0x4E));  // + lanes {2,3,0,1}
  const __m512 t9 = _mm512_add_ps(t8, _mm512_permute_ps(t8, 0xB1));  // lane 0 + lane 1
  alignas(64) float l[16];
  _mm512_store_ps(l, t9);
  for (int k = 0; k < 4; ++k) y[k] = l[4 * k];  // row k's sum sits in lane 0 of 128-bit block k
}

}  // namespace cpu
}  // namespace qw
