// marlin.cuh — gemv = marlin (issue 10 items 2 and 4): the launchers of opt/gemv/marlin.cu and dequant.cu.
//   * launch_gemv_marlin (declared in gemv.cuh, which launch_gemv calls first when GemvArgs::mw is set): decode
//     GEMV for batch 1..16 over W4/W8 weights in the repacked layout (marlin_layout.hpp) on mma.sync tensor cores.
//   * launch_marlin_pack: the repack, on the device, from a native W4/W8 matrix (done once per model, lazily).
//   * launch_dequant_bf16_fast: vectorized W4/W8/F16/F32 -> bf16 for prefill; the same values as the generic
//     dequant kernel (swiglu.cu launch_dequant_bf16), 8 elements per thread, no 64-bit division per element.
// COMPILE-ONLY so far: written without a GPU; cuda/dev/lab/marlin.cu checks every piece against a CPU reference.
#pragma once
#include "common.cuh"
#include "marlin_layout.hpp"

namespace qwc {

// Whether w can be repacked (type W4/W8, rows % 64, cols % 128, group in {16, 32, 64, 128}).
bool marlin_packable(const WMat &w);
// Bytes of the repacked matrix (0 when not packable).
size_t marlin_packed_bytes(const WMat &w);
// Repacks w into dst (marlin_packed_bytes(w) bytes) and returns its descriptor.
MarlinMat launch_marlin_pack(const WMat &w, uint8_t *dst, cudaStream_t stream);
// The split of a matrix as the launcher will use it (QW_MARLIN_KSU = 1..8 overrides the slice width).
MarlinPlan marlin_plan_for(int64_t rows, int64_t cols);

// out [w.rows, w.cols] bf16 = the weights of w (any non-bf16 native type, cols % 8 == 0, group % 8 == 0).
// Returns false when the shape does not allow the vectorized kernel (the caller runs launch_dequant_bf16).
bool launch_dequant_bf16_fast(__nv_bfloat16 *out, const WMat &w, cudaStream_t stream);

}  // namespace qwc
