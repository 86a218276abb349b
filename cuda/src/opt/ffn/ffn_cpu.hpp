// ffn_cpu.hpp — the CPU side of toggle ffn (entry: ffn.cpp): the first half of the MLP block,
// h = RMSNorm(x) * ffn_norm, g | u = h W_gate^T | h W_up^T, a = silu(g) * u, as the layer's arm runs it:
//   separate                three passes: the norm, the gate/up matmul, SwiGLU (forward.cpp records three ops)
//   fused-swiglu            the norm, then one matmul whose threads apply SwiGLU to each row chunk of gate and up
//                           right after computing it (two ops)
//   fused-norm-gemv-swiglu  one pool job: the norm as the matmul's prologue, SwiGLU as its epilogue (one op)
// g and u are written in every arm (hook mlp.hook_pre reads g). Every arm gives the same bits (test_fusion.cpp).
#pragma once

#include "cpu.hpp"
#include "ffn.hpp"

namespace qw {
namespace cpu {

// Whether the arm runs the ffn norm / SwiGLU as an op of its own.
inline bool ffn_norm_own_op(Ffn f) { return f != Ffn::FusedNormGemvSwiglu; }
inline bool ffn_swiglu_own_op(Ffn f) { return f == Ffn::Separate; }

struct FfnIo {
  const MatJob *jobs;  // [2]: gate -> g, up -> u (out_stride F)
  const float *x;      // [R, H] residual stream (the norm's input)
  const float *norm_w; // [H]
  float eps;
  float *h;            // [R, H] normed input (written by the norm, or by the prologue)
  float *a;            // [R, F] silu(g) * u (written by the fused arms; separate: by the SwiGLU op)
  int64_t R, H, F;
};

// The gate/up op of the arm: separate: the matmul; fused-swiglu: matmul + SwiGLU epilogue; fused-norm-gemv-swiglu:
// also the norm prologue. The own-op passes (ffn_norm_own_op / ffn_swiglu_own_op) are the caller's.
void ffn_gate_up(Ffn f, const FfnIo &io, Pool &pool);
// The kernel name of that op, e.g. "cpu.rmsnorm+cpu.gemv.bf16+swiglu" ("cpu.rmsnorm;…" when the norm had to run
// as its own pass first: see matmul_fused).
const char *ffn_gate_up_kernel(Ffn f, const FfnIo &io);

}  // namespace cpu
}  // namespace qw
