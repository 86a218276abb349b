// persistent_kernels.cu — the persistent decode kernel (persistent.cuh): one block per SM walks the task list of
// persistent_plan.hpp. Compile-checked only (no GPU when it was written); `qwlab persistent` and
// test/gpu/persistent.test.ts are its first runs.
//
// Per task: (1) thread 0 issues the L2 prefetch of the task's and the next task's weights (prefetch_targets), then
// spins on the task's input counter with ld.acquire.gpu; (2) __syncthreads hands the acquire to the block; (3) the
// task runs; (4) __syncthreads, then thread 0 fences (__threadfence: every thread's stores of the task are ordered
// before the signal, as cooperative groups' grid.sync does) and adds 1 to the task's counter. Attention splits end
// otherwise (attn_arrive): the last active split of a (sequence, kv head) to arrive combines them and signals.
// Inputs written by other blocks are read with ld.global.cg (L2) or after the acquire (plain loads in the shared
// norm/stage helpers: the acquire + bar.sync order them, PTX memory model); weights with ld.global.nc (read-only
// for the whole kernel).
// The math is the graph path's: the RMSNorm prologue and staging (gemv_parts.cuh norm_rstd / stage_tile), the
// epilogues (epilogue_qkv_rope, epilogue_swiglu, epilogue_one), split-KV attention in the log2 domain with fp32
// partials. Row sums are in another order than gemv.cu's (a warp per row pair, lanes over K in 8-element chunks, a
// K split across warps where a tile has fewer row pairs than warps): logits within bf16 noise of the graph path,
// not bitwise. Every order is fixed by the plan, which depends on the model and grid, never on the batch.
// Variants (PersistArgs, persistent_options): QW_PERSIST_RING=1 has (3) read the GEMV weights from a shared-memory
// ring of bulk copies, its first stages issued in (1) before the wait, instead of register loads (persistent_ring.cuh:
// the kRing instantiation; the same bits); (1)'s L2 prefetch runs only with QW_PERSIST_PREFETCH=1 (it cost 4 %).
#include "attn_rows.cuh"
#include "gemv_parts.cuh"
#include "persistent.cuh"
#include "persistent_ring.cuh"

