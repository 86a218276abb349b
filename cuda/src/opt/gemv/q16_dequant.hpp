// q16_dequant.hpp — the code-to-float conversion of gemv_q16 (src/cuda/gemv.cu: W4 / W8 decode GEMV in 16-byte weight
// loads), shared with its CPU test (test_q16.cpp), which checks it bit for bit against the plain conversion.
// Why not I2F: int-to-float is a quarter-rate instruction on sm_90, and at 4-bit weights it bounded the first kernel.
// The codes of a 32-bit word become floats by the quantized KV cache's exponent trick (kvcache/kv_unpack.hpp
// unpack_word: a byte permute puts a code under the exponent of 2^23, 2^23 (int8: + 128) is subtracted, exactly), and
// each weight is then fmaf(s, q, o): the value every other path (and the CPU reference) uses. The storage is the
// same: W4 weight i of a word is nibble i (bits 4i..4i+3), W8 weight i is byte i (int8).
#pragma once

#include "kv_unpack.hpp"

namespace qw {
namespace q16 {

constexpr int kW4 = 4, kW8 = 8;  // code bits (gemv.cu maps WT_W4 / WT_W8 onto them)

// The weights of 32-bit word x: W4 8 (f[0..7]), W8 4 (f[0..3]), each fmaf(s, q, o).
template <int BITS>
QW_HD void dequant_word(uint32_t x, float s, float o, float *f) {
  constexpr int n = 32 / BITS;
  float q[n];
  kvq::unpack_word<BITS>(x, q);
  for (int i = 0; i < n; ++i) f[i] = fmaf(s, q[i], o);
}

// ---- QW_GEMV_Q16_FOLD (opt-in, unmeasured): the group's scale applied once per chunk instead of once per weight.
// (The codes minus z come from kvq::unpack_word's z argument.)
// A chunk (32 W4 / 16 W8 weights of a row) lies in one scale group. When the group's offset is an exact integer zero
// point (o == -s z, z in 0..15 for W4; o == 0 for W8: our q4 / q8), every weight is s (q - z) exactly as fp32 (the
// value fmaf(s, q, o) gives), so the chunk's sum is s * sum((q - z) a) with q - z exact small integers: one FADD per
// code (the one the exponent trick needs anyway) and no FFMA per weight. Other offsets (GGUF's Q4_K minimums) keep
// fmaf(s, q, o) per weight, summed per chunk the same way (scale 1).
// Whether (s, o) is such a zero point (zp_out: z, or 0 where it is not). Device and host give the same answer.
template <int BITS>
QW_HD bool fold_zero_point(float s, float o, float *z_out) {
  *z_out = 0.f;
  if (BITS == kW8) return o == 0.f;
  if (!(s > 0.f)) return o == 0.f;
  const float z = rintf(-o / s);
  if (!(z >= 0.f && z <= 15.f) || fmaf(s, z, o) != 0.f) return false;  // s z + o == 0 exactly, rounded once
  *z_out = z;
  return true;
}
}  // namespace q16
}  // namespace qw
