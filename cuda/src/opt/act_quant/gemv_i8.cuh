// gemv_i8.cuh — the kernels and launch templates of toggle actQuant = int8 on CUDA (gemv_i8.cu says what and
// why); instantiated per weight type in gemv_i8_w4.cu / gemv_i8_w8.cu (two translation units: they compile in
// parallel), used by gemv_i8.cu's launch_gemv_i8.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "gemv.cuh"
#include "gemv_parts.cuh"

namespace qwc {
namespace i8detail {

using namespace gemv_detail;

// Run-time switches (gemv_i8.cu): QW_GEMV_I8_LOOP / gemv_i8_force_loop, QW_GEMV_I8_RING / gemv_i8_force_ring,
// QW_GEMV_I8_R4.
bool loop_on();
bool ring_on();
bool r4_on();
// How a launch walks its row tiles: one tile a block, the loop variant, or the loop variant on the ring.
enum Walk { kWalkTile = 0, kWalkLoop = 1, kWalkRing = 2 };
// The op records' name of a launch, e.g. gemv_i8_w4_r2k2_pre_loop (gemv_i8.cu; R 2 / 4, ks 1 / 2 / 4 / 8; _ring).
const char *variant_name(Walk walk, bool pre, bool w4, int r, int ks);

template <int WT> __host__ __device__ constexpr int i8_per() { return WT == WT_W4 ? 32 : 16; }  // codes per 16 bytes

// The 8 inputs of columns [k, k + 8) of token b as the exact kernels stage them (zeros where !on).
__device__ __forceinline__ void i8_octet(const GemvArgs &a, const float *rstd_s, int b, int64_t k, bool on, bool vec,
                                         float (&v)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = 0.f;
  if (!on) return;
  if (a.pro == GEMV_PRO_BF16) {
    if (vec) {
      const uint4 av = *reinterpret_cast<const uint4 *>(a.act + b * a.act_ld + k);
      v[0] = bf16_lo(av.x); v[1] = bf16_hi(av.x); v[2] = bf16_lo(av.y); v[3] = bf16_hi(av.y);
      v[4] = bf16_lo(av.z); v[5] = bf16_hi(av.z); v[6] = bf16_lo(av.w); v[7] = bf16_hi(av.w);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = __bfloat162float(a.act[b * a.act_ld + k + e]);
    }
  } else {
    const float r = rstd_s[b];
    const float *xs = a.x + b * a.x_ld + k;
    if (vec) {
      const float4 x0 = *reinterpret_cast<const float4 *>(xs), x1 = *reinterpret_cast<const float4 *>(xs + 4);
      const float4 w0 = *reinterpret_cast<const float4 *>(a.norm_w + k), w1 = *reinterpret_cast<const float4 *>(a.norm_w + k + 4);
      const float xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
      const float wv[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = bf16r(bf16r(xv[e] * r) * wv[e]);  // stage_tile's value
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = bf16r(bf16r(xs[e] * r) * a.norm_w[k + e]);
    }
  }
}

__device__ __forceinline__ uint32_t pack4(int a0, int a1, int a2, int a3) {
  return (uint32_t)(a0 & 0xff) | ((uint32_t)(a1 & 0xff) << 8) | ((uint32_t)(a2 & 0xff) << 16) | ((uint32_t)(a3 & 0xff) << 24);
}

// One octet (8 columns of a token) quantized: its codes packed (W4 in nibble order: the even columns, then the odd
// ones), its group's d and its chunk's sum of x. A group's G / 8 octets sit in gl consecutive lanes (its max is a
// shuffle reduction), a chunk's E / 8 in EL (its sum a fixed xor tree): the whole warp calls it, every lane with an
// octet (zeros past the end). The in-block staging and the pre pass both quantize through it: the same codes.
template <int WT>
__device__ __forceinline__ void quant_octet(const float (&v)[8], int gl, uint2 &p, float &d, float &s) {
  constexpr int EL = i8_per<WT>() / 8;
  float m = 0.f;
  s = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(v[e]));
  for (int w = 1; w < gl; w <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, w));
  // id = the correctly rounded 1 / d (rcp.rn: what 1.0f / d gives, cheaper); |v * id| <= 127, so adding 1.5 * 2^23
  // rounds it to the nearest integer, ties to even (the CPU's nearbyint), and the low mantissa bits are the code
  // (F2I is a quarter-rate instruction: 8 per octet bounded the staging)
  d = m / 127.0f;
  const float id = d > 0.f ? __frcp_rn(d) : 0.f;
  int q[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) q[e] = __float_as_int(__fadd_rn(__fmul_rn(v[e], id), 12582912.0f)) - 0x4B400000, s += v[e];
#pragma unroll
  for (int w = 1; w < EL; w <<= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
  if constexpr (WT == WT_W4) p = make_uint2(pack4(q[0], q[2], q[4], q[6]), pack4(q[1], q[3], q[5], q[7]));
  else p = make_uint2(pack4(q[0], q[1], q[2], q[3]), pack4(q[4], q[5], q[6], q[7]));
}

// K tile [k0, k0 + klen) of every token quantized into the block's shared memory: codes q_s[b * kt + k] (W4 in nibble
// order), per chunk (E columns) d_s[b * nct + c] and xs_s[b * nct + c]. A thread takes an octet at a time (the tile
// starts on a group: a group's octets share a warp). Barriers before (previous tile consumed) and after (staged).
template <int NB, int WT>
__device__ __forceinline__ int stage_i8(const GemvArgs &a, int8_t *q_s, float *d_s, float *xs_s, const float *rstd_s,
                                        int64_t k0, int kt, int nct, bool first) {
  constexpr int E = i8_per<WT>(), EL = E / 8;
  const int klen = (int)min((int64_t)kt, a.w.cols - k0);
  if (!first) __syncthreads();
  const int lane = threadIdx.x & 31, gl = a.w.group / 8, n8 = klen / 8;
  const bool vec = a.pro == GEMV_PRO_BF16 ? (a.act_ld % 8) == 0 : norm_vec4(a);
  // jobs: (token b, round m) = octet m * blockDim + thread of token b; two jobs' loads in flight before either is
  // quantized (one L2 round trip for both: 7B K 3584 at b1 is 2 rounds per thread). Warp-uniform: every lane reaches
  // the shuffles (lanes past the row or the batch quantize zeros and store nothing).
  const int rounds = (n8 + blockDim.x - 1) / blockDim.x, jobs = NB * rounds;
#pragma unroll 1
  for (int j = 0; j < jobs; j += 2) {
    float v[2][8];
    int bj[2], oj[2];
    bool on[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int jj = j + h;
      bj[h] = jj / rounds;
      oj[h] = (jj - bj[h] * rounds) * blockDim.x + threadIdx.x;
      on[h] = jj < jobs && oj[h] < n8;
      i8_octet(a, rstd_s, bj[h], k0 + 8 * (int64_t)oj[h], on[h] && bj[h] < a.batch, vec, v[h]);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint2 p;
      float d, s;
      quant_octet<WT>(v[h], gl, p, d, s);
      if (on[h]) {
        const int b = bj[h], o = oj[h];
        *reinterpret_cast<uint2 *>(q_s + b * kt + 8 * o) = p;
        if (lane % EL == 0) {
          d_s[b * nct + o / EL] = d;
          xs_s[b * nct + o / EL] = s;
        }
      }
    }
  }
  __syncthreads();
  return klen;
}

// The pre pass: every token's row quantized once into a.i8ws (grid: octet blocks x batch; a thread per octet, as
// stage_i8 takes them), so the GEMV's blocks copy codes instead of each quantizing the whole row (7B down at b1: 448
// blocks x 18944 columns, 9 dependent L2 round trips per thread before the first use; at b16 every matrix: 16 rows).
template <int WT>
__global__ void __launch_bounds__(kThreads) gemv_i8_quant_kernel(const GemvArgs a) {
  constexpr int EL = i8_per<WT>() / 8;
  __shared__ float rstd_s[1];
  pdl_wait();  // the activations come from the previous kernel; the GEMV after this one may launch now
  pdl_trigger();
  const int b = blockIdx.y, lane = threadIdx.x & 31;
  const int64_t K = a.w.cols, nc = K / i8_per<WT>();
  // token b's row as a batch of one: the GEMV's own rstd (norm_rstd, the same order, the same bits) and staging
  // values (i8_octet) for it, in rstd_s[0]
  GemvArgs row = a;
  row.batch = 1;
  row.x = a.x ? a.x + b * a.x_ld : nullptr;
  row.act = a.act ? a.act + b * a.act_ld : nullptr;
  norm_rstd<1>(row, rstd_s);
  const int n8 = (int)(K / 8), o = blockIdx.x * kThreads + threadIdx.x;  // o0 = blockIdx.x * kThreads: on a group
  const bool vec = a.pro == GEMV_PRO_BF16 ? (a.act_ld % 8) == 0 : norm_vec4(row);
  float v[8];
  i8_octet(row, rstd_s, 0, 8 * (int64_t)o, o < n8, vec, v);
  uint2 p;
  float d, s;
  quant_octet<WT>(v, a.w.group / 8, p, d, s);
  if (o < n8) {
    *reinterpret_cast<uint2 *>(a.i8ws.q + b * K + 8 * (int64_t)o) = p;
    if (lane % EL == 0) {
      a.i8ws.dx[b * nc + o / EL] = d;
      a.i8ws.dx[(a.batch + b) * nc + o / EL] = s;
    }
  }
}

// stage_i8's result copied from the pre pass's scratch (zeros for tokens >= batch, as stage_i8 writes them); L2
// reads (__ldcg: written by the previous kernel), 16 bytes and 4 copies in flight per thread.
template <int NB, int WT>
__device__ __forceinline__ int stage_pre(const GemvArgs &a, int8_t *q_s, float *d_s, float *xs_s, int64_t k0, int kt,
                                         int nct, bool first) {
  constexpr int E = i8_per<WT>();
  const int64_t K = a.w.cols, nc = K / E, c0 = k0 / E;
  const int klen = (int)min((int64_t)kt, K - k0);
  if (!first) __syncthreads();
  const int n16 = klen / 16, ncl = klen / E;
#pragma unroll 4
  for (int i = threadIdx.x; i < NB * n16; i += blockDim.x) {
    const int b = i / n16, j = i - b * n16;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (b < a.batch) v = __ldcg(reinterpret_cast<const uint4 *>(a.i8ws.q + b * K + k0 + 16 * j));
    *reinterpret_cast<uint4 *>(q_s + b * kt + 16 * j) = v;
  }
#pragma unroll 2
  for (int i = threadIdx.x; i < NB * ncl; i += blockDim.x) {
    const int b = i / ncl, c = i - b * ncl;
    float d = 0.f, s = 0.f;
    if (b < a.batch) d = __ldcg(a.i8ws.dx + b * nc + c0 + c), s = __ldcg(a.i8ws.dx + (a.batch + b) * nc + c0 + c);
    d_s[b * nct + c] = d;
    xs_s[b * nct + c] = s;
  }
  __syncthreads();
  return klen;
}

// One 16-byte chunk u of the R rows against the staged tokens (chunk c of the tile): the exact integer sum per (row,
// token), then acc += s * d * sum + o * xsum.
template <int WT, int NB, int R, int U>
__device__ __forceinline__ void i8_use(float (&acc)[R][NB], const uint4 (&wv)[R][U], const float (&sc)[R][U],
                                       const float (&of)[R][U], int u, int c, const int8_t *q_s, const float *d_s,
                                       const float *xs_s, int kt, int nct, int lane) {
  constexpr int E = i8_per<WT>();
  if constexpr (WT == WT_W4) {
    // two 16-byte halves of the chunk's 32 activation bytes; lanes (l >> 2) odd take the second half first, so an
    // 8-lane phase of 32-byte-apart chunks hits 8 different 16-byte bank groups (the sum is an integer: any order).
    // Half h holds the (even, odd) activation words of weight words 2h and 2h + 1.
    const int h0 = (lane >> 2) & 1;
    const auto act = [&](int b, uint4 (&ah)[2]) {
      const int8_t *ap = q_s + b * kt + E * c;
      const uint4 a0 = *reinterpret_cast<const uint4 *>(ap + 16 * h0), a1 = *reinterpret_cast<const uint4 *>(ap + 16 * (h0 ^ 1));
      ah[0] = h0 ? a1 : a0;
      ah[1] = h0 ? a0 : a1;
    };
    const auto dot = [&](const uint32_t (&lo)[4], const uint32_t (&hi)[4], const uint4 (&ah)[2]) {
      int is = 0;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        is = __dp4a((int)lo[2 * h], (int)ah[h].x, is);
        is = __dp4a((int)hi[2 * h], (int)ah[h].y, is);
        is = __dp4a((int)lo[2 * h + 1], (int)ah[h].z, is);
        is = __dp4a((int)hi[2 * h + 1], (int)ah[h].w, is);
      }
      return is;
    };
    const auto unpack = [&](int r, uint32_t (&lo)[4], uint32_t (&hi)[4]) {
      const uint32_t x[4] = {wv[r][u].x, wv[r][u].y, wv[r][u].z, wv[r][u].w};
#pragma unroll
      for (int j = 0; j < 4; ++j) lo[j] = x[j] & 0x0f0f0f0fu, hi[j] = (x[j] >> 4) & 0x0f0f0f0fu;
    };
    if constexpr (NB <= 2) {  // the tokens' activations held, a row unpacked at a time (registers: 8 per row)
      uint4 ah[NB][2];
      float dc[NB], xc[NB];
#pragma unroll
      for (int b = 0; b < NB; ++b) act(b, ah[b]), dc[b] = d_s[b * nct + c], xc[b] = xs_s[b * nct + c];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        uint32_t lo[4], hi[4];
        unpack(r, lo, hi);
#pragma unroll
        for (int b = 0; b < NB; ++b)
          acc[r][b] = fmaf(sc[r][u] * dc[b], (float)dot(lo, hi, ah[b]), fmaf(of[r][u], xc[b], acc[r][b]));
      }
    } else {  // every row unpacked once, a token's activations at a time
      uint32_t lo[R][4], hi[R][4];
#pragma unroll
      for (int r = 0; r < R; ++r) unpack(r, lo[r], hi[r]);
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        uint4 ah[2];
        act(b, ah);
        const float dc = d_s[b * nct + c], xc = xs_s[b * nct + c];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][b] = fmaf(sc[r][u] * dc, (float)dot(lo[r], hi[r], ah), fmaf(of[r][u], xc, acc[r][b]));
      }
    }
  } else {
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const uint4 av = *reinterpret_cast<const uint4 *>(q_s + b * kt + E * c);
      const float dc = d_s[b * nct + c], xc = xs_s[b * nct + c];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        int is = __dp4a((int)wv[r][u].x, (int)av.x, 0);
        is = __dp4a((int)wv[r][u].y, (int)av.y, is);
        is = __dp4a((int)wv[r][u].z, (int)av.z, is);
        is = __dp4a((int)wv[r][u].w, (int)av.w, is);
        acc[r][b] = fmaf(sc[r][u] * dc, (float)is, fmaf(of[r][u], xc, acc[r][b]));
      }
    }
  }
}

