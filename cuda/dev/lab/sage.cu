// sage.cu — the lab cases of the SageAttention prefill kernels (src/opt/attention/sage.cuh): each arm against the
// CPU reference arm (sage_ref.hpp, the same quantization and rounding steps: relative L2 error, checked), against
// exact attention in fp64 (the issue's accuracy bars: cosine >= 0.999 and relative L1 <= 0.03, checked), and timed
// next to the flash-bf16 kernel on the same shape (TFLOP/s counts the causal FLOPs 4 d nH keys; the Sage time
// includes its three quantization passes).
#include "attention.cuh"
#include "lab.cuh"
#include "sage.cuh"
#include "sage_ref.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// Rows whose 32-row Q blocks are checked: all blocks up to max_blocks, else the first two, the last and a stride.
std::vector<int> check_blocks(int n, int max_blocks) {
  const int nb = (n + 31) / 32;
  std::vector<int> b;
  for (int i = 0; i < nb; ++i)
    if (nb <= max_blocks || i < 2 || i == nb - 1 || i % std::max(1, nb / (max_blocks - 3)) == 0) b.push_back(i);
  return b;
}

}  // namespace

// K ~ N(0,1) + per-channel offset N(0, 2^2) (what smooth-K removes); V ~ N(0,1) + offset N(0, 0.5^2); Q ~ N(0, 1.5^2).
void sage_case(int nH, int nKV, int d, int pos0, int n, bool fp8, bool timed, int max_blocks) {
  const int max_ctx = pos0 + n + 5, len = pos0 + n, G = nH / nKV, slot = 1;
  const size_t cache_n = (size_t)2 * nKV * max_ctx * d;
  std::vector<uint16_t> kc(cache_n), vc(cache_n), q((size_t)n * nH * d);
  std::vector<float> koff(d), voff(d);
  for (auto &v : koff) v = 2.f * rndn();
  for (auto &v : voff) v = 0.5f * rndn();
  for (size_t i = 0; i < cache_n; ++i) { kc[i] = f2bf(rndn() + koff[i % d]); vc[i] = f2bf(rndn() + voff[i % d]); }
  for (auto &v : q) v = f2bf(1.5f * rndn());
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  __nv_bfloat16 *dq = (__nv_bfloat16 *)dalloc<uint16_t>(q.size()), *dz = (__nv_bfloat16 *)dalloc<uint16_t>(q.size());
  h2d((uint16_t *)dq, q);
  SageScratch ws;
  PrefillAttnArgs f;  // the same arguments run the flash-bf16 kernel for the time ratio
  f.out = dz; f.q = dq; f.kcache = dk; f.vcache = dv; f.slot = slot; f.pos0 = pos0; f.n = n; f.n_heads = nH;
  f.n_kv = nKV; f.head_dim = d; f.max_ctx = max_ctx;
  SagePrefillArgs a;
  a.p = f; a.fp8 = fp8; a.ws = &ws;
  poison(dz, q.size() * 2);
  const char *variant = launch_sage_prefill(a, 0);
  CHK(cudaDeviceSynchronize());
  auto z = d2h((uint16_t *)dz, q.size());
  bool unwritten = false;
  for (auto u : z) if (!std::isfinite(bf2f(u))) unwritten = true;

  // CPU reference arm and exact fp64 attention over the checked 32-row blocks
  const std::vector<int> blocks = check_blocks(n, max_blocks);
  std::vector<qw::cpu::SageKv> prep(nKV);
  #pragma omp parallel for
  for (int kh = 0; kh < nKV; ++kh) {
    std::vector<float> K((size_t)len * d), V((size_t)len * d);
    for (int t = 0; t < len; ++t)
      for (int e = 0; e < d; ++e) {
        const size_t i = (((size_t)slot * nKV + kh) * max_ctx + t) * d + e;
        K[(size_t)t * d + e] = bf2f(kc[i]);
        V[(size_t)t * d + e] = bf2f(vc[i]);
      }
    qw::cpu::sage_prepare_kv(fp8, K.data(), V.data(), len, d, prep[kh]);
  }
  const size_t nb = blocks.size();
  std::vector<std::vector<double>> ref(nb * nH), ex(nb * nH);
  std::vector<std::vector<float>> got(nb * nH);
  #pragma omp parallel for schedule(dynamic, 1)
  for (size_t t = 0; t < nb * nH; ++t) {
    const int b = blocks[t / nH], h = (int)(t % nH), kh = h / G;
    const int r0 = b * 32, rows = std::min(32, n - r0);
    std::vector<float> qf((size_t)rows * d), zr((size_t)rows * d);
    for (int r = 0; r < rows; ++r)
      for (int e = 0; e < d; ++e) qf[(size_t)r * d + e] = bf2f(q[((size_t)(r0 + r) * nH + h) * d + e]);
    qw::cpu::sage_attend(prep[kh], qf.data(), d, rows, pos0 + r0, zr.data(), d);
    for (int r = 0; r < rows; ++r) {
      const int keys = pos0 + r0 + r + 1;
      std::vector<double> s(keys);
      double mx = -1e300, l = 0;
      for (int k = 0; k < keys; ++k) {
        double acc = 0;
        for (int e = 0; e < d; ++e)
          acc += (double)qf[(size_t)r * d + e] * bf2f(kc[(((size_t)slot * nKV + kh) * max_ctx + k) * d + e]);
        s[k] = acc / sqrt((double)d);
        mx = std::max(mx, s[k]);
      }
      for (int k = 0; k < keys; ++k) { s[k] = exp(s[k] - mx); l += s[k]; }
      for (int e = 0; e < d; ++e) {
        double o = 0;
        for (int k = 0; k < keys; ++k) o += s[k] * bf2f(vc[(((size_t)slot * nKV + kh) * max_ctx + k) * d + e]);
        ex[t].push_back(o / l);
        ref[t].push_back(zr[(size_t)r * d + e]);
        got[t].push_back(bf2f(z[((size_t)(r0 + r) * nH + h) * d + e]));
      }
    }
  }
  std::vector<double> outv, refv, exv;
  for (size_t t = 0; t < nb * nH; ++t)
    for (size_t i = 0; i < got[t].size(); ++i) { outv.push_back(got[t][i]); refv.push_back(ref[t][i]); exv.push_back(ex[t][i]); }
  bool nan_seen;
  const double err = rel_err(outv, refv, &nan_seen);
  nan_seen |= unwritten;
  double dot = 0, oo = 0, ee = 0, l1 = 0, l1e = 0;
  for (size_t i = 0; i < outv.size(); ++i) {
    dot += outv[i] * exv[i]; oo += outv[i] * outv[i]; ee += exv[i] * exv[i];
    l1 += fabs(outv[i] - exv[i]); l1e += fabs(exv[i]);
  }
  const double cosv = dot / sqrt(oo * ee), rl1 = l1 / l1e;

  double us = 0, rate = 0, us_flash = 0;
  const double keys = (double)n * pos0 + (double)n * (n + 1) / 2;
  if (timed) {
    us = time_us([&](int) { launch_sage_prefill(a, 0); }, g_quick ? 5 : 20, 2);
    rate = 4.0 * d * nH * keys / (us * 1e-6) / 1e12;
    us_flash = time_us([&](int) { launch_prefill_attention(f, 0); }, g_quick ? 5 : 20, 2);
  }
  char shape[96];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d", nH, nKV, d, pos0, n);
  // vs the CPU arm: bf16 output rounding (2^-9 relative) plus P' / code flips where fp32 orders differ
  report(std::string("sage [") + variant + "] vs cpu arm", shape, true, err, 1e-2, nan_seen, us, rate, "TFLOP/s",
         g_bf16_rate / 1e12 * 2);
  // the issue's bars on these random heads: rel L1 <= 0.03 (the err column) and cosine >= 0.999 (in the name; a
  // lower cosine fails the row through err). Checked for sage-int8; reported for sage-fp8, whose e4m3 P and V give
  // rel L1 0.035-0.038 on random heads in the CPU reference itself (test_sage bench): the bar is the method's, not a
  // kernel check. rate = flash-bf16 time / Sage time on the same shape.
  char acc[96];
  snprintf(acc, sizeof acc, "sage-%s vs exact, cos %.5f", fp8 ? "fp8" : "int8", cosv);
  report(acc, shape, !fp8, cosv >= 0.999 ? rl1 : std::max(rl1, 1.0), 0.03, nan_seen, us_flash,
         us_flash > 0 && us > 0 ? us_flash / us : 0, "x flash", 0);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz);
}

