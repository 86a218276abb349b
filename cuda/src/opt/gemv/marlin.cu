// marlin.cu — gemv = marlin: decode GEMV over W4/W8 weights on mma.sync tensor cores, batch 1..16 (issue 10 item 2).
// COMPILE-ONLY: written without a GPU; cuda/dev/lab/marlin.cu checks it against a CPU reference (qwlab marlin).
//
// Ideas taken from Marlin (IST-DASLab), our own code:
//  * weights repacked at load (marlin_layout.hpp) so that one 16/32-byte piece per lane is exactly its mma B
//    fragments for 8 k-steps; dequantization in registers with a lop3 (mask | 0x4300 exponent: the bf16 128 + q)
//    and one bf16x2 fma removing the 128 (exact: small integers). Activations are the mma A side (m = 16 rows,
//    the batch padded), read from shared memory with ldmatrix; one mma per 8 rows x 16 columns whatever the batch,
//    so batch 16 streams the weights once, as batch 1 does.
//  * every warp streams its units global -> shared through its own cp.async ring (`stages` deep, a knob) and only reads what
//    it copied, so the weight stream needs no block barrier; the first stages are issued before pdl_wait, while the
//    previous kernel drains.
//  * split-K across blocks so that every SM streams: a 64-row block x K-slice grid of n_blk x S blocks
//    (marlin_plan, knobs from marlin_rule: >= 1 block per SM, slices of <= 8 units of 128 columns, W8 with many row
//    blocks one slice). Instead of Marlin's serial lock chain,
//    the S blocks of a row block write fp32 partials and the last to arrive adds them in slice order: deterministic,
//    and no block ever waits for another (no co-residency assumption).
// Exactness: q is exact in bf16, the group's products are summed by the tensor core in fp32, then
//   acc = fma(scale, P_g, acc); acc = fma(offset, A_g, acc)   (A_g = fp32 sum of the group's bf16 activations)
// so the weights are used exactly (no bf16 rounding of scale * q), unlike Marlin's fp16 scaling.
// Batch invariance: the split, the unit order of every warp, the order of the warp and slice sums depend on the
// shape only, and an mma output element depends only on its own A row: a sequence gets the same bits alone or in
// a batch of 16. (Not the same bits as gemv = simple, which sums in another order.)
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "gemv.cuh"
#include "gemv_parts.cuh"
#include "marlin.cuh"
#include "mma_sync.cuh"  // smem_u32, ldsm_x4, cp_async_commit, cp_async_wait

