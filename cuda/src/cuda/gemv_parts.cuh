// gemv_parts.cuh — the pieces the decode GEMV kernels share (gemv.cu: CUDA cores; gemv_mma.cu: tensor cores):
// activation staging (bf16 or the fused RMSNorm prologue), the per-row rstd, and the fused epilogues. Both
// kernel families must produce the same prologue values and run the same epilogue code, so they live here once.
#pragma once

#include <type_traits>
#include "gemv.cuh"

namespace qwc {
namespace gemv_detail {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kSmemBytes = 46 * 1024;  // + static smem must stay <= 48 KB (no opt-in)

inline int sm_count() {
  static int n = 0;
  if (n == 0) {
    int dev = 0;
    QWC_CHECK(cudaGetDevice(&dev));
    QWC_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  }
  return n;
}

// Whether the PRO_NORM inputs allow float4 loads (x rows and norm_w 16-byte aligned).
__device__ __forceinline__ bool norm_vec4(const GemvArgs &a) {
  return (a.w.cols % 4) == 0 && (a.x_ld % 4) == 0 && ((reinterpret_cast<uintptr_t>(a.x) | reinterpret_cast<uintptr_t>(a.norm_w)) & 15) == 0;
}

// Stages a[b, k0 .. k0+klen) for b < NB into act_s[b * kt + k] (rows >= batch are zero).
// Every thread takes 16-byte (bf16) / 2 x 16-byte (fp32 x and norm_w) pieces, 4 in flight per thread: the
// prologue costs ~1-2 L2 round trips instead of one per element loop iteration.
template <int NB>
__device__ __forceinline__ void stage_tile(const GemvArgs &a, __nv_bfloat16 *act_s, const float *rstd_s, int64_t k0,
                                           int klen, int kt, bool vec) {
  const int B = a.batch;
  if (a.pro == GEMV_PRO_BF16) {
    if (vec) {
      const int n8 = klen / 8;
#pragma unroll 1
      for (int b = 0; b < NB; ++b) {
        const bool on = b < B;
        const __nv_bfloat16 *src = a.act + b * a.act_ld + k0;
#pragma unroll 4
        for (int c = threadIdx.x; c < n8; c += blockDim.x) {
          uint4 v = make_uint4(0, 0, 0, 0);
          if (on) v = *reinterpret_cast<const uint4 *>(src + 8 * c);
          *reinterpret_cast<uint4 *>(act_s + b * kt + 8 * c) = v;
        }
      }
    } else {
      for (int i = threadIdx.x; i < NB * klen; i += blockDim.x) {
        const int b = i / klen, k = i - b * klen;
        act_s[b * kt + k] = b < B ? a.act[b * a.act_ld + k0 + k] : __float2bfloat16(0.f);
      }
    }
  } else if (norm_vec4(a) && (klen % 4) == 0 && (k0 % 4) == 0) {
    const int n4 = klen / 4;
#pragma unroll 1
    for (int b = 0; b < NB; ++b) {
      const bool on = b < B;
      const float r = on ? rstd_s[b] : 0.f;
      const float *xs = a.x + b * a.x_ld + k0;
#pragma unroll 4
      for (int c = threadIdx.x; c < n4; c += blockDim.x) {
        uint2 packed = make_uint2(0, 0);
        if (on) {
          const float4 xv = *reinterpret_cast<const float4 *>(xs + 4 * c);
          const float4 wv = *reinterpret_cast<const float4 *>(a.norm_w + k0 + 4 * c);
          // same value as the scalar path: bf16(bf16r(x * rstd) * norm_w)
          __nv_bfloat162 lo = __floats2bfloat162_rn(bf16r(xv.x * r) * wv.x, bf16r(xv.y * r) * wv.y);
          __nv_bfloat162 hi = __floats2bfloat162_rn(bf16r(xv.z * r) * wv.z, bf16r(xv.w * r) * wv.w);
          packed.x = *reinterpret_cast<uint32_t *>(&lo);
          packed.y = *reinterpret_cast<uint32_t *>(&hi);
        }
        *reinterpret_cast<uint2 *>(act_s + b * kt + 4 * c) = packed;
      }
    }
  } else {
    for (int i = threadIdx.x; i < NB * klen; i += blockDim.x) {
      const int b = i / klen, k = i - b * klen;
      float v = 0.f;
      if (b < B) v = bf16r(a.x[b * a.x_ld + k0 + k] * rstd_s[b]) * a.norm_w[k0 + k];
      act_s[b * kt + k] = __float2bfloat16(v);
    }
  }
}

// rstd of every batch row, computed by the whole block (float4 loads when aligned, 4 in flight per thread),
// partial sums added in a fixed order (warp shuffles, then warps 0..7): deterministic.
template <int NB>
__device__ __forceinline__ void norm_rstd(const GemvArgs &a, float *rstd_s) {
  if (a.pro != GEMV_PRO_NORM) return;
  __shared__ float part_s[kWarps][16];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t K = a.w.cols;
  const bool v4 = norm_vec4(a);
#pragma unroll 1
  for (int b = 0; b < a.batch; ++b) {
    const float *xb = a.x + b * a.x_ld;
    float s = 0.f;
    if (v4) {
      const float4 *x4 = reinterpret_cast<const float4 *>(xb);
      const int n4 = (int)(K / 4);
#pragma unroll 4
      for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        const float4 v = x4[i];
        s = fmaf(v.x, v.x, s); s = fmaf(v.y, v.y, s); s = fmaf(v.z, v.z, s); s = fmaf(v.w, v.w, s);
      }
    } else {
      for (int64_t k = threadIdx.x; k < K; k += blockDim.x) s = fmaf(xb[k], xb[k], s);
    }
    s = warp_sum(s);
    if (lane == 0) part_s[warp][b] = s;
  }
  __syncthreads();
  if ((int)threadIdx.x < a.batch) {
    float s = 0.f;
    for (int w = 0; w < kWarps; ++w) s += part_s[w][threadIdx.x];
    rstd_s[threadIdx.x] = rsqrtf(s / (float)K + a.eps);
  }
  __syncthreads();
}

// Writes the reduced value v of (row, b). For SWIGLU, `v` is the gate and `v2` the up projection.
__device__ __forceinline__ void epilogue_one(const GemvArgs &a, int64_t row, int b, float v) {
  switch (a.epi) {
    case GEMV_EPI_BF16:
      reinterpret_cast<__nv_bfloat16 *>(a.out)[b * a.out_ld + row] = __float2bfloat16(v + (a.bias ? a.bias[row] : 0.f));
      break;
    case GEMV_EPI_F32:
      reinterpret_cast<float *>(a.out)[b * a.out_ld + row] = v + (a.bias ? a.bias[row] : 0.f);
      break;
    case GEMV_EPI_ADD_F32:
      reinterpret_cast<float *>(a.out)[b * a.out_ld + row] += v;
      break;
  }
}
__device__ __forceinline__ void epilogue_swiglu(const GemvArgs &a, int64_t j, int b, float g, float u) {
  const float gb = bf16r(g), ub = bf16r(u);
  const float s = bf16r(gb / (1.f + expf(-gb)));
  reinterpret_cast<__nv_bfloat16 *>(a.out)[b * a.out_ld + j] = __float2bfloat16(s * ub);
  if (a.aux) a.aux[b * a.aux_ld + j] = __float2bfloat16(gb);
}

// Rows (prow, prow + 1) of the pair-interleaved q|k|v matrix, batch b: bias, bf16 rounding, RoPE, stores.
__device__ __forceinline__ void epilogue_qkv_rope(const GemvArgs &a, int64_t prow, int b, float va, float vb) {
  const QkvRopeArgs &r = a.rope;
  const int d = r.head_dim, half = d / 2;
  const int64_t qk = (int64_t)(r.n_heads + r.n_kv) * d;
  const int pos = r.pos[b];
  const int64_t slot = r.slot[b];
  const int kvdim = r.n_kv * d;
  if (prow < qk) {
    const int head = (int)(prow / d), i = (int)(prow % d) / 2;
    const int64_t r1 = (int64_t)head * d + i, r2 = r1 + half;
    const float x1 = bf16r(va + a.bias[r1]), x2 = bf16r(vb + a.bias[r2]);
    float sn, cs;
    sincosf((float)pos * r.inv_freq[i], &sn, &cs);
    const float c = bf16r(cs), s = bf16r(sn);
    const __nv_bfloat16 o1 = __float2bfloat16(bf16r(x1 * c) + bf16r(-x2 * s));
    const __nv_bfloat16 o2 = __float2bfloat16(bf16r(x2 * c) + bf16r(x1 * s));
    if (head < r.n_heads) {
      r.q_out[(int64_t)b * r.n_heads * d + r1] = o1;
      r.q_out[(int64_t)b * r.n_heads * d + r2] = o2;
    } else {
      const int kh = head - r.n_heads;
      if (r.kcache) {  // null: a quantized cache (opt/kvcache) takes k_out instead
        __nv_bfloat16 *kc = r.kcache + ((slot * r.n_kv + kh) * r.max_ctx + pos) * d;
        kc[i] = o1;
        kc[i + half] = o2;
      }
      if (r.k_out) {
        r.k_out[(int64_t)b * kvdim + kh * d + i] = o1;
        r.k_out[(int64_t)b * kvdim + kh * d + i + half] = o2;
      }
    }
  } else {
    const float vals[2] = {va, vb};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t row = prow + e, vi = row - qk;
      const int kh = (int)(vi / d), j = (int)(vi % d);
      const __nv_bfloat16 v = __float2bfloat16(vals[e] + a.bias[row]);
      if (r.vcache) r.vcache[((slot * r.n_kv + kh) * r.max_ctx + pos) * d + j] = v;
      if (r.v_out) r.v_out[(int64_t)b * kvdim + vi] = v;
    }
  }
}


