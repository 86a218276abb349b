// gemv.cu — decode GEMV kernels (see gemv.cuh).
//
// Design (bandwidth-bound: every weight byte is read once per step):
//  * 256 threads = 8 warps; each warp owns R consecutive rows; a lane reads 8 weights (16 bytes for bf16)
//    per load, the warp reads 512 contiguous bytes of a row per load instruction, and each lane keeps
//    R*U independent loads in flight before the first FMA (8 x 16 B = 128 B per lane).
//  * The activations (batch x K-tile, bf16) are staged once per block in shared memory; with R = 4 a block
//    covers 32 rows, so the staging traffic is 1/32 of the weight traffic at batch 1.
//  * Warp-level reduction by xor shuffles; every lane ends with all sums and lane i writes value i.
//  * fp32 accumulation; weights are converted exactly (bf16 -> fp32 is a shift).
//  * K-split inside the block (ks = 1, 2, 4, 8 warps per row group; R = 2, any batch): matrices with few rows
//    (0.5B/1.5B qkv, o_proj, down; 7B o/down) get kWarps/ks * R rows per block, so the grid has
//    >= 2 blocks per SM; the ks partial sums of a row are added in shared memory in a fixed order
//    (deterministic) and the fused epilogue runs once, in the first warp of the row group.
#include "gemv.cuh"

#include <algorithm>
#include <cstdlib>

namespace qwc {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kSmemBytes = 46 * 1024;  // + static smem must stay <= 48 KB (no opt-in)
int g_force_r = 0;
int g_force_ks = 0;

int sm_count() {
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

template <int WT, int NB, int R, int U, bool KS>
__global__ void __launch_bounds__(kThreads) gemv_vec_kernel(const GemvArgs a, const int kt, const int ks_arg) {
  const int ks = KS ? ks_arg : 1;  // KS = false: the K-split code folds away (the original kernel)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *act_s = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
  __shared__ float rstd_s[16];
  constexpr int kRed = KS ? R * NB : 1;
  __shared__ float red_s[kWarps][kRed];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows, cols = a.w.cols;
  // warp = rgroup * ks + kpart: row group rgroup (R rows), K part kpart (chunks kpart*32 + lane + 32*ks*i)
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t row0 = ((int64_t)blockIdx.x * (kWarps / ks) + rgroup) * R;
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;
  const bool vec = (a.act_ld % 8) == 0 && (kt % 8) == 0;

  int64_t rowc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rowc[r] = min(row0 + r, rows - 1);

  // Issue the first weight loads before the prologue (norm + staging) so that their latency overlaps it.
  Chunk<WT> wc[R][U];
  {
    const int nchunks0 = (int)(min((int64_t)kt, cols) / 8);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = cbase + cstride * u;
      if (c < nchunks0) {
#pragma unroll
        for (int r = 0; r < R; ++r) wc[r][u] = load_chunk<WT>(a.w, rowc[r], 8 * c);
      }
    }
  }
  bool prefetched = true;
  pdl_wait();  // the activations below come from the previous kernel
  pdl_trigger();

  norm_rstd<NB>(a, rstd_s);

  float acc[R][NB];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;

  for (int64_t k0 = 0; k0 < cols; k0 += kt) {
    const int klen = (int)min((int64_t)kt, cols - k0);
    if (k0 > 0) __syncthreads();
    stage_tile<NB>(a, act_s, rstd_s, k0, klen, kt, vec);
    __syncthreads();
    if (row0 >= rows) continue;
    const int nchunks = klen / 8;
    // Chunk -> (kpart, lane) by the global chunk index (k0 / 8 + c) mod cstride, whatever the tile length kt
    // (which shrinks with the batch): every row is summed in the same order at every batch size.
    const int cfirst = (int)((cbase - (k0 / 8) % cstride + cstride) % cstride);
    for (int c0 = cfirst; c0 < nchunks; c0 += cstride * U) {
      if (!prefetched) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int c = c0 + cstride * u;
          if (c < nchunks) {
#pragma unroll
            for (int r = 0; r < R; ++r) wc[r][u] = load_chunk<WT>(a.w, rowc[r], k0 + 8 * c);
          }
        }
      }
      prefetched = false;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + cstride * u;
        if (c < nchunks) {
          float wf[R][8];
#pragma unroll
          for (int r = 0; r < R; ++r) unpack_chunk<WT>(wc[r][u], wf[r]);
#pragma unroll
          for (int b = 0; b < NB; ++b) {
            const uint4 av = *reinterpret_cast<const uint4 *>(act_s + b * kt + 8 * c);
            const float af[8] = {bf16_lo(av.x), bf16_hi(av.x), bf16_lo(av.y), bf16_hi(av.y),
                                 bf16_lo(av.z), bf16_hi(av.z), bf16_lo(av.w), bf16_hi(av.w)};
#pragma unroll
            for (int r = 0; r < R; ++r) {
              float s = acc[r][b];
#pragma unroll
              for (int e = 0; e < 8; ++e) s = fmaf(wf[r][e], af[e], s);
              acc[r][b] = s;
            }
          }
        }
      }
    }
    prefetched = false;  // the prefetch covered the first K tile only (also when this lane had no chunk in it)
  }
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