namespace qwc {
namespace {

using namespace qw::persist;
using bf16 = __nv_bfloat16;
constexpr int kWarps = kBlockWarps, kThreads = kWarps * 32;
constexpr int kGMax = 8;  // query heads per kv head (persistent_refusal)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;
// The static shared memory this file declares (persistent_decode_kernel: rstd_s, red_s; norm_rstd's part_s [8][16];
// attn_split: q_s, wm_s, wl_s, wo_s), which the plan's smem_static_bound must cover (the refusal is computed there).
constexpr int64_t declared_static_smem(int D) {
  return 4 * ((int64_t)kMaxBatch + kWarps * 2 * kMaxBatch + 8 * 16 + kGMax * D + 2 * kWarps * kGMax + kWarps * kGMax * D);
}
static_assert(declared_static_smem(64) + kSmemSlack <= smem_static_bound(64) &&
                  declared_static_smem(128) + kSmemSlack <= smem_static_bound(128),
              "persistent_plan.hpp smem_static_bound is below what this file declares");

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ int32_t ld_acquire(const int32_t *p) {
  int32_t v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// L2 prefetch of a weight range. sm_90: one bulk prefetch (TMA unit, no registers, no completion to wait for);
// sm_80: prefetch.global.L2::evict_last per 128-byte line from the calling warp.
__device__ __forceinline__ void prefetch_l2(const void *p, int64_t bytes, int lane) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (lane == 0 && bytes >= 16)
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"((uint32_t)(bytes & ~int64_t(15))) : "memory");
#else
  for (int64_t o = (int64_t)lane * 128; o < bytes; o += 32 * 128)
    asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(reinterpret_cast<const char *>(p) + o));
#endif
}

__device__ __forceinline__ const bf16 *task_weights(const PersistArgs &a, const Task &t) {
  const int64_t K = task_cols(a.d, t.op);
  switch (t.op) {
    case T_QKV: return a.layers[t.layer].qkv + (int64_t)t.a * K;
    case T_OPROJ: return a.layers[t.layer].o + (int64_t)t.a * K;
    case T_GATEUP: return a.layers[t.layer].gate_up + (int64_t)t.a * K;
    case T_DOWN: return a.layers[t.layer].down + (int64_t)t.a * K;
    case T_LMHEAD: return a.lm_head + (int64_t)t.a * K;
    default: return nullptr;
  }
}

// gemv_tile's weight source on the default path: the task's rows in global memory, read once per step (ld_stream16:
// not allocated in L1). The ring's is WeightsRing (persistent_ring.cuh): the same rows from a shared-memory stage.
struct WeightsGlobal {
  const bf16 *__restrict__ W;  // row r0 of the task
  int64_t K;
  __device__ __forceinline__ const bf16 *pair(int pr) const { return W + (int64_t)(2 * pr) * K; }  // its first row
  __device__ __forceinline__ void finish() const {}
  static __device__ __forceinline__ uint4 ld(const bf16 *p) { return ld_stream16(p); }
};

// The GEMV of a task: rows [r0, r1) of W [*, K] (from `src`: pair(pr) gives row pair pr's first row, ld loads 16
// bytes of it, finish closes the warp's reads) against act (bf16 [B][K]: shared memory, or global for down), every
// batch row; the epilogue gets (row pair, b, v0, v1). Row pairs go to warp groups of S warps each (S splits K in
// contiguous parts, summed in part order): S = 8 / pairs when a tile has fewer pairs than warps (gemv_k_split).
// Nothing here depends on the source: both give the same bits.
template <bool kGlobalAct, typename Src, typename Epi>
__device__ __forceinline__ void gemv_tile(Src src, int64_t K, const bf16 *act, int B, int r0, int r1,
                                          float (*red_s)[2][kMaxBatch], Epi epi) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int pairs = (r1 - r0 + 1) / 2;
  const int S = gemv_k_split(pairs);
  const int groups = kWarps / S, grp = warp / S, part = warp % S;
  const int64_t kc = ((K + S - 1) / S + 7) / 8 * 8;  // K per part, whole 16-byte chunks
  const int64_t k0 = part * kc, k1 = min(K, k0 + kc);
  // S == 1 (tiles of more than kWarps / 2 row pairs: gate|up, lm_head, 16-row q|k|v tiles): a warp owns whole row
  // pairs, so it finishes them itself (a butterfly warp_sum leaves every lane the sum; lane b runs batch row b's
  // epilogue) with no block barrier: warps stream their next pairs while others finish. Same sums as the S > 1 path
  // (0 + the warp's sum, as the part loop adds it).
  const bool solo = S == 1;
  for (int pr0 = 0; pr0 < pairs; pr0 += groups) {
    const int pr = pr0 + grp;
    const int row = r0 + 2 * pr;
    const bool on = pr < pairs, two = row + 1 < r1;
    if (solo && !on) break;  // warp-uniform: this warp has no pairs left (no barrier below to reach)
    float acc[2][kMaxBatch];
#pragma unroll
    for (int e = 0; e < 2; ++e)
#pragma unroll
      for (int b = 0; b < kMaxBatch; ++b) acc[e][b] = 0.f;
    if (on) {
      const bf16 *w0 = src.pair(pr), *w1 = two ? w0 + K : w0;
      // kLoads rounds of 2 x 16 bytes per lane are issued before any of their FMAs (0.5B K = 896: a lane's whole row
      // pair in one round trip). The FMAs sit behind warp-uniform branches on b < B, which the compiler does not hoist
      // loads across: written as one loop, each round's loads waited for the previous round's FMAs, one DRAM latency
      // per 16 bytes a lane (the lab's 0.5B trace: gate_up tasks at ~7 GB/s per SM). Same k order per lane, same sums.
      constexpr int kLoads = 4;
      for (int64_t kb = k0 + lane * 8; kb < k1; kb += kLoads * 32 * 8) {
        uint4 u0[kLoads], u1[kLoads];
#pragma unroll
        for (int r = 0; r < kLoads; ++r) {
          const int64_t k = kb + r * 32 * 8;
          if (k < k1) { u0[r] = Src::ld(w0 + k); u1[r] = Src::ld(w1 + k); }
        }
#pragma unroll
        for (int r = 0; r < kLoads; ++r) {
          const int64_t k = kb + r * 32 * 8;
          if (k >= k1) break;
#pragma unroll
          for (int b = 0; b < kMaxBatch; ++b) {
            if (b < B) {
              const uint4 v = kGlobalAct ? __ldcg(reinterpret_cast<const uint4 *>(act + (int64_t)b * K + k))
                                         : *reinterpret_cast<const uint4 *>(act + (int64_t)b * K + k);
              const uint32_t wv0[4] = {u0[r].x, u0[r].y, u0[r].z, u0[r].w}, wv1[4] = {u1[r].x, u1[r].y, u1[r].z, u1[r].w};
              const uint32_t av[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                const float alo = bf16_lo(av[i]), ahi = bf16_hi(av[i]);
                acc[0][b] = fmaf(bf16_lo(wv0[i]), alo, acc[0][b]);
                acc[0][b] = fmaf(bf16_hi(wv0[i]), ahi, acc[0][b]);
                acc[1][b] = fmaf(bf16_lo(wv1[i]), alo, acc[1][b]);
                acc[1][b] = fmaf(bf16_hi(wv1[i]), ahi, acc[1][b]);
              }
            }
          }
        }
      }
    }
    if (solo) {
      float v0 = 0.f, v1 = 0.f;
#pragma unroll
      for (int b = 0; b < kMaxBatch; ++b)
        if (b < B) {  // warp-uniform
          const float s0 = warp_sum(acc[0][b]), s1 = warp_sum(acc[1][b]);
          if (lane == b) { v0 = 0.f + s0; v1 = 0.f + s1; }
        }
      if (lane < B) epi(row, lane, v0, v1, two);
      continue;
    }
#pragma unroll
    for (int b = 0; b < kMaxBatch; ++b)
      if (b < B) {  // warp-uniform: no shuffles for absent rows
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float s = warp_sum(acc[e][b]);
          if (lane == 0) red_s[warp][e][b] = s;
        }
      }
    __syncthreads();
    // one thread per (group, b) finishes: the parts summed in part order, then the epilogue of the pair
    const int g2 = threadIdx.x / kMaxBatch, b = threadIdx.x % kMaxBatch;
    if (g2 < groups && b < B) {
      const int p2 = pr0 + g2;
      if (p2 < pairs) {
        float v0 = 0.f, v1 = 0.f;
        for (int s = 0; s < S; ++s) {
          v0 += red_s[g2 * S + s][0][b];
          v1 += red_s[g2 * S + s][1][b];
        }
        const int rr = r0 + 2 * p2;
        epi(rr, b, v0, v1, rr + 1 < r1);
      }
    }
    __syncthreads();
  }
  src.finish();
}

