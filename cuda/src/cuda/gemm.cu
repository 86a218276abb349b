// gemm.cu — prefill GEMM dispatch and our own mma.sync kernel (see gemm.cuh).
// Own kernel: 64x64 block tile, 4 warps (16 rows x 64 cols each), BK = 32, cp.async double buffering,
// ldmatrix fragments, mma.sync m16n8k16 bf16 -> fp32. A correct, portable (sm_80+) fallback; cuBLASLt is
// the fast path when the library is present.
#include "cublaslt.cuh"
#include "gemm.cuh"
#include "mma_sync.cuh"  // smem_u32, ldsm_x4, mma_bf16, cp_async16
#include "tile_cuda.cuh"

namespace qwc {
namespace {
constexpr int BM = 64, BN = 64, BK = 32, LDS = BK + 8;

__global__ void __launch_bounds__(128) gemm_mma_kernel(const GemmArgs g) {
  pdl_wait();
  pdl_trigger();
  __shared__ __align__(16) __nv_bfloat16 as[2][BM * LDS];
  __shared__ __align__(16) __nv_bfloat16 bs[2][BN * LDS];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t m0 = (int64_t)blockIdx.y * BM, n0 = (int64_t)blockIdx.x * BN;
  auto load = [&](int kt, int buf) {
    const int64_t k0 = (int64_t)kt * BK;
    for (int i = threadIdx.x; i < BM * BK / 8; i += 128) {
      const int r = i / (BK / 8), c = (i % (BK / 8)) * 8;
      const bool oka = m0 + r < g.m && k0 + c < g.k;
      cp_async16(&as[buf][r * LDS + c], g.a + (oka ? (m0 + r) * g.lda + k0 + c : 0), oka);
      const bool okb = n0 + r < g.n && k0 + c < g.k;
      cp_async16(&bs[buf][r * LDS + c], g.w + (okb ? (n0 + r) * g.k + k0 + c : 0), okb);
    }
    asm volatile("cp.async.commit_group;");
  };
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  const int nk = (int)((g.k + BK - 1) / BK);
  load(0, 0);
  for (int kt = 0; kt < nk; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nk) load(kt + 1, buf ^ 1);
    else asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 1;");
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t a[4];
      ldsm_x4(a[0], a[1], a[2], a[3], &as[buf][(warp * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8]);
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, &bs[buf][(np * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8]);
        mma_bf16(acc[2 * np], a, b0, b1);
        mma_bf16(acc[2 * np + 1], a, b2, b3);
      }
    }
    __syncthreads();
  }
  const int gr = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = m0 + warp * 16 + gr + h * 8;
      if (row >= g.m) continue;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t col = n0 + nt * 8 + 2 * t4 + e;
        if (col >= g.n) continue;
        const float v = acc[nt][h * 2 + e];
        if (g.out_kind == GEMM_OUT_BF16) reinterpret_cast<__nv_bfloat16 *>(g.c)[row * g.ldc + col] = __float2bfloat16(v);
        else if (g.out_kind == GEMM_OUT_F32) reinterpret_cast<float *>(g.c)[row * g.ldc + col] = v;
        else reinterpret_cast<float *>(g.c)[row * g.ldc + col] += v;
      }
    }
  }
}
// 128x128x32 tiles, 8 warps as 2 (M) x 4 (N), each warp 64x32 (4 x 4 mma tiles): 6 ldmatrix per 16 mma.
constexpr int BM2 = 128, BN2 = 128;
__global__ void __launch_bounds__(256) gemm_mma128_kernel(const GemmArgs g) {
  __shared__ __align__(16) __nv_bfloat16 as[2][BM2 * LDS];
  __shared__ __align__(16) __nv_bfloat16 bs[2][BN2 * LDS];
  pdl_wait();
  pdl_trigger();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp >> 2, wn = warp & 3;
  const int64_t m0 = (int64_t)blockIdx.y * BM2, n0 = (int64_t)blockIdx.x * BN2;
  auto load = [&](int kt, int buf) {
    const int64_t k0 = (int64_t)kt * BK;
    for (int i = threadIdx.x; i < BM2 * BK / 8; i += 256) {
      const int r = i / (BK / 8), cc = (i % (BK / 8)) * 8;
      const bool oka = m0 + r < g.m && k0 + cc < g.k;
      cp_async16(&as[buf][r * LDS + cc], g.a + (oka ? (m0 + r) * g.lda + k0 + cc : 0), oka);
      const bool okb = n0 + r < g.n && k0 + cc < g.k;
      cp_async16(&bs[buf][r * LDS + cc], g.w + (okb ? (n0 + r) * g.k + k0 + cc : 0), okb);
    }
    asm volatile("cp.async.commit_group;");
  };
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;
  const int nk = (int)((g.k + BK - 1) / BK);
  load(0, 0);
  for (int kt = 0; kt < nk; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nk) load(kt + 1, buf ^ 1);
    else asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 1;");
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t a[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        ldsm_x4(a[i][0], a[i][1], a[i][2], a[i][3],
                &as[buf][(wm * 64 + i * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8]);
      uint32_t b[4][2];
#pragma unroll
      for (int np = 0; np < 2; ++np)
        ldsm_x4(b[2 * np][0], b[2 * np][1], b[2 * np + 1][0], b[2 * np + 1][1],
                &bs[buf][(wn * 32 + np * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_bf16(acc[i][j], a[i], b[j][0], b[j][1]);
    }
    __syncthreads();
  }
  const int gr = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = m0 + wm * 64 + i * 16 + gr + h * 8;
        if (row >= g.m) continue;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t col = n0 + wn * 32 + j * 8 + 2 * t4 + e;
          if (col >= g.n) continue;
          const float v = acc[i][j][h * 2 + e];
          if (g.out_kind == GEMM_OUT_BF16) reinterpret_cast<__nv_bfloat16 *>(g.c)[row * g.ldc + col] = __float2bfloat16(v);
          else if (g.out_kind == GEMM_OUT_F32) reinterpret_cast<float *>(g.c)[row * g.ldc + col] = v;
          else reinterpret_cast<float *>(g.c)[row * g.ldc + col] += v;
        }
      }
}
}  // namespace

