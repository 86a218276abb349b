// bench_gemv.cpp — the CPU decode GEMVs per shape, exact arm vs the int8-activation arm (toggle actQuant), through
// matmul() as the forward calls it (the int8 arm's quantization of x included), one thread, thread CPU time (a
// shared box deschedules us; CPU time does not count that), min and median of 7 repetitions after a warm-up.
// Usage: build/bench_gemv [q8_0|q4_0|f16|bf16] [T] [cold]   (f16/bf16: the exact arm only)   (T tokens per call, 1..7; default q8_0, 1)
// cold: each call reads another copy of the matrix, 256 MiB of copies in turn, so the weights come from DRAM as in
// a model's decode step (a model's matrices do not stay in cache between tokens); default: one copy (cache-warm).
// Shapes: the qkv / o_proj / gate+up / down / lm_head matrices of the tiny and 0.5B models (rows x cols).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "../src/cpu/cpu.hpp"
#include "act_quant_cpu.hpp"
#include "convert.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

double thread_cpu_ns() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e9 + double(t.tv_nsec);
}

struct Shape {
  const char *name;
  int64_t rows, cols;
};

// Per-call ns of `reps` batches of `n` calls: {min, median}.
template <class F>
std::pair<double, double> time_calls(F &&f, int n, int reps) {
  f();  // warm-up
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_cpu_ns();
    for (int i = 0; i < n; ++i) f();
    v.push_back((thread_cpu_ns() - t0) / n);
  }
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2]};
}

}  // namespace

int main(int argc, char **argv) {
  const std::string type = argc > 1 ? argv[1] : "q8_0";
  const int64_t T = argc > 2 ? std::atoi(argv[2]) : 1;
  const bool cold = argc > 3 && std::string(argv[3]) == "cold";
  if ((type != "q8_0" && type != "q4_0" && type != "f16" && type != "bf16") || T < 1 || T > 7) {
    std::fprintf(stderr, "usage: bench_gemv [q8_0|q4_0|f16|bf16] [T in 1..7] [cold]\n");
    return 2;
  }
  const int32_t ggml = type == "q8_0" ? QW_GGML_Q8_0 : type == "q4_0" ? QW_GGML_Q4_0 : type == "f16" ? QW_GGML_F16 : QW_GGML_BF16;
  const bool grouped = ggml == QW_GGML_Q8_0 || ggml == QW_GGML_Q4_0;  // the int8 arm needs 8/4-bit weights
  const Shape shapes[] = {{"tiny qkv", 384, 256},      {"tiny o_proj", 256, 256},   {"tiny gate+up", 1536, 256},
                          {"tiny down", 256, 768},     {"tiny lm_head", 8256, 256}, {"0.5B qkv", 1152, 896},
                          {"0.5B o_proj", 896, 896},   {"0.5B gate+up", 9728, 896}, {"0.5B down", 896, 4864},
                          {"0.5B lm_head", 151936, 896}};
  std::printf("%s, T = %ld, %s, 1 thread, AVX-512 %d, VNNI %d; per call: min / median of 7 (thread CPU time)\n\n",
              type.c_str(), long(T), cold ? "cold (weights from DRAM)" : "warm (one copy)", int(cpu_has_avx512()),
              int(cpu_has_vnni()));
  std::printf("| shape | rows x cols | exact µs | exact GB/s | int8 µs | int8 GB/s | exact / int8 |\n|---|---|---:|---:|---:|---:|---:|\n");
  Rng r(7);
  Pool pool(1);
  for (const Shape &s : shapes) {
    const std::vector<uint8_t> raw = random_ggml(r, ggml, s.rows * s.cols);
    const NativeTensor w0 = convert_tensor("w", ggml, s.rows, s.cols, raw.data(), false);
    const double bytes = double(w0.native_bytes());
    const size_t copies = cold ? size_t(std::max(1.0, 256.0 * 1048576.0 / bytes)) : 1;
    std::vector<NativeTensor> ws(copies, w0);
    std::vector<Weight> wts(copies);
    for (size_t c = 0; c < copies; ++c) {
      wts[c].t = &ws[c];
      for (float o : ws[c].offset) wts[c].has_offset = wts[c].has_offset || o != 0.0f;
    }
    std::vector<float> x(size_t(T * s.cols)), y(size_t(T * s.rows));
    for (auto &v : x) v = r.normal();
    const int n = int(std::max<size_t>(copies, size_t(std::max(1.0, 2e7 / double(s.rows * s.cols)))));
    std::pair<double, double> t[2];
    for (int arm = 0; arm < (grouped ? 2 : 1); ++arm) {
      size_t c = 0;
      t[arm] = time_calls(
          [&] {
            const MatJob job{wts[c], nullptr, y.data(), s.rows, arm ? ActQuant::Int8 : ActQuant::Off};
            matmul(&job, 1, x.data(), T, s.cols, pool);
            c = (c + 1) % copies;
          },
          n, 7);
    }
    if (grouped)
      std::printf("| %s | %ld x %ld | %.1f / %.1f | %.1f | %.1f / %.1f | %.1f | %.2f× |\n", s.name, long(s.rows),
                  long(s.cols), t[0].first / 1e3, t[0].second / 1e3, bytes / t[0].first, t[1].first / 1e3,
                  t[1].second / 1e3, bytes / t[1].first, t[0].first / t[1].first);
    else
      std::printf("| %s | %ld x %ld | %.1f / %.1f | %.1f | – | – | – |\n", s.name, long(s.rows), long(s.cols),
                  t[0].first / 1e3, t[0].second / 1e3, bytes / t[0].first);
  }
  return 0;
}