// A GEMV task's tile from the ring where the task is on it (kRingOn and rc.chunks > 0), else from global memory.
template <bool kRingOn, bool kGlobalAct, typename Epi>
__device__ __forceinline__ void gemv_task(const PersistArgs &a, const Task &t, const Ring &ring, const RingChunks &rc,
                                          int64_t K, const bf16 *act, float (*red_s)[2][kMaxBatch], Epi epi) {
  const bf16 *W = task_weights(a, t);
  if constexpr (kRingOn) {
    if (rc.chunks > 0) {  // block-uniform
      gemv_tile<kGlobalAct>(WeightsRing{ring, RingTask{W, K, t.a, t.b, rc.pairs, rc.chunks}}, K, act, a.d.batch, t.a,
                            t.b, red_s, epi);
      return;
    }
  }
  gemv_tile<kGlobalAct>(WeightsGlobal{W, K}, K, act, a.d.batch, t.a, t.b, red_s, epi);
}

// rstd of every batch row and the staged act_s = bf16(bf16(x * rstd) * norm_w) (the graph path's prologue), or
// (norm_w null) act_s = the bf16 rows of src.
__device__ __forceinline__ void stage(const PersistArgs &a, bf16 *act_s, float *rstd_s, const float *x,
                                      const float *norm_w, const bf16 *src, int64_t K) {
  GemvArgs g;
  g.batch = a.d.batch;
  g.w.cols = K;
  if (norm_w) {
    g.pro = GEMV_PRO_NORM; g.x = x; g.x_ld = K; g.norm_w = norm_w; g.eps = a.eps;
    gemv_detail::norm_rstd<kMaxBatch>(g, rstd_s);
  } else {
    g.pro = GEMV_PRO_BF16; g.act = src; g.act_ld = K;
  }
  gemv_detail::stage_tile<kMaxBatch>(g, act_s, rstd_s, 0, (int)K, (int)K, true);
  __syncthreads();
}