// A GEMV block's prologue once its first weight loads are out: wait for the previous kernel (PDL: the activations
// come from it), let the next one start its own, and the norm's rstd per batch row.
template <int NB>
__device__ __forceinline__ void gemv_prologue(const GemvArgs &a, float *rstd_s) {
  pdl_wait();
  pdl_trigger();
  norm_rstd<NB>(a, rstd_s);
}

// K tile k0's activations into act_s, row stride ld >= kt (the barrier before it: the previous tile is consumed;
// after: staged for all); returns the tile's length (the tile ends at kend at the latest). first: the block's first
// tile (no barrier before it).
template <int NB>
__device__ __forceinline__ int gemv_stage(const GemvArgs &a, __nv_bfloat16 *act_s, float *rstd_s, int64_t k0, int kt,
                                          int ld, bool vec, int64_t kend, bool first) {
  const int klen = (int)min((int64_t)kt, kend - k0);
  if (!first) __syncthreads();
  stage_tile<NB>(a, act_s, rstd_s, k0, klen, ld, vec);
  __syncthreads();
  return klen;
}

// The K walk both CUDA-core GEMV kernels share (gemv.cu gemv_vec_kernel, gemv_q16_kernel): chunks of E weights, the
// lane's chunks those whose global index is cbase mod cstride, U of them in flight per row. The first K tile's loads
// go out before the prologue (norm + staging), so their latency overlaps it; then per K tile of kt columns: the
// activations staged (act_s[b * kt + k]), and per group of U chunks load(u, column) for every u then use(u, chunk
// index in the tile) in order u = 0..U-1: each row is summed by chunk in ascending global index, whatever the tile
// length kt (which shrinks with the batch): the same order at every batch size (batch invariance).
// act_s rows are ld elements apart (ld >= kt). [kbeg, kend): the block's K range (a multiple of E; default the whole
// row; gemv_mma.cu's split over blocks walks a part of it), chunks still indexed globally. gemv_walk_staged takes the
// staging as stage(k0, first) -> the tile's length (opt/act_quant/gemv_i8.cu stages int8 codes instead).
template <int NB, int E, int U, class Stage, class Load, class Use>
__device__ __forceinline__ void gemv_walk_staged(const GemvArgs &a, float *rstd_s, int kt, int64_t row0, int cbase,
                                                 int cstride, Stage &&stage, Load &&load, Use &&use, int64_t kbeg,
                                                 int64_t kend) {
  const int64_t rows = a.w.rows;
  {
    const int nchunks0 = (int)(min((int64_t)kt, kend - kbeg) / E);
    const int cf0 = (int)((cbase - (kbeg / E) % cstride + cstride) % cstride);
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (cf0 + cstride * u < nchunks0) load(u, kbeg + (int64_t)E * (cf0 + cstride * u));
  }
  bool prefetched = true;
  gemv_prologue<NB>(a, rstd_s);
  for (int64_t k0 = kbeg; k0 < kend; k0 += kt) {
    const int klen = stage(k0, k0 == kbeg);
    if (row0 >= rows) continue;
    const int nchunks = klen / E;
    const int cfirst = (int)((cbase - (k0 / E) % cstride + cstride) % cstride);
    for (int c0 = cfirst; c0 < nchunks; c0 += cstride * U) {
      if (!prefetched) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (c0 + cstride * u < nchunks) load(u, k0 + (int64_t)E * (c0 + cstride * u));
      }
      prefetched = false;
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (c0 + cstride * u < nchunks) use(u, c0 + cstride * u);
    }
    prefetched = false;  // the prefetch covered the first K tile only (also when this lane had no chunk in it)
  }
}

