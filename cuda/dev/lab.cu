// lab.cu — the kernel lab qwlab's main: every production kernel of src/cuda/ (and src/opt/) against a CPU reference
// (fresh random inputs, outputs poisoned before each launch) and timed with cudaEvents after warm-up (median of many
// launches, rotating weight copies so that L2 does not serve repeated reads). The cases live in cuda/dev/lab/, one
// file per kernel family (gemv, attention, gemm, misc, chain); this file holds the sections, the calibration and the
// result table. Build: cuda/dev/Makefile (make -C cuda/dev). docs/ARCHITECTURE.md §GPU workflow.
//
//   qwlab [all|gemv|attn|prefill|sage|gemm|misc|fusion|chain|persistent|marlin|tile|counters|sanitize|calib|host] [--quick] [--json FILE]
//   qwlab marlin --sweep: gemv = marlin's run-time knobs (MarlinKnobs) over the 7B shapes instead of the marlin section
//
// Prints one line per case and a table last:  case | shape | check | rel err | time | rate | % of ceiling.
// `calib` prints one JSON line starting with CALIB (device copy bandwidth, L2 read bandwidth, bf16 tensor-core rate), read by
// notebooks/calibrate.ts.
#include <chrono>

#include "cublaslt.cuh"
#include "gemm.cuh"
#include "gemv.cuh"
#include "l2bw.cuh"
#include "lab/lab.cuh"