// Split s of (sequence b, kv head g): G query heads over keys [t0, t1) of the cache; writes (m, l, o) partials.
template <int D>
__device__ void attn_split(const PersistArgs &a, const Task &t) {
  constexpr int E = D / 32;
  __shared__ __align__(16) float q_s[kGMax][D];
  __shared__ float wm_s[kWarps][kGMax], wl_s[kWarps][kGMax];
  __shared__ __align__(16) float wo_s[kWarps][kGMax][D];
  const Dims &d = a.d;
  const int G = d.group(), b = t.a / d.n_kv, g = t.a % d.n_kv, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int len = a.kv_len[b], t0 = split_begin(len, d.n_split, t.b), t1 = split_end(len, d.n_split, t.b);
  const float scale = rsqrtf((float)D) * kLog2e;
  for (int i = threadIdx.x; i < kGMax * D; i += blockDim.x) {
    const int j = i / D, e = i - j * D;
    q_s[j][e] = j < G ? __bfloat162float(__ldcg(a.q + (int64_t)b * d.q_dim() + (g * G + j) * D + e)) * scale : 0.f;
  }
  __syncthreads();
  float m[kGMax], l[kGMax], o[kGMax][E];
#pragma unroll
  for (int j = 0; j < kGMax; ++j) {
    m[j] = kNegBig; l[j] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) o[j][e] = 0.f;
  }
  const int64_t slot = a.slot[b];
  const PersistLayer &L = a.layers[t.layer];
  const bf16 *kb = L.kcache + (slot * d.n_kv + g) * (int64_t)a.max_ctx * D;
  const bf16 *vb = L.vcache + (slot * d.n_kv + g) * (int64_t)a.max_ctx * D;
  using VT = typename VRaw<E>::T;
  constexpr int VB = kAttnVRows;  // V rows a lane has in flight before their FMAs
  for (int tile = t0 + warp * 32; tile < t1; tile += kWarps * 32) {
    const int tk = tile + lane;
    const bool valid = tk < t1;
    const int nk = min(32, t1 - tile);
    float s[kGMax];
    uint4 kr[D / 8];
    VT vr0[VB];
    // this step's key and value were written by another block: L2 loads. The tile's first VB value rows go out with
    // the key row (they do not depend on the scores): their latency hides behind Q.K and the softmax
    const uint4 *kp = reinterpret_cast<const uint4 *>(kb + (int64_t)(valid ? tk : t0) * D);
#pragma unroll
    for (int i = 0; i < D / 8; ++i) kr[i] = __ldcg(kp + i);
#pragma unroll
    for (int jj = 0; jj < VB; ++jj)
      vr0[jj] = __ldcg(reinterpret_cast<const VT *>(vb + (int64_t)(tile + min(jj, nk - 1)) * D + lane * E));
#pragma unroll
    for (int j = 0; j < kGMax; ++j) {
      float acc = 0.f;
      if (j < G) {
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
          const uint32_t kv[4] = {kr[i].x, kr[i].y, kr[i].z, kr[i].w};
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            acc = fmaf(q_s[j][8 * i + 2 * c], bf16_lo(kv[c]), acc);
            acc = fmaf(q_s[j][8 * i + 2 * c + 1], bf16_hi(kv[c]), acc);
          }
        }
      }
      s[j] = valid ? acc : kNegBig;
    }
    float p[kGMax];
#pragma unroll
    for (int j = 0; j < kGMax; ++j) {
      p[j] = 0.f;
      if (j < G) {
        const float mn = fmaxf(m[j], warp_max(s[j]));
        const float alpha = exp2f(m[j] - mn);
        p[j] = valid ? exp2f(s[j] - mn) : 0.f;
        l[j] = l[j] * alpha + warp_sum(p[j]);
        m[j] = mn;
#pragma unroll
        for (int e = 0; e < E; ++e) o[j][e] *= alpha;
      }
    }
    // PV: lane owns dims lane*E .. lane*E + E - 1; VB rows loaded before their FMAs (one round trip per VB keys, not
    // one per key), keys in ascending order as before
#pragma unroll
    for (int j0 = 0; j0 < 32; j0 += VB) {
      if (j0 < nk) {  // warp-uniform
        VT vr[VB];
#pragma unroll
        for (int jj = 0; jj < VB; ++jj)
          vr[jj] = j0 == 0 ? vr0[jj]
                           : __ldcg(reinterpret_cast<const VT *>(vb + (int64_t)(tile + min(j0 + jj, nk - 1)) * D + lane * E));
#pragma unroll
        for (int jj = 0; jj < VB; ++jj) {
          if (j0 + jj < nk) {  // warp-uniform
            float vf[E];
            v_dims<E>(vr[jj], vf);
#pragma unroll
            for (int j = 0; j < kGMax; ++j)
              if (j < G) {
                const float pj = __shfl_sync(0xffffffffu, p[j], j0 + jj);
#pragma unroll
                for (int e = 0; e < E; ++e) o[j][e] = fmaf(pj, vf[e], o[j][e]);
              }
          }
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kGMax; ++j) {
    if (lane == 0) { wm_s[warp][j] = m[j]; wl_s[warp][j] = l[j]; }
#pragma unroll
    for (int e = 0; e < E; ++e) wo_s[warp][j][lane * E + e] = o[j][e];
  }
  __syncthreads();
  const int NS = d.n_split;
  const int64_t part = (int64_t)t.a * NS + t.b;  // [(b, g)][split]
  float *ws_o = a.ws + part * kGMax * D, *ws_ml = a.ws + (int64_t)d.batch * d.n_kv * NS * kGMax * D + part * kGMax * 2;
  // The sequence's only active split (len <= kMinChunk keys, every short context) writes z itself: the combine of one
  // split is z = (O * 1) / (L * 1) with f = exp2(M - M) = 1, so these are the combine's bits without the partials'
  // round trip through L2, the arrival atomic and the combine's loads (attn_arrive then only signals)
  const bool alone = split_count(len, NS) == 1;
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int j = i / D, e = i - j * D;
    float M = kNegBig;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm_s[w][j]);
    float O = 0.f, Ls = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2f(wm_s[w][j] - M);
      O += wo_s[w][j][e] * f;
      Ls += wl_s[w][j] * f;
    }
    if (alone) {
      a.z[(int64_t)b * d.q_dim() + (g * G + j) * D + e] = __float2bfloat16(Ls > 0.f ? O / Ls : 0.f);
      continue;
    }
    ws_o[j * D + e] = O;
    if (e == 0) { ws_ml[2 * j] = M; ws_ml[2 * j + 1] = Ls; }  // an empty split: l = 0
  }
}

