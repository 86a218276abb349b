// kv_unpack.hpp — how the CUDA attention v2 (kv_quant_attn2.cu) turns packed codes into floats and where it puts a
// chunk's K rows in shared memory. Host and device (QW_HD), so that test_kv_unpack.cpp checks these very functions
// against kv_format.hpp's per-element accessors (q8 int8 codes, kivi_get) on the CPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "kv_format.hpp"

namespace qw {
namespace kvq {

// __byte_perm: result byte n = byte (s >> 4n) & 7 of the 8-byte value y:x (selectors here are always < 8).
QW_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, s);
#else
  const uint64_t v = (uint64_t(y) << 32) | x;
  uint32_t r = 0;
  for (int n = 0; n < 4; ++n) r |= uint32_t((v >> (8 * ((s >> (4 * n)) & 7u))) & 0xFFu) << (8 * n);
  return r;
#endif
}
QW_HD float u32_as_f32(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, 4);
  return f;
#endif
}

// The exponent trick: the float with bits 0x4B0000xx is 2^23 + xx exactly, so subtracting 2^23 (or 2^23 + 128
// for an int8 code biased by XOR 0x80) gives the code as fp32 with one PRMT and one FADD, exactly.
constexpr float kUnpackMagic = 8388608.0f;           // 2^23
constexpr float kUnpackMagicS8 = 8388608.0f + 128.0f;  // 2^23 + 128
QW_HD float magic_byte(uint32_t x, uint32_t i) { return u32_as_f32(byte_perm(x, 0x4B000000u, 0x7540u | i)); }

// The 32 / BITS codes of a 32-bit word of a code row, in channel order, as fp32 (q8: signed; kivi: unsigned).
// kv_format.hpp's packing: q8 one byte per channel; kivi4 low nibble = even channel; kivi2 bits 2i..2i+1 of byte
// j = channel 4j + i.
template <int BITS>
QW_HD void unpack_word(uint32_t w, float *x) {
  if constexpr (BITS == 8) {
    const uint32_t u = w ^ 0x80808080u;
    for (int i = 0; i < 4; ++i) x[i] = magic_byte(u, uint32_t(i)) - kUnpackMagicS8;
  } else if constexpr (BITS == 4) {
    const uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = magic_byte(lo, uint32_t(i)) - kUnpackMagic;
      x[2 * i + 1] = magic_byte(hi, uint32_t(i)) - kUnpackMagic;
    }
  } else {
    for (int i = 0; i < 4; ++i) {
      const uint32_t t = (w >> (2 * i)) & 0x03030303u;
      for (int j = 0; j < 4; ++j) x[4 * j + i] = magic_byte(t, uint32_t(j)) - kUnpackMagic;
    }
  }
}

// P.V: a lane owns channels E*lane .. E*lane + E - 1 (E = d / 32). The 32-bit word of the code row that holds
// them is word_index(); code e of the lane is lane_code(that word, shift(), e), as fp32.
template <int BITS>
struct LaneCodes {
  int wi, sh;
  QW_HD LaneCodes(int e_per_lane, int lane) : wi((e_per_lane * lane * BITS) >> 5), sh((e_per_lane * lane * BITS) & 31) {}
  QW_HD float code(uint32_t word, int e) const {
    if constexpr (BITS == 8) return magic_byte(word ^ 0x80808080u, uint32_t((sh >> 3) + e)) - kUnpackMagicS8;
    else return u32_as_f32(0x4B000000u | ((word >> (sh + e * BITS)) & ((1u << BITS) - 1u))) - kUnpackMagic;
  }
};

// Byte offset of 16-byte unit `col` (cu-byte unit when a row is shorter than 16 bytes) of K row `row` in a staged
// chunk of 32 rows of cr bytes: XOR-swizzled within each 128-byte line, so that the 8 lanes (rows) of a
// shared-memory wavefront reading the same logical unit hit 8 different 16-byte bank groups.
QW_HD int kunit_offset(int cr, int row, int col) {
  if (cr >= 32) return row * cr + ((col ^ ((row / (128 / cr)) & (cr / 16 - 1))) * 16);
  return row * cr + col * (cr < 16 ? cr : 16);
}

}  // namespace kvq
}  // namespace qw
