// sample.cuh — device-side greedy sampling: argmax over the vocabulary, NaN never wins, ties go to the lowest
// id, all-NaN gives 0 (common/sampling.hpp step 1). Temperature/top-k/top-p draws are done by the backend on
// the host with qw::sample_token over the downloaded logits row (the exact shared algorithm).
#pragma once
#include "common.cuh"

namespace qwc {
// out: int32 [rows]; logits fp32 [rows, ld].
void launch_argmax(int32_t *out, const float *logits, int32_t rows, int32_t vocab, int64_t ld, cudaStream_t stream);
// Residual helper: x[i] += y[i] (fp32), used when a hook needs the un-fused projection output.
void launch_add_f32(float *x, const float *y, int64_t n, cudaStream_t stream);
}  // namespace qwc