// Chunks per token row of the d / xsum arrays: kt / E rounded up to even, so that the codes after them start on 16
// bytes (their uint4 loads; an odd count, e.g. K 2080 in groups of 32 at batch 1, faulted: misaligned address).
template <int WT> __host__ __device__ constexpr int i8_nct(int kt) { return (kt / i8_per<WT>() + 1) & ~1; }
// Dynamic shared memory of a K tile of kt columns: d and xsum per chunk (floats), then the codes (kt % 16 == 0).
template <int WT> __host__ __device__ constexpr size_t i8_smem(int nb, int kt) {
  return (size_t)nb * i8_nct<WT>(kt) * 8 + (size_t)nb * kt;
}

template <int WT, int NB, int R, int U, bool KS, bool PRE>
__global__ void __launch_bounds__(kThreads) gemv_i8_kernel(const GemvArgs a, const int kt, const int ks_arg) {
  constexpr int E = i8_per<WT>();
  const int ks = KS ? ks_arg : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int nct = i8_nct<WT>(kt);
  float *d_s = reinterpret_cast<float *>(smem_raw);                 // [NB][nct]
  float *xs_s = d_s + NB * nct;                                      // [NB][nct]
  int8_t *q_s = reinterpret_cast<int8_t *>(xs_s + NB * nct);         // [NB][kt]
  __shared__ float rstd_s[16];
  __shared__ float red_s[kWarps][KS ? R * NB : 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows, cols = a.w.cols, gpr = cols / a.w.group;
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t row0 = ((int64_t)blockIdx.x * (kWarps / ks) + rgroup) * R;
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;
  const uint8_t *wbytes = reinterpret_cast<const uint8_t *>(a.w.data);

  int64_t rowc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rowc[r] = min(row0 + r, rows - 1);
  uint4 wv[R][U];
  float sc[R][U], of[R][U];
  float acc[R][NB];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
  gemv_walk_staged<NB, E, U>(
      a, rstd_s, kt, row0, cbase, cstride,
      [&](int64_t k0, bool first) {
        if constexpr (PRE) return stage_pre<NB, WT>(a, q_s, d_s, xs_s, k0, kt, nct, first);
        else return stage_i8<NB, WT>(a, q_s, d_s, xs_s, rstd_s, k0, kt, nct, first);
      },
      [&](int u, int64_t k) {  // the chunk at column k of the warp's rows into slot u
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int64_t e = rowc[r] * cols + k;
          wv[r][u] = ld_stream16(wbytes + (WT == WT_W4 ? e / 2 : e));
          group_so(a.w, rowc[r] * gpr + k / a.w.group, sc[r][u], of[r][u]);
        }
      },
      [&](int u, int c) { i8_use<WT, NB, R, U>(acc, wv, sc, of, u, c, q_s, d_s, xs_s, kt, nct, lane); }, 0, cols);
  finish_rows<R, NB, KS>(a, acc, row0, ks, kpart, red_s);
}

