// sage_layout.hpp — the key order of the transposed e4m3 V of the sage-fp8 kernel (sage.cu), in plain C++ so that the
// CPU test (test_sage.cpp) checks it against the mma fragment layouts without a GPU.
//
// m16n8k32 (PTX ISA, 8-bit A/B): thread t of a warp, g = t / 4, q = t % 4, holds A[g][4q + i] (a0), A[g + 8][4q + i]
// (a1), A[g][16 + 4q + i] (a2), A[g + 8][16 + 4q + i] (a3), i = 0..3 (byte i), and B[4q + i][g] (b0),
// B[16 + 4q + i][g] (b1). The Q.K accumulators (m16n8 C) give thread t the keys 2q, 2q + 1 of each 8-key n-tile for
// rows g and g + 8. The kernel packs P for a 32-key group as a0 = keys {2q, 2q + 1, 8 + 2q, 8 + 2q + 1} (n-tiles 0, 1)
// and a2 = the same in n-tiles 2, 3, so A's column 4q + i is key vt_pos^-1(4q + i); storing V's key r at column
// vt_pos(r) makes B[k] the V row of that same key, and P.V comes out right with no shuffle of P.
#pragma once

#ifdef __CUDACC__
#define QW_SAGE_HD __host__ __device__ __forceinline__
#else
#define QW_SAGE_HD inline
#endif

#include <cstdint>
#include <cstring>

namespace qwc {

// The s32 Q.K~ of an INT8 dot product over <= 128 channels as a float, exactly: |x| <= 128 * 127 * 127 < 2^22, so
// 1.5 * 2^23 + x is a float whose ulp is 1 (its bits are 0x4B400000 + x) and subtracting 1.5 * 2^23 leaves x. An
// integer add and an FADD instead of I2F, a quarter-rate conversion (16 per clock per SM on sm_80 / sm_90) that
// costs as much issue as the softmax's exp2 for every score. The same value as (float)x (test_sage checks the range).
constexpr int32_t kSageS32Exact = (1 << 22) - 1;  // |x| up to here converts exactly
QW_SAGE_HD float sage_s32_to_float(int32_t x) {
  const uint32_t b = 0x4B400000u + static_cast<uint32_t>(x);
#ifdef __CUDA_ARCH__
  return __uint_as_float(b) - 12582912.0f;
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f - 12582912.0f;
#endif
}

// 2^x on the FMA pipe (sage-fp8 with QW_SAGE_POLY_EXP=1: a quarter of the scores, so the SFU's exp2 is not the only
// unit they queue on; FlashAttention-4's trick). x rounded to j (1.5 * 2^23 added: the integer lands in the low
// mantissa bits), 2^(x - j) on [-1/2, 1/2] by a cubic (the Taylor coefficients of e^(f ln 2): relative error <= 1e-3,
// below e4m3's 2^-4 step), j added to the exponent. x is clamped to [-125, 10] (p's exponent stays a normal one; the
// callers' arguments are <= log2 448 < 9, and a masked score's tiny result is set to 0 after).
constexpr float kSagePolyC1 = 0.69314718f, kSagePolyC2 = 0.24022650f, kSagePolyC3 = 0.05550411f;
QW_SAGE_HD float sage_exp2_poly(float x) {
  x = x < -125.f ? -125.f : x > 10.f ? 10.f : x;
  const float t = x + 12582912.f;
  const float j = t - 12582912.f;
  const float f = x - j;
  float p = kSagePolyC3 * f + kSagePolyC2;
  p = p * f + kSagePolyC1;
  p = p * f + 1.f;
  uint32_t tb, pb;
  std::memcpy(&tb, &t, 4);
  std::memcpy(&pb, &p, 4);
  pb += (tb - 0x4B400000u) << 23;
  float r;
  std::memcpy(&r, &pb, 4);
  return r;
}

// Column of key r (0..31 inside its 32-key group) in the transposed e4m3 V.
QW_SAGE_HD int sage_vt_pos(int r) {
  const int half = r >> 4, w = r & 15;
  const int hi = w >> 3, x = w & 7;  // n-tile 2 * half + hi, key x inside it
  return half * 16 + (x >> 1) * 4 + hi * 2 + (x & 1);
}

}  // namespace qwc
