// fa3.cu — the lab cases of the sm_90a flash prefill (src/opt/attention/fa3_prefill.cuh, written without a GPU): on a
// batch of sequences in one KV cache (each its own slot, pos0 and length, launched one sequence at a time as the
// backend does), the wgmma kernel's output against fp64 attention (sampled rows, checked) and against the mma.sync
// kernel (every row, checked), both with tolerance 1e-2 (relative L2); cache rows past each sequence's length are NaN,
// so a kernel that reads them fails. Timed cases report both kernels in TFLOP/s (causal FLOPs 4 d nH keys), the
// median of the timed launches after warm-up with the fastest / slowest in the shape column's note.
// Off sm_90 the wgmma rows are reported as skipped (no check, no failure), with the reason.
#include "attention.cuh"
#include "fa3_prefill.cuh"
#include "lab.cuh"

#include <cstdlib>
#include <string>

namespace {

struct Seq { int pos0, n; };

// keys attended summed over the queries of a sequence (causal, chunked)
double causal_keys(const Seq &s) { return (double)s.n * s.pos0 + (double)s.n * (s.n + 1) / 2; }

// The pingpong arm's label: "wgmma", or "wgmma:<variant>" under QW_FA3_VARIANT (fa3_prefill.cu: s3, split, s3split).
static std::string wg_label() {
  const char *v = std::getenv("QW_FA3_VARIANT");
  return v && *v ? std::string("wgmma:") + v : std::string("wgmma");
}

void fa3_case(const char *label, int nH, int nKV, int d, const std::vector<Seq> &seqs, bool timed, int max_check_rows) {
  int dev = 0, major = 0, minor = 0;
  CHK(cudaGetDevice(&dev));
  CHK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CHK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  char shape[128];
  int total = 0, max_len = 0;
  for (const Seq &s : seqs) { total += s.n; max_len = std::max(max_len, s.pos0 + s.n); }
  snprintf(shape, sizeof shape, "%s h%d/%d d%d B%zu n %d..", label, nH, nKV, d, seqs.size(), seqs.back().n);
  PrefillAttnArgs probe;
  probe.n_heads = nH; probe.n_kv = nKV; probe.head_dim = d;
  if (const char *why = fa3_prefill_unsupported(probe, major, minor); *why) {
    printf("attn prefill [wgmma] %s: SKIP (%s)\n", shape, why);
    report("attn prefill [wgmma] (skipped)", shape, false, 0, 0, false, 0, 0, "TFLOP/s", 0);
    return;
  }
  const int B = (int)seqs.size(), slots = B + 1, max_ctx = max_len + 9;
  const size_t cache_n = (size_t)slots * nKV * max_ctx * d;
  std::vector<uint16_t> kc(cache_n, 0xFFFF), vc(cache_n, 0xFFFF), q((size_t)total * nH * d);  // 0xFFFF: bf16 NaN
  std::vector<int> row0(B), slot(B);
  for (int b = 0, r = 0; b < B; r += seqs[(size_t)b].n, ++b) {
    row0[(size_t)b] = r;
    slot[(size_t)b] = B - b;  // distinct, in reverse batch order, never slot 0
    const size_t base = (size_t)slot[(size_t)b] * nKV * max_ctx * d;
    for (int h = 0; h < nKV; ++h)
      for (int t = 0; t < seqs[(size_t)b].pos0 + seqs[(size_t)b].n; ++t)
        for (int e = 0; e < d; ++e) {
          const size_t i = base + ((size_t)h * max_ctx + t) * d + e;
          kc[i] = f2bf(rndn());
          vc[i] = f2bf(rndn());
        }
  }
  for (auto &v : q) v = f2bf(rndn() * 2.f);
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  __nv_bfloat16 *dq = (__nv_bfloat16 *)dalloc<uint16_t>(q.size());
  __nv_bfloat16 *dz = (__nv_bfloat16 *)dalloc<uint16_t>(q.size()), *dz_ref = (__nv_bfloat16 *)dalloc<uint16_t>(q.size());
  h2d((uint16_t *)dq, q);
  std::vector<PrefillAttnArgs> args((size_t)B);
  for (int b = 0; b < B; ++b) {
    PrefillAttnArgs &a = args[(size_t)b];
    a.q = dq + (size_t)row0[(size_t)b] * nH * d; a.kcache = dk; a.vcache = dv; a.slot = slot[(size_t)b];
    a.pos0 = seqs[(size_t)b].pos0; a.n = seqs[(size_t)b].n; a.n_heads = nH; a.n_kv = nKV; a.head_dim = d;
    a.max_ctx = max_ctx;
  }
  enum Arm { kMma, kWgmma, kWgmmaNoPingpong };
  auto run = [&](Arm arm, __nv_bfloat16 *z) {
    for (int b = 0; b < B; ++b) {
      PrefillAttnArgs a = args[(size_t)b];
      a.out = z + (size_t)row0[(size_t)b] * nH * d;
      if (arm == kMma) launch_prefill_attention_mma(a, 0);
      else launch_prefill_attention_fa3(a, 0, arm == kWgmma);
    }
  };
  poison(dz_ref, q.size() * 2);
  run(kMma, dz_ref);
  CHK(cudaDeviceSynchronize());
  const auto zr = d2h((uint16_t *)dz_ref, q.size());
  bool nan_mma = false;
  for (uint16_t u : zr) nan_mma |= !std::isfinite(bf2f(u));  // the reference arm itself must be clean
  // against the mma.sync kernel, every row: the no-pingpong variant first, then the default (whose output stays in z)
  std::vector<double> outv, refv;
  std::vector<uint16_t> z;
  bool nan_seen = false;
  for (Arm arm : {kWgmmaNoPingpong, kWgmma}) {
    poison(dz, q.size() * 2);
    run(arm, dz);
    CHK(cudaDeviceSynchronize());
    z = d2h((uint16_t *)dz, q.size());
    outv.clear(); refv.clear();
    for (size_t i = 0; i < z.size(); ++i) { outv.push_back(bf2f(z[i])); refv.push_back(bf2f(zr[i])); }
    const double err_mma = rel_err(outv, refv, &nan_seen);
    report(arm == kWgmma ? "attn prefill [" + wg_label() + "] vs mma.sync" : "attn prefill [wgmma:nopp] vs mma.sync", shape, true,
           err_mma, 1e-2, nan_seen || nan_mma, 0, 0, "TFLOP/s", 0);
  }
  // against fp64: sampled rows of every sequence (first / last 8 and a stride)
  std::vector<std::pair<int, int>> rows;  // (sequence, row)
  for (int b = 0; b < B; ++b) {
    const int n = seqs[(size_t)b].n, stride = std::max(1, n / 16);
    for (int r = 0; r < n; ++r)
      if (n <= max_check_rows || r < 8 || r >= n - 8 || r % stride == 0) rows.emplace_back(b, r);
  }
  std::vector<std::vector<double>> refs(rows.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < rows.size(); ++i) {
    const Seq &s = seqs[(size_t)rows[i].first];
    attn_ref(refs[i], q, kc, vc, slot[(size_t)rows[i].first], row0[(size_t)rows[i].first] + rows[i].second,
             s.pos0 + rows[i].second + 1, nH, nKV, d, max_ctx);
  }
  outv.clear(); refv.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t zr0 = (size_t)(row0[(size_t)rows[i].first] + rows[i].second) * nH * d;
    for (size_t j = 0; j < refs[i].size(); ++j) { refv.push_back(refs[i][j]); outv.push_back(bf2f(z[zr0 + j])); }
  }
  const double err_cpu = rel_err(outv, refv, &nan_seen);
  double keys = 0;
  for (const Seq &s : seqs) keys += causal_keys(s);
  const double flop = 4.0 * d * nH * keys;
  if (!timed) {
    report("attn prefill [" + wg_label() + "] vs cpu", shape, true, err_cpu, 1e-2, nan_seen, 0, 0, "TFLOP/s", g_bf16_rate / 1e12);
  } else {
    const int iters = g_quick ? 3 : 10, warm = 2;
    double us[3], lo[3], hi[3];
    for (Arm arm : {kMma, kWgmma, kWgmmaNoPingpong})
      us[arm] = time_us([&](int) { run(arm, arm == kMma ? dz_ref : dz); }, iters, warm, &lo[arm], &hi[arm]);
    auto note = [&](Arm arm) {
      char b[192];
      snprintf(b, sizeof b, "%s [%d runs, %.0f..%.0f us]", shape, iters, lo[arm], hi[arm]);
      return std::string(b);
    };
    auto tflops = [&](Arm arm) { return flop / (us[arm] * 1e-6) / 1e12; };
    report("attn prefill [" + wg_label() + "] vs cpu", note(kWgmma), true, err_cpu, 1e-2, nan_seen, us[kWgmma], tflops(kWgmma),
           "TFLOP/s", g_bf16_rate / 1e12);
    report("attn prefill [wgmma:nopp] (timed)", note(kWgmmaNoPingpong), false, 0, 0, false, us[kWgmmaNoPingpong],
           tflops(kWgmmaNoPingpong), "TFLOP/s", g_bf16_rate / 1e12);
    report("attn prefill [mma.sync] (reference arm)", note(kMma), false, 0, 0, false, us[kMma], tflops(kMma), "TFLOP/s",
           g_bf16_rate / 1e12);
    printf("attn prefill %s: wgmma / mma.sync = %.2fx, wgmma:nopp / mma.sync = %.2fx\n", shape, us[kMma] / us[kWgmma],
           us[kMma] / us[kWgmmaNoPingpong]);
  }
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz); cudaFree(dz_ref);
}

}  // namespace