namespace qwc {
namespace {

using namespace gemv_detail;
constexpr int kNTW = 4;  // 8-row tiles per warp; WN warps along rows x kWarps / WN along K (a template argument)
static_assert(2 * kNTW * kMarlinTileRows == kMarlinBlockRows && kWarps * kNTW * kMarlinTileRows == kMarlinWideRows,
              "block shapes: WN 2 / 4 / 8 = 64 / 128 / 256 rows");

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(smem)), "l"(gmem));
}
// wait_group takes an immediate: the ring depth is a run-time knob (MarlinKnobs::stages, 2..kMarlinMaxStages).
__device__ __forceinline__ void cp_async_wait_dyn(int n) {
  switch (n) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    case 4: cp_async_wait<4>(); break;
    case 5: cp_async_wait<5>(); break;
    case 6: cp_async_wait<6>(); break;
    default: cp_async_wait<7>(); break;
  }
}
__device__ __forceinline__ void ldsm_x2(uint32_t &r0, uint32_t &r1, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// x * m + c on a bf16 pair (exact here: the results are small integers, or 16 times one).
__device__ __forceinline__ uint32_t bf2_fma(uint32_t x, float m, float c) {
  const __nv_bfloat162 r = __hfma2(*reinterpret_cast<const __nv_bfloat162 *>(&x), __floats2bfloat162_rn(m, m),
                                   __floats2bfloat162_rn(c, c));
  return *reinterpret_cast<const uint32_t *>(&r);
}

// Shared memory: act_s [NR][SA] bf16 | 16 zero bytes | asum_s [NR][ngmax] fp32 | ring [8 warps][stages][kNTW][unit_bytes]
// [| red [WK][RB][16] fp32 when the block takes several tiles].
// Tiles: (row block, K slice) pairs in slice-major order (tile = sl * n_blk + blk); block b takes the contiguous range
// [b T / grid, (b + 1) T / grid) of the T = n_blk * S tiles. grid = T: one tile per block (the classic launch);
// grid < T (`persist`, a knob): each block walks its range with one cp.async ring across tile boundaries (the next
// tile's weights in flight during this tile's reduction and epilogue), restaging the activations only when the slice
// changes (at most once per block, slice-major), so at M16 a block no longer pays one activation slice per 64-row
// tile. A tile's arithmetic is the same whichever block runs it: both launches give the same bits.
// Block shape: WN warps along rows (RB = 32 WN rows), WK = 8 / WN along K, warp (wn, wk) taking units wk, wk + WK, ...
// of the slice: WN 2 reads each staged activation for 64 rows, WN 8 for 256 (a quarter of the activation bytes per
// weight byte, the whole slice through each warp's ring) at the price of 4x fewer blocks.
// Zero-point matrices (m.zero_point, our q4): the B fragments are q - z (exact), so no activation sums are needed.
// NR = NB, or with `compact` (a knob) the batch: ldmatrix then points the padding rows (tokens >= batch) at the 16
// zero bytes instead of zero rows of act_s, the same zeros, so the same bits; at M1 the activations take 1/8 of the
// shared memory (more resident blocks, or wider slices, for the same budget).
// With one tile per block the warp sums red [WK][RB rows][16 tokens] fp32 (16 KB for every WN) reuse the front of
// shared memory after the main loop; with several they have their own region (the activations stay for the next tile).
// stages (the ring depth, 2..kMarlinMaxStages) is a run-time argument: one instantiation per (type, group, NB, WN,
// PERSIST); PERSIST with WN 2 only (the persistent walk and the wide blocks are two answers to the same activation
// traffic; the lab times both against the classic launch).
template <bool W4, int G, int NB, int WN, bool PERSIST>
__global__ void __launch_bounds__(kThreads) marlin_gemv_kernel(const GemvArgs a, const MarlinMat m, const int ksu,
                                                               const int S, const int stages, const int compact) {
  constexpr int WBYTES = W4 ? 512 : 1024, NG = kMarlinUnitCols / G, SPG = G / 16;
  constexpr int UB = WBYTES + NG * 64, WK = kWarps / WN, RB = WN * kNTW * kMarlinTileRows;
  static_assert(WN * WK == kWarps && (WN == 2 || WN == 4 || WN == 8), "block shape");
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int last_s;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int wn = warp / WK, wk = warp % WK;
  const bool zp = W4 && m.zero_point, sums = m.has_offset && !zp;  // sums: the offset term needs activation sums
  const int ku = (int)(m.cols / kMarlinUnitCols), n_blk = (int)(m.rows / RB), T = n_blk * S;
  // PERSIST: grid < T, red has its own region; else grid = T, one tile per block (its own instantiation: the tile
  // cursor folds away and the classic launch keeps its registers)
  int t_lo = (int)blockIdx.x, t_hi = t_lo + 1;
  if (PERSIST) marlin_tile_range((int)blockIdx.x, (int)gridDim.x, T, t_lo, t_hi);
  const int n_tiles = t_hi - t_lo;
  const int SA = ksu * kMarlinUnitCols + 8, ngmax = ksu * NG;
  const int NR = compact ? a.batch : NB;  // activation rows held in shared memory
  __nv_bfloat16 *act_s = reinterpret_cast<__nv_bfloat16 *>(smem);
  __nv_bfloat16 *zero_s = act_s + (size_t)NR * SA;  // 16 bytes (SA * 2 is a multiple of 16)
  float *asum_s = reinterpret_cast<float *>(smem + (size_t)NR * SA * 2 + 16);
  // asum_s rounded up to 16 bytes: the ring takes cp.async / uint4 accesses (with compact, NR * ngmax * 4 may be 28)
  unsigned char *ring0 = smem + (size_t)NR * SA * 2 + 16 + (((size_t)NR * ngmax * 4 + 15) & ~(size_t)15);
  unsigned char *ring = ring0 + (size_t)warp * stages * kNTW * UB;
  float *red = PERSIST ? reinterpret_cast<float *>(ring0 + (size_t)kWarps * stages * kNTW * UB) : reinterpret_cast<float *>(smem);
  // this warp's items of tile k of the range: units wk, wk + WK, ... of the tile's slice
  auto tile_items = [&](int k) {
    const int sl = (t_lo + k) / n_blk, nu = min(ku, (sl + 1) * ksu) - sl * ksu;
    return nu > wk ? (nu - wk + WK - 1) / WK : 0;
  };
  // The issuing cursor walks this warp's items over the tiles in order; item q goes to ring slot q % stages.
  int ik = 0, ij = 0, q_issue = 0;
  while (ik < n_tiles && tile_items(ik) == 0) ++ik;
  auto issue_next = [&]() {
    if (ik >= n_tiles) return;
    const int tile = t_lo + ik, sl = tile / n_blk, blk = tile - sl * n_blk;
    const int64_t u = (int64_t)sl * ksu + wk + WK * ij;
    const int64_t t0 = (int64_t)blk * (RB / kMarlinTileRows) + wn * kNTW;  // this warp's first 8-row tile
    unsigned char *dst = ring + (size_t)(q_issue % stages) * kNTW * UB;
#pragma unroll
    for (int nt = 0; nt < kNTW; ++nt) {
      const unsigned char *src = m.data + ((size_t)(t0 + nt) * ku + u) * UB;
#pragma unroll
      for (int p = lane; p < UB / 16; p += 32) cp_async16(dst + nt * UB + 16 * p, src + 16 * p);
    }
    ++q_issue;
    if (++ij >= tile_items(ik)) {
      ij = 0;
      do ++ik; while (ik < n_tiles && tile_items(ik) == 0);
    }
  };
  // Weights are immutable: the first stages go out before the previous kernel has finished.
#pragma unroll 1
  for (int i = 0; i < stages - 1; ++i) {
    issue_next();
    cp_async_commit();
  }
  pdl_wait();
  pdl_trigger();

  const int B = a.batch;
  int q_cons = 0, staged = -1;  // items consumed; the slice whose activations act_s holds
  for (int k = 0; k < n_tiles; ++k) {
    const int tile = t_lo + k, sl = tile / n_blk, blk = tile - sl * n_blk;
    const int u0 = sl * ksu, nu = min(ku, u0 + ksu) - u0;
    if (sl != staged) {  // (the previous tile ended with a barrier: nobody reads act_s any more)
      // Activations of the slice (rows >= batch are zero), then the per-group sums for the offset term. The copies
      // go out together as one cp.async group (one L2 round trip, not one per 4 KB round of the block); waiting for
      // it also waits for the ring's items in flight, which were issued earlier.
      const int n8 = nu * kMarlinUnitCols / 8;
      if (threadIdx.x == 0) *reinterpret_cast<uint4 *>(zero_s) = make_uint4(0, 0, 0, 0);
      for (int i = threadIdx.x; i < NR * n8; i += kThreads) {
        const int b = i / n8, c = i - b * n8;
        if (b < B) cp_async16(act_s + b * SA + 8 * c, a.act + b * a.act_ld + (int64_t)u0 * kMarlinUnitCols + 8 * c);
        else *reinterpret_cast<uint4 *>(act_s + b * SA + 8 * c) = make_uint4(0, 0, 0, 0);
      }
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
      if (sums) {
        const int ng = nu * kMarlinUnitCols / G;
        for (int i = threadIdx.x; i < NR * ng; i += kThreads) {
          const int b = i / ng, g = i - b * ng;
          const __nv_bfloat16 *p = act_s + b * SA + g * G;
          float s = 0.f;
#pragma unroll 8
          for (int kk = 0; kk < G; ++kk) s += __bfloat162float(p[kk]);
          asum_s[b * ngmax + g] = s;
        }
        __syncthreads();
      }
      staged = sl;
    }

    float acc[kNTW][4];
#pragma unroll
    for (int nt = 0; nt < kNTW; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;

    const int n_items = tile_items(k);
    for (int i = 0; i < n_items; ++i) {
      issue_next();  // stages - 1 items ahead, across tile boundaries
      cp_async_commit();
      cp_async_wait_dyn(stages - 1);  // this lane's copies of item q_cons have landed
      __syncwarp();                   // ... and every other lane's (the scales were copied by other lanes)
      const unsigned char *slot = ring + (size_t)(q_cons % stages) * kNTW * UB;
      ++q_cons;
      const int kc = (wk + WK * i) * kMarlinUnitCols;  // the unit's first column within the slice
      uint32_t wq[kNTW][W4 ? 4 : 8];
#pragma unroll
      for (int nt = 0; nt < kNTW; ++nt) {
        const uint4 v = *reinterpret_cast<const uint4 *>(slot + nt * UB + (W4 ? 16 : 32) * lane);
        wq[nt][0] = v.x; wq[nt][1] = v.y; wq[nt][2] = v.z; wq[nt][3] = v.w;
        if constexpr (!W4) {
          const uint4 v2 = *reinterpret_cast<const uint4 *>(slot + nt * UB + 32 * lane + 16);
          wq[nt][4] = v2.x; wq[nt][5] = v2.y; wq[nt][6] = v2.z; wq[nt][7] = v2.w;
        }
      }
#pragma unroll
      for (int gi = 0; gi < NG; ++gi) {
        // W4 bias of this lane's B row (gid) per tile: 128, or 128 + z with a zero point (then q - z comes out, exact)
        float wbias[kNTW];
#pragma unroll
        for (int nt = 0; nt < kNTW; ++nt) {
          wbias[nt] = -128.f;
          if (zp) {
            const float2 so = *reinterpret_cast<const float2 *>(slot + nt * UB + WBYTES + 64 * gi + 8 * gid);
            wbias[nt] -= so.y == 0.f ? 0.f : rintf(-so.y * __frcp_rn(so.x));
          }
        }
        float tmp[kNTW][4];
#pragma unroll
        for (int nt = 0; nt < kNTW; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) tmp[nt][e] = 0.f;
#pragma unroll
        for (int jj = 0; jj < SPG; ++jj) {
          const int j = gi * SPG + jj;
          uint32_t a0, a1 = 0, a2, a3 = 0;
          const int arow = marlin_ldsm_row(lane, NB == 16);
          const __nv_bfloat16 *ap = arow < NR ? act_s + arow * SA + kc + 16 * j + marlin_ldsm_col(lane, NB == 16) : zero_s;
          if constexpr (NB == 16) ldsm_x4(a0, a1, a2, a3, ap);
          else ldsm_x2(a0, a2, ap);
#pragma unroll
          for (int nt = 0; nt < kNTW; ++nt) {
            if constexpr (W4) {
              const uint32_t b0 = bf2_fma(marlin_w4_bits(wq[nt], j, 0), 1.f, wbias[nt]);
              const uint32_t b1 = bf2_fma(marlin_w4_bits(wq[nt], j, 1), 1.f, wbias[nt]);
              mma16816(tmp[nt], a0, a1, a2, a3, b0, b1);
            } else {
              const uint32_t s0 = marlin_w8_spread(wq[nt][j], 0), s1 = marlin_w8_spread(wq[nt][j], 1);
              // 16 * hi: (136 + hi) * 16 - 2176; lo: (128 + lo) - 128. q = 16 hi + lo, both planes exact.
              mma16816(tmp[nt], a0, a1, a2, a3, bf2_fma(marlin_w8_hi_bits(s0), 16.f, -2176.f),
                       bf2_fma(marlin_w8_hi_bits(s1), 16.f, -2176.f));
              mma16816(tmp[nt], a0, a1, a2, a3, bf2_fma(marlin_w8_lo_bits(s0), 1.f, -128.f),
                       bf2_fma(marlin_w8_lo_bits(s1), 1.f, -128.f));
            }
          }
        }
        // c0, c1 = (token gid, rows 2tig, 2tig + 1), c2, c3 = (token gid + 8, same rows)
        const int g = kc / G + gi;
        const float A0 = (sums && gid < NR) ? asum_s[gid * ngmax + g] : 0.f;
        const float A1 = (NB == 16 && sums && gid + 8 < NR) ? asum_s[(gid + 8) * ngmax + g] : 0.f;
#pragma unroll
        for (int nt = 0; nt < kNTW; ++nt) {
          const float4 so = *reinterpret_cast<const float4 *>(slot + nt * UB + WBYTES + 64 * gi + 16 * tig);
          acc[nt][0] = fmaf(so.x, tmp[nt][0], acc[nt][0]);
          acc[nt][1] = fmaf(so.z, tmp[nt][1], acc[nt][1]);
          acc[nt][2] = fmaf(so.x, tmp[nt][2], acc[nt][2]);
          acc[nt][3] = fmaf(so.z, tmp[nt][3], acc[nt][3]);
          if (sums) {
            acc[nt][0] = fmaf(so.y, A0, acc[nt][0]);
            acc[nt][1] = fmaf(so.w, A0, acc[nt][1]);
            acc[nt][2] = fmaf(so.y, A1, acc[nt][2]);
            acc[nt][3] = fmaf(so.w, A1, acc[nt][3]);
          }
        }
      }
      __syncwarp();  // every lane is done with this slot before a later issue overwrites it
    }
    if (!PERSIST) cp_async_wait<0>();  // red reuses the front of shared memory (nothing is in flight any more)
    __syncthreads();

    // Warp sums -> red [WK][RB][16], then added over wk in order into red[0].
#pragma unroll
    for (int nt = 0; nt < kNTW; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int row = wn * kNTW * kMarlinTileRows + nt * kMarlinTileRows + 2 * tig + e;
        red[(wk * RB + row) * 16 + gid] = acc[nt][e];
        red[(wk * RB + row) * 16 + gid + 8] = acc[nt][2 + e];
      }
    __syncthreads();
    for (int i = threadIdx.x; i < RB * 16; i += kThreads) {
      if ((i & 15) >= B) continue;
      float v = red[i];
#pragma unroll
      for (int w = 1; w < WK; ++w) v += red[w * RB * 16 + i];
      red[i] = v;
    }
    __syncthreads();
    bool out = true;
    if (S > 1) {  // the last of the S tiles of this row block to finish adds the slices' partials in slice order
      float *part = a.mws.part + (size_t)blk * S * RB * 16;
      for (int i = threadIdx.x; i < RB * 16; i += kThreads)
        if ((i & 15) < B) part[(size_t)sl * RB * 16 + i] = red[i];
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) last_s = atomicAdd(a.mws.cnt + blk, 1) == S - 1;
      __syncthreads();
      out = last_s;
      if (out) {
        __threadfence();
        for (int i = threadIdx.x; i < RB * 16; i += kThreads) {
          if ((i & 15) >= B) continue;
          float v = 0.f;
          for (int s0 = 0; s0 < S; s0 += 4) {  // four loads in flight, added in slice order
            float p4[4];
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) p4[kk] = s0 + kk < S ? __ldcg(part + (size_t)(s0 + kk) * RB * 16 + i) : 0.f;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
              if (s0 + kk < S) v += p4[kk];
          }
          red[i] = v;
        }
        if (threadIdx.x == 0) a.mws.cnt[blk] = 0;  // ready for the next launch (kernel boundaries order it)
        __syncthreads();
      }
    }
    if (out) {
      const int64_t row0 = (int64_t)blk * RB;
      if (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) {
        for (int i = threadIdx.x; i < (RB / 2) * B; i += kThreads) {
          const int p = i % (RB / 2), b = i / (RB / 2);
          const float v0 = red[(2 * p) * 16 + b], v1 = red[(2 * p + 1) * 16 + b];
          if (a.epi == GEMV_EPI_SWIGLU) epilogue_swiglu(a, (row0 + 2 * p) / 2, b, v0, v1);
          else epilogue_qkv_rope(a, row0 + 2 * p, b, v0, v1);
        }
      } else {
        for (int i = threadIdx.x; i < RB * B; i += kThreads) {
          const int r = i % RB, b = i / RB;
          epilogue_one(a, row0 + r, b, red[r * 16 + b]);
        }
      }
    }
    __syncthreads();  // red and act_s are free for the next tile
  }
}

