// embed.cu — embedding gather (see embed.cuh). One block per token; tiny (H floats per token).
#include "embed.cuh"

namespace qwc {
namespace {
__global__ void embed_kernel(float *out, const WMat e, const int32_t *tokens) {
  const int64_t t = blockIdx.x;
  const int64_t tok = tokens[t];
  for (int64_t k = threadIdx.x; k < e.cols; k += blockDim.x) out[t * e.cols + k] = load_weight(e, tok, k);
}
}  // namespace

void launch_embed(float *out, const WMat &emb, const int32_t *tokens, int32_t n, cudaStream_t s) {
  if (n <= 0) return;
  embed_kernel<<<n, 256, 0, s>>>(out, emb, tokens);
  QWC_LAUNCH_CHECK("launch_embed");
}
}  // namespace qwc
