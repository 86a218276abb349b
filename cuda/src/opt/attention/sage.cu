// sage.cu — SageAttention prefill kernels (sage.cuh has the plan; sage_ref.hpp the roundings they reproduce).
#include "sage.cuh"

#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common.cuh"
#include "fa3_prefill.cuh"
#include "mma_sync.cuh"

namespace qwc {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;
constexpr float kE4m3Max = 448.0f;
constexpr int kThreads = 128;  // 4 warps x 16 mma rows = 64 rows per attend block
constexpr int kRows = 64;
constexpr int kStatStrands = 8;  // key strands per channel in the stats pass (blockDim.y)

// D = A.B + D: A 16x32 int8 (row), B 32x8 int8 (col), int32 accumulators.
__device__ __forceinline__ void mma_s8(int c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// D = A.B + D: A 16x32 e4m3 (row), B 32x8 e4m3 (col), fp32 accumulators. sm_89+ (the sm_80 image traps: the
// launcher refuses sage-fp8 below 8.9, see sage_unsupported).
__device__ __forceinline__ void mma_e4m3(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();
#endif
}
// Two floats to e4m3 (round to nearest even, saturating at +-448: sage_ref.hpp e4m3_encode), lo in the low byte.
__device__ __forceinline__ uint32_t e4m3x2(float lo, float hi) {
  return (uint32_t)__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3);
}
__device__ __forceinline__ float block_max(float v, float *red) {  // blockDim.x == kThreads
  v = warp_max(v);
  const int warp = threadIdx.x >> 5;
  __syncthreads();  // red may still be read from a previous call
  if ((threadIdx.x & 31) == 0) red[warp] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < kThreads / 32; ++w) v = fmaxf(v, red[w]);
  return v;
}
// rint(x * inv) clamped to +-127: quant_int8_block of sage_ref.hpp (the same fp32 product, round half to even).
__device__ __forceinline__ int8_t q8(float x, float inv) {
  return (int8_t)fminf(127.f, fmaxf(-127.f, rintf(__fmul_rn(x, inv))));
}

// ---- 1. stats: grid (chunks, nKV), (d, kStatStrands) threads ----------------------------------------------------
// Strand j of channel c sums keys k0 + j, k0 + j + kStatStrands, ... of the chunk; the strands' partials are added in
// strand order. One strand per channel over 1024 keys (the first version) was a serial chain of dependent loads:
// ~170 us at 4k on an H100, as long as the wgmma attend itself at that length. The fp64 order differs from the
// reference's key order only by fp64 roundings (~1e-16 relative), far below the fp32 the mean is rounded to.
__global__ void __launch_bounds__(1024) sage_stats_kernel(const SagePrefillArgs a, const SageBufs w, int len, int chunks) {
  pdl_wait();
  pdl_trigger();
  __shared__ double ks_s[kStatStrands][128], vsum_s[kStatStrands][128];
  __shared__ float vmin_s[kStatStrands][128], vmax_s[kStatStrands][128];
  const int ch = blockIdx.x, kvh = blockIdx.y, c = threadIdx.x, j = threadIdx.y, D = a.p.head_dim;
  const size_t base = ((size_t)a.p.slot * a.p.n_kv + kvh) * a.p.max_ctx * D;
  const int k0 = ch * kSageChunk, k1 = min(len, k0 + kSageChunk);
  double ks = 0, vsum = 0;
  float vmin = INFINITY, vmax = -INFINITY;
#pragma unroll 4
  for (int k = k0 + j; k < k1; k += kStatStrands) {
    ks += (double)__bfloat162float(a.p.kcache[base + (size_t)k * D + c]);
    const float v = __bfloat162float(a.p.vcache[base + (size_t)k * D + c]);
    vsum += (double)v;
    vmin = fminf(vmin, v);
    vmax = fmaxf(vmax, v);
  }
  ks_s[j][c] = ks; vsum_s[j][c] = vsum; vmin_s[j][c] = vmin; vmax_s[j][c] = vmax;
  __syncthreads();
  if (j) return;
  for (int t = 1; t < kStatStrands; ++t) {
    ks += ks_s[t][c]; vsum += vsum_s[t][c];
    vmin = fminf(vmin, vmin_s[t][c]); vmax = fmaxf(vmax, vmax_s[t][c]);
  }
  const size_t o = (((size_t)kvh * chunks + ch) * 2) * D + c;
  w.part[o] = ks;
  w.part[o + D] = vsum;
  w.vext[o] = vmin;
  w.vext[o + D] = vmax;
}

