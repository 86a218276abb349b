// norm.cu — RMSNorm rows (see norm.cuh). One block of 256 threads per row, fp32 sum of squares.
#include "norm.cuh"

namespace qwc {
namespace {
__global__ void __launch_bounds__(256) rmsnorm_kernel(__nv_bfloat16 *out, float *out_f32, const float *x, const float *w,
                                                      int32_t cols, float eps) {
  pdl_wait();
  pdl_trigger();
  __shared__ float red[8];
  const int64_t r = blockIdx.x;
  const float *xr = x + r * cols;
  float s = 0.f;
  for (int k = threadIdx.x; k < cols; k += blockDim.x) s = fmaf(xr[k], xr[k], s);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float rstd = rsqrtf(red[0] / (float)cols + eps);
  for (int k = threadIdx.x; k < cols; k += blockDim.x) {
    const float y = bf16r(bf16r(xr[k] * rstd) * w[k]);
    out[r * cols + k] = __float2bfloat16(y);
    if (out_f32) out_f32[r * cols + k] = y;
  }
}
}  // namespace

void launch_rmsnorm(__nv_bfloat16 *out, float *out_f32, const float *x, const float *w, int32_t rows, int32_t cols,
                    float eps, cudaStream_t s) {
  if (rows <= 0) return;
  launch(rmsnorm_kernel, rows, 256, 0, s, out, out_f32, x, w, cols, eps);
  QWC_LAUNCH_CHECK("launch_rmsnorm");
}
}  // namespace qwc
