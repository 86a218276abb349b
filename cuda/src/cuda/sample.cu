// sample.cu — argmax sampling and the fp32 residual add (see sample.cuh).
#include "sample.cuh"

#include <algorithm>

namespace qwc {
namespace {
// (value, id) order: larger value first, then lower id; NaN loses to everything.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  if (isnan(v)) return false;
  if (bi < 0 || isnan(bv)) return true;
  return v > bv || (v == bv && i < bi);
}
__global__ void __launch_bounds__(1024) argmax_kernel(int32_t *out, const float *logits, int32_t vocab, int64_t ld,
                                                      int32_t none) {
  pdl_wait();
  pdl_trigger();
  __shared__ float sv[32];
  __shared__ int si[32];
  const float *row = logits + blockIdx.x * ld;
  float bv = 0.f;
  int bi = -1;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
  }
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  if (l == 0) { sv[w] = bv; si[w] = bi; }
  __syncthreads();
  if (w == 0) {
    const int nw = blockDim.x >> 5;
    bv = l < nw ? sv[l] : 0.f;
    bi = l < nw ? si[l] : -1;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi >= 0 && better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    if (l == 0) out[blockIdx.x] = bi < 0 ? none : bi;
  }
}
// ---- sampling ----------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t orderable(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
// larger key = earlier in the order (logit desc, id asc); never 0 for a real candidate
__device__ __forceinline__ uint64_t order_key(float l, int id) {
  return ((uint64_t)orderable(l) << 32) | (uint64_t)(0xffffffffu - (uint32_t)id);
}
constexpr int kST = 1024;
__device__ double block_sum_d(double v, double *red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    double x = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0;
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (threadIdx.x == 0) red[0] = x;
  }
  __syncthreads();
  const double r = red[0];
  __syncthreads();
  return r;
}
// Largest key X among candidates with key >= lower such that S(X) = sum_{key >= X} weight (cmp) thr,
// where weight is w (use_count = false) or 1 (use_count = true); cmp is >= (strict = false) or > (true).
// Returns 0 when no key satisfies it.
__device__ uint64_t radix_search(const float *row, const double *w, int V, uint64_t lower, double thr, bool strict,
                                 bool use_count, double *hist /* [4][256] */, uint64_t *sh) {
  uint64_t prefix = 0, mask = 0;
  double above = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 4 * 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    double *hh = hist + 256 * ((threadIdx.x >> 5) & 3);
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float l = row[i];
      if (isnan(l)) continue;
      const uint64_t key = order_key(l, i);
      if (key < lower || (key & mask) != prefix) continue;
      atomicAdd(&hh[(key >> shift) & 255], use_count ? 1.0 : w[i]);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int pick = -1;
      double cum = above;
      for (int b = 255; b >= 0; --b) {
        const double hb = hist[b] + hist[256 + b] + hist[512 + b] + hist[768 + b];
        const double s = cum + hb;
        if (hb > 0 && (strict ? s > thr : s >= thr)) { pick = b; break; }
        cum = s;
      }
      sh[0] = pick < 0 ? ~0ull : (uint64_t)pick;
      reinterpret_cast<double *>(sh)[1] = cum;
    }
    __syncthreads();
    const uint64_t pick = sh[0];
    above = reinterpret_cast<double *>(sh)[1];
    __syncthreads();
    if (pick == ~0ull) return 0;
    prefix |= pick << shift;
    mask |= 255ull << shift;
  }
  return prefix;
}