// The loop variant, for a call whose whole K fits one tile (kt == cols): a grid of about the resident block count,
// each block staging (or copying) the activations ONCE and then walking row tiles blockIdx.x, + gridDim.x, ..., the
// next tile's first round of weights loaded before the current tile's epilogue. The one-tile-per-block kernel pays
// the prologue (rstd, staging: L2 round trips with no weight traffic of its own but the first round) for every 8-32
// rows: 7B q4 b1 gate_up 1184 blocks at ~2 resident per SM, 2.0 TB/s (sixteenth run). A row's chunks are visited in
// the same order by the same lane, and its warps reduced the same way: the same bits as gemv_i8_kernel.
template <int WT, int NB, int R, int U, bool KS, bool PRE>
__global__ void __launch_bounds__(kThreads) gemv_i8_loop_kernel(const GemvArgs a, const int ks_arg) {
  constexpr int E = i8_per<WT>();
  const int ks = KS ? ks_arg : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t rows = a.w.rows, cols = a.w.cols, gpr = cols / a.w.group;
  const int kt = (int)cols, nct = i8_nct<WT>(kt), nchunks = (int)(cols / E);
  float *d_s = reinterpret_cast<float *>(smem_raw);          // [NB][nct]
  float *xs_s = d_s + NB * nct;                               // [NB][nct]
  int8_t *q_s = reinterpret_cast<int8_t *>(xs_s + NB * nct);  // [NB][kt]
  __shared__ float rstd_s[16];
  __shared__ float red_s[kWarps][KS ? R * NB : 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int groups = kWarps / ks;
  const int64_t ntiles = (rows + (int64_t)groups * R - 1) / ((int64_t)groups * R);
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;
  const uint8_t *wbytes = reinterpret_cast<const uint8_t *>(a.w.data);
  uint4 wv[R][U];
  float sc[R][U], of[R][U];
  const auto load = [&](int64_t row0, int c0) {  // the round of chunks c0, c0 + cstride, ... of the warp's R rows
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + cstride * u;
      if (c >= nchunks) continue;
      const int64_t k = (int64_t)E * c;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t row = min(row0 + r, rows - 1);
        const int64_t e = row * cols + k;
        wv[r][u] = ld_stream16(wbytes + (WT == WT_W4 ? e / 2 : e));
        group_so(a.w, row * gpr + k / a.w.group, sc[r][u], of[r][u]);
      }
    }
  };
  int64_t tile = blockIdx.x;
  load((tile * groups + rgroup) * R, cbase);  // before the prologue, as gemv_walk_staged
  gemv_prologue<NB>(a, rstd_s);
  if constexpr (PRE) stage_pre<NB, WT>(a, q_s, d_s, xs_s, 0, kt, nct, true);
  else stage_i8<NB, WT>(a, q_s, d_s, xs_s, rstd_s, 0, kt, nct, true);
  for (; tile < ntiles; tile += gridDim.x) {
    const int64_t row0 = (tile * groups + rgroup) * R;
    float acc[R][NB];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
    for (int c0 = cbase; c0 < nchunks; c0 += cstride * U) {
      if (c0 != cbase) load(row0, c0);
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (c0 + cstride * u < nchunks) i8_use<WT, NB, R, U>(acc, wv, sc, of, u, c0 + cstride * u, q_s, d_s, xs_s, kt, nct, lane);
    }
    if (tile + gridDim.x < ntiles) load(((tile + gridDim.x) * groups + rgroup) * R, cbase);  // under the epilogue
    if (KS && ks > 1) __syncthreads();  // red_s: the previous tile's readers are done (block-uniform)
    finish_rows<R, NB, KS>(a, acc, row0, ks, kpart, red_s);
  }
}

}  // namespace i8detail
}  // namespace qwc

