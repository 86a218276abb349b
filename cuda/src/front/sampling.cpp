// sampling.cpp — see sampling.hpp for the exact algorithm.
#include "sampling.hpp"

#include <algorithm>
#include <cmath>

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

int32_t argmax_lowest(const float *logits, int32_t vocab) {
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