// gemv_walk_staged with the bf16 activations staged (gemv_stage).
template <int NB, int E, int U, class Load, class Use>
__device__ __forceinline__ void gemv_walk(const GemvArgs &a, __nv_bfloat16 *act_s, float *rstd_s, int kt, int ld,
                                          int64_t row0, int cbase, int cstride, Load &&load, Use &&use,
                                          int64_t kbeg = 0, int64_t kend = -1) {
  if (kend < 0) kend = a.w.cols;
  const bool vec = (a.act_ld % 8) == 0 && (ld % 8) == 0;
  gemv_walk_staged<NB, E, U>(
      a, rstd_s, kt, row0, cbase, cstride,
      [&](int64_t k0, bool first) { return gemv_stage<NB>(a, act_s, rstd_s, k0, kt, ld, vec, kend, first); }, load, use,
      kbeg, kend);
}

// gemv_walk with the next round of a lane's chunks in flight while it uses the current one: two sets of U slots
// (0 .. U-1 and U .. 2U-1, alternating; Load / Use get the slot). The next round is the tile's following one or the
// next tile's first (weights are global: their loads need not wait for the next tile's staging). A lane visits the
// same chunks in the same order as in gemv_walk, so each row gets the same bits at any U and either walk. gemv_walk
// issues a round's loads right before using them, so a warp waits a full memory latency per round (7B q4 gate_up at
// b1: 2 rounds per warp, the first prefetched under the prologue). User: QW_GEMV_Q16_PIPE=1 (gemv.cu, within ~5 % of
// gemv_walk: that kernel is issue-bound); the tensor-core kernel on it was no faster either (fourteenth run, 7B bf16
// b1 150.8 against 148.5 tok/s, gate_up 129.7 against 122.7 us) and went back to gemv_walk. act_s rows are ld
// elements apart (ld >= kt).
template <int NB, int E, int U, class Load, class Use>
__device__ __forceinline__ void gemv_walk_pipe(const GemvArgs &a, __nv_bfloat16 *act_s, float *rstd_s, int kt, int ld,
                                               int64_t row0, int cbase, int cstride, Load &&load, Use &&use) {
  using S0 = std::integral_constant<int, 0>;
  using S1 = std::integral_constant<int, 1>;
  const int64_t rows = a.w.rows, cols = a.w.cols;
  const bool vec = (a.act_ld % 8) == 0 && (ld % 8) == 0;
  const auto first = [&](int64_t k0) { return (int)((cbase - (k0 / E) % cstride + cstride) % cstride); };
  const auto issue = [&](auto set, int64_t k0, int c) {  // round c of tile k0 into `set`
    const int n = (int)(min((int64_t)kt, cols - k0) / E);
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (c + cstride * u < n) load(decltype(set)::value * U + u, k0 + (int64_t)E * (c + cstride * u));
  };
  const auto consume = [&](auto set, int c, int n) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (c + cstride * u < n) use(decltype(set)::value * U + u, c + cstride * u);
  };
  issue(S0{}, 0, first(0));  // before the prologue, as gemv_walk
  gemv_prologue<NB>(a, rstd_s);
  int set = 0;  // the set that holds this tile's first round
  for (int64_t k0 = 0; k0 < cols; k0 += kt) {
    const int klen = gemv_stage<NB>(a, act_s, rstd_s, k0, kt, ld, vec, cols, k0 == 0);
    if (row0 >= rows) continue;
    const int n = klen / E;
    const int64_t k1 = k0 + kt;
    const auto next = [&](auto into, int c) {  // the round after c: in this tile, else the next tile's first
      if (c + cstride * U < n) issue(into, k0, c + cstride * U);
      else if (k1 < cols) issue(into, k1, first(k1));
    };
    int c = first(k0);
    if (c >= n) {  // no chunk of this lane in the tile: the next tile's first round goes into the same set
      if (k1 < cols) {
        if (set == 0) issue(S0{}, k1, first(k1));
        else issue(S1{}, k1, first(k1));
      }
      continue;
    }
    for (; c < n; c += cstride * U) {
      if (set == 0) next(S1{}, c), consume(S0{}, c, n);
      else next(S0{}, c), consume(S1{}, c, n);
      set ^= 1;
    }
  }
}