// ---- 1b. stats final: grid nKV, d threads: the chunks' partials (chunk order) into the smoothing vectors ----------
__global__ void sage_stats_final_kernel(const SagePrefillArgs a, const SageBufs w, int len, int chunks) {
  pdl_wait();
  pdl_trigger();
  const int kvh = blockIdx.x, c = threadIdx.x, D = a.p.head_dim;
  double ks = 0, vsum = 0;
  float vmin = INFINITY, vmax = -INFINITY;
  for (int ch = 0; ch < chunks; ++ch) {
    const size_t o = (((size_t)kvh * chunks + ch) * 2) * D + c;
    ks += w.part[o];
    vsum += w.part[o + D];
    vmin = fminf(vmin, w.vext[o]);
    vmax = fmaxf(vmax, w.vext[o + D]);
  }
  const float mu = (float)(vsum / (double)len);
  // max|V - mu| over the keys: the extremes of V are where it is reached (V - mu is monotonic in V).
  const float mx = fmaxf(fabsf(__fsub_rn(vmax, mu)), fabsf(__fsub_rn(vmin, mu)));
  const size_t i = (size_t)kvh * D + c;
  w.kmean[i] = (float)(ks / (double)len);
  w.vmean[i] = mu;
  w.vinv[i] = mx > 0.f ? kE4m3Max / mx : 0.f;
  w.vs[i] = mx / kE4m3Max;
}

// ---- 2. kv quant: grid (ceil(len / 64), nKV), 128 threads --------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) sage_kv_quant_kernel(const SagePrefillArgs a, const SageBufs w, int len) {
  pdl_wait();
  pdl_trigger();
  __shared__ float mean_s[D], vmu_s[D], vinv_s[D];
  __shared__ float kf_s[kSageKeys][D];
  __shared__ float red_s[kThreads / 32];
  const int blk = blockIdx.x, kvh = blockIdx.y, k0 = blk * kSageKeys;
  const size_t base = ((size_t)a.p.slot * a.p.n_kv + kvh) * a.p.max_ctx * D;
  for (int c = threadIdx.x; c < D; c += kThreads) {
    mean_s[c] = w.kmean[(size_t)kvh * D + c];
    vmu_s[c] = w.vmean[(size_t)kvh * D + c];
    vinv_s[c] = w.vinv[(size_t)kvh * D + c];
  }
  __syncthreads();
  // K~ of the block (rows past len are zero: they are masked, and a zero keeps the block's max honest)
  float mx = 0.f;
  for (int i = threadIdx.x; i < kSageKeys * D; i += kThreads) {
    const int r = i / D, c = i - r * D;
    const float x = k0 + r < len ? __fsub_rn(__bfloat162float(a.p.kcache[base + (size_t)(k0 + r) * D + c]), mean_s[c]) : 0.f;
    kf_s[r][c] = x;
    mx = fmaxf(mx, fabsf(x));
  }
  mx = block_max(mx, red_s);
  const float inv = mx > 0.f ? 127.f / mx : 0.f;
  int8_t *kq = w.ki + ((size_t)kvh * w.ctx64 + k0) * D;
  for (int i = threadIdx.x; i < kSageKeys * D; i += kThreads) kq[i] = q8(kf_s[i / D][i % D], inv);
  if (threadIdx.x == 0) w.ks[(size_t)kvh * (w.ctx64 / kSageKeys) + blk] = mx / 127.f;
  if (!a.fp8) return;
  // V~ as e4m3, transposed and in sage_vt_pos order: thread i writes one byte of [c][k0 + pos(r)]
  uint8_t *vt = w.vt + (size_t)kvh * D * w.ctx64;
  for (int i = threadIdx.x; i < kSageKeys * D; i += kThreads) {
    const int c = i / kSageKeys, r = i - c * kSageKeys;
    float x = 0.f;
    if (k0 + r < len) x = __fmul_rn(__fsub_rn(__bfloat162float(a.p.vcache[base + (size_t)(k0 + r) * D + c]), vmu_s[c]), vinv_s[c]);
    vt[(size_t)c * w.ctx64 + k0 + (r & ~31) + sage_vt_pos(r & 31)] =
        (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
  }
}

