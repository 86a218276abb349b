// dca_kernels.cu — Dual Chunk Attention kernels (see dca.cuh; the remapping is dca_positions.hpp's, shared with the CPU).
#include "dca.cuh"

#include "attn_rows.cuh"
#include "dca_positions.hpp"

#include <algorithm>

namespace qwc {
namespace {

constexpr int kThreads = 128;  // attention block: one thread per key of a tile, and per output column (d <= 128)

// One block per row: three rotations of every query head, one of every key head (at pos mod s), V copied; the
// per-row pieces (inputs, rotation, K/V stores) are rope.cuh's, so the arithmetic is rope_kv_kernel's.
__global__ void dca_rope_kernel(const RopeKvArgs a, __nv_bfloat16 *q_succ, __nv_bfloat16 *q_inter, int32_t chunk,
                                int32_t local) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  const int d = a.head_dim, half = d / 2, qdim = a.n_heads * d;
  const int pos = a.row_pos[r];
  const int64_t slot = a.row_slot[r];
  const int s = qw::dca::span(chunk, local), ci = pos / s;
  // Unused variants (no successive / inter keys yet) at 0, as the CPU does.
  const int pq[3] = {qw::dca::q_intra(pos, s), ci >= 1 ? qw::dca::q_succ(pos, s, chunk) : 0, ci >= 2 ? qw::dca::q_inter(s, chunk) : 0};
  __nv_bfloat16 *qo[3] = {a.q_out, q_succ, q_inter};
  const float *src = a.qkv + r * a.qkv_ld;
  const int npairs = (a.n_heads + a.n_kv) * half;
  for (int i = threadIdx.x; i < npairs; i += blockDim.x) {
    const int head = i / half, j = i - head * half;
    const float2 x = rope_pair_in(a, src, head, j);
    if (head < a.n_heads) {
      for (int v = 0; v < 3; ++v)
        rope_rotate(x, a.inv_freq[j], pq[v], &qo[v][r * qdim + head * d + j], &qo[v][r * qdim + head * d + j + half]);
    } else {
      __nv_bfloat16 o1, o2;
      rope_rotate(x, a.inv_freq[j], qw::dca::key_pos(pos, s), &o1, &o2);
      rope_store_k(a, r, slot, pos, head - a.n_heads, j, o1, o2);  // the cache row is the true position
    }
  }
  rope_copy_v(a, r, slot, pos, src);
}

__device__ __forceinline__ float block_reduce(float v, bool is_max, float *red) {
  v = is_max ? warp_max(v) : warp_sum(v);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red is reused between calls
  if (lane == 0) red[w] = v;
  __syncthreads();
  float t = red[0];
  for (int i = 1; i < kThreads / 32; ++i) t = is_max ? fmaxf(t, red[i]) : t + red[i];
  return t;
}

// A block's three group partials (max, sum, weighted V) of (row r, head h) at output column col < d: to ws when the
// row's keys are split into windows (n_split > 1; dca_combine_kernel merges them), else merged by log-sum-exp into
// out (the intra group always holds key i itself, so at least one partial is non-empty).
__device__ __forceinline__ void dca_finish(const DcaAttnArgs &a, int r, int h, int d, int col, const float (&M)[3],
                                           const float (&L)[3], const float (&O)[3]) {
  if (a.n_split > 1) {
    float *w = a.ws + (((int64_t)r * a.n_heads + h) * a.n_split + blockIdx.z) * 3 * (d + 2);
    for (int g = 0; g < 3; ++g) {
      w[g * (d + 2) + col] = O[g];
      if (col == 0) { w[g * (d + 2) + d] = M[g]; w[g * (d + 2) + d + 1] = L[g]; }
    }
    return;
  }
  float mx = M[0];
  for (int g = 1; g < 3; ++g) mx = fmaxf(mx, M[g]);
  float num = 0.f, den = 0.f;
  for (int g = 0; g < 3; ++g) {
    if (M[g] == -INFINITY) continue;
    const float f = __expf(M[g] - mx);
    num = fmaf(f, O[g], num);
    den = fmaf(f, L[g], den);
  }
  a.out[(int64_t)r * a.n_heads * d + h * d + col] = __float2bfloat16(num / den);
}

__global__ void __launch_bounds__(kThreads) dca_attention_kernel(const DcaAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const int d = a.head_dim, qdim = a.n_heads * d, kh = h / (a.n_heads / a.n_kv);
  const int i = a.row_pos[r];
  const int64_t slot = a.row_slot[r];
  const int s = qw::dca::span(a.chunk, a.local), ci = i / s;
  __shared__ float qs[3][128];
  __shared__ float p[kThreads];
  __shared__ float red[kThreads / 32];
  const __nv_bfloat16 *qv[3] = {a.q_intra, a.q_succ, a.q_inter};
  for (int t = tid; t < d; t += kThreads)
    for (int g = 0; g < 3; ++g) qs[g][t] = __bfloat162float(qv[g][(int64_t)r * qdim + h * d + t]);
  __syncthreads();
  // this block's key window (decode splits; one window of every key otherwise)
  int w_lo, w_hi;
  qw::dca::decode_window(i, a.n_split, blockIdx.z, &w_lo, &w_hi);
  const __nv_bfloat16 *K = a.kcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const __nv_bfloat16 *V = a.vcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const float scale = rsqrtf((float)d);
  // Key groups as dca_positions.hpp part(): 0 intra [ci s, i], 1 successive [(ci-1) s, ci s), 2 inter [0, (ci-1) s).
  const int lo[3] = {max(w_lo, ci * s), max(w_lo, max(0, (ci - 1) * s)), w_lo};
  const int hi[3] = {min(w_hi, i + 1), min(w_hi, ci * s), min(w_hi, max(0, (ci - 1) * s))};
  float M[3], L[3], O[3];
  for (int g = 0; g < 3; ++g) {
    float m = -INFINITY, l = 0.f, o = 0.f;
    for (int k0 = lo[g]; k0 < hi[g]; k0 += kThreads) {
      const int k = k0 + tid;
      float sc = -INFINITY;
      if (k < hi[g]) {
        const __nv_bfloat162 *kr = reinterpret_cast<const __nv_bfloat162 *>(K + (int64_t)k * d);
        float acc = 0.f;
        for (int t = 0; t < d / 2; ++t) {
          const float2 kf = __bfloat1622float2(kr[t]);
          acc = fmaf(qs[g][2 * t], kf.x, fmaf(qs[g][2 * t + 1], kf.y, acc));
        }
        sc = acc * scale;
      }
      const float m_new = fmaxf(m, block_reduce(sc, true, red));
      const float alpha = m == -INFINITY ? 0.f : __expf(m - m_new);
      const float e = k < hi[g] ? __expf(sc - m_new) : 0.f;
      p[tid] = e;
      const float tile_sum = block_reduce(e, false, red);  // its barriers also publish p[]
      l = l * alpha + tile_sum;
      o *= alpha;
      if (tid < d) {
        const int n = min(kThreads, hi[g] - k0);
        for (int kk = 0; kk < n; ++kk) o = fmaf(p[kk], __bfloat162float(V[(int64_t)(k0 + kk) * d + tid]), o);
      }
      m = m_new;
      __syncthreads();  // p[] is rewritten by the next tile
    }
    M[g] = m;
    L[g] = l;
    O[g] = o;
  }
  if (tid < d) dca_finish(a, r, h, d, tid, M, L, O);
}

// E bf16 of a row (lane's share of d = 32 E dims) as floats: one 2-, 4- or 8-byte load.
template <int E>
__device__ __forceinline__ void load_lane(const __nv_bfloat16 *p, float (&x)[E]) {
  if constexpr (E == 4) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
    x[0] = a.x; x[1] = a.y; x[2] = b.x; x[3] = b.y;
  } else if constexpr (E == 2) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
    x[0] = a.x; x[1] = a.y;
  } else {
    x[0] = __bfloat162float(p[0]);
  }
}

