// attn_decode_dev.cu — see attn_decode_dev.cuh (kernel-lab variant; checked and timed by `qwlab attn`).
#include "attn_decode_dev.cuh"

#include <algorithm>

namespace qwc {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;
constexpr int kDecWarps = 4;
constexpr int kGMax = 8;
constexpr int kMinChunk = kDecWarps * 32;  // one 32-key tile per warp at least
constexpr int kMaxSplit = 128;             // smem weights of the combine
constexpr int kVB = 16;                    // V rows in flight per lane

template <int E> struct VRaw;
template <> struct VRaw<4> { using T = uint2; };
template <> struct VRaw<2> { using T = uint32_t; };
template <> struct VRaw<1> { using T = uint16_t; };

// GM: query heads per block (1: one block per (split, query head) -- the shortest per-warp chain, K/V of a kv
// head re-read from L2 by its G blocks; 8: one block serves all G heads of a kv head). Per head the arithmetic
// is the same either way (bit-identical outputs).
template <int D, int GM>
__global__ void __launch_bounds__(kDecWarps * 32) decode_attn_dev_kernel(const DecodeAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  constexpr int E = D / 32;  // dims per lane in PV
  using VT = typename VRaw<E>::T;
  __shared__ __align__(16) float q_s[GM][D];
  __shared__ float wm_s[kDecWarps][GM], wl_s[kDecWarps][GM];
  __shared__ __align__(16) float wo_s[kDecWarps][GM][D];
  __shared__ float fw_s[GM][kMaxSplit];
  __shared__ float L_s[GM];
  __shared__ int last_s;

  const int Gkv = a.n_heads / a.n_kv;             // query heads per kv head
  const int ngroups = (Gkv + GM - 1) / GM;         // head groups per kv head (grid.y = n_kv * ngroups)
  const int split = blockIdx.x, kvh = blockIdx.y / ngroups, b = blockIdx.z;
  const int h0 = kvh * Gkv + (blockIdx.y % ngroups) * GM;  // first query head of this block
  const int G = min(GM, Gkv - (h0 - kvh * Gkv));             // query heads of this block
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float scale = rsqrtf((float)D) * kLog2e;
  // Latency: the length, the slot and the G query rows are independent loads, issued together (one memory
  // round trip instead of one per loop iteration); q rows are read 8 bf16 (16 bytes) per thread.
  const int len = a.kv_len[b];
  const int64_t slot = a.slot[b];
  const __nv_bfloat16 *qrow = a.q + (int64_t)b * a.n_heads * D + (int64_t)h0 * D;  // G rows of D
  if ((reinterpret_cast<uintptr_t>(qrow) & 15) == 0) {
    for (int i = threadIdx.x; i < G * D / 8; i += blockDim.x) {
      const uint4 v = reinterpret_cast<const uint4 *>(qrow)[i];
      const int g = (8 * i) / D, e = 8 * i - g * D;
      const float f[8] = {bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y),
                          bf16_lo(v.z), bf16_hi(v.z), bf16_lo(v.w), bf16_hi(v.w)};
#pragma unroll
      for (int j = 0; j < 8; ++j) q_s[g][e + j] = f[j] * scale;
    }
  } else {
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) q_s[i / D][i % D] = __bfloat162float(qrow[i]) * scale;
  }
  int chunk = (len + a.n_split - 1) / a.n_split;
  chunk = max(kMinChunk, (chunk + 31) / 32 * 32);
  const int nact = max(1, (len + chunk - 1) / chunk);  // active splits (<= n_split)
  if (split >= nact) return;                           // empty split (block-uniform): nothing to read, not counted
  __syncthreads();

  const int t0 = split * chunk, t1 = min(len, t0 + chunk);

  float m[GM], l[GM], o[GM][E];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = kNegBig; l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) o[g][e] = 0.f;
  }
  const __nv_bfloat16 *kbase = a.kcache + (slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;
  const __nv_bfloat16 *vbase = a.vcache + (slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;

  for (int tile = t0 + warp * 32; tile < t1; tile += kDecWarps * 32) {
    const int t = tile + lane;
    const bool valid = t < t1;
    const int nk = min(32, t1 - tile);
    // QK: this lane's key row; the first kVB V rows of the tile are loaded with it (they do not depend on the
    // scores), so their latency hides behind QK and the softmax instead of following them
    uint4 kr[D / 8];
    const uint4 *kp = reinterpret_cast<const uint4 *>(kbase + (int64_t)(valid ? t : t0) * D);
#pragma unroll
    for (int i = 0; i < D / 8; ++i) kr[i] = kp[i];
    VT vr0[kVB];
#pragma unroll
    for (int jj = 0; jj < kVB; ++jj) vr0[jj] = *reinterpret_cast<const VT *>(vbase + (int64_t)(tile + min(jj, nk - 1)) * D + lane * E);
    float s[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      float acc = 0.f;
      if (g < G) {
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
          const float4 qa = *reinterpret_cast<const float4 *>(&q_s[g][8 * i]);
          const float4 qb = *reinterpret_cast<const float4 *>(&q_s[g][8 * i + 4]);
          acc = fmaf(qa.x, bf16_lo(kr[i].x), acc); acc = fmaf(qa.y, bf16_hi(kr[i].x), acc);
          acc = fmaf(qa.z, bf16_lo(kr[i].y), acc); acc = fmaf(qa.w, bf16_hi(kr[i].y), acc);
          acc = fmaf(qb.x, bf16_lo(kr[i].z), acc); acc = fmaf(qb.y, bf16_hi(kr[i].z), acc);
          acc = fmaf(qb.z, bf16_lo(kr[i].w), acc); acc = fmaf(qb.w, bf16_hi(kr[i].w), acc);
        }
      }
      s[g] = valid ? acc : kNegBig;
    }
    // online softmax per head
    float p[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      if (g < G) {
        const float mt = warp_max(s[g]);
        const float mn = fmaxf(m[g], mt);
        const float alpha = exp2f(m[g] - mn);
        p[g] = valid ? exp2f(s[g] - mn) : 0.f;
        l[g] = l[g] * alpha + warp_sum(p[g]);
        m[g] = mn;
#pragma unroll
        for (int e = 0; e < E; ++e) o[g][e] *= alpha;
      } else {
        p[g] = 0.f;
      }
    }
    // PV: lane owns dims lane*E .. lane*E+E-1; kVB rows loaded before their FMAs (same key order as before)
#pragma unroll
    for (int j0 = 0; j0 < 32; j0 += kVB) {
      if (j0 < nk) {  // warp-uniform
        VT vr[kVB];
#pragma unroll
        for (int jj = 0; jj < kVB; ++jj) {
          const int j = min(j0 + jj, nk - 1);  // clamped to a key of this tile; unused when j0 + jj >= nk
          vr[jj] = j0 == 0 ? vr0[jj] : *reinterpret_cast<const VT *>(vbase + (int64_t)(tile + j) * D + lane * E);
        }
#pragma unroll
        for (int jj = 0; jj < kVB; ++jj) {
          if (j0 + jj < nk) {  // warp-uniform
            float vf[E];
            if constexpr (E == 4) {
              vf[0] = bf16_lo(vr[jj].x); vf[1] = bf16_hi(vr[jj].x); vf[2] = bf16_lo(vr[jj].y); vf[3] = bf16_hi(vr[jj].y);
            } else if constexpr (E == 2) {
              vf[0] = bf16_lo(vr[jj]); vf[1] = bf16_hi(vr[jj]);
            } else {
              vf[0] = __uint_as_float((uint32_t)vr[jj] << 16);
            }
#pragma unroll
            for (int g = 0; g < GM; ++g) {
              if (g < G) {
                const float pj = __shfl_sync(0xffffffffu, p[g], j0 + jj);
#pragma unroll
                for (int e = 0; e < E; ++e) o[g][e] = fmaf(pj, vf[e], o[g][e]);
              }
            }
          }
        }
      }
    }
  }
  // combine the warps of this block
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (lane == 0) { wm_s[warp][g] = m[g]; wl_s[warp][g] = l[g]; }
#pragma unroll
    for (int e = 0; e < E; ++e) wo_s[warp][g][lane * E + e] = o[g][e];
  }
  __syncthreads();
  const int NS = a.n_split;                                             // workspace stride
  float *ws_o = a.ws;                                                   // [B][nH][NS][D]
  float *ws_ml = a.ws + (size_t)a.batch * a.n_heads * NS * D;          // [B][nH][NS][2]
  // combine the warps of this block; one active split: this block is the combine (no workspace, no counter)
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, e = i - g * D;
    float M = kNegBig;
    for (int w = 0; w < kDecWarps; ++w) M = fmaxf(M, wm_s[w][g]);
    float O = 0.f, L = 0.f;
    for (int w = 0; w < kDecWarps; ++w) {
      const float f = exp2f(wm_s[w][g] - M);
      O += wo_s[w][g][e] * f;
      L += wl_s[w][g] * f;
    }
    const int h = h0 + g;
    if (nact == 1) {  // block-uniform
      a.out[(size_t)b * a.n_heads * D + h * D + e] = __float2bfloat16(O / L);
      continue;
    }
    ws_o[(((size_t)b * a.n_heads + h) * NS + split) * D + e] = O;
    if (e == 0) {
      ws_ml[(((size_t)b * a.n_heads + h) * NS + split) * 2 + 0] = M;
      ws_ml[(((size_t)b * a.n_heads + h) * NS + split) * 2 + 1] = L;
    }
  }
  if (nact == 1) return;
  // the last active block of (b, head group) combines the splits
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const int prev = atomicAdd(&a.counters[b * a.n_heads + h0], 1);  // counters: [B][nH]
    last_s = prev == nact - 1;
  }
  __syncthreads();
  if (!last_s) return;
  __threadfence();
  // split weights: one warp per query head, lanes over splits (L2 loads, bypassing L1)
  for (int g = warp; g < G; g += kDecWarps) {
    const float *ml = ws_ml + ((size_t)b * a.n_heads + h0 + g) * NS * 2;
    float M = kNegBig;
    for (int sp = lane; sp < nact; sp += 32) M = fmaxf(M, __ldcg(ml + 2 * sp));
    M = warp_max(M);
    float L = 0.f;
    for (int sp = lane; sp < nact; sp += 32) {
      const float f = exp2f(__ldcg(ml + 2 * sp) - M);
      fw_s[g][sp] = f;
      L += __ldcg(ml + 2 * sp + 1) * f;
    }
    L = warp_sum(L);
    if (lane == 0) L_s[g] = L;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, e = i - g * D;
    const int h = h0 + g;
    const float *os = ws_o + ((size_t)b * a.n_heads + h) * NS * D + e;
    float O = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < nact; ++sp) O = fmaf(__ldcg(os + (size_t)sp * D), fw_s[g][sp], O);
    a.out[(size_t)b * a.n_heads * D + h * D + e] = __float2bfloat16(O / L_s[g]);
  }
  if (threadIdx.x == 0) a.counters[b * a.n_heads + h0] = 0;
}

}  // namespace

