// swiglu.cu — prefill SwiGLU, bf16->fp32 copies for hooks, weight dequantization (see swiglu.cuh).
#include "swiglu.cuh"

#include <algorithm>

namespace qwc {
namespace {
__global__ void swiglu_kernel(__nv_bfloat16 *h, __nv_bfloat16 *gate_out, const __nv_bfloat16 *gu, int64_t n,
                              int32_t inter, bool inter_leaved) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = i / inter, j = i - t * inter;
    __nv_bfloat16 gb, ub;
    if (inter_leaved) {
      gb = gu[(t * inter + j) * 2];
      ub = gu[(t * inter + j) * 2 + 1];
    } else {
      gb = gu[t * 2 * inter + j];
      ub = gu[t * 2 * inter + inter + j];
    }
    const float g = __bfloat162float(gb), u = __bfloat162float(ub);
    const float s = bf16r(g / (1.f + expf(-g)));
    h[i] = __float2bfloat16(s * u);
    if (gate_out) gate_out[i] = gb;
  }
}
__global__ void bf16_to_f32_kernel(float *out, const __nv_bfloat16 *in, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}
__global__ void dequant_kernel(__nv_bfloat16 *out, const WMat w) {
  pdl_wait();
  pdl_trigger();
  const int64_t n = w.rows * w.cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16(load_weight(w, i / w.cols, i % w.cols));
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }
}  // namespace

void launch_swiglu(__nv_bfloat16 *h, __nv_bfloat16 *gate_out, const __nv_bfloat16 *gu, int32_t rows, int32_t inter,
                   bool interleaved, cudaStream_t s) {
  const int64_t n = (int64_t)rows * inter;
  if (n <= 0) return;
  launch(swiglu_kernel, grid_for(n), 256, 0, s, h, gate_out, gu, n, inter, interleaved);
  QWC_LAUNCH_CHECK("launch_swiglu");
}
void launch_bf16_to_f32(float *out, const __nv_bfloat16 *in, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch(bf16_to_f32_kernel, grid_for(n), 256, 0, s, out, in, n);
  QWC_LAUNCH_CHECK("launch_bf16_to_f32");
}
void launch_dequant_bf16(__nv_bfloat16 *out, const WMat &w, cudaStream_t s) {
  const int64_t n = w.rows * w.cols;
  if (n <= 0) return;
  launch(dequant_kernel, grid_for(n), 256, 0, s, out, w);
  QWC_LAUNCH_CHECK("launch_dequant_bf16");
}
}  // namespace qwc
