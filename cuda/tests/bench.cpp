// bench.cpp — CPU tok/s on synthetic weights (real shapes, random values: dense-model speed does not depend
// on the values). Usage: build/bench [tiny|0.5b] [f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q6_k] [reps] [pp] [tg] [threads]
// Ceilings (notebooks/calibrate.ts --backend cpu): build/bench membw [threads], build/bench flops [threads],
// build/bench cachebw [threads] (L2 / L3 read bandwidth).
// Prefill: pp tokens in one chunk (tok/s = pp / time). Decode: tg greedy steps from a 1-token context, like
// llama-bench tg. Prints median and min-max over reps (a warm-up run is excluded).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <immintrin.h>
#include <omp.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "refmodel.hpp"

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Process CPU time (user + sys, all threads). On a shared box, tokens per CPU-second x threads estimates the
// speed on uncontended cores (conservative: pool workers' spin-waits count as CPU time).
static double cpu_time_s() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static int32_t type_id(const std::string &s) {
  if (s == "f32") return QW_GGML_F32;
  if (s == "f16") return QW_GGML_F16;
  if (s == "bf16") return QW_GGML_BF16;
  if (s == "q8_0") return QW_GGML_Q8_0;
  if (s == "q4_0") return QW_GGML_Q4_0;
  if (s == "q5_0") return QW_GGML_Q5_0;
  if (s == "q4_k") return QW_GGML_Q4_K;
  if (s == "q5_k") return QW_GGML_Q5_K;
  if (s == "q6_k") return QW_GGML_Q6_K;
  return -1;
}

// Fast random GGUF bytes (no fp64 copy, unlike RefModel).
static std::vector<uint8_t> synth(Rng &r, int32_t t, int64_t n) {
  const GgmlType g = ggml_type(t);
  std::vector<uint8_t> d(size_t(n / g.block_elems * g.block_bytes));
  uint64_t *w = reinterpret_cast<uint64_t *>(d.data());
  for (size_t i = 0; i < d.size() / 8; ++i) w[i] = r.next();
  const int64_t nb = n / g.block_elems;
  if (t == QW_GGML_F32)
    for (int64_t i = 0; i < n; ++i) {
      const float v = float(int32_t(r.next() >> 40) - (1 << 23)) * (0.02f / float(1 << 23));
      std::memcpy(&d[size_t(4 * i)], &v, 4);
    }
  else if (t == QW_GGML_F16 || t == QW_GGML_BF16)
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h = t == QW_GGML_F16 ? uint16_t((d[size_t(2 * i)] & 0x83FF) | 0x2000)   // |x| in [2^-7, 2^-6)
                                    : uint16_t((d[size_t(2 * i)] & 0x807F) | 0x3C00);  // bf16 ~ 2^-7
      put16(&d[size_t(2 * i)], h);
    }
  else
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t *p = &d[size_t(b * g.block_bytes)];
      const int off = t == QW_GGML_Q6_K ? 208 : 0;
      put16(p + off, rand_half(r, -12, -9));
      if (t == QW_GGML_Q4_K || t == QW_GGML_Q5_K) put16(p + 2, rand_half(r, -12, -9));
    }
  return d;
}

// Streaming read bandwidth of `threads` threads over a 1 GiB buffer (the decode roofline of this machine).
__attribute__((target("avx2"))) static double membw(int threads) {
  const size_t n = size_t(1) << 28;  // floats
  std::vector<float> a(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now_s();
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int64_t blk = 0; blk < int64_t(n / 4096); ++blk) {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      const float *p = a.data() + blk * 4096;
      for (int i = 0; i < 4096; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
      }
      float tmp[8];
      _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
      for (float v : tmp) total += v;
    }
    const double dt = now_s() - t0;
    if (total != float(n) && total < 0) std::printf("?");
    best = std::max(best, double(n) * 4 / dt / 1e9);
  }
  return best;
}

