// embed.cu — embedding gather (see embed.cuh). One block per token; tiny (H floats per token).
#include "embed.cuh"

#include <cstdlib>

namespace qwc {
namespace {
__global__ void embed_kernel(float *out, const WMat e, const int32_t *tokens) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.x;
  const int64_t tok = tokens[t];
  for (int64_t k = threadIdx.x; k < e.cols; k += blockDim.x) out[t * e.cols + k] = load_weight(e, tok, k);
}
}  // namespace

namespace {
int g_pdl = -1;  // -1: not decided yet
}
bool pdl_enabled() {
  if (g_pdl < 0) {
    int on = env_switch_on("QW_PDL", "no programmatic dependent launch", "programmatic dependent launch on sm_90");
    if (on) {  // Hopper and later only
      int dev = 0, major = 0;
      if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        cudaGetLastError();
        major = 0;
      }
      on = major >= 9;
    }
    g_pdl = on;
  }
  return g_pdl == 1;
}
void set_pdl(bool on) { g_pdl = on ? 1 : 0; }

void launch_embed(float *out, const WMat &emb, const int32_t *tokens, int32_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch(embed_kernel, n, 256, 0, s, out, emb, tokens);
  QWC_LAUNCH_CHECK("launch_embed");
}
}  // namespace qwc