// RMSNorm prologue as its own kernel (one block per token row): every block of the GEMV would otherwise re-read
// the whole fp32 row for its rstd. Same formula as gemv_parts.cuh: bf16(bf16r(x * rstd) * norm_w); the row's sum of
// squares in a fixed order (per-thread strided, warp xor tree, warps 0..7).
__global__ void __launch_bounds__(kThreads) marlin_norm_kernel(const GemvArgs a, __nv_bfloat16 *xn) {
  pdl_wait();
  pdl_trigger();
  __shared__ float part_s[kWarps];
  const int b = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t K = a.w.cols;
  const float *x = a.x + b * a.x_ld;
  float s = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += kThreads) s = fmaf(x[k], x[k], s);
  s = warp_sum(s);
  if (lane == 0) part_s[warp] = s;
  __syncthreads();
  float t = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) t += part_s[w];
  const float rstd = rsqrtf(t / (float)K + a.eps);
  for (int64_t k = threadIdx.x; k < K; k += kThreads)
    xn[b * K + k] = __float2bfloat16(bf16r(x[k] * rstd) * a.norm_w[k]);
}

// One warp per unit; the same bytes as marlin_pack_host (marlin_pack_host.hpp).
__global__ void __launch_bounds__(kThreads) marlin_pack_kernel(uint8_t *dst, const WMat w, const int ub) {
  pdl_wait();
  pdl_trigger();
  const int64_t ku = w.cols / kMarlinUnitCols, units = (w.rows / kMarlinTileRows) * ku;
  const int64_t unit = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (unit >= units) return;
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int64_t t = unit / ku, u = unit % ku, r = t * kMarlinTileRows + gid;
  const uint8_t *src = reinterpret_cast<const uint8_t *>(w.data);
  uint8_t *out = dst + unit * ub;
  const bool w4 = w.type == WT_W4;
  if (w4) {
    for (int wd = 0; wd < 4; ++wd) {
      uint32_t word = 0;
      for (int n = 0; n < 8; ++n) {
        const int64_t i = r * w.cols + u * kMarlinUnitCols + marlin_w4_col(tig, wd, n);
        const uint8_t byte = src[i >> 1];
        word |= uint32_t((i & 1) ? (byte >> 4) : (byte & 15)) << (4 * n);
      }
      *reinterpret_cast<uint32_t *>(out + 16 * lane + 4 * wd) = word;
    }
  } else {
    for (int j = 0; j < 8; ++j) {
      uint32_t word = 0;
      for (int i = 0; i < 4; ++i)
        word |= uint32_t(src[r * w.cols + u * kMarlinUnitCols + marlin_w8_col(tig, j, i)]) << (8 * i);
      *reinterpret_cast<uint32_t *>(out + 32 * lane + 4 * j) = word;
    }
  }
  const int ng = kMarlinUnitCols / w.group, wbytes = w4 ? 512 : 1024;
  const int64_t gpr = w.cols / w.group;
  for (int i = lane; i < 8 * ng; i += 32) {
    const int gi = i / 8, rr = i % 8;
    const int64_t g = (t * kMarlinTileRows + rr) * gpr + (u * kMarlinUnitCols) / w.group + gi;
    *reinterpret_cast<float2 *>(out + wbytes + 64 * gi + 8 * rr) = make_float2(w.scale[g], w.offset[g]);
  }
}