// Small, untimed cases only: fast enough under compute-sanitizer (memcheck / racecheck / synccheck).
static void run_sanitize() {
  run_misc();
  gemv_case("small bf16 norm", WT_BF16, 96, 256, 1, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  gemv_case("small swiglu b3", WT_BF16, 64, 256, 3, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
  gemv_case("small w4 +res b2", WT_W4, 40, 512, 2, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, false);
  gemv_case("small w8 b9", WT_W8, 33, 256, 9, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
  gemv_case("small cols%8!=0", WT_F16, 20, 100, 2, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  qkv_rope_case("tiny", 2, 256, 4, 1, 64, false);
  decode_case(2, 4, 1, 64, 77, 128, false, false);
  decode_case(1, 4, 2, 64, 300, 512, false, false);  // 3 active splits of 4: the combine
  decode_case(1, 4, 2, 128, 33, 64, true, false);
  prefill_case(4, 1, 64, 0, 70, false, false);
  prefill_case(4, 2, 128, 9, 33, false, false);
  prefill_case(2, 1, 64, 3, 20, true, false);
  sage_case(8, 2, 64, 5, 40, false, false, 8);
  gemm_case(1, 37, 72, 40, GEMM_OUT_F32, false);
  gemm_case(1, 130, 136, 72, GEMM_OUT_ADD_F32, false);
  marlin_case("small w4 b3", WT_W4, 128, 512, 128, 3, GEMV_PRO_NORM, GEMV_EPI_F32, true, false);
  marlin_case("small w8 b16", WT_W8, 64, 1152, 16, 16, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true, false);
}

// ------------------------------------------------------------------------------------------------ calibration
// L2 read bandwidth (l2bw.cu): a buffer of half the L2 re-read 400 times per launch, median of 10 launches after
// 2 warm-ups, 3 times; `out` gets the 3 rates sorted (bytes/s). Returns the buffer size.
static size_t l2_calib(std::vector<double> &out) {
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  const size_t bytes = (size_t(p.l2CacheSize) / 2) & ~size_t(4095);
  const int passes = 400;
  uint8_t *buf = dalloc<uint8_t>(bytes);
  unsigned *sink = dalloc<unsigned>(1);
  CHK(cudaMemset(buf, 1, bytes));
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { CHK(launch_l2_read(buf, bytes, passes, sink, 0)); }, 10, 2);
    out.push_back(double(bytes) * passes / (us * 1e-6));
  }
  std::sort(out.begin(), out.end());
  cudaFree(buf); cudaFree(sink);
  return bytes;
}

static void run_calib(bool print_json) {
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  // copy bandwidth: 2 GiB device-to-device, bytes read + written
  const size_t n = (size_t)2 << 30;
  void *a = dalloc<uint8_t>(n), *b = dalloc<uint8_t>(n);
  CHK(cudaMemset(a, 1, n));
  std::vector<double> bws;
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { CHK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0)); }, 10, 2);
    bws.push_back(2.0 * n / (us * 1e-6));
  }
  std::sort(bws.begin(), bws.end());
  cudaFree(a); cudaFree(b);
  g_copy_bw = bws[1];
  std::vector<double> l2s;
  const size_t l2_buf = l2_calib(l2s);
  // bf16 tensor-core rate: 8192^3 through cuBLASLt when present, else our mma kernel (random data)
  const int64_t N = 8192;
  std::vector<uint16_t> h(N * N);
  for (auto &v : h) v = f2bf(rndn());
  __nv_bfloat16 *da = (__nv_bfloat16 *)dalloc<uint16_t>(N * N), *dw = (__nv_bfloat16 *)dalloc<uint16_t>(N * N);
  h2d((uint16_t *)da, h);
  for (auto &v : h) v = f2bf(rndn());
  h2d((uint16_t *)dw, h);
  __nv_bfloat16 *dc = (__nv_bfloat16 *)dalloc<uint16_t>(N * N);
  GemmArgs g;
  g.out_kind = GEMM_OUT_BF16; g.c = dc; g.ldc = N; g.a = da; g.lda = N; g.w = dw; g.m = N; g.n = N; g.k = N;
  const char *variant = launch_gemm(g, 0, 0);
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { launch_gemm(g, 0, 0); }, 10, 3);
    rates.push_back(2.0 * N * N * N / (us * 1e-6));
  }
  std::sort(rates.begin(), rates.end());
  cudaFree(da); cudaFree(dw); cudaFree(dc);
  g_bf16_rate = rates[1];
  int clk = 0, mclk = 0, drv = 0, rt = 0;
  cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, 0);
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  if (print_json) {
    printf("CALIB {\"device\":\"%s\",\"sms\":%d,\"cc\":\"%d.%d\",\"clock_mhz\":%.0f,\"mem_clock_mhz\":%.0f,"
           "\"memory_bytes\":%.0f,\"driver\":%d,\"runtime\":%d,"
           "\"copy_bw_bytes_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e},"
           "\"l2_bw_bytes_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e,\"buffer_bytes\":%zu,\"l2_bytes\":%d},"
           "\"bf16_flops_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e,\"kernel\":\"%s\",\"shape\":\"8192x8192x8192\"},"
           "\"gemm_library\":\"%s\"}\n",
           p.name, p.multiProcessorCount, p.major, p.minor, clk / 1000.0, mclk / 1000.0, (double)p.totalGlobalMem, drv, rt,
           bws[0], bws[1], bws[2], bws[1], l2s[0], l2s[1], l2s[2], l2s[1], l2_buf, p.l2CacheSize, rates[0], rates[1], rates[2], rates[1], variant, cublaslt_status());
  }
  char s1[64], s2[64];
  snprintf(s1, sizeof s1, "2 GiB D2D (read+write)");
  snprintf(s2, sizeof s2, "8192^3 bf16 [%s]", variant);
  report("ceiling: copy bandwidth", s1, false, 0, 0, false, 0, g_copy_bw / 1e9, "GB/s", 0);
  char s3[64];
  snprintf(s3, sizeof s3, "%.0f MiB re-read (L2 %d MiB)", l2_buf / 1048576.0, p.l2CacheSize >> 20);
  report("ceiling: L2 read bandwidth", s3, false, 0, 0, false, 0, l2s[1] / 1e9, "GB/s", 0);
  report("ceiling: bf16 tensor-core", s2, false, 0, 0, false, 0, g_bf16_rate / 1e12, "TFLOP/s", 0);
}

