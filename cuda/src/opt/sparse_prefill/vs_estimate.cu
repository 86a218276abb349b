// vs_estimate.cu — vertical-slash's step 1 on tensor cores (sparsePrefill = vertical-slash, plain attention, head_dim
// 64 / 128; sparse_prefill.cuh): the last lq <= 64 queries of the step score every key by mma.sync, as one query tile
// of the flash prefill kernel, and their softmax's column sums (vertical scores) and diagonal sums (slash scores) are
// written as the SIMT estimate writes them. COMPILE-CHECKED ONLY: the lab (`qwlab sparse`: scores against the SIMT
// estimate's, step 1 timed both ways) checks it on the first GPU call.
//
// Why: the SIMT estimate (sparse_kernels.cu) runs one warp per (query, head) over every key twice and adds two fp32
// atomics per (query, key): at 128k with 28 heads it reads K about 1800 times (~115 GB) and issues ~470 M global
// atomics a layer, most of dense attention's time. Here the keys are split into runs of kEstTiles tiles, one CTA per
// (run, head), K read twice per head (max / sum, then p), column sums reduced in registers and shared memory and stored
// (each key column belongs to one CTA), diagonal sums gathered in shared memory and added once per CTA and offset.
//   1. vs_est_rows_kernel: per (run, head), each row's online max and sum of exp2 over the run's keys <= the row;
//   2. vs_est_combine_kernel: per (head, row), the rows' M and 1 / L over every run (log-sum-exp);
//   3. vs_est_lines_kernel: per (run, head), p = exp2(s - M) / L; vert[h][k] = sum over rows (stored), slash[h][o]
//      += sum over the (row, key) pairs with row - key = o (shared-memory atomics, then one global atomic per offset).
// The scores differ from the SIMT estimate's by fp32 summation order (and exp2 with log2e folded into the scale): the
// same selection up to near-ties.
#include "sparse_prefill.cuh"

#include "mma_sync.cuh"

namespace qwc {
namespace {

constexpr int kEQ = 64, kEK = 64;  // estimating query rows (lq <= 64), keys per tile
constexpr int kEstTiles = 32;      // key tiles per CTA: 2048 keys (128k: 64 runs x 28 heads = 1792 CTAs)
constexpr float kEstLog2e = 1.4426950408889634f, kEstNegBig = -1e30f;

template <int D>
__host__ __device__ constexpr size_t est_smem_bytes() { return size_t(kEQ + 2 * kEK) * (D + 8) * sizeof(__nv_bfloat16); }

// The CTA's common part: Q tile (rows r < lq: query a.rows - lq + r of the step) and a double-buffered K ring over the
// run's key tiles; calls tile_fn(s, k0) with this warp's 16 x 64 scores of each tile in log2 units, masked (key > row,
// row past the step, key past N) to kEstNegBig. Thread layout of s: the m16n8 accumulator (rows g, g + 8 of the warp's
// 16; columns nt * 8 + 2 t4 + {0, 1}).
template <int D, class F>
__device__ __forceinline__ void est_walk(const SparseAttnArgs &a, int lq, int h, int t_lo, int t_hi, F &&tile_fn) {
  constexpr int LD = D + 8;
  extern __shared__ __align__(16) unsigned char est_smem[];
  __nv_bfloat16 *q_s = reinterpret_cast<__nv_bfloat16 *>(est_smem);  // [kEQ][LD]
  __nv_bfloat16 *k_s = q_s + kEQ * LD;                                // [2][kEK][LD]
  const int N = a.pos0 + a.rows, kvh = h / (a.n_heads / a.n_kv), qdim = a.n_heads * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const __nv_bfloat16 *kbase = a.kcache + ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;
  for (int i = threadIdx.x; i < kEQ * D / 8; i += 128) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    const bool ok = r < lq;
    cp_async16(q_s + r * LD + c, a.q[0] + (int64_t)(ok ? a.rows - lq + r : 0) * qdim + h * D + c, ok);
  }
  auto load_k = [&](int tile, int buf) {
    for (int i = threadIdx.x; i < kEK * D / 8; i += 128) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8, k = tile * kEK + r;
      cp_async16(k_s + (buf * kEK + r) * LD + c, kbase + (int64_t)(k < N ? k : 0) * D + c, k < N);
    }
  };
  if (t_lo < t_hi) load_k(t_lo, 0);
  cp_async_commit();
  const float scale = rsqrtf((float)D) * kEstLog2e;
  const int i_a = N - lq + warp * 16 + g;  // position of this thread's first row (second: + 8)
  uint32_t qa[D / 16][4];
  for (int tile = t_lo; tile < t_hi; ++tile) {
    const int buf = (tile - t_lo) & 1;
    if (tile + 1 < t_hi) load_k(tile + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (tile == t_lo) mma_q_frags<D, LD>(qa, q_s, warp, lane);
    float s[kEK / 8][4];
    mma_qk_tile<D, LD, kEK>(s, qa, k_s + buf * kEK * LD, lane);
    const int k0 = tile * kEK;
#pragma unroll
    for (int nt = 0; nt < kEK / 8; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int kp = k0 + nt * 8 + 2 * t4 + (c & 1), qp = i_a + (c >> 1) * 8;
        s[nt][c] = kp <= qp && qp < N && kp < N ? s[nt][c] * scale : kEstNegBig;
      }
    tile_fn(s, k0, i_a);
    __syncthreads();  // buffer `buf` is refilled by the next iteration's prefetch; tile_fn's shared scratch is free
  }
  cp_async_wait<0>();
}

// 1. grid (runs, nH), 128 threads: ws[h][run][row] = (m, l) of the run's keys <= the row (m in log2 units).
template <int D>
__global__ void __launch_bounds__(128) vs_est_rows_kernel(const SparseAttnArgs a, int lq, float2 *ws) {
  pdl_wait();
  pdl_trigger();
  const int run = blockIdx.x, h = blockIdx.y, runs = gridDim.x, N = a.pos0 + a.rows;
  const int ntiles = (N + kEK - 1) / kEK, t_lo = run * kEstTiles, t_hi = min(ntiles, t_lo + kEstTiles);
  float m[2] = {kEstNegBig, kEstNegBig}, l[2] = {0.f, 0.f};
  est_walk<D>(a, lq, h, t_lo, t_hi, [&](float (&s)[kEK / 8][4], int, int) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = kEstNegBig;
#pragma unroll
      for (int nt = 0; nt < kEK / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mn = fmaxf(m[r], mx);
      float add = 0.f;
#pragma unroll
      for (int nt = 0; nt < kEK / 8; ++nt)
        for (int e = 0; e < 2; ++e) add += s[nt][2 * r + e] <= kEstNegBig ? 0.f : exp2f(s[nt][2 * r + e] - mn);
      l[r] = l[r] * exp2f(m[r] - mn) + add;  // m[r] = kEstNegBig = mn: exp2f(0) * 0
      m[r] = mn;
    }
  });
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if ((lane & 3) == 0) ws[((int64_t)h * runs + run) * kEQ + warp * 16 + g + 8 * r] = make_float2(m[r], l[r]);
  }
}

