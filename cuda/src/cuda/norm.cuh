// norm.cuh — RMSNorm (HF order: y = w * bf16(x * rsqrt(mean(x^2) + eps))), fp32 residual in, bf16 out.
// Used by prefill (decode fuses the norm into the next GEMV's prologue, see gemv.cuh).
#pragma once
#include "common.cuh"

namespace qwc {
// out: bf16 [rows, cols] (out_f32 optional fp32 copy for hooks/lm_head input, may be null);
// x: fp32 [rows, cols]; w: fp32 [cols].
void launch_rmsnorm(__nv_bfloat16 *out, float *out_f32, const float *x, const float *w, int32_t rows, int32_t cols,
                    float eps, cudaStream_t stream);
}  // namespace qwc
