// topk.cpp — row_topk (topk.hpp). Compiled with the front's portable flags into both libraries: the AVX2 exponential
// is a function of its own with a target attribute, called after a run-time check, so the library still loads on
// a CPU without AVX2.
//
// Why it matters: an EAGLE step reads the top-k of ~17 head rows and the argmax of ~17 verify rows; with std::exp
// over a row of 8256 logits (the embedded model) that was ~50 us a row on the host, ~2 ms a step — more than
// every device pass of the step on CUDA. The argmax needs no exponential at all (lp = NULL).
#include "topk.hpp"

#include <cmath>
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

typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef long long v4i __attribute__((vector_size(32)));

// exp(x) for x <= 0: x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts), exp(r) by its Taylor series to r^13
// (truncation < 1e-17 relative), 2^n added to the exponent bits. x below -700 is taken as -700: such a term is
// < 1e-304 of the largest one (exp(0) = 1), so the sum does not see it (and -inf gives ~0, as std::exp's 0).
__attribute__((target("avx2"), always_inline)) inline v4d exp_nonpos(v4d x) {
  const v4d lo = {-700.0, -700.0, -700.0, -700.0};
  x = x < lo ? lo : x;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: x * log2(e) + magic holds round(x * log2(e)) in its low bits
  const v4d kd = x * 1.4426950408889634 + magic;
  const v4d n = kd - magic;
  const v4d r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  v4d p = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0;
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
  return (v4d)((v4i)p + ((v4i)kd << 52));  // n in [-1010, 0]: the exponent of p stays normal
}

__attribute__((target("avx2"))) double sum_exp_avx2(const float *row, int32_t n, double m) {
  const v4d zero = {0, 0, 0, 0};
  v4d a0 = zero, a1 = zero;
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v4f x0, x1;
    std::memcpy(&x0, row + i, sizeof x0);
    std::memcpy(&x1, row + i + 4, sizeof x1);
    const v4d d0 = __builtin_convertvector(x0, v4d), d1 = __builtin_convertvector(x1, v4d);
    a0 += d0 == d0 ? exp_nonpos(d0 - m) : zero;  // NaN != NaN: skipped
    a1 += d1 == d1 ? exp_nonpos(d1 - m) : zero;
  }
  const v4d a = a0 + a1;
  double s = (a[0] + a[1]) + (a[2] + a[3]);
  for (; i < n; ++i)
    if (!std::isnan(row[i])) s += std::exp(double(row[i]) - m);
  return s;
}

}  // namespace

double sum_exp_below(const float *row, int32_t n, double m) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? sum_exp_avx2(row, n, m) : sum_exp_below_ref(row, n, m);
}
#else
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