const char *launch_gemm_mma(const GemmArgs &g, cudaStream_t s, int tile) {
  if (g.k % 8 || g.lda % 8) throw CudaError("launch_gemm_mma: K and lda must be multiples of 8");
  // tile: 0 = by shape (128x128 from 128 x 128 on), 64 / 128 = that tile (the 128 kernel handles M, N, K tails)
  if (tile == 128 || (tile == 0 && g.m >= 128 && g.n >= 128)) {
    dim3 grid((unsigned)((g.n + BN2 - 1) / BN2), (unsigned)((g.m + BM2 - 1) / BM2));
    launch(gemm_mma128_kernel, grid, 256, 0, s, g);
    QWC_LAUNCH_CHECK("launch_gemm_mma");
    return "gemm_mma128";
  }
  dim3 grid((unsigned)((g.n + BN - 1) / BN), (unsigned)((g.m + BM - 1) / BM));
  launch(gemm_mma_kernel, grid, 128, 0, s, g);
  QWC_LAUNCH_CHECK("launch_gemm_mma");
  return "gemm_mma";
}

const char *launch_gemm(const GemmArgs &g, cudaStream_t s, int backend) {
  if (g.m <= 0 || g.n <= 0) return "gemm";
  if (backend == 0) {  // toggle tile = auto: this weight's candidate (fixed: cuBLASLt when loaded, else by shape)
    const GemmTile t = gemm_tile_active(g.n, g.k);
    if (t.kind == GEMM_TILE_MMA64) return launch_gemm_mma(g, s, 64);
    if (t.kind == GEMM_TILE_MMA128) return launch_gemm_mma(g, s, 128);
  }
  if (backend != 1 && cublaslt_gemm(g, s)) return "gemm_cublaslt";
  if (backend == 2) throw CudaError(std::string("cuBLASLt requested but unavailable: ") + cublaslt_status());
  return launch_gemm_mma(g, s);
}
}  // namespace qwc