// ---- cache read bandwidth (notebooks/calibrate.ts --backend cpu: the L2 / L3 roofs) ----
// Size of cpu0's data/unified cache of `level` in bytes: /sys/devices/system/cpu/cpu0/cache/index*/ (level,
// type, size), else sysconf (glibc's CPUID view: some VMs hide sysfs), else 0. `from` names the source.
static size_t cache_size(int level, std::string *from) {
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    auto read = [&](const char *f) {
      std::FILE *fp = std::fopen((dir + f).c_str(), "r");
      char buf[64] = {};
      if (fp) {
        if (!std::fgets(buf, sizeof buf, fp)) buf[0] = 0;
        std::fclose(fp);
      }
      return std::string(buf);
    };
    const std::string lv = read("level"), type = read("type"), size = read("size");
    if (lv.empty()) break;
    if (std::atoi(lv.c_str()) != level || type.rfind("Instruction", 0) == 0) continue;
    size_t v = std::strtoull(size.c_str(), nullptr, 10);
    if (size.find('K') != std::string::npos) v <<= 10;
    if (size.find('M') != std::string::npos) v <<= 20;
    if (v) {
      *from = "sysfs";
      return v;
    }
  }
  const long v = sysconf(level == 2 ? _SC_LEVEL2_CACHE_SIZE : level == 3 ? _SC_LEVEL3_CACHE_SIZE : _SC_LEVEL1_DCACHE_SIZE);
  *from = v > 0 ? "sysconf" : "unknown";
  return v > 0 ? size_t(v) : 0;
}

// Read bandwidth of `threads` threads, each re-reading its own `bytes`-sized buffer (first touched by that
// thread), 2 GB read per run; 8 independent ymm accumulators so the loads, not the adds, limit the rate.
// Each thread times its run with its own CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine the time a
// thread spends descheduled does not count (the wall clock measured the other processes). A run's rate is the sum
// of its threads' rates, which is the level's aggregate when every core reads its own copy (private L2; each
// core's L3 slice). Returns the best of 10 runs in GB/s: the least disturbed one (a roof is what the hardware
// can do). The first run warms the caches and is not counted.
__attribute__((target("avx2"))) static double cache_read_bw(int threads, size_t bytes) {
  const size_t n = std::max<size_t>(bytes / 4 / 64 * 64, 64);  // floats, a multiple of 64
  std::vector<float *> bufs(size_t(threads), nullptr);
  std::vector<double> rate(size_t(threads), 0.0);
  int64_t passes = std::max<int64_t>(1, int64_t(2e9 / (double(n) * 4 * threads)));
  double best = 0;
  float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    const int t = omp_get_thread_num();
    float *b = static_cast<float *>(std::aligned_alloc(64, n * 4));
    for (size_t i = 0; i < n; ++i) b[i] = 1.0f;
    bufs[size_t(t)] = b;
#pragma omp barrier
    for (int rep = 0; rep < 11; ++rep) {  // rep 0 warms the cache and is not counted
#pragma omp barrier
      timespec c0, c1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
      // named accumulators: an array of __m256 indexed in a loop is kept in memory at -O2
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
      for (int64_t p = 0; p < passes; ++p)
        for (size_t i = 0; i < n; i += 64) {
          const float *q = b + i;
          s0 = _mm256_add_ps(s0, _mm256_load_ps(q));
          s1 = _mm256_add_ps(s1, _mm256_load_ps(q + 8));
          s2 = _mm256_add_ps(s2, _mm256_load_ps(q + 16));
          s3 = _mm256_add_ps(s3, _mm256_load_ps(q + 24));
          s4 = _mm256_add_ps(s4, _mm256_load_ps(q + 32));
          s5 = _mm256_add_ps(s5, _mm256_load_ps(q + 40));
          s6 = _mm256_add_ps(s6, _mm256_load_ps(q + 48));
          s7 = _mm256_add_ps(s7, _mm256_load_ps(q + 56));
        }
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
      rate[size_t(t)] = double(passes) * double(n) * 4 / std::max(1e-9, double(c1.tv_sec - c0.tv_sec) + 1e-9 * double(c1.tv_nsec - c0.tv_nsec));
#pragma omp barrier
#pragma omp master
      {
        double sum = 0;
        for (double r : rate) sum += r;
        if (rep > 0) best = std::max(best, sum / 1e9);
      }
      float tmp[8];
      _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                                          _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7))));
      for (float v : tmp) sink += v;
    }
#pragma omp barrier
    std::free(b);
  }
  if (sink < 0) std::printf("?");
  return best;
}