int32_t decode_attn_dev_pick_split(int32_t n_heads, int32_t n_kv, int heads_per_block, int32_t max_ctx, int32_t sms) {
  const int blocks = heads_per_block == 1 ? n_heads : n_kv;
  const int by_work = std::max(1, (max_ctx + kMinChunk - 1) / kMinChunk);
  const int by_sms = std::max(1, (2 * sms + blocks - 1) / blocks);
  return std::max(1, std::min(kMaxSplit, std::min(by_work, by_sms)));
}

const char *launch_decode_attention_dev(const DecodeAttnArgs &a, int heads_per_block, cudaStream_t s) {
  const int G = a.n_heads / a.n_kv;
  if (a.n_split < 1 || a.n_split > kMaxSplit) throw CudaError("decode attention (dev): n_split must be 1..128");
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 128) throw CudaError("decode attention (dev): head_dim must be 32, 64 or 128");
  const bool per_head = heads_per_block == 1;
  if (!per_head && G > kGMax) throw CudaError("decode attention (dev): more than 8 query heads per kv head need heads_per_block 1");
  dim3 grid(a.n_split, a.n_kv * (per_head ? G : 1), a.batch);
  const int D = a.head_dim;
  if (per_head) {
    if (D == 64) launch(decode_attn_dev_kernel<64, 1>, grid, kDecWarps * 32, 0, s, a);
    else if (D == 128) launch(decode_attn_dev_kernel<128, 1>, grid, kDecWarps * 32, 0, s, a);
    else launch(decode_attn_dev_kernel<32, 1>, grid, kDecWarps * 32, 0, s, a);
  } else {
    if (D == 64) launch(decode_attn_dev_kernel<64, kGMax>, grid, kDecWarps * 32, 0, s, a);
    else if (D == 128) launch(decode_attn_dev_kernel<128, kGMax>, grid, kDecWarps * 32, 0, s, a);
    else launch(decode_attn_dev_kernel<32, kGMax>, grid, kDecWarps * 32, 0, s, a);
  }
  QWC_LAUNCH_CHECK("launch_decode_attention_dev");
  return per_head ? "attn_decode_dev_h1" : "attn_decode_dev_h8";
}

}  // namespace qwc