// 2. grid nH, kEQ threads: ml[h][row] = (M, 1 / L) over every run (L = 0 for rows past lq: 0).
__global__ void __launch_bounds__(kEQ) vs_est_combine_kernel(const float2 *ws, int runs, float2 *ml) {
  pdl_wait();
  pdl_trigger();
  const int h = blockIdx.x, r = threadIdx.x;
  float M = kEstNegBig, L = 0.f;
  for (int i = 0; i < runs; ++i) M = fmaxf(M, ws[((int64_t)h * runs + i) * kEQ + r].x);
  for (int i = 0; i < runs; ++i) {
    const float2 v = ws[((int64_t)h * runs + i) * kEQ + r];
    if (v.y > 0.f) L += v.y * exp2f(v.x - M);
  }
  ml[h * kEQ + r] = make_float2(M, L > 0.f ? 1.f / L : 0.f);
}

// 3. grid (runs, nH), 128 threads; dynamic shared memory est_smem_bytes<D>() + the column and diagonal scratch.
template <int D>
__global__ void __launch_bounds__(128) vs_est_lines_kernel(const SparseAttnArgs a, int lq, const float2 *ml,
                                                           float *scores) {
  pdl_wait();
  pdl_trigger();
  const int run = blockIdx.x, h = blockIdx.y, H = a.n_heads, N = a.pos0 + a.rows;
  const int ntiles = (N + kEK - 1) / kEK, t_lo = run * kEstTiles, t_hi = min(ntiles, t_lo + kEstTiles);
  extern __shared__ __align__(16) unsigned char est_smem[];
  float *csum = reinterpret_cast<float *>(est_smem + est_smem_bytes<D>());  // [4][kEK]: per warp column sums
  float *sl = csum + 4 * kEK;                                               // [kEstTiles * kEK + kEQ]: diagonal sums
  // the run's offsets o = row - key: rows N - lq .. N - 1, keys t_lo * 64 .. min(N, t_hi * 64) - 1
  const int o_lo = max(0, (N - lq) - (min(N, t_hi * kEK) - 1)), o_hi = (N - 1) - t_lo * kEK;
  for (int i = threadIdx.x; i < kEstTiles * kEK + kEQ; i += 128) sl[i] = 0.f;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const float2 r0 = ml[h * kEQ + warp * 16 + g], r1 = ml[h * kEQ + warp * 16 + g + 8];
  float *vert = scores + (int64_t)h * N, *slash = scores + ((int64_t)H + h) * N;
  __syncthreads();  // sl zeroed (est_walk's first barrier comes after its loads are issued)
  est_walk<D>(a, lq, h, t_lo, t_hi, [&](float (&s)[kEK / 8][4], int k0, int i_a) {
#pragma unroll
    for (int nt = 0; nt < kEK / 8; ++nt) {
      float col[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pa = s[nt][e] <= kEstNegBig ? 0.f : exp2f(s[nt][e] - r0.x) * r0.y;
        const float pb = s[nt][2 + e] <= kEstNegBig ? 0.f : exp2f(s[nt][2 + e] - r1.x) * r1.y;
        const int kp = k0 + nt * 8 + 2 * t4 + e;
        if (pa > 0.f) atomicAdd(&sl[i_a - kp - o_lo], pa);
        if (pb > 0.f) atomicAdd(&sl[i_a + 8 - kp - o_lo], pb);
        col[e] = pa + pb;
      }
#pragma unroll
      for (int e = 0; e < 2; ++e) {  // the warp's 16 rows: lanes with the same t4 (g = 0 .. 7)
        col[e] += __shfl_xor_sync(0xffffffffu, col[e], 4);
        col[e] += __shfl_xor_sync(0xffffffffu, col[e], 8);
        col[e] += __shfl_xor_sync(0xffffffffu, col[e], 16);
      }
      if (g == 0) {
        csum[warp * kEK + nt * 8 + 2 * t4] = col[0];
        csum[warp * kEK + nt * 8 + 2 * t4 + 1] = col[1];
      }
    }
    __syncthreads();
    if (threadIdx.x < kEK && k0 + threadIdx.x < N)  // each key column belongs to this CTA alone: stored
      vert[k0 + threadIdx.x] = csum[threadIdx.x] + csum[kEK + threadIdx.x] + csum[2 * kEK + threadIdx.x] +
                               csum[3 * kEK + threadIdx.x];
  });
  __syncthreads();
  for (int o = o_lo + threadIdx.x; o <= o_hi; o += 128)
    if (sl[o - o_lo] != 0.f) atomicAdd(slash + o, sl[o - o_lo]);
}

