// norm_cpu.cpp — the fused arm of toggle norm on the CPU (see norm_cpu.hpp).
#include "norm_cpu.hpp"

namespace qw {
namespace cpu {

MatFusion residual_epilogue(float *x, const float *o, int64_t T, int64_t ld) {
  MatFusion m;
  m.epilogue = [=](int, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; ++t) {
      float *xr = x + t * ld;
      const float *orow = o + t * ld;
      for (int64_t r = r0; r < r1; ++r) xr[r] += orow[r];  // the same fp32 add as residual_add
    }
  };
  return m;
}

MatFusion norm_prologue(const float *x, const float *w, float eps) {
  MatFusion m;
  m.norm_src = x;
  m.norm_w = w;
  m.eps = eps;
  return m;
}

const char *residual_kernel(const char *matmul_kernel) { return fused_kernel_name("", matmul_kernel, "+residual"); }

const char *norm_prologue_kernel(const MatJob *jobs, int n_jobs, int64_t T) {
  const char *mm = matmul_kernel_name(*jobs[0].w.t, T, jobs[0].act_quant);
  return fused_kernel_name(matmul_prologue_in_job(jobs, n_jobs, T) ? "cpu.rmsnorm+" : "cpu.rmsnorm;", mm, "");
}

}  // namespace cpu
}  // namespace qw
