// sparse_attend.cuh — the device pieces both sparse prefill attend kernels share (vertical-slash: sparse_kernels.cu,
// block-sparse: block_sparse_kernels.cu): one warp per (query row, head), lane c holding output columns c + 32 j, keys
// visited 32 at a time with an online softmax in fp32 over bf16 K/V. COMPILE-CHECKED ONLY, like its two users.
#pragma once

#include "sparse_prefill.cuh"

namespace qwc {

constexpr int kSparseMaxD = 128;  // head_dim <= 128 (the drivers refuse more): 4 output columns per lane

// q . K[key] of one head (d even), the query in shared memory as fp32.
__device__ __forceinline__ float sparse_qk(const float *qs, const __nv_bfloat16 *K, int64_t key, int d) {
  const __nv_bfloat162 *kr = reinterpret_cast<const __nv_bfloat162 *>(K + key * d);
  float acc = 0.f;
  for (int t = 0; t < d / 2; ++t) {
    const float2 kf = __bfloat1622float2(kr[t]);
    acc = fmaf(qs[2 * t], kf.x, fmaf(qs[2 * t + 1], kf.y, acc));
  }
  return acc;
}

// The query variants of (row r, head h) into shared memory (plain: variant 0 only; DCA: intra, successive, inter).
__device__ __forceinline__ void sparse_load_q(float (*qs)[kSparseMaxD], const SparseAttnArgs &a, int64_t r, int h) {
  const int d = a.head_dim;
  const int64_t off = r * a.n_heads * d + (int64_t)h * d;
  for (int t = threadIdx.x; t < d; t += 32)
    for (int g = 0; g < (a.dca_span ? 3 : 1); ++g) qs[g][t] = __bfloat162float(a.q[g][off + t]);
  __syncwarp();
}

// One online-softmax step over the warp's 32 keys (this lane's `key`, -1 for none; `sc` its scaled score, -inf for
// none): rescales o and l by exp(m_old - m_new), adds the keys' p * V rows. p and keys: 32-entry shared scratch.
__device__ __forceinline__ void sparse_softmax_step(float sc, int key, float &m, float &l, float (&o)[kSparseMaxD / 32],
                                                    float *p, int *keys, const __nv_bfloat16 *V, int d, int lane) {
  const float mn = fmaxf(m, warp_max(sc));
  const float alpha = m == -INFINITY ? 0.f : __expf(m - mn);
  const float e = key >= 0 ? __expf(sc - mn) : 0.f;
  p[lane] = e;
  keys[lane] = key;
  l = l * alpha + warp_sum(e);
  __syncwarp();
  for (int j = 0; j < kSparseMaxD / 32; ++j) o[j] *= alpha;
  for (int kk = 0; kk < 32; ++kk) {
    if (keys[kk] < 0) continue;
    const __nv_bfloat16 *vr = V + (int64_t)keys[kk] * d;
    for (int j = 0; j < kSparseMaxD / 32; ++j) {
      const int col = lane + 32 * j;
      if (col < d) o[j] = fmaf(p[kk], __bfloat162float(vr[col]), o[j]);
    }
  }
  m = mn;
  __syncwarp();
}

// z of (row r, head h) = o / l in bf16.
__device__ __forceinline__ void sparse_store_z(const SparseAttnArgs &a, int64_t r, int h, const float (&o)[kSparseMaxD / 32],
                                               float l, int lane) {
  __nv_bfloat16 *z = a.out + r * a.n_heads * a.head_dim + (int64_t)h * a.head_dim;
  for (int j = 0; j < kSparseMaxD / 32; ++j) {
    const int col = lane + 32 * j;
    if (col < a.head_dim) z[col] = __float2bfloat16(o[j] / l);
  }
}

// Host: copies n device ints into `host` and waits for `stream` (a device selection read back).
inline void sparse_fetch(std::vector<int32_t> &host, const int32_t *dev, size_t n, cudaStream_t stream) {
  host.resize(n);
  if (n) cuda_check(cudaMemcpyAsync(host.data(), dev, n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpyAsync", __FILE__, __LINE__);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
}

// Host: grows a device buffer to n elements (contents not kept).
template <class T>
T *sparse_grow(T *&p, size_t &cap, size_t n, const char *what) {
  if (n <= cap) return p;
  if (p) cudaFree(p);
  p = nullptr;
  cuda_check(cudaMalloc(&p, n * sizeof(T)), what, __FILE__, __LINE__);
  cap = n;
  return p;
}

}  // namespace qwc