// z of (sequence b, kv head g) from its splits' partials, in split order (run by the last split to arrive).
template <int D>
__device__ void attn_combine(const PersistArgs &a, const Task &t) {
  const Dims &d = a.d;
  const int G = d.group(), b = t.a / d.n_kv, g = t.a % d.n_kv, NS = d.n_split;
  const float *ws_o = a.ws + (int64_t)t.a * NS * kGMax * D;
  const float *ws_ml = a.ws + (int64_t)d.batch * d.n_kv * NS * kGMax * D + (int64_t)t.a * NS * kGMax * 2;
  // the active splits only (split_count): empty ones wrote nothing. Each holds >= 1 key, so l >= 1 (its max term is
  // exp2(0)): the same splits and order as skipping l == 0 did. Loads unrolled: independent L2 round trips overlap.
  const int nact = split_count(a.kv_len[b], NS);
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int j = i / D, e = i - j * D;
    float M = kNegBig;
#pragma unroll 8
    for (int s = 0; s < nact; ++s) M = fmaxf(M, __ldcg(ws_ml + (s * kGMax + j) * 2));
    float O = 0.f, Ls = 0.f;
#pragma unroll 8
    for (int s = 0; s < nact; ++s) {
      const float ls = __ldcg(ws_ml + (s * kGMax + j) * 2 + 1);
      const float f = exp2f(__ldcg(ws_ml + (s * kGMax + j) * 2) - M);
      O += __ldcg(ws_o + ((int64_t)s * kGMax + j) * D + e) * f;
      Ls += ls * f;
    }
    a.z[(int64_t)b * d.q_dim() + (g * G + j) * D + e] = __float2bfloat16(Ls > 0.f ? O / Ls : 0.f);  // Ls = 0: no keys (kv_len 0), not NaN
  }
}

// The end of an active split's task (its partials written, the block synchronized): it arrives at the split counter of
// (sequence, kv head); the last active split to arrive combines them all into z, zeroes the counter (no task reads it
// again in this launch) and signals the layer's combine counter. The fences are the graph path's split-KV combine's
// (attention.cu): every thread's partials ordered before the arrival, and after the last arrival the other splits'
// partials visible to every thread of this block (read through L2).
template <int D>
__device__ void attn_arrive(const PersistArgs &a, const Task &t) {
  const int32_t ctr = a.c.split(t.layer, t.a);
  const int32_t nact = split_count(a.kv_len[t.a / a.d.n_kv], a.d.n_split);
  if (nact == 1) {  // block-uniform: attn_split wrote z (run_task's end barrier orders every thread's writes)
    if (threadIdx.x == 0) {
      __threadfence();
      atomicAdd(a.counters + t.signal, 1);
    }
    return;
  }
  __threadfence();
  __syncthreads();
  int last = 0;
  if (threadIdx.x == 0) last = atomicAdd(a.counters + ctr, 1) == nact - 1;
  if (!__syncthreads_or(last)) return;  // block-uniform
  __threadfence();
  attn_combine<D>(a, t);
  __syncthreads();
  if (threadIdx.x == 0) {
    a.counters[ctr] = 0;
    __threadfence();
    atomicAdd(a.counters + t.signal, 1);
  }
}

