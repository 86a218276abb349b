// kv_broadcast.cu — gqa=broadcast, the naive GQA arm (see kv_broadcast.cuh). Moved here unchanged from
// src/cuda/attention.cu (same namespace, so the kernel keeps its name in CUPTI records).
#include "kv_broadcast.cuh"

#include <algorithm>

namespace qwc {
namespace {

__global__ void kv_broadcast_kernel(__nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *sk,
                                    const __nv_bfloat16 *sv, const int32_t *src_slot, const int32_t *len, int n_heads,
                                    int n_kv, int d, int max_ctx) {
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.z, h = blockIdx.y;
  const int G = n_heads / n_kv;
  const int64_t slot = src_slot[b];
  const int L = len[b];
  const int64_t src = ((slot * n_kv + h / G) * (int64_t)max_ctx) * d;
  const int64_t dst = (((int64_t)b * n_heads + h) * max_ctx) * d;
  const int64_t n8 = (int64_t)L * d / 8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    reinterpret_cast<uint4 *>(dk + dst)[i] = reinterpret_cast<const uint4 *>(sk + src)[i];
    reinterpret_cast<uint4 *>(dv + dst)[i] = reinterpret_cast<const uint4 *>(sv + src)[i];
  }
}

}  // namespace

void launch_kv_broadcast(__nv_bfloat16 *dst_k, __nv_bfloat16 *dst_v, const __nv_bfloat16 *src_k,
                         const __nv_bfloat16 *src_v, const int32_t *src_slot, const int32_t *len, int32_t batch,
                         int32_t n_heads, int32_t n_kv, int32_t head_dim, int32_t max_ctx, int32_t max_len,
                         cudaStream_t s) {
  const int64_t n8 = (int64_t)max_len * head_dim / 8;
  const int gx = (int)std::max<int64_t>(1, std::min<int64_t>(64, (n8 + 255) / 256));
  dim3 grid(gx, n_heads, batch);
  launch(kv_broadcast_kernel, grid, 256, 0, s, dst_k, dst_v, src_k, src_v, src_slot, len, n_heads, n_kv, head_dim, max_ctx);
  QWC_LAUNCH_CHECK("launch_kv_broadcast");
}

}  // namespace qwc