template <int D>
void launch_est(const SparseAttnArgs &a, int lq, float *scores, float2 *ws, float2 *ml, cudaStream_t stream) {
  const int N = a.pos0 + a.rows, runs = ((N + kEK - 1) / kEK + kEstTiles - 1) / kEstTiles;
  const size_t base = est_smem_bytes<D>(), lines = base + (4 * kEK + kEstTiles * kEK + kEQ) * sizeof(float);
  static SmemOptIn opt_rows, opt_lines;  // per device (common.cuh)
  opt_rows(vs_est_rows_kernel<D>, base);
  opt_lines(vs_est_lines_kernel<D>, lines);
  launch(vs_est_rows_kernel<D>, dim3(runs, a.n_heads), dim3(128), base, stream, a, lq, ws);
  QWC_LAUNCH_CHECK("vs_est_rows_kernel");
  launch(vs_est_combine_kernel, dim3(a.n_heads), dim3(kEQ), 0, stream, (const float2 *)ws, runs, ml);
  QWC_LAUNCH_CHECK("vs_est_combine_kernel");
  launch(vs_est_lines_kernel<D>, dim3(runs, a.n_heads), dim3(128), lines, stream, a, lq, (const float2 *)ml, scores);
  QWC_LAUNCH_CHECK("vs_est_lines_kernel");
}

}  // namespace

size_t vs_estimate_mma_ws_floats(const SparseAttnArgs &a) {
  const int N = a.pos0 + a.rows, runs = ((N + kEK - 1) / kEK + kEstTiles - 1) / kEstTiles;
  return size_t(2) * a.n_heads * kEQ * (size_t(runs) + 1);
}

bool vs_estimate_mma_applies(const SparseAttnArgs &a) {
  return !a.dca_span && (a.head_dim == 64 || a.head_dim == 128) && a.rows > 0;
}

void run_vs_estimate_mma(const SparseAttnArgs &a, int lq, float *scores, float *ws, cudaStream_t stream) {
  if (!vs_estimate_mma_applies(a) || lq <= 0 || lq > kEQ) throw CudaError("vertical-slash estimate (mma): plain attention, head_dim 64 or 128, 1..64 queries");
  const int N = a.pos0 + a.rows, runs = ((N + kEK - 1) / kEK + kEstTiles - 1) / kEstTiles;
  float2 *w = reinterpret_cast<float2 *>(ws), *ml = w + size_t(a.n_heads) * runs * kEQ;
  if (a.head_dim == 64) launch_est<64>(a, lq, scores, w, ml, stream);
  else launch_est<128>(a, lq, scores, w, ml, stream);
}

}  // namespace qwc