// ---- 3. q quant: grid (ceil(n / 32), nH), 128 threads ------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThreads) sage_q_quant_kernel(const SagePrefillArgs a, const SageBufs w) {
  pdl_wait();
  pdl_trigger();
  __shared__ float red_s[kThreads / 32];
  const int blk = blockIdx.x, h = blockIdx.y, r0 = blk * kSageQRows, nr = min(kSageQRows, a.p.n - r0);
  const int qdim = a.p.n_heads * D;
  float mx = 0.f;
  for (int i = threadIdx.x; i < nr * D; i += kThreads) {
    const int r = i / D, c = i - r * D;
    mx = fmaxf(mx, fabsf(__bfloat162float(a.p.q[(size_t)(r0 + r) * qdim + h * D + c])));
  }
  mx = block_max(mx, red_s);
  const float inv = mx > 0.f ? 127.f / mx : 0.f;
  for (int i = threadIdx.x; i < nr * D; i += kThreads) {
    const int r = i / D, c = i - r * D;
    w.qi[((size_t)(r0 + r) * a.p.n_heads + h) * D + c] = q8(__bfloat162float(a.p.q[(size_t)(r0 + r) * qdim + h * D + c]), inv);
  }
  if (threadIdx.x == 0) w.qs[(size_t)h * ((w.rows + kSageQRows - 1) / kSageQRows) + blk] = mx / 127.f;
}

// ---- 4. attend: grid (ceil(n / R), nKV), 128 threads --------------------------------------------------------------
template <int D, bool FP8>
struct SageSmem {
  static constexpr int LDI = D + 16;                   // int8 row (bytes): 16-byte aligned, conflict-free ldmatrix
  static constexpr int LDV = FP8 ? kSageKeys + 16 : D + 8;  // V row: e4m3 bytes of one channel, or bf16 of one key
  static constexpr size_t q = (size_t)kRows * LDI;
  static constexpr size_t k = (size_t)2 * kSageKeys * LDI;
  static constexpr size_t v = FP8 ? (size_t)2 * D * LDV : (size_t)2 * kSageKeys * LDV * 2;
  static constexpr size_t bytes = q + k + v;
};

