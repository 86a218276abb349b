// q16_dequant.hpp — the code-to-float conversion of gemv_q16 (src/cuda/gemv.cu: W4 / W8 decode GEMV in 16-byte weight
// loads), shared with its CPU test (test_q16.cpp), which checks it bit for bit against the plain conversion.
// Why not I2F: int-to-float is a quarter-rate instruction on sm_90, and at 4-bit weights it bounded the first kernel.
// Instead a byte permute puts a code byte under the exponent of 2^23 (0x4B000000 | byte = 2^23 + byte, exactly) and
// 2^23 is subtracted: W4 takes each nibble after masking (x & 0x0F0F0F0F: even weights, (x >> 4) & ...: odd ones);
// W8's int8 codes get their sign bit flipped first (two's complement -> offset binary, + 128) and 2^23 + 128 is
// subtracted. Each weight is then fmaf(s, q, o): the value every other path (and the CPU reference) uses.
// Storage: W4 weight i of a 32-bit word is nibble i (bits 4i..4i+3); W8 weight i is byte i.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QW_Q16_HD __host__ __device__ __forceinline__
#define QW_Q16_UNROLL _Pragma("unroll")
#else
#define QW_Q16_HD inline
#define QW_Q16_UNROLL
#include <cmath>
#endif

namespace qw {
namespace q16 {

constexpr int kW4 = 0, kW8 = 1;  // the two code types (gemv.cu maps WT_W4 / WT_W8 onto them)

// __byte_perm's default mode: result byte i = byte (s >> 4i) & 7 of the 8 bytes {y:x} (x bytes 0-3, y bytes 4-7).
QW_Q16_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t v = ((uint64_t)y << 32) | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= (uint32_t)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
#endif
}

QW_Q16_HD float bits_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, 4);
  return f;
#endif
}

QW_Q16_HD float fma32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// 2^23 + byte j of w, as a float (byte 0 of the result = w's byte j, bytes 1, 2 = 0, byte 3 = 0x4B)
QW_Q16_HD float magic_byte(uint32_t w, int j) { return bits_float(byte_perm(w, 0x4B000000u, 0x7440u | (uint32_t)j)); }

// The weights of 32-bit word x: W4 8 (f[0..7]), W8 4 (f[0..3]), each fmaf(s, q, o).
template <int T>
QW_Q16_HD void dequant_word(uint32_t x, float s, float o, float *f) {
  if constexpr (T == kW4) {
    const uint32_t lo = x & 0x0F0F0F0Fu, hi = (x >> 4) & 0x0F0F0F0Fu;
    QW_Q16_UNROLL
    for (int m = 0; m < 4; ++m) {
      f[2 * m] = fma32(s, magic_byte(lo, m) - 8388608.f, o);
      f[2 * m + 1] = fma32(s, magic_byte(hi, m) - 8388608.f, o);
    }
  } else {
    const uint32_t u = x ^ 0x80808080u;
    QW_Q16_UNROLL
    for (int m = 0; m < 4; ++m) f[m] = fma32(s, magic_byte(u, m) - 8388736.f, o);
  }
}

}  // namespace q16
}  // namespace qw
