// Per-step overhead items of a tiny-model decode step, old vs new (this commit), in ns per call.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include "cpu.hpp"
#include "sampling.hpp"
#include "testlib.hpp"
using namespace qw;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
__attribute__((noinline)) int32_t argmax_old(const float *logits, int32_t vocab) {
  int32_t best = -1; float bv = 0;
  for (int32_t i = 0; i < vocab; ++i) { const float v = logits[i]; if (std::isnan(v)) continue; if (best < 0 || v > bv) { best = i; bv = v; } }
  return best < 0 ? 0 : best;
}
__attribute__((noinline)) bool has512_old() {
  const char *off = std::getenv("QW_CPU_NO_AVX512");
  if (off && off[0] == '1') return false;
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
template <class F> double med_ns(F f, int n) {
  std::vector<double> r;
  for (int rep = 0; rep < 9; ++rep) { double t0 = now(); for (int i = 0; i < n; ++i) f(); r.push_back((now() - t0) / n * 1e9); }
  std::sort(r.begin(), r.end());
  std::printf("median %.1f ns (min %.1f, max %.1f)", r[4], r[0], r[8]);
  return r[4];
}
int main() {
  Rng rng(3);
  std::vector<float> lg(8256);
  for (auto &v : lg) v = float(int32_t(rng.next() >> 40) - (1 << 23)) * 1e-6f;
  volatile int32_t sink = 0;
  std::printf("argmax 8256 old: "); med_ns([&] { sink = sink + argmax_old(lg.data(), 8256); }, 2000); std::printf("\n");
  std::printf("argmax 8256 new: "); med_ns([&] { sink = sink + argmax_lowest(lg.data(), 8256); }, 2000); std::printf("\n");
  std::printf("cpu_has_avx512 old (getenv each call): "); med_ns([&] { sink = sink + has512_old(); }, 200000); std::printf("\n");
  std::printf("cpu_has_avx512 new: "); med_ns([&] { sink = sink + cpu::cpu_has_avx512(); }, 200000); std::printf("\n");
  std::printf("fused_kernel_name (lock + map): "); med_ns([&] { sink = sink + (cpu::fused_kernel_name("", "cpu.gemv.w8g32.avx512", "+residual") != nullptr); }, 200000); std::printf("\n");
  return 0;
}
