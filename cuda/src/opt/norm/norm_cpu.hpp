// norm_cpu.hpp — the CPU side of toggle norm (entry: norm.cpp): where the residual adds and the attention norm of a
// layer run.
//   separate             x += o_proj(z) and x += down(a) are passes of their own after the matmul (op "residual"),
//                        and h = RMSNorm(x) * attn_norm is a pass of its own before q|k|v (op "attn_norm")
//   fused-residual-norm  the residual add is the o_proj / down matmul's epilogue (each thread adds the row chunk it
//                        just computed into x), the attention norm the q|k|v matmul's prologue (in its pool job)
// As on CUDA decode, where the GEMV epilogue adds the residual and the next GEMV's prologue normalizes. The ffn norm
// belongs to toggle ffn (opt/ffn/ffn_cpu.hpp); the final norm before lm_head is its own pass on the CPU in every
// arm. o (hook_attn_out) is written in every arm. Every arm gives the same bits (test_fusion.cpp).
#pragma once

#include "cpu.hpp"
#include "norm.hpp"

namespace qw {
namespace cpu {

inline bool norm_own_ops(Norm n) { return n == Norm::Separate; }

// The fusion of a projection into the residual stream: after each row chunk of job 0 (output o, row stride ld),
// x[t, r] += o[t, r] for its rows r and every token t.
MatFusion residual_epilogue(float *x, const float *o, int64_t T, int64_t ld);
// The fusion of the attention norm into the q|k|v matmul: its input h = RMSNorm(x) * w in the prologue.
MatFusion norm_prologue(const float *x, const float *w, float eps);
// Kernel names of the fused ops, e.g. "cpu.gemv.bf16+residual", "cpu.rmsnorm+cpu.gemv.bf16".
const char *residual_kernel(const char *matmul_kernel);
const char *norm_prologue_kernel(const MatJob *jobs, int n_jobs, int64_t T);

}  // namespace cpu
}  // namespace qw
