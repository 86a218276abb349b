// dca_kernels.cu — Dual Chunk Attention kernels (see dca.cuh; the remapping is dca_positions.hpp's, shared with the CPU).
#include "dca.cuh"

#include "dca_positions.hpp"

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
  const __nv_bfloat16 *K = a.kcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const __nv_bfloat16 *V = a.vcache + (slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const float scale = rsqrtf((float)d);
  // Key groups as dca_positions.hpp part(): 0 intra [ci s, i], 1 successive [(ci-1) s, ci s), 2 inter [0, (ci-1) s).
  const int lo[3] = {ci * s, max(0, (ci - 1) * s), 0};
  const int hi[3] = {i + 1, ci * s, max(0, (ci - 1) * s)};
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
  // Log-sum-exp merge of the non-empty partials (the intra group always holds key i itself).
  float mx = M[0];
  for (int g = 1; g < 3; ++g) mx = fmaxf(mx, M[g]);
  float num = 0.f, den = 0.f;
  for (int g = 0; g < 3; ++g) {
    if (M[g] == -INFINITY) continue;
    const float w = __expf(M[g] - mx);
    num = fmaf(w, O[g], num);
    den = fmaf(w, L[g], den);
  }
  if (tid < d) a.out[(int64_t)r * qdim + h * d + tid] = __float2bfloat16(num / den);
}

}  // namespace

void launch_dca_rope_kv(const RopeKvArgs &r, __nv_bfloat16 *q_succ, __nv_bfloat16 *q_inter, int32_t chunk, int32_t local,
                        cudaStream_t stream) {
  if (r.rows <= 0) return;
  launch(dca_rope_kernel, r.rows, 256, 0, stream, r, q_succ, q_inter, chunk, local);
  QWC_LAUNCH_CHECK("launch_dca_rope_kv");
}

const char *launch_dca_attention(const DcaAttnArgs &a, cudaStream_t stream) {
  if (a.head_dim > 128 || a.head_dim % 2) throw CudaError("dca attention: head_dim must be even and <= 128");
  if (a.rows <= 0) return "attn_dca_simt";
  launch(dca_attention_kernel, dim3(a.rows, a.n_heads), dim3(kThreads), 0, stream, a);
  QWC_LAUNCH_CHECK("launch_dca_attention");
  return "attn_dca_simt";
}

}  // namespace qwc
