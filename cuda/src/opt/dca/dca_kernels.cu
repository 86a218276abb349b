// dca_kernels.cu — Dual Chunk Attention kernels (see dca.cuh; the remapping is dca_positions.hpp's, shared with the CPU).
#include "dca.cuh"

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

// The warp layout (the default where d is 32, 64 or 128; QW_DCA_WARP=0 keeps the SIMT kernel above). Same grid, the
// same key groups and windows, the same partials: a block's 4 warps take its window's keys in turn, kUnroll keys per
// warp per step; a lane holds E = d / 32 dims of the group's query and of the output, so a K or V row is one coalesced
// d × 2-byte load per warp (the SIMT kernel reads a K row per thread, 4 bytes at a time) and a score one warp sum.
// Each warp runs an online softmax per group; the warps' (m, l, o) are merged in shared memory by log-sum-exp.
template <int E>
__global__ void __launch_bounds__(kThreads) dca_attention_warp_kernel(const DcaAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  constexpr int D = 32 * E, kWarps = kThreads / 32, kUnroll = 4;
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qdim = a.n_heads * D, kh = h / (a.n_heads / a.n_kv);
  const int i = a.row_pos[r];
  const int64_t slot = a.row_slot[r];
  const int s = qw::dca::span(a.chunk, a.local), ci = i / s;
  int w_lo, w_hi;
  qw::dca::decode_window(i, a.n_split, blockIdx.z, &w_lo, &w_hi);
  const __nv_bfloat16 *K = a.kcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * D + lane * E;
  const __nv_bfloat16 *V = a.vcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * D + lane * E;
  const float scale = rsqrtf((float)D);
  const int lo[3] = {max(w_lo, ci * s), max(w_lo, max(0, (ci - 1) * s)), w_lo};
  const int hi[3] = {min(w_hi, i + 1), min(w_hi, ci * s), min(w_hi, max(0, (ci - 1) * s))};
  const __nv_bfloat16 *qv[3] = {a.q_intra, a.q_succ, a.q_inter};
  __shared__ float sm_m[3][kWarps], sm_l[3][kWarps], sm_o[3][kWarps][D];
#pragma unroll  // static indices into lo / hi / qv: no local-memory arrays
  for (int g = 0; g < 3; ++g) {
    float q[E], o[E];
    load_lane<E>(qv[g] + (int64_t)r * qdim + h * D + lane * E, q);
    float m = -INFINITY, l = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) o[e] = 0.f;
    for (int k0 = lo[g] + warp * kUnroll; k0 < hi[g]; k0 += kWarps * kUnroll) {
      float sc[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        float dot = 0.f;
        if (k0 + u < hi[g]) {
          float k[E];
          load_lane<E>(K + (int64_t)(k0 + u) * D, k);
#pragma unroll
          for (int e = 0; e < E; ++e) dot = fmaf(q[e], k[e], dot);
        }
        sc[u] = k0 + u < hi[g] ? warp_sum(dot) * scale : -INFINITY;
      }
      float mt = sc[0];
#pragma unroll
      for (int u = 1; u < kUnroll; ++u) mt = fmaxf(mt, sc[u]);
      const float m_new = fmaxf(m, mt);  // finite: key k0 is in range
      const float alpha = m == -INFINITY ? 0.f : __expf(m - m_new);
      l *= alpha;
#pragma unroll
      for (int e = 0; e < E; ++e) o[e] *= alpha;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (k0 + u >= hi[g]) break;
        const float pu = __expf(sc[u] - m_new);
        float v[E];
        load_lane<E>(V + (int64_t)(k0 + u) * D, v);
        l += pu;
#pragma unroll
        for (int e = 0; e < E; ++e) o[e] = fmaf(pu, v[e], o[e]);
      }
      m = m_new;
    }
    if (lane == 0) { sm_m[g][warp] = m; sm_l[g][warp] = l; }
#pragma unroll
    for (int e = 0; e < E; ++e) sm_o[g][warp][lane * E + e] = o[e];
  }
  __syncthreads();
  if (tid >= D) return;
  // the block's partial per group: its warps' merged (a warp without keys of the group has m = -inf, weight 0)
  float M[3], L[3], O[3];
  for (int g = 0; g < 3; ++g) {
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[g][w]);
    float l = 0.f, o = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      if (sm_m[g][w] == -INFINITY) continue;
      const float f = __expf(sm_m[g][w] - mx);
      l = fmaf(f, sm_l[g][w], l);
      o = fmaf(f, sm_o[g][w][tid], o);
    }
    M[g] = mx;
    L[g] = l;
    O[g] = o;
  }
  dca_finish(a, r, h, D, tid, M, L, O);
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

int32_t dca_decode_split(int32_t n_heads, int32_t max_ctx, int32_t sms) {
  if (!env_switch_on("QW_DCA_SPLIT", "one block per decode row and head", "key windows per decode row")) return 1;
  const int by_sms = std::max(1, (2 * sms + n_heads - 1) / std::max(1, n_heads));
  const int by_work = std::max(1, max_ctx / 512);
  return std::max(1, std::min({by_sms, by_work, 32}));
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
