// tp_kernels.cu — see tp_kernels.cuh. Both kernels are copies (no arithmetic): exact.
#include "tp_kernels.cuh"

#include <algorithm>

#include "tp_layout.hpp"

namespace qwc {
namespace {

__global__ void embed_vocab_part_kernel(float *out, const WMat e, const int32_t *tokens, int32_t vocab0) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.x;
  const int64_t tok = tokens[t];
  const bool own = qw::tp_owns_token(tok, vocab0, e.rows);
  for (int64_t k = threadIdx.x; k < e.cols; k += blockDim.x) out[t * e.cols + k] = own ? load_weight(e, tok - vocab0, k) : 0.f;
}

__global__ void logits_unpack_kernel(float *logits, int64_t ld, const float *gathered, int32_t rows, int32_t part,
                                     int32_t vocab) {
  pdl_wait();
  pdl_trigger();
  const int64_t row = blockIdx.y;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < vocab; v += int64_t(gridDim.x) * blockDim.x)
    logits[row * ld + v] = gathered[qw::tp_gathered_index(row, v, rows, part)];
}

}  // namespace

void launch_embed_vocab_part(float *out, const WMat &emb, const int32_t *tokens, int32_t n, int32_t vocab0,
                             cudaStream_t s) {
  if (n <= 0) return;
  launch(embed_vocab_part_kernel, n, 256, 0, s, out, emb, tokens, vocab0);
  QWC_LAUNCH_CHECK("launch_embed_vocab_part");
}

void launch_tp_logits_unpack(float *logits, int64_t ld, const float *gathered, int32_t rows, int32_t part,
                             int32_t vocab, cudaStream_t s) {
  if (rows <= 0 || vocab <= 0) return;
  const dim3 grid(unsigned(std::min<int64_t>((vocab + 255) / 256, 256)), unsigned(rows));
  launch(logits_unpack_kernel, grid, 256, 0, s, logits, ld, gathered, rows, part, vocab);
  QWC_LAUNCH_CHECK("launch_tp_logits_unpack");
}

}  // namespace qwc
