// ffn_cpu.cpp — the arms of toggle ffn on the CPU (see ffn_cpu.hpp).
#include "ffn_cpu.hpp"

namespace qw {
namespace cpu {

namespace {
MatFusion fusion_of(Ffn f, const FfnIo &io) {
  MatFusion m;
  if (f == Ffn::Separate) return m;
  m.paired = true;
  float *a = io.a;
  const float *g = io.jobs[0].out, *u = io.jobs[1].out;
  const int64_t R = io.R, F = io.F;
  m.epilogue = [=](int, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < R; ++t) swiglu_span(a + t * F + r0, g + t * F + r0, u + t * F + r0, r1 - r0);
  };
  if (f == Ffn::FusedNormGemvSwiglu) {
    m.norm_src = io.x;
    m.norm_w = io.norm_w;
    m.eps = io.eps;
  }
  return m;
}
}  // namespace

void ffn_gate_up(Ffn f, const FfnIo &io, Pool &pool) {
  matmul_fused(io.jobs, 2, io.h, io.R, io.H, pool, fusion_of(f, io));
}

const char *ffn_gate_up_kernel(Ffn f, const FfnIo &io) {
  const char *mm = matmul_kernel_name(*io.jobs[0].w.t, io.R, io.jobs[0].act_quant);
  switch (f) {
    case Ffn::Separate: return mm;
    case Ffn::FusedSwiglu: return fused_kernel_name("", mm, "+swiglu");
    case Ffn::FusedNormGemvSwiglu: break;
  }
  return fused_kernel_name(matmul_prologue_in_job(io.jobs, 2, io.R) ? "cpu.rmsnorm+" : "cpu.rmsnorm;", mm, "+swiglu");
}

}  // namespace cpu
}  // namespace qw
