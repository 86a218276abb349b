// mma_sync.cuh — the warp-level tensor-core and async-copy helpers the mma.sync kernels share (flash prefill in
// attention.cu, the Sage kernels in src/opt/attention/sage.cu): ldmatrix, bf16 m16n8k16 mma, bf16 packing, cp.async.
// Header-only device code; ldmatrix and cp.async need 16-byte aligned shared addresses.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace qwc {

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
// D = A.B + D: A 16x16 bf16 (row), B 16x8 bf16 (col), fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool pred) {
  const int n = pred ? 16 : 0;  // zero-fill when not valid
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(smem)), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }

// The flash kernels' bf16 Q.K^T tile (attention_prefill.cu, opt/sparse_prefill/vs_estimate.cu): this warp's 16 query
// rows (q_s rows 16 warp .., padded rows of LD elements) as A fragments, then S = Q K^T over a tile of NK keys
// (kt: NK rows of LD), fp32 in the m16n8 accumulator layout (rows g, g + 8; columns nt * 8 + 2 t4 + {0, 1}).
template <int D, int LD>
__device__ __forceinline__ void mma_q_frags(uint32_t (&qa)[D / 16][4], const __nv_bfloat16 *q_s, int warp, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldsm_x4(qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], q_s + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
}
template <int D, int LD, int NK>
__device__ __forceinline__ void mma_qk_tile(float (&s)[NK / 8][4], const uint32_t (&qa)[D / 16][4],
                                            const __nv_bfloat16 *kt, int lane) {
#pragma unroll
  for (int i = 0; i < NK / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      uint32_t b0, b1, b2, b3;
      ldsm_x4(b0, b1, b2, b3, kt + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
      mma_bf16(s[2 * np], qa[kk], b0, b1);
      mma_bf16(s[2 * np + 1], qa[kk], b2, b3);
    }
  }
}
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

}  // namespace qwc
