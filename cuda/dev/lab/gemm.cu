// gemm.cu — the lab cases of the prefill GEMM (gemm.cuh): our mma kernel and cuBLASLt, every output kind,
// tails of the tile, and the timed shapes of 7B prefill.
#include "cublaslt.cuh"
#include "gemm.cuh"
#include "lab.cuh"

void gemm_case(int backend, int64_t M, int64_t N, int64_t K, int kind, bool timed) {
  if (backend == 2 && !cublaslt_available()) {
    printf("gemm cublaslt: skipped (%s)\n", cublaslt_status());
    return;
  }
  std::vector<uint16_t> A(M * K), W(N * K);
  for (auto &v : A) v = f2bf(rndn());
  for (auto &v : W) v = f2bf(rndn() / sqrtf((float)K));
  std::vector<float> base(M * N);
  for (auto &v : base) v = rndn();
  __nv_bfloat16 *da = (__nv_bfloat16 *)dalloc<uint16_t>(A.size()), *dw = (__nv_bfloat16 *)dalloc<uint16_t>(W.size());
  h2d((uint16_t *)da, A); h2d((uint16_t *)dw, W);
  void *dc = dalloc<float>(M * N);
  GemmArgs g;
  g.out_kind = kind; g.c = dc; g.ldc = N; g.a = da; g.lda = K; g.w = dw; g.m = M; g.n = N; g.k = K;
  if (kind == GEMM_OUT_ADD_F32) h2d((float *)dc, base);
  else poison(dc, M * N * 4);
  const char *variant = launch_gemm(g, 0, backend);
  CHK(cudaDeviceSynchronize());
  std::vector<float> of(M * N);
  if (kind == GEMM_OUT_BF16) { auto o = d2h((uint16_t *)dc, M * N); for (size_t i = 0; i < of.size(); ++i) of[i] = bf2f(o[i]); }
  else of = d2h((float *)dc, M * N);
  bool unwritten = false;
  for (float v : of) if (!std::isfinite(v)) unwritten = true;
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < M; ++r) if (M <= 64 || r < 16 || r >= M - 16 || r % 61 == 0) rows.push_back(r);
  std::vector<double> outv(rows.size() * N), refv(rows.size() * N);
  #pragma omp parallel for
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t r = rows[i];
    for (int64_t n = 0; n < N; ++n) {
      double s = kind == GEMM_OUT_ADD_F32 ? base[r * N + n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += (double)bf2f(A[r * K + k]) * bf2f(W[n * K + k]);
      refv[i * N + n] = s;
      outv[i * N + n] = of[r * N + n];
    }
  }
  bool nan_seen;
  double err = rel_err(outv, refv, &nan_seen);
  nan_seen |= unwritten;
  double us = 0, rate = 0;
  if (timed) {
    GemmArgs t = g;
    if (kind == GEMM_OUT_ADD_F32) t.out_kind = GEMM_OUT_F32;
    us = time_us([&](int) { launch_gemm(t, 0, backend); }, g_quick ? 10 : 30, 3);
    rate = 2.0 * M * N * K / (us * 1e-6) / 1e12;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "%lldx%lldx%lld %s", (long long)M, (long long)N, (long long)K,
           kind == GEMM_OUT_BF16 ? "bf16" : kind == GEMM_OUT_F32 ? "f32" : "+=f32");
  report(std::string("gemm [") + variant + "]", shape, true, err, kind == GEMM_OUT_BF16 ? 1e-2 : 1e-4, nan_seen, us, rate,
         "TFLOP/s", g_bf16_rate / 1e12);
  cudaFree(da); cudaFree(dw); cudaFree(dc);
}

void run_gemm() {
  for (int be : {1, 2}) {
    gemm_case(be, 37, 200, 136, GEMM_OUT_F32, false);
    gemm_case(be, 130, 77, 904, GEMM_OUT_ADD_F32, false);
    gemm_case(be, 65, 512, 256, GEMM_OUT_BF16, false);
    gemm_case(be, 200, 300, 136, GEMM_OUT_ADD_F32, false);   // tails in M, N and K of the 128x128 tile
    // quick: the own kernel's big shapes only when cuBLASLt is absent (then it is the prefill path)
    if (g_quick && be == 1 && cublaslt_available()) continue;
    gemm_case(be, 512, 4608, 3584, GEMM_OUT_F32, true);       // 7B qkv pp512
    if (!g_quick) gemm_case(be, 512, 37888, 3584, GEMM_OUT_BF16, true);  // 7B gate_up pp512
    gemm_case(be, 512, 3584, 18944, GEMM_OUT_ADD_F32, true);  // 7B down pp512
    if (!g_quick) gemm_case(be, 4096, 37888, 3584, GEMM_OUT_BF16, true);
  }
}