// The tile layout (the default where d is 32, 64 or 128; QW_DCA_WARP=0 keeps the SIMT kernel above): dense decode's
// (attention.cu decode_attn_kernel) with a query per key group. Same grid, windows and partial slots as the SIMT
// kernel. A warp takes 32 keys at a time, a lane per key holding the whole K row (d × 2 bytes in flight per lane,
// 8 KiB per warp at d 128: the memory-level parallelism the first warp kernel, one key per warp step, lacked; it ran
// 674 us at 7B B1 32k on an H100 against dense's ~100), and scores it against the query of the key's group (intra /
// successive / inter: contiguous key ranges, so a tile's lanes mostly read one q row, a shared-memory broadcast).
// One online softmax covers all three groups: their log-sum-exp merge is the same softmax, so the block's partial
// goes out as the intra group's with the other two empty (m = -inf). PV: a lane per E = d / 32 output dims, kVB V
// rows loaded before their FMAs, the first kVB with the tile's K rows.
template <int E>
__global__ void __launch_bounds__(kThreads) dca_attention_warp_kernel(const DcaAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  constexpr int D = 32 * E, kWarps = kThreads / 32, kVB = kAttnVRows;
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f, kNegBig = -1e30f;
  using VT = typename VRaw<E>::T;
  __shared__ __align__(16) float q_s[3][D];  // the group's query, scaled by log2(e) / sqrt(d)
  __shared__ float wm_s[kWarps], wl_s[kWarps];
  __shared__ __align__(16) float wo_s[kWarps][D];
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qdim = a.n_heads * D, kh = h / (a.n_heads / a.n_kv);
  const int i = a.row_pos[r];
  const int64_t slot = a.row_slot[r];
  const int s = qw::dca::span(a.chunk, a.local), ci = i / s;
  const int b_intra = ci * s, b_succ = max(0, (ci - 1) * s);  // keys >= b_intra: intra; >= b_succ: successive
  int w_lo, w_hi;
  qw::dca::decode_window(i, a.n_split, blockIdx.z, &w_lo, &w_hi);
  const float scale = rsqrtf((float)D) * kLog2e;
  const __nv_bfloat16 *qv[3] = {a.q_intra, a.q_succ, a.q_inter};
  for (int x = tid; x < 3 * D; x += kThreads) {
    const int g = x / D, e = x - g * D;
    q_s[g][e] = __bfloat162float(qv[g][(int64_t)r * qdim + h * D + e]) * scale;
  }
  __syncthreads();
  const __nv_bfloat16 *kbase = a.kcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * D;
  const __nv_bfloat16 *vbase = a.vcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * D;
  float m = kNegBig, l = 0.f, o[E];
#pragma unroll
  for (int e = 0; e < E; ++e) o[e] = 0.f;
  for (int tile = w_lo + warp * 32; tile < w_hi; tile += kWarps * 32) {
    const int t = tile + lane, nk = min(32, w_hi - tile);
    const bool valid = t < w_hi;
    const int g = t >= b_intra ? 0 : t >= b_succ ? 1 : 2;
    uint4 kr[D / 8];
    VT vr0[kVB];
    load_tile_rows<D, E>(kbase, vbase, valid ? t : tile, tile, nk, lane, kr, vr0);
    const float acc = qk_row<D>(q_s[g], kr);
    const float sc = valid ? acc : kNegBig;
    const float mn = fmaxf(m, warp_max(sc));
    const float alpha = exp2f(m - mn);
    const float p = valid ? exp2f(sc - mn) : 0.f;
    l = l * alpha + warp_sum(p);
    m = mn;
#pragma unroll
    for (int e = 0; e < E; ++e) o[e] *= alpha;
#pragma unroll
    for (int j0 = 0; j0 < 32; j0 += kVB) {
      if (j0 >= nk) break;  // warp-uniform
      VT vr[kVB];
#pragma unroll
      for (int jj = 0; jj < kVB; ++jj)
        vr[jj] = j0 == 0 ? vr0[jj] : *reinterpret_cast<const VT *>(vbase + (int64_t)(tile + min(j0 + jj, nk - 1)) * D + lane * E);
#pragma unroll
      for (int jj = 0; jj < kVB; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, j0 + jj);  // 0 past nk: an invalid lane's p
        float vf[E];
        v_dims<E>(vr[jj], vf);
#pragma unroll
        for (int e = 0; e < E; ++e) o[e] = fmaf(pj, vf[e], o[e]);
      }
    }
  }
  if (lane == 0) { wm_s[warp] = m; wl_s[warp] = l; }
