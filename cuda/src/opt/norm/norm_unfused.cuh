// norm_unfused.cuh — the RMSNorm kernel of the unfused decode arms (toggle norm = separate: the attention norm;
// toggle ffn = separate | fused-swiglu: the ffn norm). The fused arms run the norm in the GEMV's prologue
// (src/cuda/gemv_parts.cuh); this kernel computes the same values on its own, so the GEMV that then reads them
// (GEMV_PRO_BF16) gives the same bits as the fused one:
//   out[b, k] = bf16( bf16r(x[b, k] * rstd_b) * w[k] ),  rstd_b = rsqrt(mean_k x[b, k]^2 + eps)
// with rstd_b summed by gemv_detail::norm_rstd itself (same threads, loads and order). One block per row.
// CPU reference and bit check against the fused prologue: cuda/dev/lab/fusion.cu.
#pragma once
#include "common.cuh"

namespace qwc {

// out: bf16 [rows, out_ld]; x: fp32 [rows, x_ld]; w: fp32 [cols]. rows >= 1 (any number: one block each).
void launch_rmsnorm_rows(__nv_bfloat16 *out, int64_t out_ld, const float *x, int64_t x_ld, const float *w, int32_t rows,
                         int32_t cols, float eps, cudaStream_t stream);

}  // namespace qwc