// The knobs (marlin.cuh): environment once, then whatever marlin_set_knobs set (the lab's sweep). Unset or out of
// range: 0 (-1 for compact), i.e. marlin_rule decides.
MarlinKnobs clamp_knobs(MarlinKnobs k) {
  if (k.ksu_max < 1 || k.ksu_max > kMarlinMaxKsu) k.ksu_max = 0;
  if (k.bps < 1 || k.bps > 8) k.bps = 0;
  if (k.stages < 2 || k.stages > kMarlinMaxStages) k.stages = 0;
  k.compact = k.compact < 0 ? -1 : k.compact ? 1 : 0;
  if (k.rb != 64 && k.rb != 128 && k.rb != kMarlinWideRows) k.rb = 0;
  k.persist = k.persist < 0 ? -1 : std::min(k.persist, 1 << 20);
  return k;
}
MarlinKnobs &knobs() {
  static MarlinKnobs k = [] {
    auto env = [](const char *n, int d) { const char *e = getenv(n); return e && *e ? atoi(e) : d; };
    MarlinKnobs v;
    v.ksu_max = env("QW_MARLIN_KSU", 0);
    v.bps = env("QW_MARLIN_BPS", 0);
    v.stages = env("QW_MARLIN_STAGES", 0);
    v.compact = env("QW_MARLIN_COMPACT", -1);
    v.rb = env("QW_MARLIN_RB", 0);
    v.persist = env("QW_MARLIN_PERSIST", -1);
    return clamp_knobs(v);
  }();
  return k;
}
MarlinLaunch g_last;
// marlin_smem_bytes (marlin_layout.hpp) is the kernel's layout with these constants
static_assert(kWarps == 8 && kNTW == 4, "marlin_smem_bytes assumes 8 warps of 4 tiles");