template <int D, bool FP8>
__global__ void __launch_bounds__(kThreads) sage_attend_kernel(const SagePrefillArgs a, const SageBufs w) {
  pdl_wait();
  pdl_trigger();
  using S = SageSmem<D, FP8>;
  extern __shared__ __align__(16) unsigned char smem[];
  int8_t *q_s = reinterpret_cast<int8_t *>(smem);
  int8_t *k_s = q_s + S::q;
  unsigned char *v_s = smem + S::q + S::k;

  const int G = a.p.n_heads / a.p.n_kv, R = kRows / G, kvh = blockIdx.y;
  const int p0 = blockIdx.x * R;                         // first query row (of the call) of this block
  const int rows_here = min(R, a.p.n - p0);
  const int kv_end = a.p.pos0 + p0 + rows_here;            // keys this block needs
  const int n_tiles = (kv_end + kSageKeys - 1) / kSageKeys;
  const int qblocks = (w.rows + kSageQRows - 1) / kSageQRows;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;

  // Q tile: packed row m = position p0 + m / G, query head kvh * G + m % G
  for (int i = threadIdx.x; i < kRows * (D / 16); i += kThreads) {
    const int m = i / (D / 16), c = (i % (D / 16)) * 16;
    const int r = p0 + m / G;
    const bool ok = m < R * G && r < a.p.n;
    cp_async16(q_s + m * S::LDI + c, w.qi + ((size_t)(ok ? r : 0) * a.p.n_heads + kvh * G + m % G) * D + c, ok);
  }
  const int8_t *kbase = w.ki + (size_t)kvh * w.ctx64 * D;
  const __nv_bfloat16 *vbase = a.p.vcache + ((size_t)a.p.slot * a.p.n_kv + kvh) * a.p.max_ctx * D;
  const uint8_t *vtbase = w.vt + (size_t)kvh * D * w.ctx64;
  auto load_kv = [&](int tile, int buf) {
    const int k0 = tile * kSageKeys;
    for (int i = threadIdx.x; i < kSageKeys * (D / 16); i += kThreads) {
      const int r = i / (D / 16), c = (i % (D / 16)) * 16;
      const bool ok = k0 + r < kv_end;
      cp_async16(k_s + (buf * kSageKeys + r) * S::LDI + c, kbase + (size_t)(ok ? k0 + r : 0) * D + c, ok);
    }
    if (FP8) {  // D channel rows of 64 key bytes (whole tiles exist in vt: ctx64 columns)
      for (int i = threadIdx.x; i < D * (kSageKeys / 16); i += kThreads) {
        const int c = i / (kSageKeys / 16), j = (i % (kSageKeys / 16)) * 16;
        cp_async16(v_s + (size_t)(buf * D + c) * S::LDV + j, vtbase + (size_t)c * w.ctx64 + k0 + j, true);
      }
    } else {
      __nv_bfloat16 *vb = reinterpret_cast<__nv_bfloat16 *>(v_s);
      for (int i = threadIdx.x; i < kSageKeys * (D / 8); i += kThreads) {
        const int r = i / (D / 8), c = (i % (D / 8)) * 8;
        const bool ok = k0 + r < kv_end;
        cp_async16(vb + (buf * kSageKeys + r) * S::LDV + c, vbase + (size_t)(ok ? k0 + r : 0) * D + c, ok);
      }
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  // this thread's two mma rows: m = 16 warp + g (+ 8)
  float deq_q[2];
  int qpos[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int m = warp * 16 + g + 8 * r, row = p0 + m / G;
    const bool ok = m < R * G && row < a.p.n;
    qpos[r] = ok ? a.p.pos0 + row : -1;  // -1: every key masked (padding row, never written)
    deq_q[r] = ok ? w.qs[(size_t)(kvh * G + m % G) * qblocks + row / kSageQRows] : 0.f;
  }
  const float sm = rsqrtf((float)D) * kLog2e;
  const float *ksc = w.ks + (size_t)kvh * (w.ctx64 / kSageKeys);

  uint32_t qa[D / 32][4];
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_run[2] = {kNegBig, kNegBig}, l[2] = {0.f, 0.f};

  for (int tile = 0; tile < n_tiles; ++tile) {
    const int buf = tile & 1;
    if (tile + 1 < n_tiles) load_kv(tile + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (tile == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 32; ++kk)
        ldsm_x4(qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], q_s + (warp * 16 + (lane & 15)) * S::LDI + kk * 32 + (lane >> 4) * 16);
    }
    const int k0 = tile * kSageKeys;
    const int8_t *kt = k_s + buf * kSageKeys * S::LDI;
    int si[kSageKeys / 8][4];
#pragma unroll
    for (int i = 0; i < kSageKeys / 8; ++i) si[i][0] = si[i][1] = si[i][2] = si[i][3] = 0;
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk) {
#pragma unroll
      for (int np = 0; np < kSageKeys / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, kt + (np * 16 + (lane & 7) + (lane >> 4) * 8) * S::LDI + kk * 32 + ((lane >> 3) & 1) * 16);
        mma_s8(si[2 * np], qa[kk], b0, b1);
        mma_s8(si[2 * np + 1], qa[kk], b2, b3);
      }
    }
    // dequantize (float(dot) * (sq * sk) * sm, in log2 units), mask, online softmax
    const float sk = ksc[tile];
    const float deq[2] = {deq_q[0] * sk * sm, deq_q[1] * sk * sm};
    float s[kSageKeys / 8][4];
    float mx[2] = {kNegBig, kNegBig};
#pragma unroll
    for (int nt = 0; nt < kSageKeys / 8; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int kp = k0 + nt * 8 + 2 * t4 + (c & 1), r = c >> 1;
        const float v = (kp <= qpos[r] && kp < kv_end) ? sage_s32_to_float(si[nt][c]) * deq[r] : kNegBig;  // exact, no I2F
        s[nt][c] = v;
        mx[r] = fmaxf(mx[r], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m_run[r], mx[r]);
      alpha[r] = exp2f(m_run[r] - mn);
      m_run[r] = mn;
      l[r] *= alpha[r];
    }
    if (!FP8) {
      // P in bf16 on m16n8k16 (A from the accumulators as in the flash kernel); l sums the unrounded p (sage_ref.hpp)
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        o[i][0] *= alpha[0]; o[i][1] *= alpha[0];
        o[i][2] *= alpha[1]; o[i][3] *= alpha[1];
      }
      uint32_t pa[kSageKeys / 16][4];
#pragma unroll
      for (int nt = 0; nt < kSageKeys / 8; ++nt) {
        float p[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) p[c] = s[nt][c] <= kNegBig ? 0.f : exp2f(s[nt][c] - m_run[c >> 1]);
        const uint32_t lo = pack_bf16(p[0], p[1]), hi = pack_bf16(p[2], p[3]);
        l[0] += p[0] + p[1];
        l[1] += p[2] + p[3];
        pa[nt >> 1][(nt & 1) * 2 + 0] = lo;
        pa[nt >> 1][(nt & 1) * 2 + 1] = hi;
      }
      const __nv_bfloat16 *vt = reinterpret_cast<const __nv_bfloat16 *>(v_s) + buf * kSageKeys * S::LDV;
#pragma unroll
      for (int j = 0; j < kSageKeys / 16; ++j) {
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4_t(b0, b1, b2, b3, vt + (j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * S::LDV + dp * 16 + (lane >> 4) * 8);
          mma_bf16(o[2 * dp], pa[j], b0, b1);
          mma_bf16(o[2 * dp + 1], pa[j], b2, b3);
        }
      }
    } else {
      // P * 448 in e4m3 straight from the accumulators: byte q of a0 = key (q < 2 ? 2t + q : 8 + 2t + q - 2) of the
      // 16-key half, which is the column sage_vt_pos gave that key in V. l sums the unrounded p.
      uint32_t pa[kSageKeys / 32][4];
#pragma unroll
      for (int kc = 0; kc < kSageKeys / 32; ++kc) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int n0 = kc * 4 + hf * 2;  // n-tiles n0 (keys 2t, 2t+1) and n0 + 1 (keys 8 + 2t, 8 + 2t + 1)
          float p[2][4];
#pragma unroll
          for (int u = 0; u < 2; ++u)
#pragma unroll
            for (int c = 0; c < 4; ++c)
              p[u][c] = s[n0 + u][c] <= kNegBig ? 0.f : exp2f(s[n0 + u][c] - m_run[c >> 1]);
          l[0] += (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
          l[1] += (p[0][2] + p[0][3]) + (p[1][2] + p[1][3]);
#pragma unroll
          for (int u = 0; u < 2; ++u)
#pragma unroll
            for (int c = 0; c < 4; ++c) p[u][c] *= kE4m3Max;
          const uint32_t r0lo = e4m3x2(p[0][0], p[0][1]), r0hi = e4m3x2(p[1][0], p[1][1]);
          const uint32_t r1lo = e4m3x2(p[0][2], p[0][3]), r1hi = e4m3x2(p[1][2], p[1][3]);
          pa[kc][hf * 2 + 0] = r0lo | (r0hi << 16);  // row g
          pa[kc][hf * 2 + 1] = r1lo | (r1hi << 16);  // row g + 8
        }
      }
      float op[D / 8][4];  // this tile's partial (level one), added to o after the rescale (level two)