template <int D, bool kRingOn>
__device__ void run_task(const PersistArgs &a, const Task &t, bf16 *act_s, float *rstd_s,
                         float (*red_s)[2][kMaxBatch], const Ring &ring, const RingChunks &rc) {
  const Dims &d = a.d;
  const int B = d.batch;
  const int64_t H = d.hidden, I = d.inter;
  switch (t.op) {
    case T_EMBED: {
      const int64_t tok = a.tokens[t.a];
      for (int64_t k = threadIdx.x; k < H; k += blockDim.x) a.x[t.a * H + k] = __bfloat162float(a.embed[tok * H + k]);
      break;
    }
    case T_QKV: {
      const PersistLayer &L = a.layers[t.layer];
      stage(a, act_s, rstd_s, a.x, L.attn_norm, nullptr, H);
      GemvArgs e;
      e.bias = L.qkv_bias;
      e.rope.q_out = a.q;
      e.rope.kcache = L.kcache;
      e.rope.vcache = L.vcache;
      e.rope.pos = a.pos;
      e.rope.slot = a.slot;
      e.rope.inv_freq = a.inv_freq;
      e.rope.n_heads = d.n_heads; e.rope.n_kv = d.n_kv; e.rope.head_dim = D; e.rope.max_ctx = a.max_ctx;
      gemv_task<kRingOn, false>(a, t, ring, rc, H, act_s, red_s, [&](int row, int b, float v0, float v1, bool) {
        gemv_detail::epilogue_qkv_rope(e, row, b, v0, v1);
      });
      break;
    }
    case T_ATTN: attn_split<D>(a, t); break;
    case T_OPROJ:
    case T_DOWN: {
      const bool o = t.op == T_OPROJ;
      const int64_t K = o ? H : I;
      if (o) stage(a, act_s, rstd_s, nullptr, nullptr, a.z, H);  // z [B][nH d], nH d == H
      const bool staged = o || stage_down_act(d);
      if (!o && staged) {  // h [B][I] (ld I) into act_s once, instead of once per row pair from L2
        const uint4 *src = reinterpret_cast<const uint4 *>(a.h);
        uint4 *dst = reinterpret_cast<uint4 *>(act_s);
        for (int64_t i = threadIdx.x; i < (int64_t)B * I / 8; i += blockDim.x) dst[i] = __ldcg(src + i);
        __syncthreads();
      }
      GemvArgs e;
      e.epi = GEMV_EPI_ADD_F32; e.out = a.x; e.out_ld = H;
      auto epi = [&](int row, int b, float v0, float v1, bool two) {
        gemv_detail::epilogue_one(e, row, b, v0);
        if (two) gemv_detail::epilogue_one(e, row + 1, b, v1);
      };
      if (staged) gemv_task<kRingOn, false>(a, t, ring, rc, K, act_s, red_s, epi);
      else gemv_task<kRingOn, true>(a, t, ring, rc, K, a.h, red_s, epi);  // h: [B][I] from L2
      break;
    }
    case T_GATEUP: {
      stage(a, act_s, rstd_s, a.x, a.layers[t.layer].ffn_norm, nullptr, H);
      GemvArgs e;
      e.out = a.h; e.out_ld = I;
      gemv_task<kRingOn, false>(a, t, ring, rc, H, act_s, red_s, [&](int row, int b, float g, float u, bool) {
        gemv_detail::epilogue_swiglu(e, row / 2, b, g, u);
      });
      break;
    }
    case T_LMHEAD: {
      stage(a, act_s, rstd_s, a.x, a.out_norm, nullptr, H);
      GemvArgs e;
      e.epi = GEMV_EPI_F32; e.out = a.logits; e.out_ld = d.vocab;
      gemv_task<kRingOn, false>(a, t, ring, rc, H, act_s, red_s, [&](int row, int b, float v0, float v1, bool two) {
        gemv_detail::epilogue_one(e, row, b, v0);
        if (two) gemv_detail::epilogue_one(e, row + 1, b, v1);
      });
      break;
    }
  }
}