// `bench cachebw [threads]`: one line per level. L2 is private: each thread reads half of one core's L2. L3: each
// thread reads min(L3 / 2 / threads, 4 MiB) but at least 4x its L2 (so the L3 line does not measure L2). The cap:
// the L3 that CPUID/sysfs report can be the whole socket's, while a core reaches only its slice at L3 speed (an
// AMD CCD holds 32 MiB; on this 2-vCPU EPYC VM the reported 508 MiB, read at 127 MiB per thread, ran at DRAM
// speed; `bench cachesweep` shows the plateaus). A line says "unknown" when the size could not be detected.
static void cachebw(int threads) {
  for (int level : {2, 3}) {
    std::string from;
    const size_t size = cache_size(level, &from);
    if (!size) {
      std::printf("L%d read bandwidth: unknown (no cache size from sysfs or sysconf)\n", level);
      continue;
    }
    std::string l2from;
    const size_t l2 = level == 3 ? cache_size(2, &l2from) : 0;
    const size_t per_thread = level == 2 ? size / 2 : std::max(std::min(size / 2 / size_t(threads), size_t(4) << 20), 4 * l2);
    std::printf("L%d read bandwidth, %d thread(s), %zu KiB per thread (L%d %zu KiB, %s): %.1f GB/s (best of 10)\n",
                level, threads, per_thread >> 10, level, size >> 10, from.c_str(), cache_read_bw(threads, per_thread));
  }
}

// fp32 FMA peak of `threads` threads: 10 independent ymm accumulators per thread, register-resident (no loads),
// a = a * m + c (stays finite). An FMA counts as 2 FLOPs; each run lasts >= 0.3 s.
__attribute__((target("avx2,fma"))) static double fma_run(int threads, int64_t iters) {
  float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    const float f = float(omp_get_thread_num() + 1);  // distinct starts: the compiler may not merge the chains
    __m256 a0 = _mm256_set1_ps(f), a1 = _mm256_set1_ps(f + 0.1f), a2 = _mm256_set1_ps(f + 0.2f),
           a3 = _mm256_set1_ps(f + 0.3f), a4 = _mm256_set1_ps(f + 0.4f), a5 = _mm256_set1_ps(f + 0.5f),
           a6 = _mm256_set1_ps(f + 0.6f), a7 = _mm256_set1_ps(f + 0.7f), a8 = _mm256_set1_ps(f + 0.8f),
           a9 = _mm256_set1_ps(f + 0.9f);
    for (int64_t i = 0; i < iters; ++i) {
      a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
      a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
      a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
      a9 = _mm256_fmadd_ps(a9, m, c);
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                                                      _mm256_add_ps(a8, a9))));
    for (float v : tmp) total += v;
  }
  return double(total);
}

static double flops(int threads) {
  int64_t iters = 1 << 20;
  double dt = 0;
  while (true) {  // grow the run until it lasts >= 0.3 s
    const double t0 = now_s();
    if (fma_run(threads, iters) < 0) std::printf("?");
    dt = now_s() - t0;
    if (dt >= 0.3) break;
    iters = int64_t(double(iters) * std::min(8.0, 0.4 / std::max(dt, 1e-4)));
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now_s();
    if (fma_run(threads, iters) < 0) std::printf("?");
    best = std::max(best, double(threads) * double(iters) * 10 * 8 * 2 / (now_s() - t0) / 1e9);
  }
  return best;
}

// Peaks of the prefill GEMM arms (gemm_avx512.cpp, gemm_int8_avx512.cpp): 12 register-resident zmm chains
// per thread of vfmadd231ps (fp32, 32 FLOPs each) or vpdpbusd (int8, 64 multiply-adds = 128 OPs each).
// Returns OP/s of `threads` threads over `iters` iterations, timed by the caller.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni")
// 12 independent chains a[i] = op(a[i]) over iters steps from distinct starts (the compiler may not merge
// them); returns the sum of all lanes so that the work cannot be dropped.
template <class V, class Init, class Op, class Lanes>
__attribute__((always_inline)) inline double chains12(int64_t iters, Init init, Op op, Lanes lanes) {
  V a[12];
  for (int i = 0; i < 12; ++i) a[i] = init(i);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = op(a[i]);
  }
  double total = 0;
  for (int i = 0; i < 12; ++i) total += lanes(a[i]);
  return total;
}

template <class E, class V>
double lane_sum(V a) {
  E t[sizeof(V) / sizeof(E)];
  std::memcpy(t, &a, sizeof(V));
  double x = 0;
  for (E v : t) x += double(v);
  return x;
}

