// norm_unfused.cu — see norm_unfused.cuh.
#include "gemv_parts.cuh"
#include "norm_unfused.cuh"

namespace qwc {
namespace {

__global__ void __launch_bounds__(gemv_detail::kThreads)
    rmsnorm_rows_kernel(__nv_bfloat16 *out, int64_t out_ld, const GemvArgs a) {
  pdl_wait();
  pdl_trigger();
  __shared__ float rstd_s[16];
  GemvArgs r = a;  // this block's row as a batch of one: norm_rstd then sums it exactly as the GEMV prologue does
  r.x = a.x + (int64_t)blockIdx.x * a.x_ld;
  r.batch = 1;
  gemv_detail::norm_rstd<1>(r, rstd_s);
  const float rs = rstd_s[0];
  __nv_bfloat16 *o = out + (int64_t)blockIdx.x * out_ld;
  for (int64_t k = threadIdx.x; k < a.w.cols; k += blockDim.x) o[k] = __float2bfloat16(bf16r(r.x[k] * rs) * a.norm_w[k]);
}

}  // namespace

void launch_rmsnorm_rows(__nv_bfloat16 *out, int64_t out_ld, const float *x, int64_t x_ld, const float *w, int32_t rows,
                         int32_t cols, float eps, cudaStream_t s) {
  if (rows <= 0) return;
  GemvArgs a;  // the prologue's inputs, as norm_rstd reads them
  a.pro = GEMV_PRO_NORM;
  a.x = x;
  a.x_ld = x_ld;
  a.norm_w = w;
  a.eps = eps;
  a.w.cols = cols;
  a.batch = 1;
  launch(rmsnorm_rows_kernel, rows, gemv_detail::kThreads, 0, s, out, out_ld, a);
  QWC_LAUNCH_CHECK("launch_rmsnorm_rows");
}

}  // namespace qwc
