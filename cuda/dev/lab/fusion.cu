// fusion.cu — the lab cases of the fusion arms (toggles ffn and norm, opt/ffn and opt/norm; docs/ARCHITECTURE.md
// §Adding an optimization). The unfused decode arms must give the bits of the fused default, and each arm is timed
// as the chain of kernels it launches, so the lab shows what each fusion saves per layer:
//   rmsnorm_rows (opt/norm/norm_unfused.cuh)    against a CPU reference (fp64 sum of squares, HF bf16 rounding)
//   ffn    fused-norm-gemv-swiglu  GEMV(PRO_NORM, EPI_SWIGLU)
//          fused-swiglu            rmsnorm_rows -> GEMV(PRO_BF16, EPI_SWIGLU)
//          separate                rmsnorm_rows -> GEMV(PRO_BF16, EPI_BF16, gate|up interleaved) -> swiglu
//   norm   fused-residual-norm     GEMV(EPI_ADD_F32) adds into x;  separate: GEMV(EPI_F32) -> add_f32
// Checks: the separate and fused-swiglu outputs equal the fused ones value for value ("bitwise" rows: err = the
// share of differing values, tolerance 0).
#include "gemv.cuh"
#include "lab.cuh"
#include "norm_unfused.cuh"
#include "sample.cuh"
#include "swiglu.cuh"

namespace {

// Share of positions where a and b differ as values (a NaN anywhere counts as differing).
double differing(const std::vector<uint16_t> &a, const std::vector<uint16_t> &b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += !(bf2f(a[i]) == bf2f(b[i]));
  return a.empty() ? 0.0 : double(n) / double(a.size());
}
double differing(const std::vector<float> &a, const std::vector<float> &b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += !(a[i] == b[i]);
  return a.empty() ? 0.0 : double(n) / double(a.size());
}

void rmsnorm_rows_case(int B, int H) {
  std::vector<float> x(size_t(B) * H), w(H);
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : w) v = 0.5f + rndu();
  float *dx = dalloc<float>(x.size()), *dw = dalloc<float>(H);
  h2d(dx, x); h2d(dw, w);
  __nv_bfloat16 *dout = (__nv_bfloat16 *)dalloc<uint16_t>(x.size());
  poison(dout, x.size() * 2);
  launch_rmsnorm_rows(dout, H, dx, H, dw, B, H, 1e-6f, 0);
  CHK(cudaDeviceSynchronize());
  const auto o = d2h((uint16_t *)dout, x.size());
  std::vector<double> outv, refv;
  for (int b = 0; b < B; ++b) {
    double ss = 0;
    for (int k = 0; k < H; ++k) ss += double(x[size_t(b) * H + k]) * x[size_t(b) * H + k];
    const float rstd = 1.0f / sqrtf(float(ss / H) + 1e-6f);
    for (int k = 0; k < H; ++k) {
      refv.push_back(bfr(bfr(x[size_t(b) * H + k] * rstd) * w[k]));
      outv.push_back(bf2f(o[size_t(b) * H + k]));
    }
  }
  bool nan_seen;
  const double err = rel_err(outv, refv, &nan_seen);
  const double us = time_us([&](int) { launch_rmsnorm_rows(dout, H, dx, H, dw, B, H, 1e-6f, 0); }, g_quick ? 20 : 100, 5);
  char shape[64];
  snprintf(shape, sizeof shape, "%dx%d", B, H);
  report("fusion rmsnorm_rows", shape, true, err, 1e-2, nan_seen, us, (double)B * H * 6 / (us * 1e-6) / 1e9, "GB/s",
         g_copy_bw / 1e9);
  cudaFree(dx); cudaFree(dw); cudaFree(dout);
}