static double peak512_run(int threads, int64_t iters, bool int8) {
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const int f = omp_get_thread_num() + 1;
    if (int8) {
      const __m512i u = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-2);
      total += chains12<__m512i>(
          iters, [&](int i) { return _mm512_set1_epi32(f + i); }, [&](__m512i a) { return _mm512_dpbusd_epi32(a, u, w); },
          lane_sum<int32_t, __m512i>);
    } else {
      const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
      total += chains12<__m512>(
          iters, [&](int i) { return _mm512_set1_ps(float(f) + 0.1f * float(i)); },
          [&](__m512 a) { return _mm512_fmadd_ps(a, m, c); },
          lane_sum<float, __m512>);
    }
  }
  return total;
}
#pragma GCC pop_options

static double peak512(int threads, bool int8) {
  int64_t iters = 1 << 20;
  while (true) {  // grow the run until it lasts >= 0.3 s
    const double t0 = now_s();
    if (peak512_run(threads, iters, int8) == -1) std::printf("?");
    const double dt = now_s() - t0;
    if (dt >= 0.3) break;
    iters = int64_t(double(iters) * std::min(8.0, 0.4 / std::max(dt, 1e-4)));
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now_s();
    if (peak512_run(threads, iters, int8) == -1) std::printf("?");
    best = std::max(best, double(threads) * double(iters) * 12 * (int8 ? 128 : 32) / (now_s() - t0) / 1e9);
  }
  return best;
}