#pragma unroll
  for (int e = 0; e < E; ++e) wo_s[warp][lane * E + e] = o[e];
  __syncthreads();
  if (tid >= D) return;
  // the block's partial: its warps' merged (a warp without keys has m = kNegBig and l = 0: weight 0 or no effect)
  float mx = kNegBig;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, wm_s[w]);
  float L = 0.f, O = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const float f = exp2f(wm_s[w] - mx);
    L = fmaf(f, wl_s[w], L);
    O = fmaf(f, wo_s[w][tid], O);
  }
  // dca_finish merges natural-log maxima; an empty window (no keys) is m = -inf there
  const float M3[3] = {L > 0.f ? mx * kLn2 : -INFINITY, -INFINITY, -INFINITY}, L3[3] = {L, 0.f, 0.f}, O3[3] = {O, 0.f, 0.f};
  dca_finish(a, r, h, D, tid, M3, L3, O3);
}

// grid (rows, nH), d threads: the 3 n_split partials of (row, head) merged by log-sum-exp (empty ones: m = -inf).
__global__ void dca_combine_kernel(const DcaAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  const int r = blockIdx.x, h = blockIdx.y, e = threadIdx.x, d = a.head_dim, n = 3 * a.n_split;
  const float *w = a.ws + ((int64_t)r * a.n_heads + h) * n * (d + 2);
  float mx = -INFINITY;
  for (int j = 0; j < n; ++j) mx = fmaxf(mx, w[j * (d + 2) + d]);
  float num = 0.f, den = 0.f;
  for (int j = 0; j < n; ++j) {
    const float m = w[j * (d + 2) + d];
    if (m == -INFINITY) continue;
    const float f = __expf(m - mx);
    num = fmaf(f, w[j * (d + 2) + e], num);
    den = fmaf(f, w[j * (d + 2) + d + 1], den);
  }
  a.out[(int64_t)r * a.n_heads * d + h * d + e] = __float2bfloat16(num / den);
}

}  // namespace

