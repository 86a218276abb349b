// tp_kernels.cuh — the two kernels the CUDA ranks of tensor parallelism add to the tp1 forward (toggle "parallel",
// tp_plan.hpp; index math in tp_layout.hpp): the vocab-parallel embedding and the unpacking of the gathered logits.
// Everything else a rank runs is a tp1 kernel over its shards. Compile-checked only (README, "Tensor parallelism").
#pragma once

#include "common.cuh"

namespace qwc {

// out: fp32 [n, emb.cols]; x[t] = emb[tokens[t] - vocab0] when this rank owns the token (tp_owns_token), else 0 —
// the rank's term of the embedding all-reduce (exactly one rank contributes to each row).
void launch_embed_vocab_part(float *out, const WMat &emb, const int32_t *tokens, int32_t n, int32_t vocab0,
                             cudaStream_t stream);
// logits fp32 [rows, ld] (columns [0, vocab)) from the all-gathered [ranks][rows][part] (tp_gathered_index).
void launch_tp_logits_unpack(float *logits, int64_t ld, const float *gathered, int32_t rows, int32_t part,
                             int32_t vocab, cudaStream_t stream);

}  // namespace qwc
