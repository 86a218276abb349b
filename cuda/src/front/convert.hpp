// convert.hpp — exact GGUF block formats -> engine-native tensors (backend.hpp NativeTensor), and back to fp32.
//
// Mapping (every native weight satisfies w = scale * q + offset, evaluated as a multiply then an add):
//   F32  -> F32          F16 -> F16 (kept as half)      BF16 -> BF16
//   Q8_0 -> W8 g32: scale = d, offset = -0, q = qs
//   Q5_0 -> W8 g32: scale = d, offset = -0, q = (low nibble | high bit << 4) - 16
//   Q6_K -> W8 g16: scale = d * sc (exact in fp32: 11 x 8 significant bits), offset = -0, q = code - 32
//   Q5_K -> W8 g32: scale = d * sc, offset = -(dmin * m), q = 0..31
//   Q4_0 -> W4 g32: scale = d, offset = -8 * d, q = 0..15
//   Q4_K -> W4 g32: scale = d * sc, offset = -(dmin * m), q = 0..15
// Vectors (norm weights, biases) of any type become F32 via the same formulas.
//
// Why these are bit-exact with ggml's dequantize_row_*:
//  - every product scale * q is exact in fp32 (at most 11 + 8 + 6 significant bits < 24), so the multiply
//    never rounds and a fused multiply-add would give the same result as multiply-then-add. The contract is
//    still "multiply, then add" so that a future format whose product is not exact stays well defined.
//  - ggml computes y = d1 * q - m1; we store offset = -m1 and compute d1 * q + (-m1), which IEEE defines
//    as the same operation (x - m == x + (-m), including signed zeros).
//  - formats without a min use offset = -0.0f, the additive identity for every x (x + -0 == x, and
//    -0 + -0 == -0), so d * q keeps its sign of zero exactly as ggml's d * q does.
//  - Q4_0: ggml computes (q - 8) * d; we compute d * q + (-8 * d). Both d * q and 8 * d are exact and the
//    exact result (q - 8) * d fits in 15 significant bits, so the add does not round either. The one bit
//    that can differ is the sign of an exact zero: for q = 8 and d < 0 ggml gives -0.0, while
//    x + (-x) is +0.0 in IEEE arithmetic. The values are equal (-0 == +0) and no product or sum downstream
//    can tell them apart except by the sign of a zero result; we accept that to keep Q4_0 at 4 bits.
#pragma once

#include <cstdint>
#include <string>

#include "backend.hpp"

namespace qw {

struct GgmlTypeInfo {
  int32_t id;
  const char *name;
  int32_t block_elems;  // elements per block along ne0
  int32_t block_bytes;
};
// nullptr for a type id this engine does not accept.
const GgmlTypeInfo *ggml_type_info(int32_t ggml_type);
const char *ggml_type_name(int32_t ggml_type);  // "?" when unknown

// Bytes of `rows` rows of `cols` elements in GGUF layout; throws QW_ERR_SHAPE (naming `name`) when cols is
// not a multiple of the block size.
uint64_t ggml_nbytes(const std::string &name, int32_t ggml_type, int64_t rows, int64_t cols);

// Converts GGUF data ([rows, cols] row-major blocks along cols) to the native layout. `as_vector` forces F32
// (norm weights, biases). Throws qw::Error on unsupported types or size mismatches (the caller has already
// checked nbytes with ggml_nbytes).
NativeTensor convert_tensor(const std::string &name, int32_t ggml_type, int64_t rows, int64_t cols,
                            const void *data, bool as_vector);

// Dequantizes GGUF data directly (reference dequantize_row_* formulas as written in ggml-quants.c), `n`
// elements (a multiple of the block size) into out. Used by the vector path and by tests.
void dequant_ggml(float *out, int32_t ggml_type, const void *data, int64_t n);

// Dequantizes native rows [row0, row0 + nrows) of `t` to fp32 (w = scale * q + offset, no fma).
void dequant_rows(float *out, const NativeTensor &t, int64_t row0, int64_t nrows);

// Bytes per weight element of a native tensor, including its group scale/offset share (for cost models).
double native_bytes_per_element(NativeType type, int32_t group);

}  // namespace qw
