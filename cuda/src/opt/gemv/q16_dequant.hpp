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

}  // namespace q16
}  // namespace qw