template <bool W4, int G, int NB, int WN>
const char *launch_t(const GemvArgs &a, const MarlinMat &m, const MarlinPlan &p, const MarlinRule &r, cudaStream_t s) {
  const int NR = r.compact ? a.batch : NB;
  const size_t limit = (size_t)smem_optin_bytes();
  // a ring depth that does not fit shared memory is lowered to fit
  int stages = r.stages;
  while (stages > 2 && marlin_smem_bytes(p.ksu, W4, G, NR, stages) > limit) --stages;
  size_t smem = marlin_smem_bytes(p.ksu, W4, G, NR, stages);
  if (smem > limit) return nullptr;  // a knob slice too wide for shared memory: the simple kernels run
  auto kern = marlin_gemv_kernel<W4, G, NB, WN, false>;
  static SmemOptIn opt_in, opt_in_p;  // per instantiation and device: the opt-in above 48 KB (not a stream operation)
  int grid = p.n_blk * p.S;
  bool persistent = false;
  if constexpr (WN == 2) {
    if (r.persist && smem + kMarlinRedBytes <= limit) {  // as many blocks as fit, each walking a tile range
      auto kern_p = marlin_gemv_kernel<W4, G, NB, 2, true>;
      opt_in_p(kern_p, smem + kMarlinRedBytes);
      // persist 1: the resident blocks of every SM (a host query, not a stream operation); N >= 2: N blocks (the
      // lab's uneven tile ranges on small matrices)
      int cap = r.persist;
      if (cap == 1) {
        QWC_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&cap, kern_p, kThreads, smem + kMarlinRedBytes));
        cap *= (int)sm_count();
      }
      if (cap > 0 && cap < grid) {
        grid = cap;
        smem += kMarlinRedBytes;
        launch(kern_p, grid, kThreads, smem, s, a, m, p.ksu, p.S, stages, r.compact ? 1 : 0);
        persistent = true;
      }
    }
  }
  if (!persistent) {
    opt_in(kern, smem);
    launch(kern, grid, kThreads, smem, s, a, m, p.ksu, p.S, stages, r.compact ? 1 : 0);
  }
  g_last = {p.S, p.ksu, stages, grid, r.compact ? 1 : 0, p.rb, W4 && m.zero_point ? 1 : 0, smem};
  static const char *names[2][2] = {{"gemv_marlin_w8_b8", "gemv_marlin_w8_b16"}, {"gemv_marlin_w4_b8", "gemv_marlin_w4_b16"}};
  return names[W4 ? 1 : 0][NB == 16 ? 1 : 0];
}