// kRing: the weight ring's variant (QW_PERSIST_RING=1, persistent_ring.cuh), run only where a.ring_stages > 0. Its
// sm_80 build is the register path (kRingOn false there): the host never picks it before sm_90.
template <int D, bool kRing>
__global__ void __launch_bounds__(kThreads, 1) persistent_decode_kernel(const PersistArgs a) {
  constexpr bool kRingOn = kRing && QW_RING_ARCH;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *act_s = reinterpret_cast<bf16 *>(smem);
  __shared__ float rstd_s[kMaxBatch];
  __shared__ float red_s[kWarps][2][kMaxBatch];
  const int nb = gridDim.x, n = a.n_tasks, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  Ring ring;
  if constexpr (kRingOn) ring = ring_init(smem, a);
  for (int i = blockIdx.x; i < n; i += nb) {
    const Task t = a.tasks[i];
    // an attention split past its sequence's keys (kv_len: a launch input) neither waits, runs nor signals: the last
    // active split combines (attn_arrive), so nothing waits on blocks that have nothing to do (block-uniform)
    const bool empty = t.op == T_ATTN && split_empty(a.kv_len[t.a / a.d.n_kv], a.d.n_split, t.b);
    RingChunks rc;  // chunks 0: off the ring (block-uniform)
    if constexpr (kRingOn) rc = ring_chunks(a.d, t, ring.n);
    if (warp == 0) {
      // the ring's first stages before the wait (persistent_ring.cuh step 1): their DRAM latency overlaps it
      if constexpr (kRingOn) {
        if (lane == 0 && rc.chunks > 0)
          ring_start(ring, RingTask{task_weights(a, t), task_cols(a.d, t.op), t.a, t.b, rc.pairs, rc.chunks});
      }
      if (a.prefetch) {  // QW_PERSIST_PREFETCH=1 turns it on (uniform)
        int32_t pf[2];
        const int32_t np = prefetch_targets(i, nb, n, blockIdx.x, pf);
        for (int k = 0; k < np; ++k) {
          const Task u = a.tasks[pf[k]];
          const int64_t bytes = prefetch_bytes(a.d, u);
          if (bytes > 0) prefetch_l2(task_weights(a, u), bytes, lane);
        }
      }
      if (lane == 0 && a.trace && !empty) a.trace[3 * (int64_t)i] = global_ns();
      if (lane == 0 && t.wait >= 0 && !empty) {
        // Watchdog: a legitimate wait is microseconds; ~2^27 polls (seconds) means a schedule bug or a block that
        // never became resident: trap (the launch fails with an error) instead of hanging the process.
        uint32_t polls = 0;
        while (ld_acquire(a.counters + t.wait) < t.target) {
          __nanosleep(64);
          if (++polls == (1u << 27)) __trap();
        }
      }
    }
    if (empty) continue;  // nothing to read, write or signal
    __syncthreads();
    if (a.trace && threadIdx.x == 0) a.trace[3 * (int64_t)i + 1] = global_ns();
    run_task<D, kRingOn>(a, t, act_s, rstd_s, red_s, ring, rc);
    __syncthreads();
    // every thread the same: the phases this task's fills completed (persistent_ring.cuh step 4)
    if constexpr (kRingOn) ring.phase = ring_phase_after(ring.phase, rc.chunks, ring.n);
    if (t.op == T_ATTN) {  // block-uniform
      attn_arrive<D>(a, t);
      if (a.trace && threadIdx.x == 0) a.trace[3 * (int64_t)i + 2] = global_ns();
      continue;
    }
    if (a.trace && threadIdx.x == 0) a.trace[3 * (int64_t)i + 2] = global_ns();
    if (threadIdx.x == 0) {
      __threadfence();
      atomicAdd(a.counters + t.signal, 1);
    }
  }
  // The last block out zeroes every counter: every other block has left its last wait, so none reads them again in
  // this launch, and the next launch (stream order) starts from zero.
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(a.counters + a.c.exit(), 1) == nb - 1) {
      for (int k = 0; k < a.c.count(); ++k) a.counters[k] = 0;
      __threadfence();
    }
  }
}

// Dynamic shared memory needs the opt-in attribute as soon as static + dynamic exceeds 48 KiB: the default limit of
// the dynamic part is 48 KiB minus the kernel's static shared memory (cudaFuncAttributes::maxDynamicSharedSizeBytes),
// not 48 KiB. (The first GPU run compared the dynamic part alone with 48 KiB: 0.5B at batch 4, 38 KiB dynamic + 20 KiB
// static, never got the attribute and the occupancy query said 0 blocks per SM.) Raised to what this step needs, after
// checking static + dynamic against the device's opt-in limit, so a shape that cannot fit is refused by name.
// Per variant: the attribute is the kernel's.
struct SmemState {
  int set = -1, stat = 0;  // the attribute's current value and the kernel's static bytes
};
template <int D, bool kRing>
SmemState &smem_state() {
  static SmemState st;
  if (st.set < 0) {
    cudaFuncAttributes fa;
    QWC_CHECK(cudaFuncGetAttributes(&fa, persistent_decode_kernel<D, kRing>));
    st.set = fa.maxDynamicSharedSizeBytes;
    st.stat = (int)fa.sharedSizeBytes;
  }
  return st;
}