// Generic path (any cols, any alignment): one warp per row (pair of rows for SWIGLU), scalar weight loads.
template <int NB>
__global__ void __launch_bounds__(kThreads) gemv_generic_kernel(const GemvArgs a) {
  pdl_wait();
  pdl_trigger();
  __shared__ float rstd_s[16];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows, cols = a.w.cols;
  norm_rstd<NB>(a, rstd_s);
  const int per = (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) ? 2 : 1;
  const int64_t row0 = ((int64_t)blockIdx.x * kWarps + warp) * per;
  if (row0 >= rows) return;
  float acc[2][NB];
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
  for (int64_t k = lane; k < cols; k += 32) {
    float av[NB];
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      float v = 0.f;
      if (b < a.batch) {
        if (a.pro == GEMV_PRO_BF16) v = __bfloat162float(a.act[b * a.act_ld + k]);
        else v = bf16r(bf16r(a.x[b * a.x_ld + k] * rstd_s[b]) * a.norm_w[k]);
      }
      av[b] = v;
    }
    for (int r = 0; r < per; ++r) {
      const float wv = load_weight(a.w, min(row0 + r, rows - 1), k);
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[r][b] = fmaf(wv, av[b], acc[r][b]);
    }
  }
  for (int r = 0; r < per; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = warp_sum(acc[r][b]);
  if (lane != 0) return;
  for (int b = 0; b < a.batch && b < NB; ++b) {
    if (per == 2) {
      if (row0 + 1 < rows) {
        if (a.epi == GEMV_EPI_SWIGLU) epilogue_swiglu(a, row0 / 2, b, acc[0][b], acc[1][b]);
        else epilogue_qkv_rope(a, row0, b, acc[0][b], acc[1][b]);
      }
    } else {
      epilogue_one(a, row0, b, acc[0][b]);
    }
  }
}

// K-split factor: the smallest ks in {1, 2, 4, 8} that gives >= 2 blocks per SM with R = 2 (8 when none
// does). It depends on the matrix alone, never on the batch: ks and the chunk assignment fix the order in
// which a row is summed, so a sequence decodes to the same bits alone or in a batch of 16 (batch invariance).
// QW_GEMV_KSPLIT=1 (or gemv_force_ksplit(1)) turns it off for A/B.
int pick_ks(int64_t rows) {
  if (g_force_ks) return g_force_ks;
  static int env = -1;
  if (env < 0) {
    const char *e = getenv("QW_GEMV_KSPLIT");
    env = e ? atoi(e) : 0;
    if (env != 1 && env != 2 && env != 4 && env != 8) env = 0;
  }
  if (env) return env;
  // >= 2 blocks per SM; with 4 resident blocks per SM (64 registers x 256 threads) every matrix of the
  // Qwen2.5 0.5B/1.5B/7B shapes then runs in a single wave (e.g. 1.5B down: ks 4, 384 blocks; 0.5B o_proj: ks 8, 448)
  const int64_t target = 2 * (int64_t)sm_count();
  for (int ks = 1; ks < kWarps; ks *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / ks) * 2) >= target) return ks;
  return kWarps;
}

template <int WT, int NB, int R>
int launch_vec(const GemvArgs &a, int kt, cudaStream_t s) {
  constexpr int U = (R >= 4 || NB >= 8) ? 2 : 4;
  const int ks = pick_ks(a.w.rows);
  const int64_t rows_per_block = (int64_t)(kWarps / ks) * R;
  const int grid = ceil_div(a.w.rows, rows_per_block);
  const size_t smem = (size_t)NB * kt * sizeof(__nv_bfloat16);
  if constexpr (R == 2) {
    if (ks > 1) {
      launch(gemv_vec_kernel<WT, NB, R, U, true>, grid, kThreads, smem, s, a, kt, ks);
      return ks;
    }
  }
  launch(gemv_vec_kernel<WT, NB, R, U, false>, grid, kThreads, smem, s, a, kt, 1);
  return 1;
}