#include "gemv_i8_ring.cuh"

namespace qwc {
namespace i8detail {

// Blocks of `kernel` resident per SM with `smem` bytes (cached per kernel, size and device).
template <class Kernel>
int resident_per_sm(Kernel kernel, size_t smem) {
  static std::mutex mu;
  static std::map<std::tuple<const void *, size_t, int>, int> cache;
  int dev = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  const auto key = std::make_tuple(reinterpret_cast<const void *>(kernel), smem, dev);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int n = 0;
  QWC_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, smem));
  return cache[key] = std::max(1, n);
}

// Launches the call; returns how it walks its row tiles.
template <int WT, int NB, int R, int U, bool KS, bool PRE>
Walk launch_one(const GemvArgs &a, int kt, int ks, cudaStream_t s) {
  const int64_t tiles = ceil_div(a.w.rows, (int64_t)(kWarps / ks) * R);
  const size_t smem = i8_smem<WT>(NB, kt);
  // (batch 16 never stages a whole K of a Qwen shape in the 46 KB: no loop instances for it)
  if constexpr (NB < 16) {
    // (the bulk copies need 16-byte sources: every matrix the engine uploads has them, a view might not)
    const bool aligned = ((reinterpret_cast<uintptr_t>(a.w.data) | reinterpret_cast<uintptr_t>(a.w.scale) |
                           (a.w.off_uniform ? 0 : reinterpret_cast<uintptr_t>(a.w.offset))) & 15) == 0;
    if (ring_on() && aligned && ring_device() && tiles > sm_count()) {
      // one block per SM (the stages take its shared memory), each staging the whole K's activations once and walking
      // every sm_count()-th tile (kt does not bind it: the opt-in shared memory holds 7B down's K at batch <= 4)
      const auto kern = gemv_i8_ring_kernel<WT, NB, R, U, KS, PRE>;
      const qw::i8ring::Plan p = ring_plan_for<WT, NB, R>(kern, a, ks);
      if (p.stages) {
        static SmemOptIn optin;
        optin(kern, (size_t)p.smem);
        const RingGeo g = qw::i8ring::geo_of(p, a.w.rows, a.w.cols, a.w.group, (kWarps / ks) * R, !a.w.off_uniform);
        launch(kern, (int)std::min<int64_t>(tiles, sm_count()), kThreads, (size_t)p.smem, s, a, ks, g);
        return kWalkRing;
      }
    }
    if (kt == a.w.cols && loop_on()) {
      const auto kern = gemv_i8_loop_kernel<WT, NB, R, U, KS, PRE>;
      const int64_t resident = (int64_t)resident_per_sm(kern, smem) * sm_count();
      if (tiles > resident) {
        // as many blocks as are resident, balanced: each walks ceil(tiles / resident) tiles or one fewer
        const int64_t per = ceil_div(tiles, resident);
        launch(kern, (int)ceil_div(tiles, per), kThreads, smem, s, a, ks);
        return kWalkLoop;
      }
    }
  }
  launch(gemv_i8_kernel<WT, NB, R, U, KS, PRE>, (int)tiles, kThreads, smem, s, a, kt, ks);
  return kWalkTile;
}