// Small shapes only (seconds under compute-sanitizer): `qwlab fa3-small`.
void run_fa3_small() {
  for (int d : {64, 128}) {
    fa3_case("small", 4, 4, d, {{0, 1}, {0, 129}}, false, 200);
    fa3_case("small", 14, 2, d, {{0, 17}, {130, 40}}, false, 200);
  }
}

void run_fa3() {
  // the issue's lengths on both model shapes (7B: hd 128, 28/4; 0.5B: hd 64, 14/2), one sequence from position 0
  for (int n : {1, 17, 127, 128, 129, 4095, 4096}) {
    fa3_case("len", 28, 4, 128, {{0, n}}, n == 4096, 64);
    fa3_case("len", 14, 2, 64, {{0, n}}, n == 4096, 64);
  }
  // GQA ratios 1, 4, 7, 8 at both head dims (packed rows: 128, 32, 18, 16 positions per tile)
  struct Heads { int nH, nKV; };
  for (int d : {64, 128})
    for (const Heads &hk : {Heads{4, 4}, Heads{16, 4}, Heads{14, 2}, Heads{32, 4}})
      fa3_case("gqa", hk.nH, hk.nKV, d, {{0, 300}}, false, 96);
  // a batch of mixed lengths in one cache, and chunked prefill against cached keys (pos0 > 0; tile boundaries inside)
  fa3_case("batch", 28, 4, 128, {{0, 1000}, {0, 17}, {0, 129}, {0, 1}, {0, 4096}}, false, 40);
  fa3_case("batch", 14, 2, 64, {{0, 77}, {0, 2000}, {0, 128}}, false, 40);
  fa3_case("chunk", 28, 4, 128, {{4000, 96}, {129, 500}, {1, 1}}, false, 64);
  fa3_case("chunk", 14, 2, 64, {{127, 1}, {128, 129}, {3000, 1096}}, false, 64);
  // the issue's timing points (and the 32k correctness case): 16k and 32k causal, chunked 32k (last 1768 of 32768)
  if (!g_quick) {
    for (int n : {16384, 32768}) {
      fa3_case("len", 28, 4, 128, {{0, n}}, true, 24);
      fa3_case("len", 14, 2, 64, {{0, n}}, true, 24);
    }
    fa3_case("chunk", 28, 4, 128, {{31000, 1768}}, false, 24);
  }
}