#pragma unroll
      for (int i = 0; i < D / 8; ++i) op[i][0] = op[i][1] = op[i][2] = op[i][3] = 0.f;
      const unsigned char *vt = v_s + (size_t)buf * D * S::LDV;
#pragma unroll
      for (int kc = 0; kc < kSageKeys / 32; ++kc) {
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4(b0, b1, b2, b3, vt + (dp * 16 + (lane & 7) + (lane >> 4) * 8) * S::LDV + kc * 32 + ((lane >> 3) & 1) * 16);
          mma_e4m3(op[2 * dp], pa[kc], b0, b1);
          mma_e4m3(op[2 * dp + 1], pa[kc], b2, b3);
        }
      }
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        o[i][0] = fmaf(o[i][0], alpha[0], op[i][0]); o[i][1] = fmaf(o[i][1], alpha[0], op[i][1]);
        o[i][2] = fmaf(o[i][2], alpha[1], op[i][2]); o[i][3] = fmaf(o[i][3], alpha[1], op[i][3]);
      }
    }
    __syncthreads();  // buffer `buf` is refilled by the next iteration's prefetch
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int qdim = a.p.n_heads * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (qpos[r] < 0) continue;
    const int m = warp * 16 + g + 8 * r, row = p0 + m / G, h = kvh * G + m % G;
    const float inv_l = 1.f / l[r];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      const int c = nt * 8 + 2 * t4;
      float z0 = o[nt][2 * r] * inv_l, z1 = o[nt][2 * r + 1] * inv_l;
      if (FP8) {  // z = acc * (vs / 448) / l + vmean
        const float *vs = w.vs + (size_t)kvh * D, *vm = w.vmean + (size_t)kvh * D;
        z0 = fmaf(o[nt][2 * r] * (vs[c] / kE4m3Max), inv_l, vm[c]);
        z1 = fmaf(o[nt][2 * r + 1] * (vs[c + 1] / kE4m3Max), inv_l, vm[c + 1]);
      }
      *reinterpret_cast<uint32_t *>(a.p.out + (size_t)row * qdim + h * D + c) = pack_bf16(z0, z1);
    }
  }
}

