// topk.cpp — row_topk (topk.hpp). Compiled with the front's portable flags into both libraries: the AVX2 exponential
// is a function of its own with a target attribute, called after a run-time check, so the library still loads on
// a CPU without AVX2.
//
// Why it matters: an EAGLE step reads the top-k of ~17 head rows and the argmax of ~17 verify rows; with std::exp
// over a row of 8256 logits (the embedded model) that was ~50 us a row on the host, ~2 ms a step — more than
// every device pass of the step on CUDA. The argmax needs no exponential at all (lp = NULL).
#include "topk.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qw {

double sum_exp_below_ref(const float *row, int32_t n, double m) {
  double s = 0;
  for (int32_t i = 0; i < n; ++i)
    if (!std::isnan(row[i])) s += std::exp(double(row[i]) - m);
  return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {

// The helpers below carry no target attribute and take and return AVX / AVX-512 vectors: they are always inlined
// into the target-attributed entry points, which compile them for their instruction set, so no call ever uses that
// vector ABI (GCC's -Wpsabi note does not apply).
#pragma GCC diagnostic ignored "-Wpsabi"

// W doubles per vector: 4 (AVX2) or 8 (AVX-512).
template <int W> struct Lanes;
template <> struct Lanes<4> {
  typedef double d __attribute__((vector_size(32)));
  typedef float f __attribute__((vector_size(16)));
  typedef long long i __attribute__((vector_size(32)));
};
template <> struct Lanes<8> {
  typedef double d __attribute__((vector_size(64)));
  typedef float f __attribute__((vector_size(32)));
  typedef long long i __attribute__((vector_size(64)));
};

// exp(x) for x <= 0: x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts), exp(r) by its Taylor series to r^13
// (truncation < 1e-17 relative), 2^n added to the exponent bits. x below -700 is taken as -700: such a term is
// < 1e-304 of the largest one (exp(0) = 1), so the sum does not see it (and -inf gives ~0, as std::exp's 0).
template <int W>
__attribute__((always_inline)) inline typename Lanes<W>::d exp_nonpos(typename Lanes<W>::d x) {
  using D = typename Lanes<W>::d;
  using I = typename Lanes<W>::i;
  const D lo = D{} - 700.0;
  x = x < lo ? lo : x;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: x * log2(e) + magic holds round(x * log2(e)) in its low bits
  const D kd = x * 1.4426950408889634 + magic;
  const D n = kd - magic;
  const D r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  D p = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  return (D)((I)p + ((I)kd << 52));  // n in [-1010, 0]: the exponent of p stays normal
}

// Two accumulators of W lanes over blocks of 2W logits, then the tail in index order.
template <int W>
__attribute__((always_inline)) inline double sum_exp_lanes(const float *row, int32_t n, double m) {
  using D = typename Lanes<W>::d;
  using F = typename Lanes<W>::f;
  const D zero = D{};
  D a0 = zero, a1 = zero;
  int32_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    F x0, x1;
    std::memcpy(&x0, row + i, sizeof x0);
    std::memcpy(&x1, row + i + W, sizeof x1);
    const D d0 = __builtin_convertvector(x0, D), d1 = __builtin_convertvector(x1, D);
    a0 += d0 == d0 ? exp_nonpos<W>(d0 - m) : zero;  // NaN != NaN: skipped
    a1 += d1 == d1 ? exp_nonpos<W>(d1 - m) : zero;
  }
  const D a = a0 + a1;
  double s = 0;
  for (int l = 0; l < W; ++l) s += a[l];
  for (; i < n; ++i)
    if (!std::isnan(row[i])) s += std::exp(double(row[i]) - m);
  return s;
}

__attribute__((target("avx2"))) double sum_exp_avx2(const float *row, int32_t n, double m) {
  return sum_exp_lanes<4>(row, n, m);
}
// 8 lanes: about half the AVX2 time per row on a machine with AVX-512 (the embedded model's 8256 logits: 24 us a row
// with AVX2 on the 2-vCPU EPYC build box)
__attribute__((target("avx512f"))) double sum_exp_avx512(const float *row, int32_t n, double m) {
  return sum_exp_lanes<8>(row, n, m);
}

// What this CPU has: 2 AVX-512, 1 AVX2, 0 neither.
int cpu_isa() {
  static const int isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
  return isa;
}

// The path sum_exp_below takes: the CPU's, without AVX-512 under QW_CPU_NO_AVX512=1 (as the CPU backend's kernels).
int best_isa() {
  static const int isa = [] {
    const char *no512 = std::getenv("QW_CPU_NO_AVX512");
    const int c = cpu_isa();
    return c == 2 && no512 && no512[0] == '1' ? 1 : c;
  }();
  return isa;
}

// isa <= cpu_isa(): checked once by the callers, not per row.
double sum_exp_on(const float *row, int32_t n, double m, int isa) {
  if (isa >= 2) return sum_exp_avx512(row, n, m);
  if (isa == 1) return sum_exp_avx2(row, n, m);
  return sum_exp_below_ref(row, n, m);
}

}  // namespace

