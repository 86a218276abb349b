// counters.cu — qwlab section `counters`: profiling mode "counters" checked against bytes known exactly. The range
// profiler (src/cuda/range_profiler.cuh, the session's own code path) measures a copy kernel of N bytes and the
// decode GEMV of a bf16 weight larger than L2; measured DRAM bytes are printed beside the exact ones with their
// ratio, and the L2 hit rate and SM / tensor throughput beside them. Checks: the copy reads and writes N bytes
// within 5 %, the GEMV reads its weight bytes within 15 % (its activations and output are < 0.1 % of it).
// Written without a GPU: compile-checked only until a session runs `qwlab counters`.
#include <cmath>

#include "counters.hpp"
#include "gemv.cuh"
#include "lab.cuh"
#include "range_profiler.cuh"

namespace {

__global__ void copy_kernel(const uint4 *__restrict__ in, uint4 *__restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = in[i];
}

// One measured case: the op's kernels summed as the session sums them (qw::aggregate_kernels).
bool counters_line(const char *name, const qw::OpCounters &c, double exact_read, double exact_write, double tol) {
  const double rr = c.dram_read / exact_read;
  const double rw = exact_write > 0 ? c.dram_write / exact_write : NAN;
  const bool ok = std::isfinite(rr) && std::fabs(rr - 1) <= tol &&
                  (exact_write <= 0 || (std::isfinite(rw) && std::fabs(rw - 1) <= tol));
  printf("counters %-28s kernels %d | DRAM read %.4e B (exact %.4e, ratio %.3f) | write %.4e B (exact %.4e, ratio %.3f) "
         "| L2 hit %.1f %% | SM %.1f %% | tensor %.1f %% | %.1f us | %s (tolerance %.0f %%)\n",
         name, c.kernels, c.dram_read, exact_read, rr, c.dram_write, exact_write, rw, c.l2_hit_pct(), c.sm_pct,
         c.tensor_pct, c.duration_ns * 1e-3, ok ? "ok" : "FAIL", tol * 100);
  char shape[64];
  snprintf(shape, sizeof shape, "%.0f B exact", exact_read);
  g_rows.push_back({std::string("counters ") + name, shape, ok ? "ok" : "FAIL", std::fabs(rr - 1), c.duration_ns * 1e-3,
                    c.duration_ns > 0 ? (c.dram_read + c.dram_write) / c.duration_ns : 0.0, "GB/s meas.",
                    100 * rr});
  if (!ok) ++g_fail;
  return ok;
}

}  // namespace

void run_counters() {
  int dev = 0;
  CHK(cudaGetDevice(&dev));
  std::unique_ptr<qwc::RangeProfiler> prof;
  try {
    prof = std::make_unique<qwc::RangeProfiler>(dev);
  } catch (const std::exception &e) {
    printf("counters: FAIL the range profiler cannot run here: %s\n", e.what());
    ++g_fail;
    return;
  }
  for (const std::string &u : prof->unavailable()) printf("counters: %s\n", u.c_str());

  // copy: 256 MiB in, 256 MiB out (5x the 50-60 MB L2, so every byte goes to DRAM once each way)
  const size_t bytes = size_t(256) << 20, n = bytes / sizeof(uint4);
  uint4 *in = dalloc<uint4>(n), *out = dalloc<uint4>(n);
  CHK(cudaMemset(in, 1, bytes));
  prof->begin();
  copy_kernel<<<1024, 256>>>(in, out, n);
  CHK(cudaGetLastError());
  counters_line("copy 256 MiB", qw::aggregate_kernels(prof->end()), double(bytes), double(bytes), 0.05);
  CHK(cudaFree(in));
  CHK(cudaFree(out));

  // decode GEMV, bf16 8192 x 8192 (128 MiB of weights), batch 1, bf16 in, f32 out
  const int64_t rows = 8192, cols = 8192;
  HostW hw = make_w(WT_BF16, rows, cols);
  DevW w = upload_w(hw);
  std::vector<uint16_t> act(cols);
  for (auto &v : act) v = f2bf(rndn());
  __nv_bfloat16 *dact = (__nv_bfloat16 *)dalloc<uint16_t>(act.size());
  h2d((uint16_t *)dact, act);
  float *dout = dalloc<float>(rows);
  GemvArgs a;
  a.epi = GEMV_EPI_F32; a.out = dout; a.out_ld = rows; a.w = w.m; a.batch = 1; a.pro = GEMV_PRO_BF16;
  a.act = dact; a.act_ld = cols;
  launch_gemv(a, 0);  // warm-up outside the profiled range (first launch: module load)
  CHK(cudaDeviceSynchronize());
  prof->begin();
  const char *variant = launch_gemv(a, 0);
  CHK(cudaGetLastError());
  const std::vector<qw::KernelCounters> ranges = prof->end();
  const double exact = double(hw.bytes());  // the weight; activations (16 KiB) and output (32 KiB) not counted
  counters_line((std::string("gemv bf16 8192x8192 [") + variant + "]").c_str(), qw::aggregate_kernels(ranges), exact,
                0, 0.15);
  CHK(cudaFree(dact));
  CHK(cudaFree(dout));
  free_w(w);
}