int main(int argc, char **argv) {
  if (argc > 1 && (std::string(argv[1]) == "flops512" || std::string(argv[1]) == "int8")) {
    const bool int8 = std::string(argv[1]) == "int8";
    const int th = argc > 2 ? std::atoi(argv[2]) : 2;
    if (!__builtin_cpu_supports("avx512f") || (int8 && !__builtin_cpu_supports("avx512vnni"))) {
      std::printf("%s: this CPU has no %s\n", argv[1], int8 ? "AVX-512 VNNI" : "AVX-512");
      return 2;
    }
    std::printf("%s peak (%s), %d thread(s): %.1f %s (best of 3, >= 0.3 s each)\n", int8 ? "int8 dot-product" : "fp32 FMA",
                int8 ? "AVX-512 VNNI vpdpbusd, 1 multiply-add = 2 OPs" : "AVX-512, FMA = 2 FLOPs", th, peak512(th, int8),
                int8 ? "GOP/s" : "GFLOP/s");
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "flops") {
    const int th = argc > 2 ? std::atoi(argv[2]) : 2;
    std::printf("fp32 FMA peak (AVX2), %d thread(s): %.1f GFLOP/s (best of 3, >= 0.3 s each, FMA = 2 FLOPs)\n", th,
                flops(th));
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "cachesweep") {  // read GB/s against the working set, to see the levels
    const int th = argc > 2 ? std::atoi(argv[2]) : 2;
    for (size_t kib = 64; kib <= (size_t(512) << 10); kib *= 2)
      std::printf("%zu KiB per thread, %d thread(s): %.1f GB/s\n", kib, th, cache_read_bw(th, kib << 10));
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "cachebw") {
    cachebw(argc > 2 ? std::atoi(argv[2]) : 2);
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "membw") {
    const int th = argc > 2 ? std::atoi(argv[2]) : 2;
    std::printf("read bandwidth, %d thread(s): %.1f GB/s (best of 5, 1 GiB)\n", th, membw(th));
    return 0;
  }
  const std::string shape = argc > 1 ? argv[1] : "tiny", ts = argc > 2 ? argv[2] : "f32";
  const int reps = argc > 3 ? std::atoi(argv[3]) : 3;
  const int pp = argc > 4 ? std::atoi(argv[4]) : (shape == "tiny" ? 128 : 64);
  const int tg = argc > 5 ? std::atoi(argv[5]) : (shape == "tiny" ? 64 : 32);
  const int threads = argc > 6 ? std::atoi(argv[6]) : 2;
  const int32_t wt = type_id(ts);
  if (wt < 0) {
    std::fprintf(stderr, "unknown type %s\n", ts.c_str());
    return 2;
  }
  RefConfig c;
  if (shape == "tiny") {
    c.V = 8256; c.H = 256; c.F = 768; c.L = 4; c.nH = 4; c.nKV = 1; c.d = 64;
  } else if (shape == "0.5b") {
    c.V = 151936; c.H = 896; c.F = 4864; c.L = 24; c.nH = 14; c.nKV = 2; c.d = 64;
  } else if (shape == "1.5b") {
    c.V = 151936; c.H = 1536; c.F = 8960; c.L = 28; c.nH = 12; c.nKV = 2; c.d = 128;
  } else {
    std::fprintf(stderr, "unknown shape %s\n", shape.c_str());
    return 2;
  }
  c.theta = 1e6;
  c.tied = true;
  qw_engine *e;
  qw_model *m;
  qw_session *s;
  char opts[64];
  std::snprintf(opts, sizeof opts, "{\"threads\":%d}", threads);
  CHECK_OK(qw_engine_create(opts, &e));
  std::string cfg = c.json();
  if (const char *w = std::getenv("QW_BENCH_WEIGHTS"))  // the weights model option: as-loaded | bf16 | q8 | q4
    cfg = cfg.substr(0, cfg.size() - 1) + ",\"weights\":\"" + w + "\"}";
  CHECK_OK(qw_model_create(e, cfg.c_str(), &m));
  Rng r(1);
  const double t_load = now_s();
  auto load = [&](const std::string &n, int64_t ne0, int64_t ne1, bool vec) {
    // K-quants need ne0 % 256 == 0 (not true for 0.5B's 896): fall back to q8_0 like llama.cpp's mixes do.
    int32_t t = vec ? QW_GGML_F32 : wt;
    if (!vec && ne0 % ggml_type(t).block_elems != 0) t = QW_GGML_Q8_0;
    std::vector<uint8_t> raw = vec ? std::vector<uint8_t>(size_t(ne0 * 4)) : synth(r, t, ne0 * ne1);
    if (vec)
      for (int64_t i = 0; i < ne0; ++i) {
        const float one = 1.0f;
        std::memcpy(&raw[size_t(4 * i)], &one, 4);
      }
    CHECK_OK(qw_model_load_tensor(m, n.c_str(), t, vec ? 1 : 2, ne0, vec ? 1 : ne1, 1, 1, raw.data(), raw.size()));
  };
  const int Q = c.nH * c.d, KV = c.nKV * c.d;
  load("token_embd.weight", c.H, c.V, false);
  for (int l = 0; l < c.L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    load(b + "attn_norm.weight", c.H, 1, true);
    load(b + "attn_q.weight", c.H, Q, false);
    load(b + "attn_q.bias", Q, 1, true);
    load(b + "attn_k.weight", c.H, KV, false);
    load(b + "attn_k.bias", KV, 1, true);
    load(b + "attn_v.weight", c.H, KV, false);
    load(b + "attn_v.bias", KV, 1, true);
    load(b + "attn_output.weight", Q, c.H, false);
    load(b + "ffn_norm.weight", c.H, 1, true);
    load(b + "ffn_gate.weight", c.H, c.F, false);
    load(b + "ffn_up.weight", c.H, c.F, false);
    load(b + "ffn_down.weight", c.F, c.H, false);
  }
  load("output_norm.weight", c.H, 1, true);
  CHECK_OK(qw_model_finalize(m));
  const std::string sess = "{\"max_context\":" + std::to_string(std::max(1024, pp + tg + 8)) + "}";
  CHECK_OK(qw_session_create(m, sess.c_str(), &s));
  if (argc > 7) CHECK_OK(qw_session_set_toggle(s, "kvCache", argv[7], -1));
  if (const char *tv = std::getenv("QW_BENCH_TOGGLE")) {  // id=value[,id=value…], e.g. ffn=separate,norm=separate
    std::string all = tv;
    for (size_t at = 0; at <= all.size();) {
      const size_t end = std::min(all.find(',', at), all.size());
      const std::string kv = all.substr(at, end - at);
      const size_t eq = kv.find('=');
      CHECK_OK(qw_session_set_toggle(s, kv.substr(0, eq).c_str(), eq == std::string::npos ? "" : kv.substr(eq + 1).c_str(), -1));
      at = end + 1;
    }
  }
  uint64_t len = 0;
  char info[4096];
  CHECK_OK(qw_model_info_json(m, nullptr, 0, &len));
  std::printf("shape %s type %s threads %d: load %.1f s\n", shape.c_str(), ts.c_str(), threads, now_s() - t_load);
  std::vector<int32_t> prompt(static_cast<size_t>(pp));
  for (auto &t : prompt) t = int32_t(r.next() % uint64_t(c.V));
  std::vector<double> pps, tgs, pps_cpu, tgs_cpu;
  // QW_BENCH_RECORDS=1 times the runs with op records on (profiling mode 1), to measure its overhead.
  const bool records = std::getenv("QW_BENCH_RECORDS") != nullptr;
  if (records) CHECK_OK(qw_session_set_profiling(s, 1));
  std::vector<qw_op_record> drain(1 << 16);
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 is the warm-up
    int64_t drained = 0;
    CHECK_OK(qw_session_read_records(s, drain.data(), int64_t(drain.size()), &drained));
    int32_t tok;
    CHECK_OK(qw_session_reset(s, 0));
    double t0 = now_s();
    const double c0 = cpu_time_s();
    CHECK_OK(qw_session_prefill(s, 0, prompt.data(), pp, &tok));
    const double t_pp = now_s() - t0, c_pp = cpu_time_s() - c0;
    CHECK_OK(qw_session_reset(s, 0));
    CHECK_OK(qw_session_prefill(s, 0, prompt.data(), 1, &tok));
    t0 = now_s();
    const double c1 = cpu_time_s();
    for (int i = 0; i < tg; ++i) {
      const int32_t seq = 0, in = tok;
      CHECK_OK(qw_session_decode(s, 1, &seq, &in, &tok));
    }
    const double t_tg = now_s() - t0, c_tg = cpu_time_s() - c1;
    if (rep > 0) {
      pps.push_back(pp / t_pp);
      pps_cpu.push_back(pp / c_pp * threads);
      tgs.push_back(tg / t_tg);
      tgs_cpu.push_back(tg / c_tg * threads);
    }
  }
  auto report = [&](const char *what, int n, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::printf("  %s%-4d %9.2f tok/s  (min %.2f, max %.2f, n=%zu)\n", what, n, v[v.size() / 2], v.front(), v.back(),
                v.size());
  };
  report("pp", pp, pps);
  report("tg", tg, tgs);
  report("pp/cpu-s x threads: pp", pp, pps_cpu);
  report("tg/cpu-s x threads: tg", tg, tgs_cpu);
  if (records) CHECK_OK(qw_session_set_profiling(s, 0));
  if (std::getenv("QW_BENCH_PROFILE")) {  // per-op decode time split from the op records
    CHECK_OK(qw_session_set_profiling(s, 1));
    int64_t junk = 0;
    std::vector<qw_op_record> recs(1 << 16);
    CHECK_OK(qw_session_read_records(s, recs.data(), int64_t(recs.size()), &junk));
    int32_t tok;
    CHECK_OK(qw_session_reset(s, 0));
    CHECK_OK(qw_session_prefill(s, 0, prompt.data(), pp, &tok));  // profiled prefill of pp tokens
    CHECK_OK(qw_session_reset(s, 0));
    CHECK_OK(qw_session_prefill(s, 0, prompt.data(), 1, &tok));
    for (int i = 0; i < tg; ++i) {
      const int32_t seq = 0, in = tok;
      CHECK_OK(qw_session_decode(s, 1, &seq, &in, &tok));
    }
    int64_t n = 0;
    CHECK_OK(qw_session_read_records(s, recs.data(), int64_t(recs.size()), &n));
    for (int phase : {QW_PHASE_PREFILL, QW_PHASE_DECODE}) {
      double per_op[QW_OP_COUNT] = {}, bytes[QW_OP_COUNT] = {}, flops[QW_OP_COUNT] = {}, total = 0;
      for (int64_t i = 0; i < n; ++i)
        if (recs[size_t(i)].phase == phase && recs[size_t(i)].n_tokens >= (phase == QW_PHASE_PREFILL ? 2 : 1)) {
          per_op[recs[size_t(i)].op] += double(recs[size_t(i)].t_end_ns - recs[size_t(i)].t_start_ns);
          bytes[recs[size_t(i)].op] += recs[size_t(i)].bytes;
          flops[recs[size_t(i)].op] += recs[size_t(i)].flops;
        }
      for (double v : per_op) total += v;
      const double per = phase == QW_PHASE_PREFILL ? pp : tg;
      std::printf("  %s profile (per token):\n", phase == QW_PHASE_PREFILL ? "prefill" : "decode");
      for (int o = 0; o < QW_OP_COUNT; ++o)
        if (per_op[o] > 0)
          std::printf("    %-11s %8.1f us %5.1f%%  %6.2f GB/s  %7.2f GFLOP/s\n", qw_op_name(o), per_op[o] / per / 1e3,
                      100 * per_op[o] / total, bytes[o] / per_op[o], flops[o] / per_op[o]);
    }
  }
  (void)info;
  CHECK_OK(qw_session_destroy(s));
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  return g_failures ? 1 : 0;
}