const char *variant_name(int R, int ks) {
  static const char *n2[4] = {"gemv_vec_r2", "gemv_vec_r2k2", "gemv_vec_r2k4", "gemv_vec_r2k8"};
  static const char *n4[4] = {"gemv_vec_r4", "gemv_vec_r4k2", "gemv_vec_r4k4", "gemv_vec_r4k8"};
  const int i = ks >= 8 ? 3 : ks >= 4 ? 2 : ks >= 2 ? 1 : 0;
  return R == 4 ? n4[i] : n2[i];
}

template <int WT, int NB>
const char *dispatch_r(const GemvArgs &a, int kt, cudaStream_t s) {
  const int64_t blocks_r4 = (a.w.rows + kWarps * 4 - 1) / (kWarps * 4);
  // R = 4 only where no K-split is needed (R changes the rows per block, not the order of a row's sum)
  const bool big = (g_force_r ? g_force_r == 4 : blocks_r4 >= 2 * sm_count()) && pick_ks(a.w.rows) == 1;
  if constexpr (NB <= 4) {
    if (big) return variant_name(4, launch_vec<WT, NB, 4>(a, kt, s));
  }
  return variant_name(2, launch_vec<WT, NB, 2>(a, kt, s));
}

template <int WT>
const char *dispatch_nb(const GemvArgs &a, int kt, cudaStream_t s) {
  if (a.batch <= 1) return dispatch_r<WT, 1>(a, kt, s);
  if (a.batch <= 2) return dispatch_r<WT, 2>(a, kt, s);
  if (a.batch <= 4) return dispatch_r<WT, 4>(a, kt, s);
  if (a.batch <= 8) return dispatch_r<WT, 8>(a, kt, s);
  return dispatch_r<WT, 16>(a, kt, s);
}

int nb_of(int batch) { return batch <= 1 ? 1 : batch <= 2 ? 2 : batch <= 4 ? 4 : batch <= 8 ? 8 : 16; }

}  // namespace

void gemv_force_rows_per_warp(int r) { g_force_r = r; }
void gemv_force_ksplit(int ks) { g_force_ks = (ks == 1 || ks == 2 || ks == 4 || ks == 8) ? ks : 0; }

const char *launch_gemv(const GemvArgs &a, cudaStream_t s) {
  if (a.batch < 1 || a.batch > 16) throw CudaError("launch_gemv: batch must be 1..16");
  if ((a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) && (a.w.rows % 2) != 0)
    throw CudaError("launch_gemv: SWIGLU / QKV_ROPE need even rows");
  const int64_t cols = a.w.cols;
  const bool vec_ok = (cols % 8) == 0 && (a.pro == GEMV_PRO_NORM || (a.act_ld % 8) == 0) &&
                      ((a.w.type != WT_W8 && a.w.type != WT_W4) || (a.w.group % 8) == 0);
  const char *name;
  if (vec_ok) {
    const int nb = nb_of(a.batch);
    int kt = (int)std::min<int64_t>(cols, (kSmemBytes / (nb * 2)) / 8 * 8);
    switch (a.w.type) {
      case WT_BF16: name = dispatch_nb<WT_BF16>(a, kt, s); break;
      case WT_F16: name = dispatch_nb<WT_F16>(a, kt, s); break;
      case WT_F32: name = dispatch_nb<WT_F32>(a, kt, s); break;
      case WT_W8: name = dispatch_nb<WT_W8>(a, kt, s); break;
      case WT_W4: name = dispatch_nb<WT_W4>(a, kt, s); break;
      default: throw CudaError("launch_gemv: unknown weight type");
    }
  } else {
    const int per = (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) ? 2 : 1;
    const int grid = ceil_div(a.w.rows / per, kWarps);
    switch (nb_of(a.batch)) {
      case 1: launch(gemv_generic_kernel<1>, grid, kThreads, 0, s, a); break;
      case 2: launch(gemv_generic_kernel<2>, grid, kThreads, 0, s, a); break;
      case 4: launch(gemv_generic_kernel<4>, grid, kThreads, 0, s, a); break;
      case 8: launch(gemv_generic_kernel<8>, grid, kThreads, 0, s, a); break;
      default: launch(gemv_generic_kernel<16>, grid, kThreads, 0, s, a); break;
    }
    name = "gemv_generic";
  }
  QWC_LAUNCH_CHECK("launch_gemv");
  return name;
}

}  // namespace qwc