// The end of a GEMV kernel's warp: the lane partial sums of its R rows x NB batch rows reduced over the warp, with
// KS the ks K-part warps of each row group added in a fixed order (warps rgroup * ks + kpart, red_s[kWarps][R * NB]:
// deterministic; every warp of the block must call it, the barrier), then the fused epilogue by the group's first
// warp, lane (r * NB + b) % 32 writing value (r, b).
template <int R, int NB, bool KS>
__device__ __forceinline__ void finish_rows(const GemvArgs &a, float (&acc)[R][NB], int64_t row0, int ks, int kpart,
                                            float (*red_s)[KS ? R * NB : 1]) {
  constexpr int kRed = KS ? R * NB : 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows;
  if (!KS && row0 >= rows) return;  // (KS: every warp must reach the barrier below)
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = warp_sum(acc[r][b]);
  if (KS && ks > 1) {  // block-uniform: add the ks partial sums of each row group in a fixed order
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < NB; ++b) red_s[warp][(r * NB + b) % kRed] = acc[r][b];
    }
    __syncthreads();
    if (kpart != 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        float s = red_s[warp][(r * NB + b) % kRed];
        for (int j = 1; j < ks; ++j) s += red_s[warp + j][(r * NB + b) % kRed];
        acc[r][b] = s;
      }
  }
  if (row0 >= rows) return;

  if (a.epi == GEMV_EPI_SWIGLU) {
    // R is even: pairs (2p, 2p+1) of the warp's rows are (gate j, up j), j = (row0 + 2p) / 2.
#pragma unroll
    for (int p = 0; p < R / 2; ++p)
#pragma unroll
      for (int b = 0; b < NB; ++b)
        if (lane == ((p * NB + b) & 31) && b < a.batch && row0 + 2 * p + 1 < rows)
          epilogue_swiglu(a, (row0 + 2 * p) / 2, b, acc[2 * p][b], acc[2 * p + 1][b]);
  } else if (a.epi == GEMV_EPI_QKV_ROPE) {
#pragma unroll
    for (int p = 0; p < R / 2; ++p)
#pragma unroll
      for (int b = 0; b < NB; ++b)
        if (lane == ((p * NB + b) & 31) && b < a.batch && row0 + 2 * p + 1 < rows)
          epilogue_qkv_rope(a, row0 + 2 * p, b, acc[2 * p][b], acc[2 * p + 1][b]);
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < NB; ++b)
        if (lane == ((r * NB + b) & 31) && b < a.batch && row0 + r < rows) epilogue_one(a, row0 + r, b, acc[r][b]);
  }
}

}  // namespace gemv_detail
}  // namespace qwc