template <int WT, int NB, int R>
const char *launch_i8(const GemvArgs &a, int kt, int ks, bool pre, cudaStream_t s) {
  // U chunks in flight per row: 4 where the warp has 2 rows at small batches, else 2 (registers: R * U uint4)
  constexpr int U = (R >= 4 || NB >= 8) ? 2 : 4;
  const Walk walk = pre && ks > 1 ? launch_one<WT, NB, R, U, true, true>(a, kt, ks, s)
                     : pre         ? launch_one<WT, NB, R, U, false, true>(a, kt, 1, s)
                     : ks > 1      ? launch_one<WT, NB, R, U, true, false>(a, kt, ks, s)
                                   : launch_one<WT, NB, R, U, false, false>(a, kt, 1, s);
  return variant_name(walk, pre, WT == WT_W4, R, ks);
}

// R = 4 where the grid still has >= 2 blocks per SM without a K split (the exact kernels' rule), else 2.
template <int WT, int NB>
const char *pick_r(const GemvArgs &a, int kt, bool pre, cudaStream_t s) {
  const int ks = gemv_ksplit(a.w.rows);
  const int64_t blocks_r4 = ceil_div(a.w.rows, (int64_t)kWarps * 4);
  if constexpr (NB <= 4) {
    if ((ks == 1 && blocks_r4 >= 2 * sm_count()) || r4_on()) return launch_i8<WT, NB, 4>(a, kt, ks, pre, s);
  }
  return launch_i8<WT, NB, 2>(a, kt, ks, pre, s);
}