// Sage on wgmma (fa3_prefill.cu, the flash kernel with an INT8 Q.K~, and for sage-fp8 an e4m3 P.V) at head dim 128 on
// an sm_90 device whose flash kernel can run the call, unless QW_SAGE_WGMMA=0; otherwise the mma.sync attend kernel.
// The default since its H100 run (2026-12-05 third run: every lab case within 1e-2 of the CPU arm; int8 at 16k
// 2.4x the mma.sync attend). Read at every call.
bool sage_wgmma(const SagePrefillArgs &a) {
  if (!env_switch_on("QW_SAGE_WGMMA", "the mma.sync attend kernel", "wgmma on sm_90") || a.p.head_dim != 128) return false;
  return *fa3_prefill_unsupported_here(a.p) == '\0';
}

template <int D>
const char *launch_d(const SagePrefillArgs &a, int len, cudaStream_t s) {
  const int chunks = (len + kSageChunk - 1) / kSageChunk;
  const SageBufs &w = a.ws->b;
  launch(sage_stats_kernel, dim3(chunks, a.p.n_kv), dim3(D, kStatStrands), 0, s, a, w, len, chunks);
  launch(sage_stats_final_kernel, dim3(a.p.n_kv), D, 0, s, a, w, len, chunks);
  launch(sage_kv_quant_kernel<D>, dim3((len + kSageKeys - 1) / kSageKeys, a.p.n_kv), kThreads, 0, s, a, w, len);
  launch(sage_q_quant_kernel<D>, dim3((a.p.n + kSageQRows - 1) / kSageQRows, a.p.n_heads), kThreads, 0, s, a, w);
  if (sage_wgmma(a)) {
    Fa3Sage q8;
    q8.qi = w.qi; q8.qs = w.qs; q8.ki = w.ki; q8.ks = w.ks;
    q8.vt = w.vt; q8.vs = w.vs; q8.vmean = w.vmean;
    q8.qs_stride = (w.rows + kSageQRows - 1) / kSageQRows;
    q8.ctx64 = w.ctx64;
    return launch_sage_fa3(a.p, q8, a.fp8, s);
  }
  const int G = a.p.n_heads / a.p.n_kv, R = kRows / G;
  const dim3 grid((a.p.n + R - 1) / R, a.p.n_kv);
  if (a.fp8) {
    constexpr size_t smem = SageSmem<D, true>::bytes;
    static SmemOptIn opt_in;  // per device (common.cuh)
    opt_in(sage_attend_kernel<D, true>, smem);
    launch(sage_attend_kernel<D, true>, grid, kThreads, smem, s, a, w);
    return "attn_prefill_sage_fp8";
  } else {
    constexpr size_t smem = SageSmem<D, false>::bytes;
    static SmemOptIn opt_in;  // per device (common.cuh)
    opt_in(sage_attend_kernel<D, false>, smem);
    launch(sage_attend_kernel<D, false>, grid, kThreads, smem, s, a, w);
    return "attn_prefill_sage_int8";
  }
}

}  // namespace

void SageScratch::release() {
  if (base) cudaFree(base);
  base = nullptr;
  bytes = 0;
  b = SageBufs{};
}

