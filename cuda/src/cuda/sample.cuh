// sample.cuh — device-side sampling, the algorithm of common/sampling.hpp step by step:
//  greedy (temperature <= 0): argmax, NaN never wins, ties -> lowest id, all-NaN -> 0;
//  else candidates ordered by (logit desc, id asc) = a unique 64-bit key; top-k keeps the k largest keys
//  (radix select); w = exp((l - m) / T) in double; top-p keeps the shortest prefix with sum >= top_p * total;
//  target = u * kept, the first key (in order) whose running sum exceeds target wins (radix search on the
//  key with per-digit double sums; the last kept key if rounding leaves none). u = sample_uniform(seed, pos)
//  is computed by the host (the shared function) and passed in.
#pragma once
#include "common.cuh"

namespace qwc {
struct SampleRow {
  float temperature;
  int32_t top_k;
  float top_p;
  float u;
};
// out: int32 [rows]; logits fp32 [rows, ld]; params [rows] (device); wbuf: double [rows, vocab] scratch.
void launch_sample(int32_t *out, const float *logits, const SampleRow *params, double *wbuf, int32_t rows,
                   int32_t vocab, int64_t ld, cudaStream_t stream);
// out: int32 [rows]; logits fp32 [rows, ld]. Ties: the lower id; NaN never wins; a row of NaN only gives `none`
// (0 for the sampler's token, -1 for qw_session_read_topk's rule).
void launch_argmax(int32_t *out, const float *logits, int32_t rows, int32_t vocab, int64_t ld, cudaStream_t stream,
                   int32_t none = 0);
// Residual helper: x[i] += y[i] (fp32), used when a hook needs the un-fused projection output.
void launch_add_f32(float *x, const float *y, int64_t n, cudaStream_t stream);
}  // namespace qwc