template <bool W4, int NB, int WN>
const char *launch_g(const GemvArgs &a, const MarlinMat &m, const MarlinPlan &p, const MarlinRule &r, cudaStream_t s) {
  switch (m.group) {
    case 16: return launch_t<W4, 16, NB, WN>(a, m, p, r, s);
    case 32: return launch_t<W4, 32, NB, WN>(a, m, p, r, s);
    case 64: return launch_t<W4, 64, NB, WN>(a, m, p, r, s);
    default: return launch_t<W4, 128, NB, WN>(a, m, p, r, s);
  }
}
template <bool W4, int NB>
const char *launch_rb(const GemvArgs &a, const MarlinMat &m, const MarlinPlan &p, const MarlinRule &r, cudaStream_t s) {
  switch (p.rb) {
    case 128: return launch_g<W4, NB, 4>(a, m, p, r, s);
    case kMarlinWideRows: return launch_g<W4, NB, 8>(a, m, p, r, s);
    default: return launch_g<W4, NB, 2>(a, m, p, r, s);
  }
}

}  // namespace

bool marlin_packable(const WMat &w) {
  return (w.type == WT_W4 || w.type == WT_W8) && w.rows > 0 && w.rows % kMarlinBlockRows == 0 &&
         w.cols > 0 && w.cols % kMarlinUnitCols == 0 && marlin_group_ok(w.group);
}
size_t marlin_packed_bytes(const WMat &w) {
  if (!marlin_packable(w)) return 0;
  return (size_t)(w.rows / kMarlinTileRows) * (w.cols / kMarlinUnitCols) * marlin_unit_bytes(w.type == WT_W4, w.group);
}
MarlinRule marlin_knobs_for(int64_t rows, int64_t cols, int32_t type, int32_t group) {
  const MarlinKnobs &k = knobs();
  MarlinRule r = marlin_rule(rows, cols, sm_count(), type == WT_W4, group, (size_t)smem_optin_bytes());
  if (k.ksu_max) r.ksu_max = k.ksu_max;
  if (k.bps) r.bps = k.bps;
  if (k.stages) r.stages = k.stages;
  if (k.compact >= 0) r.compact = k.compact;
  if (k.rb) r.rb = k.rb;
  if (k.persist >= 0) r.persist = k.persist;
  return r;
}
MarlinPlan marlin_plan_for(int64_t rows, int64_t cols, int32_t type, int32_t group) {
  const MarlinRule r = marlin_knobs_for(rows, cols, type, group);
  return marlin_plan(rows, cols, sm_count(), r.ksu_max, r.bps, r.rb);
}
MarlinKnobs marlin_knobs() { return knobs(); }
MarlinKnobs marlin_set_knobs(const MarlinKnobs &k) { return knobs() = clamp_knobs(k); }
MarlinLaunch marlin_last_launch() { return g_last; }

