// embed.cuh — embedding gather: x[t, :] = E[tokens[t], :] as fp32 (exact for every native type).
#pragma once
#include "common.cuh"

namespace qwc {
// out: fp32 [n, emb.cols]; tokens: device int32 [n] (already validated by the front).
void launch_embed(float *out, const WMat &emb, const int32_t *tokens, int32_t n, cudaStream_t stream);
}  // namespace qwc