// The ffn arms over an interleaved gate|up matrix [2I, H] and the norm arms over a down-like matrix [H, I].
void arms_case(const char *label, int B, int H, int I) {
  HostW hgu = make_w(WT_BF16, 2 * (int64_t)I, H), hdn = make_w(WT_BF16, H, I);
  DevW gu = upload_w(hgu), dn = upload_w(hdn);
  std::vector<float> x(size_t(B) * H), nw(H);
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  float *dx = dalloc<float>(x.size()), *dnw = dalloc<float>(H), *dres = dalloc<float>(x.size()),
        *dtmp = dalloc<float>(x.size());
  h2d(dx, x); h2d(dnw, nw);
  __nv_bfloat16 *xn = (__nv_bfloat16 *)dalloc<uint16_t>(x.size());
  __nv_bfloat16 *h[3], *gbuf = (__nv_bfloat16 *)dalloc<uint16_t>(size_t(B) * 2 * I);
  for (auto &p : h) p = (__nv_bfloat16 *)dalloc<uint16_t>(size_t(B) * I);
  auto norm_gemv = [&]() {
    GemvArgs a; a.batch = B; a.pro = GEMV_PRO_NORM; a.x = dx; a.x_ld = H; a.norm_w = dnw; a.eps = 1e-6f; return a;
  };
  auto bf16_gemv = [&]() { GemvArgs a; a.batch = B; a.pro = GEMV_PRO_BF16; a.act = xn; a.act_ld = H; return a; };
  // the three ffn arms
  auto fused_norm = [&]() {
    GemvArgs a = norm_gemv(); a.epi = GEMV_EPI_SWIGLU; a.w = gu.m; a.out = h[0]; a.out_ld = I; launch_gemv(a, 0);
  };
  auto fused_swiglu = [&]() {
    launch_rmsnorm_rows(xn, H, dx, H, dnw, B, H, 1e-6f, 0);
    GemvArgs a = bf16_gemv(); a.epi = GEMV_EPI_SWIGLU; a.w = gu.m; a.out = h[1]; a.out_ld = I; launch_gemv(a, 0);
  };
  auto separate = [&]() {
    launch_rmsnorm_rows(xn, H, dx, H, dnw, B, H, 1e-6f, 0);
    GemvArgs a = bf16_gemv(); a.epi = GEMV_EPI_BF16; a.w = gu.m; a.out = gbuf; a.out_ld = 2 * I; launch_gemv(a, 0);
    launch_swiglu(h[2], nullptr, gbuf, B, I, true, 0);
  };
  for (auto &p : h) poison(p, size_t(B) * I * 2);
  fused_norm(); fused_swiglu(); separate();
  CHK(cudaDeviceSynchronize());
  std::vector<uint16_t> out[3];
  for (int i = 0; i < 3; ++i) out[i] = d2h((uint16_t *)h[i], size_t(B) * I);
  bool nan0 = false;
  for (uint16_t v : out[0]) nan0 |= !std::isfinite(bf2f(v));
  const int iters = g_quick ? 20 : 100;
  char shape[96];
  snprintf(shape, sizeof shape, "%s b%d H%d I%d", label, B, H, I);
  const double t0 = time_us([&](int) { fused_norm(); }, iters, 5);
  report("fusion ffn=fused-norm-gemv-swiglu", shape, false, 0, 0, nan0, t0, 0, "", 0);
  const double t1 = time_us([&](int) { fused_swiglu(); }, iters, 5);
  report("fusion ffn=fused-swiglu (bitwise)", shape, true, differing(out[1], out[0]), 0, nan0, t1, 0, "", 0);
  const double t2 = time_us([&](int) { separate(); }, iters, 5);
  report("fusion ffn=separate (bitwise)", shape, true, differing(out[2], out[0]), 0, nan0, t2, 0, "", 0);
  // the norm arms: the down projection of h[0], added into a copy of x
  auto res_fused = [&]() {
    GemvArgs a = bf16_gemv(); a.act = h[0]; a.act_ld = I; a.epi = GEMV_EPI_ADD_F32; a.w = dn.m; a.out = dres; a.out_ld = H;
    launch_gemv(a, 0);
  };
  auto res_separate = [&]() {
    GemvArgs a = bf16_gemv(); a.act = h[0]; a.act_ld = I; a.epi = GEMV_EPI_F32; a.w = dn.m; a.out = dtmp; a.out_ld = H;
    launch_gemv(a, 0);
    launch_add_f32(dres, dtmp, (int64_t)B * H, 0);
  };
  h2d(dres, x);
  res_fused();
  CHK(cudaDeviceSynchronize());
  const std::vector<float> r0 = d2h(dres, x.size());
  h2d(dres, x);
  res_separate();
  CHK(cudaDeviceSynchronize());
  const std::vector<float> r1 = d2h(dres, x.size());
  bool nan1 = false;
  for (float v : r0) nan1 |= !std::isfinite(v);
  // timed on a scratch x (the value grows with every launch; only the time matters here)
  const double t3 = time_us([&](int) { res_fused(); }, iters, 5);
  report("fusion norm=fused-residual-norm (down+res)", shape, false, 0, 0, nan1, t3, 0, "", 0);
  const double t4 = time_us([&](int) { res_separate(); }, iters, 5);
  report("fusion norm=separate (bitwise)", shape, true, differing(r1, r0), 0, nan1, t4, 0, "", 0);
  free_w(gu); free_w(dn);
  cudaFree(dx); cudaFree(dnw); cudaFree(dres); cudaFree(dtmp); cudaFree(xn); cudaFree(gbuf);
  for (auto &p : h) cudaFree(p);
}

}  // namespace

void run_fusion() {
  rmsnorm_rows_case(1, 896);
  rmsnorm_rows_case(4, 3584);
  rmsnorm_rows_case(3, 100);  // cols % 4 != 0: the scalar path of the prologue's sum
  arms_case("0.5B", 1, 896, 4864);
  arms_case("0.5B", 8, 896, 4864);
  if (!g_quick) arms_case("1.5B", 1, 1536, 8960);
  arms_case("7B", 1, 3584, 18944);
}