template <int D, bool kRing>
void configure_smem(size_t dyn) {
  SmemState &st = smem_state<D, kRing>();
  if ((int64_t)dyn <= st.set) return;
  const int64_t optin = smem_optin_bytes();
  if (st.stat + (int64_t)dyn > optin)
    throw CudaError("decode = persistent: a block needs " + std::to_string((st.stat + dyn + 1023) / 1024) +
                    " KiB of shared memory (" + std::to_string(st.stat) + " B static + " + std::to_string(dyn) +
                    " B staged activations" + (kRing ? " and weight ring" : "") + ") and this GPU allows " +
                    std::to_string(optin / 1024) + " KiB per block: decode fewer sequences per step, or set decode = graph");
  QWC_CHECK(cudaFuncSetAttribute(persistent_decode_kernel<D, kRing>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn));
  st.set = (int)dyn;
}

template <int D>
int blocks_per_sm(size_t smem) {
  configure_smem<D, false>(smem);
  int per_sm = 0;
  QWC_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_decode_kernel<D, false>, kThreads, smem));
  return per_sm;
}

template <int D, bool kRing>
void launch_d(const PersistArgs &a, int32_t blocks, size_t smem, cudaStream_t s) {
  configure_smem<D, kRing>(smem);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeCooperative;  // co-residency guarantee only; the kernel never calls grid.sync
  at[0].val.cooperative = 1;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  QWC_CHECK(cudaLaunchKernelEx(&cfg, persistent_decode_kernel<D, kRing>, a));
}

}  // namespace

size_t persistent_ws_floats(const Dims &d) {
  return (size_t)d.batch * d.n_kv * d.n_split * kGMax * ((size_t)d.head_dim + 2);
}

size_t persistent_smem_bytes(const Dims &d) { return (size_t)smem_dynamic_bytes(d); }

size_t persistent_static_smem(int32_t head_dim) {
  cudaFuncAttributes fa;
  if (head_dim == 128) QWC_CHECK(cudaFuncGetAttributes(&fa, persistent_decode_kernel<128, false>));
  else if (head_dim == 64) QWC_CHECK(cudaFuncGetAttributes(&fa, persistent_decode_kernel<64, false>));
  else throw CudaError("decode = persistent: head_dim must be 64 or 128");
  return fa.sharedSizeBytes;
}

int32_t persistent_blocks(const Dims &d) {
  int dev = 0, sms = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  QWC_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const size_t smem = persistent_smem_bytes(d);
  const int per_sm = d.head_dim == 128 ? blocks_per_sm<128>(smem) : blocks_per_sm<64>(smem);
  if (per_sm < 1)
    throw CudaError("decode = persistent: the kernel does not fit on an SM (" + std::to_string(smem) +
                    " B dynamic shared memory, 256 threads, 1 block per SM): set decode = graph");
  return sms;  // one block per SM: the plan's tiles are sized for it
}

int32_t persistent_ring_stages(const Dims &d) {
  if (d.head_dim != 64 && d.head_dim != 128) return 0;
  int dev = 0, major = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  QWC_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  const int32_t n = ring_stages(d);
  if (major < 9 || n == 0) return 0;  // the bulk copies and mbarrier waits are sm_90's
  const int stat = d.head_dim == 128 ? smem_state<128, true>().stat : smem_state<64, true>().stat;
  return stat + smem_dynamic_bytes(d, n) <= smem_optin_bytes() ? n : 0;
}

void persistent_options(PersistArgs &a) {
  a.ring_stages = env_opt_in("QW_PERSIST_RING", "GEMV weights through register loads",
                             "GEMV weights through a shared-memory ring of bulk copies on sm_90")
                      ? persistent_ring_stages(a.d)
                      : 0;
  // Off by default since the twelfth run (H100, 2026-12-07, qwlab persistent --quick, same session): 0.5B B1 1520 us
  // without the prefetch against 1583 with it, 1.5B B1 2793 against 3010, 0.5B B4 1807 / 1915, B8 2238 / 2304
  // (every pair outside both spreads): the bulk prefetches compete with the loads they were meant to hide.
  a.prefetch = env_opt_in("QW_PERSIST_PREFETCH", "no L2 prefetch of the next task's weights",
                          "the L2 bulk prefetch of the next task's weights");
}

const char *launch_persistent_decode(const PersistArgs &a, int32_t blocks, cudaStream_t s) {
  const bool ring = a.ring_stages > 0;
  const size_t smem = (size_t)smem_dynamic_bytes(a.d, a.ring_stages);
  if (a.d.head_dim == 128) ring ? launch_d<128, true>(a, blocks, smem, s) : launch_d<128, false>(a, blocks, smem, s);
  else if (a.d.head_dim == 64) ring ? launch_d<64, true>(a, blocks, smem, s) : launch_d<64, false>(a, blocks, smem, s);
  else throw CudaError("decode = persistent: head_dim must be 64 or 128");
  QWC_LAUNCH_CHECK("launch_persistent_decode");
  return ring ? "persistent_decode_ring" : "persistent_decode";
}

}  // namespace qwc
