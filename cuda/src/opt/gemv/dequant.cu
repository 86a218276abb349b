// dequant.cu — gemv = marlin's prefill half (issue 10 item 4): weights that are not bf16 reach the bf16 GEMM through
// a vectorized dequantization (8 elements per thread: one 16-, 8- or 4-byte load, one 16-byte store, one 64-bit
// division per 8 elements instead of per element). Same values as swiglu.cu's dequant_kernel (load_weight):
// w = fmaf(scale, q, offset) for W8/W4, exact conversions for F16/F32, each rounded once to bf16.
// prefill.cu calls it on row chunks of <= 24 MiB of bf16 so that the GEMM reads the chunk back from L2.
// COMPILE-ONLY so far (cuda/dev/lab/marlin.cu compares it with the generic kernel bit for bit).
#include <algorithm>

#include "marlin.cuh"

namespace qwc {
namespace {

template <int WT>
__global__ void __launch_bounds__(256) dequant_fast_kernel(__nv_bfloat16 *out, const WMat w) {
  pdl_wait();
  pdl_trigger();
  const int64_t c8 = w.cols / 8, n8 = w.rows * c8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / c8, c = (i - r * c8) * 8;
    float f[8];
    unpack_chunk<WT>(load_chunk<WT>(w, r, c), f);
    __nv_bfloat162 h[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) h[e] = __floats2bfloat162_rn(f[2 * e], f[2 * e + 1]);
    *reinterpret_cast<uint4 *>(out + r * w.cols + c) = *reinterpret_cast<const uint4 *>(h);
  }
}

}  // namespace

bool launch_dequant_bf16_fast(__nv_bfloat16 *out, const WMat &w, cudaStream_t s) {
  if (w.cols % 8 || ((w.type == WT_W8 || w.type == WT_W4) && w.group % 8) || w.type == WT_BF16) return false;
  const int64_t n8 = w.rows * (w.cols / 8);
  if (n8 <= 0) return true;
  const int grid = (int)std::min<int64_t>((n8 + 255) / 256, 132 * 16);
  switch (w.type) {
    case WT_F32: launch(dequant_fast_kernel<WT_F32>, grid, 256, 0, s, out, w); break;
    case WT_F16: launch(dequant_fast_kernel<WT_F16>, grid, 256, 0, s, out, w); break;
    case WT_W8: launch(dequant_fast_kernel<WT_W8>, grid, 256, 0, s, out, w); break;
    case WT_W4: launch(dequant_fast_kernel<WT_W4>, grid, 256, 0, s, out, w); break;
    default: return false;
  }
  QWC_LAUNCH_CHECK("launch_dequant_bf16_fast");
  return true;
}

}  // namespace qwc
