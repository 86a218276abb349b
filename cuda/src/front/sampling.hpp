// sampling.hpp — the reference token sampler shared by both backends.
//
// The exact algorithm (the CUDA sampler reproduces it step by step):
//  1. temperature <= 0 (greedy): the id with the largest logit; NaN never wins; ties go to the LOWEST id.
//     If every logit is NaN the answer is 0.
//  2. Otherwise candidates are the non-NaN logits, ordered by (logit descending, id ascending).
//     top_k > 0 keeps the first min(top_k, count) of that order.
//  3. m = the largest kept logit. Weights w_i = exp((double(l_i) - double(m)) / double(temperature)), in
//     double precision; total = sum of the kept weights (double; summation order is unspecified, which can
//     move a draw only when u falls within ~1e-16 relative of a bucket boundary).
//  4. top_p < 1 keeps the shortest prefix (in the order of step 2, at least one token) whose weight sum is
//     >= top_p * total. Call its sum `kept`.
//  5. u = sample_uniform(seed, position) (24-bit uniform in [0,1), see below); target = double(u) * kept.
//     Walk the kept prefix in order accumulating weights; return the first id whose running sum exceeds
//     target (the last kept id if rounding leaves none). This is an inverse-CDF draw.
//
// sample_uniform(seed, position): z = mix(seed); z = mix(z + (position + 1) * 0x9E3779B97F4A7C15);
// u = (z >> 40) * 2^-24, where mix is the splitmix64 finalizer
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^= z >> 31.
// `position` is the KV position the sampled token will occupy (the sequence length after the step).
#pragma once

#include <cstdint>
#include <vector>

namespace qw {

struct SamplingParams {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

uint64_t splitmix64_mix(uint64_t z);

// Reusable scratch so that a decode loop does not allocate per token.
struct SamplerScratch {
  struct Cand {
    float logit;
    int32_t id;
    double w;
  };
  std::vector<Cand> cand;
};

int32_t argmax_lowest(const float *logits, int32_t vocab);
int32_t sample_token(const float *logits, int32_t vocab, const SamplingParams &p, int64_t position,
                     SamplerScratch &scratch);

}  // namespace qw