MarlinMat launch_marlin_pack(const WMat &w, uint8_t *dst, cudaStream_t s) {
  if (!marlin_packable(w)) throw CudaError("launch_marlin_pack: matrix not packable");
  MarlinMat m;
  m.data = dst;
  m.rows = w.rows;
  m.cols = w.cols;
  m.type = w.type;
  m.group = w.group;
  m.unit_bytes = marlin_unit_bytes(w.type == WT_W4, w.group);
  const int64_t units = (w.rows / kMarlinTileRows) * (w.cols / kMarlinUnitCols);
  launch(marlin_pack_kernel, ceil_div(units, kWarps), kThreads, 0, s, dst, w, m.unit_bytes);
  QWC_LAUNCH_CHECK("launch_marlin_pack");
  // has_offset: whether any offset is not a zero (then the kernel adds offset * group sum of the activations);
  // zero_point: W4 whose every offset is an exact integer zero point (marlin_zero_point): no sums needed
  const int64_t ng = w.rows * (w.cols / w.group);
  std::vector<float> off((size_t)ng), sc((size_t)ng);
  QWC_CHECK(cudaMemcpyAsync(off.data(), w.offset, ng * 4, cudaMemcpyDeviceToHost, s));
  QWC_CHECK(cudaMemcpyAsync(sc.data(), w.scale, ng * 4, cudaMemcpyDeviceToHost, s));
  QWC_CHECK(cudaStreamSynchronize(s));
  bool zp = w.type == WT_W4;
  for (int64_t i = 0; i < ng; ++i) {
    if (off[(size_t)i] != 0.f) m.has_offset = 1;
    if (zp && !marlin_zero_point(sc[(size_t)i], off[(size_t)i])) zp = false;
  }
  m.zero_point = zp && m.has_offset ? 1 : 0;
  return m;
}

