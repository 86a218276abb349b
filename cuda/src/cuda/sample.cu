// sample.cu — argmax sampling and the fp32 residual add (see sample.cuh).
#include "sample.cuh"

#include <algorithm>

namespace qwc {
namespace {
// (value, id) order: larger value first, then lower id; NaN loses to everything.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  if (isnan(v)) return false;
  if (bi < 0 || isnan(bv)) return true;
  return v > bv || (v == bv && i < bi);
}
__global__ void __launch_bounds__(1024) argmax_kernel(int32_t *out, const float *logits, int32_t vocab, int64_t ld) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float *row = logits + blockIdx.x * ld;
  float bv = 0.f;
  int bi = -1;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
  }
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  if (l == 0) { sv[w] = bv; si[w] = bi; }
  __syncthreads();
  if (w == 0) {
    const int nw = blockDim.x >> 5;
    bv = l < nw ? sv[l] : 0.f;
    bi = l < nw ? si[l] : -1;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi >= 0 && better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    if (l == 0) out[blockIdx.x] = bi < 0 ? 0 : bi;
  }
}
__global__ void add_f32_kernel(float *x, const float *y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}
}  // namespace

void launch_argmax(int32_t *out, const float *logits, int32_t rows, int32_t vocab, int64_t ld, cudaStream_t s) {
  if (rows <= 0) return;
  argmax_kernel<<<rows, 1024, 0, s>>>(out, logits, vocab, ld);
  QWC_LAUNCH_CHECK("launch_argmax");
}
void launch_add_f32(float *x, const float *y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  add_f32_kernel<<<(int)std::min<int64_t>((n + 255) / 256, 2048), 256, 0, s>>>(x, y, n);
  QWC_LAUNCH_CHECK("launch_add_f32");
}
}  // namespace qwc
