// act_quant_cpu.hpp — the CPU side of toggle actQuant: which activation arm a prefill GEMM runs, and its kernels.
// matmul.cpp asks act_quant_runs() per job; when it says yes it quantizes x once per (mode, group size) with
// quantize_act() and runs gemm_act_quant() over its rows instead of the exact kernel.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "act_quant.hpp"
#include "cpu.hpp"

namespace qw {
namespace cpu {

// Which input layout the int8 arm reads for weights of type wtype at T tokens: the GEMM's (T >= kDequantMinT), or the
// decode GEMV's in column order (W8) or nibble order (W4). A quantized input serves only jobs of its own layout.
enum class ActLayout : uint8_t { Gemm, GemvW8, GemvW4 };
inline ActLayout act_quant_layout(NativeType wtype, int64_t T) {
  return T >= kDequantMinT ? ActLayout::Gemm : wtype == NativeType::W4 ? ActLayout::GemvW4 : ActLayout::GemvW8;
}

// What the decode GEMV (gemv_int8_avx512.cpp, T < kDequantMinT) reads besides the weights, built from q and d once per
// call by quantize_gemv(): lanes of 4 columns, 16 per span of 64 columns (layout: that file's header).
struct GemvOperands {
  bool w4 = false;             // W4 nibble order (even columns, then odd, per span) vs natural column order
  int64_t K = 0;               // the columns and group size the lane map (idx) was built for
  int32_t G = 0;
  int64_t spans = 0;           // ceil(K / 64)
  std::vector<int8_t> xs;      // [T, spans * 64] signed codes xq, in the layout's order; 0 past K
  std::vector<int32_t> corr;   // [T, spans * 16] W8: -128 * (sum of the lane's four xq); W4: unused
  std::vector<float> dl;       // [T, spans * 16] d of the lane's group
  std::vector<int32_t> idx;    // [spans * 16] the lane's group minus the first group of its 16-group block
};

// Activations quantized per token and group of G columns (int8: d = max|x| / 127, q stored as xq + 128).
struct QuantAct {
  ActQuant mode{};
  ActLayout layout{};
  int32_t G = 0;
  int64_t T = 0, K = 0, gpr = 0;
  std::vector<uint8_t> q;  // [T, K]
  std::vector<float> d;    // [T, gpr]
  GemvOperands gv;         // built when T < kDequantMinT (decode GEMV)
};

// Whether the `mode` arm runs for weight t at T tokens (else the exact kernel does): int8 needs W8/W4 weights;
// GEMM-sized calls (T >= kDequantMinT) run it with VNNI or with AVX2, decode-sized ones (T < kDequantMinT) with
// VNNI only (without it the exact GEMV runs); builds without AVX2 run the exact kernel. Off never runs.
bool act_quant_runs(ActQuant mode, const NativeTensor &t, int64_t T);
// The kernel name of a job for which act_quant_runs() is true: "cpu.gemm.w{8,4}g{16,32,128}.int8act.{vnni,avx2}",
// or "cpu.gemv.w{8,4}g{16,32,128}.int8act.vnni" below kDequantMinT tokens (static strings: op records keep them).
const char *act_quant_kernel_name(ActQuant mode, const NativeTensor &t, int64_t T);
// Quantizes x [T, K] per token and group of G; below kDequantMinT tokens also builds the decode GEMV's operands
// for weights of type wtype (W4 reads its activations in nibble order).
void quantize_act(QuantAct &qa, ActQuant mode, const float *x, int64_t T, int64_t x_stride, int64_t K, int32_t G,
                  Pool &pool, NativeType wtype = NativeType::W8);
// Whether qa (quantized for some job) serves weight w at T tokens as well: same arm and group size, and below
// kDequantMinT tokens the same GEMV layout.
bool act_quant_shares(const QuantAct &qa, ActQuant mode, const NativeTensor &w, int64_t T);
// Rows [r0, r1) of job for all qa.T tokens. xsum: per-token fp32 group sums of x when the weight has offsets.
void gemm_act_quant(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);

// gemm_int8_avx512.cpp — the int8 arm: W8/W4 rows [r0, r1) of job for all qa.T tokens with VNNI.
void quantize_act_int8(QuantAct &qa, const float *x, int64_t x_stride, Pool &pool);
void gemm_int8_avx512(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);
// gemm_int8_avx2.cpp — the same arm without VNNI (vpmaddubsw/vpmaddwd, sign trick): bitwise the same outputs.
void gemm_int8_avx2(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);
bool cpu_has_vnni();  // AVX-512 (as cpu_has_avx512) and AVX-512 VNNI
// gemv_int8_avx512.cpp — the int8 arm of decode-sized calls: W8/W4 rows [r0, r1) for qa.T < kDequantMinT tokens,
// read from the weights' native rows (VNNI only). quantize_gemv() quantizes x as quantize_act_int8 does (the same q
// and d, vectorized: a decode step quantizes ~100 short rows) and lays out qa.gv for the kernel.
void quantize_gemv(QuantAct &qa, const float *x, int64_t x_stride, bool w4);
void gemv_int8_avx512(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);

// The one map from a weight's group size to the int8 kernels' compile-time column quads per group (16 -> 4,
// 32 -> 8, 128 -> 32: the groups act_quant_runs() admits), shared by both ISAs so that a group size added there
// reaches both: returns pick(std::integral_constant<int, QG>, std::bool_constant<offset>).
template <class Pick>
auto with_int8_group(int32_t G, bool offset, Pick pick) {
  auto with = [&](auto qg) {
    return offset ? pick(qg, std::true_type{}) : pick(qg, std::false_type{});
  };
  if (G == 16) return with(std::integral_constant<int, 4>{});
  if (G == 32) return with(std::integral_constant<int, 8>{});
  return with(std::integral_constant<int, 32>{});
}

}  // namespace cpu
}  // namespace qw