const char *launch_gemv_marlin(const GemvArgs &a, cudaStream_t s) {
  const MarlinMat &m = *a.mw;
  if (!m.data || m.rows != a.w.rows || m.cols != a.w.cols || a.batch < 1 || a.batch > 16) return nullptr;
  const MarlinRule r = marlin_knobs_for(m.rows, m.cols, m.type, m.group);
  const MarlinPlan p = marlin_plan(m.rows, m.cols, sm_count(), r.ksu_max, r.bps, r.rb);
  if (p.S > 1 && (!a.mws.part || p.part_bytes() > a.mws.part_bytes || !a.mws.cnt || p.n_blk > a.mws.cnt_n)) return nullptr;
  GemvArgs b = a;
  if (a.pro == GEMV_PRO_NORM) {
    if (!a.mws.xn || a.mws.xn_elems < (int64_t)a.batch * m.cols) return nullptr;
    auto *xn = reinterpret_cast<__nv_bfloat16 *>(a.mws.xn);
    launch(marlin_norm_kernel, a.batch, kThreads, 0, s, a, xn);
    b.pro = GEMV_PRO_BF16;
    b.act = xn;
    b.act_ld = m.cols;
  } else if ((a.act_ld % 8) != 0 || (reinterpret_cast<uintptr_t>(a.act) & 15) != 0) {
    return nullptr;
  }
  const bool w4 = m.type == WT_W4, b16 = a.batch > 8;
  const char *name = w4 ? (b16 ? launch_rb<true, 16>(b, m, p, r, s) : launch_rb<true, 8>(b, m, p, r, s))
                        : (b16 ? launch_rb<false, 16>(b, m, p, r, s) : launch_rb<false, 8>(b, m, p, r, s));
  if (!name) return nullptr;
  QWC_LAUNCH_CHECK("launch_gemv_marlin");
  return name;
}

}  // namespace qwc
