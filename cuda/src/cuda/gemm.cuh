// gemm.cuh — prefill GEMM: C[M, N] (row-major) = A[M, K] (bf16 row-major activations) x W[N, K]^T (bf16
// row-major weights), fp32 accumulation. cuBLASLt (loaded at run time, see cublaslt.cuh) when available,
// else our own mma.sync kernel.
#pragma once
#include "common.cuh"

namespace qwc {
enum GemmOut : int32_t { GEMM_OUT_BF16 = 0, GEMM_OUT_F32 = 1, GEMM_OUT_ADD_F32 = 2 /* C += A W^T, C fp32 */ };

struct GemmArgs {
  int32_t out_kind = GEMM_OUT_BF16;
  void *c = nullptr;
  int64_t ldc = 0;
  const __nv_bfloat16 *a = nullptr;
  int64_t lda = 0;
  const __nv_bfloat16 *w = nullptr;  // [N, K], ld = K
  int64_t m = 0, n = 0, k = 0;
};
// out[rows, m.rows] = a[rows, m.cols] . W^T for the matrix m (w: W as bf16, or null for a kernel that reads m itself).
inline GemmArgs gemm_args(int64_t rows, const WMat &m, const __nv_bfloat16 *a, int64_t lda, void *out, int64_t ldc,
                          int32_t kind, const __nv_bfloat16 *w) {
  GemmArgs g;
  g.out_kind = kind;
  g.c = out;
  g.ldc = ldc;
  g.a = a;
  g.lda = lda;
  g.w = w;
  g.m = rows;
  g.n = m.rows;
  g.k = m.cols;
  return g;
}
// backend: 0 = auto (cuBLASLt if loaded, else mma), 1 = force mma, 2 = force cuBLASLt (throws if missing).
const char *launch_gemm(const GemmArgs &g, cudaStream_t stream, int backend = 0);
// Our own kernel, exposed for the lab.
// tile: 0 = by shape, 64 or 128 = that block tile (toggle tile's candidates mma64 / mma128).
const char *launch_gemm_mma(const GemmArgs &g, cudaStream_t stream, int tile = 0);
}  // namespace qwc