int main(int argc, char **argv) {
  std::string what = "all", json;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") g_quick = true;
    else if (a == "--sweep") g_sweep = true;
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else what = a;
  }
  g_rng = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count() | 1;
  if (const char *s = getenv("QW_LAB_SEED")) g_rng = strtoull(s, nullptr, 10) | 1;
  const uint64_t seed = g_rng;
  if (what == "host") {  // host-side checks only (lab/host.cu): before the device query, so without a GPU too
    try {
      run_host();
    } catch (const std::exception &e) {
      printf("qwlab: FATAL %s\n", e.what());
      ++g_fail;
    }
    printf("\nqwlab: %d failure(s)\n", g_fail);
    return g_fail ? 1 : 0;
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("qwlab: no CUDA device; nothing to run (SKIP)\n");
    return 0;
  }
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  printf("qwlab on %s (%d SMs, cc %d.%d), seed %llu, gemm library: %s\n", p.name, p.multiProcessorCount, p.major, p.minor,
         (unsigned long long)seed, cublaslt_status());
  try {
    if (what == "calib") { run_calib(true); return 0; }
    if (what == "sanitize") run_sanitize();
    // decode first (chain right after the kernels it is made of), prefill/GEMM last; seconds per section
    const auto t_start = std::chrono::steady_clock::now();
    auto t_prev = t_start;
    auto section = [&](const char *name, bool on, const std::function<void()> &f) {
      if (!on) return;
      f();
      const auto t = std::chrono::steady_clock::now();
      printf("qwlab: section %s %.1f s (total %.1f s)\n", name, std::chrono::duration<double>(t - t_prev).count(),
             std::chrono::duration<double>(t - t_start).count());
      fflush(stdout);
      t_prev = t;
    };
    section("calib", what == "all", [] { run_calib(true); });
    section("misc", what == "all" || what == "misc", [] { run_misc(); });
    section("gemv", what == "all" || what == "gemv", run_gemv);
    section("gemv-i8", what == "all" || what == "gemv-i8", [&] {
      if (what == "gemv-i8") run_calib(false);  // the copy bandwidth the % column is against
      run_gemv_i8();
    });
    section("two-level", what == "all" || what == "two-level", [&] {
      if (what == "two-level") run_calib(false);
      run_two_level();
    });
    section("fusion", what == "all" || what == "fusion", run_fusion);
    section("attn", what == "all" || what == "attn", run_attn);
    section("chain", what == "all" || what == "chain", run_chain);
    // not in "all" until it has run once: written without a GPU (a schedule bug traps via its watchdog, see the kernel)
    section("persistent", what == "persistent", [&] {
      run_calib(false);  // the copy bandwidth its timed rows' % of the copy floor is against
      run_persistent();
    });
    section("sampling", what == "all" || what == "misc", run_sampling);
    section("prefill", what == "all" || what == "prefill", run_prefill);
    section("sparse", what == "all" || what == "sparse", run_sparse);
    section("bsparse", what == "all" || what == "bsparse", run_block_sparse);
    section("sage", what == "all" || what == "sage", run_sage);
    section("fa3", what == "fa3", run_fa3);  // not in "all" until the sm_90a kernel has run once (never on a GPU yet)
    section("fa3-small", what == "fa3-small", run_fa3_small);
    section("gemm", what == "all" || what == "gemm", run_gemm);
    section("tile", what == "tile", [&] {  // not in "all": 15 shapes x every candidate
      if (what == "tile") run_calib(false);  // the copy bandwidth and tensor rate the % column is against
      run_tile();
    });
    // not in "all": CUPTI replays every kernel, and the range profiler has never run on a GPU yet
    section("counters", what == "counters", run_counters);
    section("marlin", what == "all" || what == "marlin", [&] {
      if (what == "marlin") run_calib(false);  // the copy bandwidth the % column is against
      if (g_sweep) run_marlin_sweep();  // the knob grid only (qwlab marlin --sweep; not in --quick, not in all)
      else run_marlin();
    });
  } catch (const std::exception &e) {
    printf("qwlab: FATAL %s\n", e.what());
    ++g_fail;
  }
  printf("\n| case | shape | check | rel err | time (us) | rate | %% of ceiling |\n|---|---|---|---|---|---|---|\n");
  for (const Row &r : g_rows)
    printf("| %s | %s | %s | %.1e | %.2f | %.1f %s | %.1f |\n", r.name.c_str(), r.shape.c_str(), r.check.c_str(), r.err, r.us,
           r.rate, r.unit.c_str(), r.pct);
  if (!json.empty()) {
    FILE *f = fopen(json.c_str(), "w");
    if (f) {
      fprintf(f, "{\"device\":\"%s\",\"seed\":%llu,\"copy_bw\":%.6e,\"bf16_rate\":%.6e,\"rows\":[", p.name,
              (unsigned long long)seed, g_copy_bw, g_bf16_rate);
      for (size_t i = 0; i < g_rows.size(); ++i) {
        const Row &r = g_rows[i];
        fprintf(f, "%s{\"case\":\"%s\",\"shape\":\"%s\",\"check\":\"%s\",\"err\":%.3e,\"us\":%.3f,\"rate\":%.3f,\"unit\":\"%s\",\"pct\":%.2f}",
                i ? "," : "", r.name.c_str(), r.shape.c_str(), r.check.c_str(), r.err, r.us, r.rate, r.unit.c_str(), r.pct);
      }
      fprintf(f, "]}\n");
      fclose(f);
    }
  }
  printf("\nqwlab: %d failure(s)\n", g_fail);
  return g_fail ? 1 : 0;
}