double sum_exp_below_isa(const float *row, int32_t n, double m, int isa) {
  return sum_exp_on(row, n, m, isa < cpu_isa() ? isa : cpu_isa());
}

double sum_exp_below(const float *row, int32_t n, double m) { return sum_exp_on(row, n, m, best_isa()); }
#else
double sum_exp_below_isa(const float *row, int32_t n, double m, int) { return sum_exp_below_ref(row, n, m); }
double sum_exp_below(const float *row, int32_t n, double m) { return sum_exp_below_ref(row, n, m); }
#endif

namespace {

// Inserts row[i] into the sorted ids[0..cnt) (at most k; ties keep the lower id, which came first).
inline void insert(const float *row, int32_t i, int32_t k, int32_t *ids, int32_t &cnt) {
  const float v = row[i];
  if (std::isnan(v)) return;
  if (cnt == k && !(v > row[ids[k - 1]])) return;
  int32_t j = cnt < k ? cnt++ : k - 1;
  while (j > 0 && v > row[ids[j - 1]]) {
    ids[j] = ids[j - 1];
    --j;
  }
  ids[j] = i;
}

typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

}  // namespace

// The k best in one pass: a block of 8 logits none of which beats the current k-th best (most blocks, once k are
// held) is skipped with one vector compare; the others go through insert one by one, in index order, so the result
// is that of the plain scan. The max is ids[0]'s logit. Then, when lp is asked for, the softmax denominator.
void row_topk(const float *row, int32_t vocab, int32_t k, int32_t *ids, double *lp) {
  int32_t cnt = 0, i = 0;
  for (; i + 8 <= vocab; i += 8) {
    if (cnt == k) {
      const float t = row[ids[k - 1]];
      const f4 tv = {t, t, t, t};
      f4 a, b;
      std::memcpy(&a, row + i, sizeof a);
      std::memcpy(&b, row + i + 4, sizeof b);
      const i4 gt = (a > tv) | (b > tv);  // NaN compares false: skipped, as insert skips it
      if (!(gt[0] | gt[1] | gt[2] | gt[3])) continue;
    }
    for (int32_t j = i; j < i + 8; ++j) insert(row, j, k, ids, cnt);
  }
  for (; i < vocab; ++i) insert(row, i, k, ids, cnt);
  for (int32_t j = cnt; j < k; ++j) ids[j] = -1;
  if (!lp) return;
  const double m = cnt > 0 ? double(row[ids[0]]) : -HUGE_VAL;
  const double lse = m + std::log(sum_exp_below(row, vocab, m));
  for (int32_t j = 0; j < k; ++j) lp[j] = j < cnt ? double(row[ids[j]]) - lse : -HUGE_VAL;
}

}  // namespace qw