template <int WT>
const char *dispatch_nb(const GemvArgs &a, int kt, bool pre, cudaStream_t s) {
  if (a.batch <= 1) return pick_r<WT, 1>(a, kt, pre, s);
  if (a.batch <= 2) return pick_r<WT, 2>(a, kt, pre, s);
  if (a.batch <= 4) return pick_r<WT, 4>(a, kt, pre, s);
  if (a.batch <= 8) return pick_r<WT, 8>(a, kt, pre, s);
  return pick_r<WT, 16>(a, kt, pre, s);
}

template <int WT>
void launch_quant(const GemvArgs &a, cudaStream_t s) {
  const int n8 = (int)(a.w.cols / 8);
  launch(gemv_i8_quant_kernel<WT>, dim3((unsigned)ceil_div((int64_t)n8, (int64_t)kThreads), (unsigned)a.batch), kThreads, 0, s, a);
}

// The per-type entry points (gemv_i8_w4.cu, gemv_i8_w8.cu): the GEMV of a call (kt: its K tile; pre: the codes come
// from the pre pass) and the pre pass itself. Return / launch as dispatch_nb and launch_quant.
const char *dispatch_w4(const GemvArgs &a, int kt, bool pre, cudaStream_t s);
const char *dispatch_w8(const GemvArgs &a, int kt, bool pre, cudaStream_t s);
void quant_w4(const GemvArgs &a, cudaStream_t s);
void quant_w8(const GemvArgs &a, cudaStream_t s);

}  // namespace i8detail
}  // namespace qwc
