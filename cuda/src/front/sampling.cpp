// sampling.cpp — see sampling.hpp for the exact algorithm.
#include "sampling.hpp"

#include <algorithm>
#include <cmath>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend.hpp"

namespace qw {

uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float sample_uniform(uint64_t seed, int64_t position) {
  uint64_t z = splitmix64_mix(seed);
  z = splitmix64_mix(z + (uint64_t(position) + 1u) * 0x9E3779B97F4A7C15ull);
  return float(z >> 40) * (1.0f / 16777216.0f);
}

// Greedy decoding calls this once per token over the whole vocabulary; the scalar loop below carries a compare-and-
// branch dependency per logit (~5.7 us for the embedded 8256-token model, ~3 % of its decode step). The AVX2 path
// finds the largest non-NaN value (vmaxps returns its second operand when the first is NaN, so the running maxima
// never become NaN), then the first index holding a value == it: the same lowest id the scalar loop returns
// (-0.0 == +0.0 there as here; all NaN: 0). front/ is built without -mavx2 (portable): a target attribute and a
// run-time check instead.
#if defined(__GNUC__) && defined(__x86_64__)
#define QW_ARGMAX_AVX2 1
namespace {
__attribute__((target("avx2"))) int32_t argmax_lowest_avx2(const float *logits, int32_t vocab) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int32_t i = 0;
  for (; i + 32 <= vocab; i += 32) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(logits + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(logits + i + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(logits + i + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(logits + i + 24), m3);
  }
  m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m0);
  float m = lanes[0];
  for (int k = 1; k < 8; ++k) m = std::max(m, lanes[k]);
  for (; i < vocab; ++i)
    if (logits[i] > m) m = logits[i];
  const __m256 mv = _mm256_set1_ps(m);
  int32_t j = 0;
  for (; j + 8 <= vocab; j += 8) {
    const int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(logits + j), mv, _CMP_EQ_OQ));
    if (bits) return j + __builtin_ctz(unsigned(bits));
  }
  for (; j < vocab; ++j)
    if (logits[j] == m) return j;
  return 0;  // every logit NaN (m stayed -inf and no logit equals it)
}
}  // namespace
#endif

int32_t argmax_lowest(const float *logits, int32_t vocab) {
#ifdef QW_ARGMAX_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2 && vocab >= 32) return argmax_lowest_avx2(logits, vocab);
#endif
  int32_t best = -1;
  float bv = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (best < 0 || v > bv) {  // strict: an equal later value does not replace the lower id
      best = i;
      bv = v;
    }
  }
  return best < 0 ? 0 : best;
}

int32_t sample_token(const float *logits, int32_t vocab, const SamplingParams &p, int64_t position,
                     SamplerScratch &s) {
  if (!(p.temperature > 0.0f)) return argmax_lowest(logits, vocab);
  using Cand = SamplerScratch::Cand;
  auto &c = s.cand;
  c.clear();
  c.reserve(size_t(vocab));
  for (int32_t i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i])) c.push_back({logits[i], i, 0.0});
  if (c.empty()) return 0;
  const auto before = [](const Cand &a, const Cand &b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t k = c.size();
  if (p.top_k > 0 && size_t(p.top_k) < k) {
    k = size_t(p.top_k);
    std::nth_element(c.begin(), c.begin() + ptrdiff_t(k - 1), c.end(), before);
    c.resize(k);
  }
  float m = c[0].logit;
  for (const auto &e : c) m = std::max(m, e.logit);
  const double T = double(p.temperature);
  double total = 0;
  for (auto &e : c) {
    e.w = std::exp((double(e.logit) - double(m)) / T);
    total += e.w;
  }
  // Sort lazily: the prefix [0, sorted) holds the `sorted` first candidates in order. Sampling usually needs
  // a short prefix only, so this avoids sorting a 150k vocabulary per token.
  size_t sorted = 0;
  auto ensure = [&](size_t n) {
    if (n <= sorted) return;
    size_t want = std::max(n, std::min(k, std::max<size_t>(64, sorted * 8)));
    want = std::min(want, k);
    std::partial_sort(c.begin() + ptrdiff_t(sorted), c.begin() + ptrdiff_t(want), c.end(), before);
    sorted = want;
  };
  size_t n_keep = k;
  double kept = total;
  if (p.top_p < 1.0f) {
    const double thr = double(p.top_p) * total;
    double acc = 0;
    for (size_t i = 0; i < k; ++i) {
      ensure(i + 1);
      acc += c[i].w;
      if (acc >= thr) {
        n_keep = i + 1;
        break;
      }
    }
    kept = acc;
  }
  const double target = double(sample_uniform(p.seed, position)) * kept;
  double acc = 0;
  for (size_t i = 0; i < n_keep; ++i) {
    ensure(i + 1);
    acc += c[i].w;
    if (target < acc) return c[i].id;
  }
  ensure(n_keep);
  return c[n_keep - 1].id;
}

}  // namespace qw