void run_sage() {
  int dev = 0, major = 0, minor = 0;
  CHK(cudaGetDevice(&dev));
  CHK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CHK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  const bool has_fp8 = major * 10 + minor >= 89;
  struct C { int nH, nKV, d, pos0, n; bool timed; int max_blocks; };
  // the issue's lengths (1, 17, 127, 128, 129, 4095, 4096, 32k), GQA 1 / 4 / 7 / 8, chunks against a cache
  static const C cases[] = {
      {4, 4, 128, 0, 1, false, 64},     {8, 2, 64, 0, 17, false, 64},    {28, 4, 128, 0, 127, false, 64},
      {28, 4, 128, 0, 128, false, 64},  {8, 1, 128, 0, 129, false, 64},  {14, 2, 64, 50, 77, false, 64},
      {28, 4, 128, 300, 200, false, 64}, {16, 2, 128, 1000, 1, false, 64},
      {28, 4, 128, 0, 4095, false, 8},  {28, 4, 128, 0, 4096, true, 8},  {14, 2, 64, 0, 4096, true, 8},
  };
  // QW_LAB_SAGE_T=N: only the cases of N query rows (e.g. 16384 under ncu: one kernel of each arm worth profiling)
  const char *only_t = std::getenv("QW_LAB_SAGE_T");
  const int want_t = only_t ? std::atoi(only_t) : 0;
  auto run_case = [&](int nH, int nKV, int d, int pos0, int n, bool fp8, bool timed, int max_blocks) {
    if (!want_t || n == want_t) sage_case(nH, nKV, d, pos0, n, fp8, timed, max_blocks);
  };
  // one arm over the cases (only those of head dim 128 where the wgmma kernels are tried), then 16k / 32k
  auto arm = [&](bool fp8, bool hd128_only) {
    for (const C &c : cases)
      if (!hd128_only || c.d == 128) run_case(c.nH, c.nKV, c.d, c.pos0, c.n, fp8, c.timed, c.max_blocks);
    if (!g_quick) {
      run_case(28, 4, 128, 0, 16384, fp8, true, 6);
      run_case(28, 4, 128, 0, 32768, fp8, true, 5);
      run_case(28, 4, 128, 16384, 16384, fp8, true, 5);  // the second half of 32k as a chunk against the cache
    }
  };
  // QW_SAGE_WGMMA and QW_FLASH_WGMMA both set to `v` while fn runs, restored afterwards: the mma.sync pass ("0") is
  // timed against the mma.sync flash, the wgmma pass ("1", sm_90, hd 128) against the wgmma flash (the issue's bar
  // is against our fastest bf16 flash).
  auto with_wgmma = [](const char *v, auto fn) {
    const char *names[2] = {"QW_SAGE_WGMMA", "QW_FLASH_WGMMA"};
    std::string keep[2];
    bool had[2];
    for (int i = 0; i < 2; ++i) {
      const char *e = std::getenv(names[i]);
      had[i] = e != nullptr;
      keep[i] = e ? e : "";
      setenv(names[i], v, 1);
    }
    fn();
    for (int i = 0; i < 2; ++i) {
      if (had[i]) setenv(names[i], keep[i].c_str(), 1);
      else unsetenv(names[i]);
    }
  };
  // QW_LAB_SAGE_ARMS=wgmma: the wgmma pass only (its 16k / 32k rows fit one device call without the mma.sync ones)
  const char *only = std::getenv("QW_LAB_SAGE_ARMS");
  const bool wgmma_only = only && std::strcmp(only, "wgmma") == 0;
  if (!wgmma_only) with_wgmma("0", [&] {
    for (bool fp8 : {false, true}) {
      if (fp8 && !has_fp8) { printf("sage-fp8: skipped, compute capability %d.%d < 8.9\n", major, minor); continue; }
      arm(fp8, false);
    }
  });
  if (major == 9 && minor == 0) with_wgmma("1", [&] { for (bool fp8 : {false, true}) arm(fp8, true); });
}
