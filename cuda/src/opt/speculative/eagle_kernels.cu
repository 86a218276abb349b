// eagle_kernels.cu — speculative = eagle on the CUDA backend: EAGLE head input, casts and KV compaction
// (eagle_cuda.cuh). Elementwise; a few KB per row.
#include "eagle_cuda.cuh"

namespace qwc {
namespace {

__global__ void eagle_cat_kernel(__nv_bfloat16 *cat, const float *x, const float *f, int32_t H) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  for (int i = threadIdx.x; i < 2 * H; i += blockDim.x)
    cat[r * 2 * H + i] = __float2bfloat16(i < H ? x[r * H + i] : f[r * H + i - H]);
}

__global__ void add_bias_rows_kernel(float *x, const float *bias, int32_t H) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  for (int i = threadIdx.x; i < H; i += blockDim.x) x[r * H + i] += bias[i];
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *out, const float *x, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16(x[i]);
}

// grid (n_kv, layers, 2): blockIdx.z = 0 moves K, 1 moves V.
__global__ void kv_compact_kernel(const KvCompactArgs a) {
  pdl_wait();
  pdl_trigger();
  const int kvh = blockIdx.x, l = blockIdx.y;
  __nv_bfloat16 *c = (blockIdx.z == 0 ? a.kcache : a.vcache) + a.layer_elems * l +
                     ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * a.head_dim;
  for (int i = 0; i < a.n; ++i) {
    const int src = a.keep[i];
    if (src != i) {
      const __nv_bfloat16 *s = c + (int64_t)(a.base + src) * a.head_dim;
      __nv_bfloat16 *d = c + (int64_t)(a.base + i) * a.head_dim;
      for (int e = threadIdx.x; e < a.head_dim; e += blockDim.x) d[e] = s[e];
    }
    __syncthreads();  // row i is written before row i + 1 moves: a later source keep[i'] > keep[i] >= i lies above
                      // every destination written so far, so nothing is read after it was overwritten
  }
}

}  // namespace

void launch_eagle_cat(__nv_bfloat16 *cat, const float *x, const float *features, int32_t rows, int32_t H,
                      cudaStream_t s) {
  if (rows <= 0) return;
  launch(eagle_cat_kernel, rows, 256, 0, s, cat, x, features, H);
  QWC_LAUNCH_CHECK("launch_eagle_cat");
}

void launch_add_bias_rows(float *x, const float *bias, int32_t rows, int32_t H, cudaStream_t s) {
  if (rows <= 0) return;
  launch(add_bias_rows_kernel, rows, 256, 0, s, x, bias, H);
  QWC_LAUNCH_CHECK("launch_add_bias_rows");
}

void launch_f32_to_bf16(__nv_bfloat16 *out, const float *x, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch(f32_to_bf16_kernel, ceil_div(n, 256) < 4096 ? ceil_div(n, 256) : 4096, 256, 0, s, out, x, n);
  QWC_LAUNCH_CHECK("launch_f32_to_bf16");
}

void launch_kv_compact(const KvCompactArgs &a, cudaStream_t s) {
  if (a.n <= 0) return;
  launch(kv_compact_kernel, dim3(a.n_kv, a.layers, 2), 128, 0, s, a);
  QWC_LAUNCH_CHECK("launch_kv_compact");
}

}  // namespace qwc
