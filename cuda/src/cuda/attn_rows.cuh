// attn_rows.cuh — the per-lane row arithmetic that the decode attention kernels share (attention.cu decode_attn_kernel;
// opt/dca/dca_kernels.cu's tile kernel, which adopts its layout): a lane's whole K row (D / 8 16-byte loads) scored
// against a query row staged in shared memory as floats, and a lane's E = D / 32 dims of a V row.
#pragma once
#include "common.cuh"

namespace qwc {

// The raw bf16 bits of a lane's E dims of a V row (one load).
template <int E> struct VRaw;
template <> struct VRaw<4> { using T = uint2; };
template <> struct VRaw<2> { using T = uint32_t; };
template <> struct VRaw<1> { using T = uint16_t; };

// q . k for a K row held as D / 8 uint4 (bf16) and q as D floats (16-byte aligned), fmaf in dimension order.
template <int D>
__device__ __forceinline__ float qk_row(const float *q, const uint4 (&kr)[D / 8]) {
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const float4 qa = *reinterpret_cast<const float4 *>(q + 8 * i);
    const float4 qb = *reinterpret_cast<const float4 *>(q + 8 * i + 4);
    acc = fmaf(qa.x, bf16_lo(kr[i].x), acc); acc = fmaf(qa.y, bf16_hi(kr[i].x), acc);
    acc = fmaf(qa.z, bf16_lo(kr[i].y), acc); acc = fmaf(qa.w, bf16_hi(kr[i].y), acc);
    acc = fmaf(qb.x, bf16_lo(kr[i].z), acc); acc = fmaf(qb.y, bf16_hi(kr[i].z), acc);
    acc = fmaf(qb.z, bf16_lo(kr[i].w), acc); acc = fmaf(qb.w, bf16_hi(kr[i].w), acc);
  }
  return acc;
}

// V rows a lane loads before their P.V FMAs (one memory round trip per kAttnVRows keys, not one per key).
constexpr int kAttnVRows = 16;

// A lane's K row `row` (D / 8 16-byte loads) and its E dims of the first kAttnVRows V rows of the 32-key tile at `tile`
// (nk valid keys, later rows clamped to the last): issued together, so the V latency hides behind Q.K and the softmax.
template <int D, int E>
__device__ __forceinline__ void load_tile_rows(const __nv_bfloat16 *kbase, const __nv_bfloat16 *vbase, int64_t row,
                                               int tile, int nk, int lane, uint4 (&kr)[D / 8],
                                               typename VRaw<E>::T (&vr0)[kAttnVRows]) {
  const uint4 *kp = reinterpret_cast<const uint4 *>(kbase + row * D);
#pragma unroll
  for (int i = 0; i < D / 8; ++i) kr[i] = kp[i];
#pragma unroll
  for (int jj = 0; jj < kAttnVRows; ++jj)
    vr0[jj] = *reinterpret_cast<const typename VRaw<E>::T *>(vbase + (int64_t)(tile + min(jj, nk - 1)) * D + lane * E);
}

// The E floats of raw V bits v.
template <int E>
__device__ __forceinline__ void v_dims(typename VRaw<E>::T v, float (&vf)[E]) {
  if constexpr (E == 4) {
    vf[0] = bf16_lo(v.x); vf[1] = bf16_hi(v.x); vf[2] = bf16_lo(v.y); vf[3] = bf16_hi(v.y);
  } else if constexpr (E == 2) {
    vf[0] = bf16_lo(v); vf[1] = bf16_hi(v);
  } else {
    vf[0] = __uint_as_float((uint32_t)v << 16);
  }
}

}  // namespace qwc
