// tile.cu — the lab case of toggle tile on CUDA (src/opt/tile/tile_cuda.cuh): every GEMV candidate (rows per warp R x
// K split ks) and every GEMM candidate (cuBLASLt / our mma kernel with a 64 or 128 tile) on the Qwen2.5 0.5B and 7B
// shapes, each against the CPU fp64 reference (the same check as gemv_case / gemm_case) and against fixed, and timed
// (median of many launches, rotating weight copies for the GEMV). The candidate is selected exactly as in the engine:
// a CudaTileTable with that one entry, active through a CudaTileScope around the launch.
//
//   qwlab tile [--quick]       lines "tile gemv <shape> <candidate>" with rel err vs fp64, time, GB/s, and the ratio
//                              to fixed; tolerance 1e-4 (fp32 out) for every candidate.
#include <string>

#include "gemm.cuh"
#include "gemv.cuh"
#include "lab.cuh"
#include "tile_cuda.cuh"

namespace {

void tile_gemv_shape(const char *label, int64_t rows, int64_t cols) {
  HostW hw = make_w(WT_BF16, rows, cols);
  DevW w = upload_w(hw);
  const int batch = 1;
  std::vector<uint16_t> act(cols);
  for (auto &v : act) v = f2bf(rndn());
  __nv_bfloat16 *dact = (__nv_bfloat16 *)dalloc<uint16_t>(cols);
  h2d((uint16_t *)dact, act);
  float *dout = dalloc<float>(rows);
  GemvArgs a;
  a.epi = GEMV_EPI_F32; a.out = dout; a.out_ld = rows; a.w = w.m; a.batch = batch; a.pro = GEMV_PRO_BF16;
  a.act = dact; a.act_ld = cols;
  const std::vector<float> ain = gemv_ref_input(GEMV_PRO_BF16, act, {}, {}, batch, cols);
  std::vector<int64_t> chk;
  for (int64_t r = 0; r < rows; ++r)
    if (rows <= 20000 || r < 64 || r >= rows - 64 || r % 7 == 0) chk.push_back(r);
  const size_t wb = hw.bytes();
  const int ncopies = (int)std::min<size_t>(256, std::max<size_t>(1, ((512u << 20) + wb - 1) / std::max<size_t>(wb, 1)));
  std::vector<DevW> copies{w};
  for (int i = 1; i < ncopies; ++i) copies.push_back(upload_w(hw));
  const std::string key = cuda_gemv_key(w.m);
  double fixed_us = 0;
  for (const auto &c : cuda_tile_candidates(true)) {
    CudaTileTable t;
    t.set({{key, c.name}});
    CudaTileScope scope(&t);
    poison(dout, rows * 4);
    const char *variant = launch_gemv(a, 0);
    CHK(cudaDeviceSynchronize());
    const std::vector<float> of = d2h(dout, rows);
    bool nan_seen = false;
    for (float v : of) nan_seen |= !std::isfinite(v);
    std::vector<double> outv, refv;
    gemv_ref_compare(hw, ain, batch, GEMV_EPI_F32, {}, {}, chk, std::vector<double>(of.begin(), of.end()), rows, outv, refv);
    bool ns2 = false;
    const double err = rel_err(outv, refv, &ns2);
    const double us = time_us([&](int i) { GemvArgs x = a; x.w = copies[i % ncopies].m; launch_gemv(x, 0); }, g_quick ? 20 : 100, 5);
    if (c.name == "fixed") fixed_us = us;
    const double rate = ((double)wb + cols * 2.0 + rows * 4.0) / (us * 1e-6) / 1e9;
    char shape[128];
    snprintf(shape, sizeof shape, "%s bf16 %lldx%lld b1 (fixed/this %.3f)", label, (long long)rows, (long long)cols, fixed_us / us);
    report(std::string("tile gemv ") + c.name + " [" + variant + "]", shape, true, err, 1e-4, nan_seen || ns2, us, rate, "GB/s",
           g_copy_bw / 1e9);
  }
  for (int i = 1; i < ncopies; ++i) free_w(copies[i]);
  free_w(w);
  cudaFree(dact); cudaFree(dout);
}

void tile_gemm_shape(const char *label, int64_t M, int64_t N, int64_t K) {
  std::vector<uint16_t> A(M * K), W(N * K);
  for (auto &v : A) v = f2bf(rndn());
  for (auto &v : W) v = f2bf(rndn() / sqrtf((float)K));
  __nv_bfloat16 *da = (__nv_bfloat16 *)dalloc<uint16_t>(A.size()), *dw = (__nv_bfloat16 *)dalloc<uint16_t>(W.size());
  h2d((uint16_t *)da, A); h2d((uint16_t *)dw, W);
  float *dc = dalloc<float>(M * N);
  GemmArgs g;
  g.out_kind = GEMM_OUT_F32; g.c = dc; g.ldc = N; g.a = da; g.lda = K; g.w = dw; g.m = M; g.n = N; g.k = K;
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < M; ++r) if (M <= 64 || r < 16 || r >= M - 16 || r % 61 == 0) rows.push_back(r);
  std::vector<double> refv(rows.size() * N);
#pragma omp parallel for
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += (double)bf2f(A[rows[i] * K + k]) * bf2f(W[n * K + k]);
      refv[i * N + n] = s;
    }
  const std::string key = cuda_gemm_key(N, K);
  double fixed_us = 0;
  for (const auto &c : cuda_tile_candidates(false)) {
    CudaTileTable t;
    t.set({{key, c.name}});
    CudaTileScope scope(&t);
    poison(dc, M * N * 4);
    const char *variant = launch_gemm(g, 0, 0);
    CHK(cudaDeviceSynchronize());
    const std::vector<float> of = d2h(dc, M * N);
    std::vector<double> outv(rows.size() * N);
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t n = 0; n < N; ++n) outv[i * N + n] = of[rows[i] * N + n];
    bool nan_seen = false;
    const double err = rel_err(outv, refv, &nan_seen);
    const double us = time_us([&](int) { launch_gemm(g, 0, 0); }, g_quick ? 10 : 30, 3);
    if (c.name == "fixed") fixed_us = us;
    char shape[128];
    snprintf(shape, sizeof shape, "%s %lldx%lldx%lld (fixed/this %.3f)", label, (long long)M, (long long)N, (long long)K,
             fixed_us / us);
    report(std::string("tile gemm ") + c.name + " [" + variant + "]", shape, true, err, 1e-4, nan_seen, us,
           2.0 * M * N * K / (us * 1e-6) / 1e12, "TFLOP/s", g_bf16_rate / 1e12);
  }
  cudaFree(da); cudaFree(dw); cudaFree(dc);
}

}  // namespace