__global__ void __launch_bounds__(kST) sample_kernel(int32_t *out, const float *logits, const SampleRow *params,
                                                     double *wbuf, int V, int64_t ld) {
  pdl_wait();
  pdl_trigger();
  __shared__ double hist[4 * 256];
  __shared__ double red[32];
  __shared__ uint64_t sh[2];
  __shared__ float fred[32];
  __shared__ int ired[32];
  const float *row = logits + blockIdx.x * ld;
  double *w = wbuf + (size_t)blockIdx.x * V;
  const SampleRow p = params[blockIdx.x];
  // max over non-NaN (with the argmax id for the greedy path), count of candidates
  // (each thread visits its ids in increasing order and keeps the first of equal maxima; the reductions below
  // break ties by the lower id: the same result for any partition of the row)
  float bv = 0.f;
  int bi = -1, cnt = 0;
  auto visit = [&](float v, int i) {
    if (isnan(v)) return;
    ++cnt;
    if (bi < 0 || v > bv) { bv = v; bi = i; }
  };
  if ((V % 4) == 0 && (reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    // 16-byte loads, 4 in flight per thread: one 1024-thread block reads the 600 KB row in a few round trips
    const float4 *row4 = reinterpret_cast<const float4 *>(row);
    const int n4 = V / 4;
#pragma unroll 4
    for (int j = threadIdx.x; j < n4; j += blockDim.x) {
      const float4 v = row4[j];
      visit(v.x, 4 * j); visit(v.y, 4 * j + 1); visit(v.z, 4 * j + 2); visit(v.w, 4 * j + 3);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) visit(row[i], i);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
  }
  if ((threadIdx.x & 31) == 0) { fred[threadIdx.x >> 5] = bv; ired[threadIdx.x >> 5] = bi; red[threadIdx.x >> 5] = cnt; }
  __syncthreads();
  if (threadIdx.x == 0) {
    float mv = 0.f;
    int mi = -1;
    double n = 0;
    for (int k = 0; k < (int)(blockDim.x >> 5); ++k) {
      n += red[k];
      if (ired[k] >= 0 && (mi < 0 || fred[k] > mv || (fred[k] == mv && ired[k] < mi))) { mv = fred[k]; mi = ired[k]; }
    }
    fred[0] = mv; ired[0] = mi; red[0] = n;
  }
  __syncthreads();
  const float m = fred[0];
  const int amax = ired[0];
  const double n_cand = red[0];
  __syncthreads();
  if (amax < 0) { if (threadIdx.x == 0) out[blockIdx.x] = 0; return; }
  if (!(p.temperature > 0.f)) { if (threadIdx.x == 0) out[blockIdx.x] = amax; return; }
  // top-k: the lowest kept key
  uint64_t lower = 1;
  if (p.top_k > 0 && (double)p.top_k < n_cand) lower = radix_search(row, w, V, 1, (double)p.top_k, false, true, hist, sh);
  // weights of the kept candidates
  double tot = 0;
  const double T = (double)p.temperature;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float l = row[i];
    double wi = 0;
    if (!isnan(l) && order_key(l, i) >= lower) wi = exp(((double)l - (double)m) / T);
    w[i] = wi;
    tot += wi;
  }
  tot = block_sum_d(tot, red);  // also a barrier: w is complete
  double kept = tot;
  uint64_t last = lower;  // lowest kept key after top-p
  if (p.top_p < 1.0f) {
    const uint64_t P = radix_search(row, w, V, lower, (double)p.top_p * tot, false, false, hist, sh);
    if (P) {
      last = P;
      double s = 0;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float l = row[i];
        if (!isnan(l) && order_key(l, i) >= P) s += w[i];
      }
      kept = block_sum_d(s, red);
    }
  }
  const double target = (double)p.u * kept;
  uint64_t X = radix_search(row, w, V, last, target, true, false, hist, sh);
  if (!X) {
    // rounding left none: the last kept key (the smallest key >= last)
    X = radix_search(row, w, V, last, 1e300, false, true, hist, sh);  // never satisfied -> 0
    if (!X) {
      // find the minimum key >= last directly
      unsigned long long best = ~0ull;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float l = row[i];
        if (isnan(l)) continue;
        const uint64_t k = order_key(l, i);
        if (k >= last && k < best) best = k;
      }
      __shared__ unsigned long long mn;
      if (threadIdx.x == 0) mn = ~0ull;
      __syncthreads();
      atomicMin(&mn, best);
      __syncthreads();
      X = mn;
    }
  }
  if (threadIdx.x == 0) out[blockIdx.x] = (int32_t)(0xffffffffu - (uint32_t)(X & 0xffffffffu));
}

__global__ void add_f32_kernel(float *x, const float *y, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}
}  // namespace

void launch_argmax(int32_t *out, const float *logits, int32_t rows, int32_t vocab, int64_t ld, cudaStream_t s,
                   int32_t none) {
  if (rows <= 0) return;
  launch(argmax_kernel, rows, 1024, 0, s, out, logits, vocab, ld, none);
  QWC_LAUNCH_CHECK("launch_argmax");
}
void launch_sample(int32_t *out, const float *logits, const SampleRow *params, double *wbuf, int32_t rows,
                   int32_t vocab, int64_t ld, cudaStream_t s) {
  if (rows <= 0) return;
  launch(sample_kernel, rows, kST, 0, s, out, logits, params, wbuf, vocab, ld);
  QWC_LAUNCH_CHECK("launch_sample");
}
void launch_add_f32(float *x, const float *y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch(add_f32_kernel, (int)std::min<int64_t>((n + 255) / 256, 2048), 256, 0, s, x, y, n);
  QWC_LAUNCH_CHECK("launch_add_f32");
}
}  // namespace qwc
