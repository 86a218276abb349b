// attention.cu — decode (split-KV) attention; see attention.cuh. Prefill: attention_prefill.cu.
#include "attention.cuh"
#include "attn_rows.cuh"

#include <algorithm>
#include <cstring>
#include <cstdlib>

namespace qwc {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;

// ------------------------------------------------------------------------------------------------
// Decode: grid (n_split, n_kv * G / GM, B), 128 threads (4 warps); GM query heads per block (1 or 8, below).
// QK: lane-per-key (the key row in registers, q from shared memory). PV: lane-per-dimension, V rows loaded
// kVB at a time before their FMAs (one memory round trip per kVB keys, not one per key); the first kVB V rows
// of a tile are loaded with its K row. The length, the slot and the block's q rows (16-byte loads) are issued
// together: one round trip.
// Splits come from the device-side length: chunk = max(kMinChunk, ceil(len / n_split)) keys, so only
// ceil(len / chunk) <= n_split splits are active; the others exit at once and are not counted by the
// combine (every block derives the same active count from kv_len[b], so the counter stays replay safe).
// Promoted from cuda/dev (2026-12-05): on an H100 (qwlab attn, first run) one query head per block ran the
// B1 cases 1.6-1.7x faster than the one-block-per-kv-head kernel it replaces (0.5B h14/2 d64 len 300:
// 13.8 against 24.0 us; 7B h28/4 len 300: 15.3 against 28.4; 1.5B h12/2 len 4097: 20.9 against 34.6), and
// 17 % slower at 7B B16 len 1000 (61.3 against 52.5), where one block per kv head (GM 8) matched the old kernel.
// ------------------------------------------------------------------------------------------------
constexpr int kDecWarps = 4;
constexpr int kGMax = 8;
constexpr int kMinChunk = kDecWarps * 32;  // one 32-key tile per warp at least
constexpr int kMaxSplit = 128;             // smem weights of the combine; decode_attn_pick_split never exceeds it
constexpr int kVB = kAttnVRows;            // V rows in flight per lane
// Adaptive launch: from this kv length a sequence gets one block per kv head (QW_ATTN_GROUP_LEN overrides). Off: on an
// H100 (2026-12-05 fourth run, qwlab attn, n_split per kv head, bitwise equal to GM 1 / GM 8 on 19 shapes) its
// grouped side matched GM 8 (7B B1 32k 86 us) but was slower than GM 1 at 0.5B 32k (54 vs 41 us) and below 16k,
// and its per-head side (the GM 8 kernel's 190 registers) ran 1.2-2.2x slower than GM 1 at the same n_split. What did
// pay was the split count: GM 1 at 7B B1 32k took 97 us with splits per kv head (66) against 148 with splits per
// query head (9; kvqlab, third run), while 1.5B 16k went 38.8 -> 44.4 us (22 -> 128 splits): a per-kv-head count with
// chunks of >= 512 keys is the next rule to time (docs/GPU-NEXT.md).
constexpr int32_t kGroupLenDefault = 0;


// GM: query heads per block (1: one block per (split, query head) -- the shortest per-warp chain, K/V of a kv
// head re-read from L2 by its G blocks; 8: one block serves all G heads of a kv head). Per head the arithmetic
// is the same either way (bit-identical outputs).
// ADAPT (GM = 8, G <= 8; launch_decode_attention_adaptive, below the GM 8 batch when QW_ATTN_GROUP_LEN > 0): grid.y = n_kv * G, one block per
// query head, except for a sequence whose kv_len >= a.group_len: there the block of a group's first head takes all
// G heads and the others exit. Long sequences then read their K/V once instead of G times (one query head per block
// is L2-bound at depth: 7B B1 at 32k moved 454 GB/s of unique K/V, 7x that through L2), short ones keep the short
// per-warp chain. Either way the bits are those of GM 1 / GM 8 at the same n_split.
template <int D, int GM, bool ADAPT = false>
__global__ void __launch_bounds__(kDecWarps * 32) decode_attn_kernel(const DecodeAttnArgs a) {
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
  const int split = blockIdx.x, b = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float scale = rsqrtf((float)D) * kLog2e;
  // Latency: the length, the slot and the G query rows are independent loads, issued together (one memory
  // round trip instead of one per loop iteration); q rows are read 8 bf16 (16 bytes) per thread. ADAPT needs the
  // length first (it picks the block's heads).
  const int len = a.kv_len[b];
  const int64_t slot = a.slot[b];
  int kvh, h0, G;  // kv head, first query head of this block, query heads of this block
  if constexpr (ADAPT) {
    kvh = blockIdx.y / Gkv;
    const int hi = blockIdx.y - kvh * Gkv;
    if (len >= a.group_len) {
      if (hi) return;  // block-uniform; the group's first block serves all G heads
      h0 = kvh * Gkv; G = Gkv;
    } else {
      h0 = kvh * Gkv + hi; G = 1;
    }
  } else {
    const int ngroups = (Gkv + GM - 1) / GM;  // head groups per kv head (grid.y = n_kv * ngroups)
    kvh = blockIdx.y / ngroups;
    h0 = kvh * Gkv + (blockIdx.y % ngroups) * GM;
    G = min(GM, Gkv - (h0 - kvh * Gkv));
  }
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
    VT vr0[kVB];
    load_tile_rows<D, E>(kbase, vbase, valid ? t : t0, tile, nk, lane, kr, vr0);
    float s[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      const float acc = g < G ? qk_row<D>(q_s[g], kr) : 0.f;
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
            v_dims<E>(vr[jj], vf);
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

size_t decode_attn_ws_floats(int32_t batch, int32_t n_heads, int32_t head_dim, int32_t n_split) {
  return (size_t)batch * n_heads * n_split * (head_dim + 2);
}

// The allocation bound (the kernel activates only ceil(len / chunk) of them, chunk >= kMinChunk keys): about two
// blocks per SM over one sequence's n_heads query heads. It depends on neither the batch nor the heads per block:
// the split of a sequence's keys (and so the order of its softmax sums) must be the same whether it decodes alone
// or in a batch of 16 (batch invariance), and GM 1 and GM 8 give the same bits at the same n_split.
// With the adaptive launch (decode_attn_group_len() > 0) the bound is per kv head, not per query head: a long
// sequence runs one block per (kv head, split), and n_kv blocks per split must still fill the SMs.
// How a session's split count is made: per query head (head: ~2 blocks per SM over the n_heads heads, >= 128 keys a
// split) or per kv head (kv: ~2 blocks per SM over the n_kv heads, >= 512 keys a split: more, shorter splits once
// the cache is long; the per-kv-head count alone cost 1.5B 16k 14 %: 128 splits of 128 keys). auto (the default
// since the seventh run) takes kv where the session's kv heads hold >= 16384 key rows (max_ctx x n_kv): every
// lab point of the sixth run and every end-to-end point of the seventh fall on the faster side of that line (lab,
// H100: 7B 32k 146 -> 100 us, 8k 43 -> 37, 4k 29 -> 23; 0.5B 8k 22 -> 19; 1.5B 16k 37 -> 32; below it kv lost up to
// 20 %: 7B 1k, 1.5B 4k; 7B decode, max_ctx 16448 at depth 4k / 16k and 32832 at 32k: 155 -> 169, 111 -> 146,
// 80 -> 123 tok/s). QW_ATTN_SPLIT=head|kv forces one (lab / bench A/B). Read once per process.
enum class SplitRule { Auto, Head, Kv };
static SplitRule split_rule() {
  static const SplitRule r = [] {
    const char *e = std::getenv("QW_ATTN_SPLIT");
    if (!e || !*e || std::strcmp(e, "auto") == 0) return SplitRule::Auto;
    if (std::strcmp(e, "head") == 0) return SplitRule::Head;
    if (std::strcmp(e, "kv") == 0) return SplitRule::Kv;
    throw CudaError(std::string("QW_ATTN_SPLIT=") + e + ": use auto (the default), head or kv");
  }();
  return r;
}
constexpr int kKvSplitMinKeys = 512;
constexpr int64_t kKvSplitMinRows = 16384;  // auto: max_ctx x n_kv from which the per-kv-head count is taken

int32_t decode_attn_pick_split(int32_t n_heads, int32_t n_kv, int32_t max_ctx, int32_t sms) {
  const SplitRule rule = split_rule();
  const bool per_kv = n_kv > 0 && (rule == SplitRule::Kv ||
                                   (rule == SplitRule::Auto && (int64_t)max_ctx * n_kv >= kKvSplitMinRows));
  if (per_kv) {
    const int by_work = std::max(1, (max_ctx + kKvSplitMinKeys - 1) / kKvSplitMinKeys);
    const int by_sms = std::max(1, (2 * sms + n_kv - 1) / n_kv);
    return std::max(1, std::min(kMaxSplit, std::min(by_work, by_sms)));
  }
  const int by_work = std::max(1, (max_ctx + kMinChunk - 1) / kMinChunk);
  const int per = decode_attn_group_len() > 0 && n_kv > 0 ? n_kv : n_heads;
  const int by_sms = std::max(1, (2 * sms + per - 1) / per);
  return std::max(1, std::min(kMaxSplit, std::min(by_work, by_sms)));
}

// Heads per block: one (the shortest per-warp chain) until the batch alone fills the GPU with one block per
// (sequence, kv head), then all G of a kv head (K/V read once instead of G times from L2). The switch point,
// batch x n_kv >= 32, lies between the measured B1 (GM 1 wins) and B16 x 4 kv heads (GM 8 wins); QW_ATTN_GM=1|8
// forces one (lab A/B). G > 8 always takes GM 1.
static int gm_forced_value() {
  static const int forced = [] {
    return (int)env_one_of("QW_ATTN_GM", 0, {1, kGMax}, "use 1 (one query head per block) or 8 (one kv head per block)");
  }();
  return forced;
}
bool decode_attn_gm_forced() { return gm_forced_value() == 1 || gm_forced_value() == kGMax; }

int32_t decode_attn_heads_per_block(int32_t batch, int32_t n_heads, int32_t n_kv) {
  const int forced = gm_forced_value();
  if (n_heads / n_kv > kGMax) return 1;
  if (forced == 1 || forced == kGMax) return forced;
  return batch * n_kv >= 32 ? kGMax : 1;
}

const char *launch_decode_attention_gm(const DecodeAttnArgs &a, int32_t gm, cudaStream_t s) {
  const int G = a.n_heads / a.n_kv;
  if (gm != 1 && gm != kGMax) throw CudaError("decode attention: heads per block must be 1 or 8");
  if (gm == kGMax && G > kGMax) throw CudaError("decode attention: more than 8 query heads per kv head need one head per block");
  if (a.n_split < 1 || a.n_split > kMaxSplit) throw CudaError("decode attention: n_split must be 1..128");
  const dim3 grid(a.n_split, a.n_kv * (gm == 1 ? G : 1), a.batch);
  switch (a.head_dim * 16 + gm) {
    case 64 * 16 + 1: launch(decode_attn_kernel<64, 1>, grid, kDecWarps * 32, 0, s, a); break;
    case 128 * 16 + 1: launch(decode_attn_kernel<128, 1>, grid, kDecWarps * 32, 0, s, a); break;
    case 32 * 16 + 1: launch(decode_attn_kernel<32, 1>, grid, kDecWarps * 32, 0, s, a); break;
    case 64 * 16 + kGMax: launch(decode_attn_kernel<64, kGMax>, grid, kDecWarps * 32, 0, s, a); break;
    case 128 * 16 + kGMax: launch(decode_attn_kernel<128, kGMax>, grid, kDecWarps * 32, 0, s, a); break;
    case 32 * 16 + kGMax: launch(decode_attn_kernel<32, kGMax>, grid, kDecWarps * 32, 0, s, a); break;
    default: throw CudaError("decode attention: head_dim must be 32, 64 or 128");
  }
  QWC_LAUNCH_CHECK("launch_decode_attention");
  return "attn_decode_splitkv";
}

// QW_ATTN_GROUP_LEN: the kv length from which the adaptive launch serves a sequence with one block per kv head
// (0, the default for now, turns it off: GM 1 as before, and n_split per query head). Read once per process.
int32_t decode_attn_group_len() {
  static const int32_t v =
      env_count("QW_ATTN_GROUP_LEN", kGroupLenDefault, 1L << 30, "a kv length >= 0 (0 turns the adaptive decode launch off)");
  return v;
}

const char *launch_decode_attention_adaptive(const DecodeAttnArgs &a0, int32_t group_len, cudaStream_t s) {
  const int G = a0.n_heads / a0.n_kv;
  if (G > kGMax) throw CudaError("decode attention (adaptive): more than 8 query heads per kv head");
  if (a0.n_split < 1 || a0.n_split > kMaxSplit) throw CudaError("decode attention: n_split must be 1..128");
  DecodeAttnArgs a = a0;
  a.group_len = group_len;
  const dim3 grid(a.n_split, a.n_kv * G, a.batch);
  switch (a.head_dim) {
    case 64: launch(decode_attn_kernel<64, kGMax, true>, grid, kDecWarps * 32, 0, s, a); break;
    case 128: launch(decode_attn_kernel<128, kGMax, true>, grid, kDecWarps * 32, 0, s, a); break;
    case 32: launch(decode_attn_kernel<32, kGMax, true>, grid, kDecWarps * 32, 0, s, a); break;
    default: throw CudaError("decode attention: head_dim must be 32, 64 or 128");
  }
  QWC_LAUNCH_CHECK("launch_decode_attention_adaptive");
  return "attn_decode_splitkv";
}

// GM 8 where the batch fills the GPU (decode_attn_heads_per_block); below that the adaptive launch (one block per
// query head, per kv head for sequences at depth) when decode_attn_group_len() > 0 (QW_ATTN_GROUP_LEN; off by
// default until it has run) and QW_ATTN_GM does not force a layout; else GM 1.
const char *launch_decode_attention(const DecodeAttnArgs &a, cudaStream_t s) {
  const int32_t gm = decode_attn_heads_per_block(a.batch, a.n_heads, a.n_kv), gl = decode_attn_group_len();
  if (gm == 1 && gl > 0 && a.n_heads / a.n_kv <= kGMax && !decode_attn_gm_forced())
    return launch_decode_attention_adaptive(a, gl, s);
  return launch_decode_attention_gm(a, gm, s);
}

}  // namespace qwc