void run_tile() {
  // Qwen2.5-0.5B: q|k|v, o_proj, gate|up (interleaved), down, lm_head (CUDA fuses q|k|v and gate|up)
  tile_gemv_shape("0.5b qkv", 1152, 896);
  tile_gemv_shape("0.5b o", 896, 896);
  tile_gemv_shape("0.5b gate_up", 9728, 896);
  tile_gemv_shape("0.5b down", 896, 4864);
  if (!g_quick) tile_gemv_shape("0.5b lm_head", 151936, 896);
  // Qwen2.5-7B
  tile_gemv_shape("7b qkv", 4608, 3584);
  tile_gemv_shape("7b o", 3584, 3584);
  tile_gemv_shape("7b gate_up", 37888, 3584);
  tile_gemv_shape("7b down", 3584, 18944);
  // prefill GEMMs at 512 tokens, and a short prompt (64)
  tile_gemm_shape("0.5b qkv pp512", 512, 1152, 896);
  tile_gemm_shape("0.5b down pp64", 64, 896, 4864);
  tile_gemm_shape("7b qkv pp512", 512, 4608, 3584);
  if (!g_quick) tile_gemm_shape("7b gate_up pp512", 512, 37888, 3584);
  tile_gemm_shape("7b down pp512", 512, 3584, 18944);
}