int32_t dca_decode_split(int32_t n_heads, int32_t n_kv, int32_t max_ctx, int32_t sms) {
  if (!env_switch_on("QW_DCA_SPLIT", "one block per decode row and head", "key windows per decode row")) return 1;
  (void)n_heads;
  // per kv head, as dense decode's split rule (attention.cu decode_attn_pick_split, kv): about two blocks per SM over
  // the n_kv heads, >= 512 keys of max_ctx a window (7B at 32k: 64 windows x 28 heads)
  const int by_sms = std::max(1, (2 * sms + n_kv - 1) / std::max(1, n_kv));
  const int by_work = std::max(1, max_ctx / 512);
  return std::max(1, std::min({by_sms, by_work, 64}));
}

size_t dca_decode_ws_floats(int32_t rows, int32_t n_heads, int32_t head_dim, int32_t n_split) {
  return (size_t)rows * n_heads * n_split * 3 * (head_dim + 2);
}

void launch_dca_rope_kv(const RopeKvArgs &r, __nv_bfloat16 *q_succ, __nv_bfloat16 *q_inter, int32_t chunk, int32_t local,
                        cudaStream_t stream) {
  if (r.rows <= 0) return;
  launch(dca_rope_kernel, r.rows, 256, 0, stream, r, q_succ, q_inter, chunk, local);
  QWC_LAUNCH_CHECK("launch_dca_rope_kv");
}

const char *launch_dca_attention(const DcaAttnArgs &a, cudaStream_t stream) {
  if (a.head_dim > 128 || a.head_dim % 2) throw CudaError("dca attention: head_dim must be even and <= 128");
  if (a.n_split < 1 || (a.n_split > 1 && !a.ws)) throw CudaError("dca attention: n_split > 1 needs its workspace");
  const bool warp = !a.force_simt && a.head_dim % 32 == 0 &&
                    env_switch_on("QW_DCA_WARP", "the SIMT DCA attention kernel", "the warp-per-key DCA attention kernel");
  if (a.rows <= 0) return warp ? "attn_dca_warp" : "attn_dca_simt";
  const dim3 grid(a.rows, a.n_heads, a.n_split);
  if (!warp) launch(dca_attention_kernel, grid, dim3(kThreads), 0, stream, a);
  else if (a.head_dim == 32) launch(dca_attention_warp_kernel<1>, grid, dim3(kThreads), 0, stream, a);
  else if (a.head_dim == 64) launch(dca_attention_warp_kernel<2>, grid, dim3(kThreads), 0, stream, a);
  else launch(dca_attention_warp_kernel<4>, grid, dim3(kThreads), 0, stream, a);
  QWC_LAUNCH_CHECK("launch_dca_attention");
  if (a.n_split == 1) return warp ? "attn_dca_warp" : "attn_dca_simt";
  launch(dca_combine_kernel, dim3(a.rows, a.n_heads), dim3(a.head_dim), 0, stream, a);
  QWC_LAUNCH_CHECK("launch_dca_attention (combine)");
  return warp ? "attn_dca_warp:split" : "attn_dca_simt:split";
}

}  // namespace qwc