void SageScratch::ensure(int32_t r, int32_t nH, int32_t nKV, int32_t d, int32_t max_ctx) {
  const int32_t c64 = (max_ctx + kSageKeys - 1) / kSageKeys * kSageKeys;
  if (base && r <= b.rows && nH == b.n_heads && nKV == b.n_kv && d == b.head_dim && c64 <= b.ctx64) return;
  r = std::max(r, b.rows);
  const size_t chunks = (size_t)(c64 + kSageChunk - 1) / kSageChunk;
  auto up = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t b_qi = up((size_t)r * nH * d), b_qs = up((size_t)nH * ((r + kSageQRows - 1) / kSageQRows) * 4);
  const size_t b_ki = up((size_t)nKV * c64 * d), b_ks = up((size_t)nKV * (c64 / kSageKeys) * 4);
  const size_t b_vt = up((size_t)nKV * d * c64), b_vs = up((size_t)nKV * d * 4);
  const size_t b_part = up((size_t)nKV * chunks * 2 * d * 8), b_vext = up((size_t)nKV * chunks * 2 * d * 4);
  const size_t total = b_qi + b_qs + b_ki + b_ks + b_vt + 4 * b_vs + b_part + b_vext;
  release();
  // No memset (it would run on the legacy stream, unordered with the session's non-blocking stream): every byte a
  // call's attend kernel reads was written by that call's quant kernels (whole 64-key blocks, zero past len).
  QWC_CHECK(cudaMalloc(&base, total));
  bytes = total;
  unsigned char *p = static_cast<unsigned char *>(base);
  auto take = [&p](size_t b) { unsigned char *q = p; p += b; return q; };
  b.qi = reinterpret_cast<int8_t *>(take(b_qi));
  b.qs = reinterpret_cast<float *>(take(b_qs));
  b.ki = reinterpret_cast<int8_t *>(take(b_ki));
  b.ks = reinterpret_cast<float *>(take(b_ks));
  b.vt = take(b_vt);
  b.vs = reinterpret_cast<float *>(take(b_vs));
  b.vmean = reinterpret_cast<float *>(take(b_vs));
  b.kmean = reinterpret_cast<float *>(take(b_vs));
  b.vinv = reinterpret_cast<float *>(take(b_vs));
  b.part = reinterpret_cast<double *>(take(b_part));
  b.vext = reinterpret_cast<float *>(take(b_vext));
  b.rows = r; b.n_heads = nH; b.n_kv = nKV; b.head_dim = d; b.ctx64 = c64;
}

const char *sage_unsupported(bool fp8, int32_t head_dim, int32_t n_heads, int32_t n_kv, int device) {
  if (head_dim != 64 && head_dim != 128) return "the Sage kernels need head_dim 64 or 128";
  if (n_kv <= 0 || n_heads % n_kv || n_heads / n_kv > 8) return "the Sage kernels need nH / nKV <= 8";
  if (fp8) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
      return "could not read the device's compute capability";
    if (major * 10 + minor < 89) return "sage-fp8 needs FP8 tensor cores (compute capability 8.9 or newer)";
  }
  return "";
}

const char *launch_sage_prefill(const SagePrefillArgs &a0, cudaStream_t s) {
  const char *name = a0.fp8 ? "attn_prefill_sage_fp8" : "attn_prefill_sage_int8";
  if (a0.p.n <= 0) return name;
  if (!a0.ws) throw CudaError("sage prefill: no scratch");
  const int len = a0.p.pos0 + a0.p.n;
  if (len > a0.p.max_ctx) throw CudaError("sage prefill: pos0 + n exceeds max_ctx");
  a0.ws->ensure(a0.p.n, a0.p.n_heads, a0.p.n_kv, a0.p.head_dim, a0.p.max_ctx);
  const SagePrefillArgs &a = a0;  // the kernels get the scratch's pointers by value (SageBufs), never a.ws
  switch (a.p.head_dim) {
    case 64: name = launch_d<64>(a, len, s); break;
    case 128: name = launch_d<128>(a, len, s); break;
    default: throw CudaError(std::string("sage prefill: ") + sage_unsupported(a.fp8, a.p.head_dim, a.p.n_heads, a.p.n_kv, 0));
  }
  QWC_LAUNCH_CHECK("launch_sage_prefill");
  return name;
}

}  // namespace qwc
