// swiglu.cuh — prefill SwiGLU over the interleaved gate/up GEMM output (column 2j = gate j, 2j+1 = up j):
// h[t, j] = bf16(bf16(silu(g)) * u) (HF bf16 rounding order); optional copy of the gate (hook mlp.hook_pre).
#pragma once
#include "common.cuh"

namespace qwc {
// interleaved = true: gu[t, 2j] = gate j, gu[t, 2j+1] = up j; false: gu[t, j] = gate j, gu[t, inter + j] = up j.
void launch_swiglu(__nv_bfloat16 *h, __nv_bfloat16 *gate_out, const __nv_bfloat16 *gu, int32_t rows, int32_t inter,
                   bool interleaved, cudaStream_t stream);
// fp32 copy of a bf16 tensor (hook captures): out[i] = in[i].
void launch_bf16_to_f32(float *out, const __nv_bfloat16 *in, int64_t n, cudaStream_t stream);
// Dequantizes any native weight into a bf16 matrix (prefill GEMM on non-bf16 weights; rounds to bf16).
void launch_dequant_bf16(__nv_bfloat16 *out, const WMat &w, cudaStream_t stream);
}  // namespace qwc
