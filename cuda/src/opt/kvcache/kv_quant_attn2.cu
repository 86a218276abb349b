// kv_quant_attn2.cu — attention over the quantized KV cache, v2 (the default; v1, the first
// kernel in kv_quant.cu, is QW_KVQ_ATTN=v1). Formats and semantics: kv_format.hpp; exact reference: kv_quant_cpu.cpp.
//
// Why v1 is slow (H100, 2026-12-05: q8 B1 h28/4 d128 at 32k reads its packed K/V at 104 GB/s, 0.26x the bf16
// kernel): a lane reads its own key row 4 bytes at a time in a loop that is not unrolled, and P.V walks the
// chunk's 32 keys one dependent global load after another, so a warp has ~128 B in flight where ~3 TB/s x
// ~700 ns of DRAM latency asks for ~16 KB per SM; every fp16 scale goes through the software converter; the
// splits give 2 x SMs blocks of 4 warps (8 warps per SM).
//
// v2, per block (query row, kv head, split), 4 warps:
//  - Chunks of 32 keys (one kivi key group) are staged per warp in shared memory by cp.async: 16-byte copies of
//    the chunk's contiguous planes (K codes, K scales or kivi scale/zero, V codes, V scales or scale/zero),
//    double-buffered, so the warp's next chunk (8.7 KB at q8 d128) is in flight while this one is computed.
//    This needs every stream to start 16-byte aligned: KvqCache rounds the layout's ctx up to a multiple of 32.
//  - Chunk c goes to split c % n_split, then round-robin over that split's warps, so the kivi bf16 tail (<= 5
//    chunks, read from global memory) lands on different warps.
//  - Q.K: lane = key. Its code row comes from shared memory in 16-byte units (XOR-swizzled per 128-byte line:
//    conflict-free), codes become fp32 by the exponent trick (kv_unpack.hpp, checked on the CPU by
//    test_kv_unpack: float bits 0x4B0000xx = 2^23 + xx, one PRMT and one FADD, exact), q (pre-scaled by log2(e)/sqrt(d)) is a broadcast float4 from shared memory. q8: a sum
//    per 32-channel block, times the block scale. kivi: once per chunk the warp folds the group's per-channel
//    scale into q (q*s in shared memory) and takes bias = q.z, so a key costs one FMA per channel and head.
//  - Softmax: the max is warp-wide (shuffles), the sums stay per lane until the end (the rescale factor is
//    warp-uniform, so they merge once).
//  - P.V: lane = d/32 consecutive channels; a key's codes are one 32-bit shared load per lane, p comes from
//    shared memory (written over the chunk's consumed K codes when they are large enough).
//  - Splits fill the resident blocks of one wave (occupancy query; KvqCache::configure); the combine reads the
//    split maxima once, in parallel, instead of a dependent loop per channel.
// The query heads of a kv group run in a bucket of 4, 7 (Qwen2.5 0.5B / 7B) or 8 (zero q rows for the padding; never
// written out).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backend.hpp"
#include "common.cuh"
#include "kv_quant.cuh"
#include "kv_quant_dev.cuh"
#include "kv_unpack.hpp"
#include "mma_sync.cuh"

namespace qwc {

namespace kvq = qw::kvq;
using kvq::KvType;

namespace {

constexpr int kNW = 4;  // warps per block
constexpr float kLog2e = 1.4426950408889634f;

template <int D, int TYPE, int GQ>
struct Cfg {
  static constexpr bool kQ8 = TYPE == int(KvType::Q8);
  static constexpr int BITS = kQ8 ? 8 : TYPE == int(KvType::KIVI4) ? 4 : 2;
  static constexpr int E = D / 32;                // P.V channels per lane
  static constexpr int CR = D * BITS / 8;         // code bytes per row (8 .. 128)
  static constexpr int CU = CR < 16 ? CR : 16;    // bytes of a K unit: cp.async size and a lane's load
  static constexpr int UPR = CR / CU;             // K units per row
  static constexpr int EPW = 32 / BITS;           // codes per 32-bit word
  static constexpr int AUX = kQ8 ? 2 * D : 4 * D;  // K (or V) scales, bytes: q8 [32][D/32]; kivi s and z planes
  static constexpr int OFF_KA = 32 * CR, OFF_VC = OFF_KA + AUX, OFF_VA = OFF_VC + 32 * CR;
  static constexpr int STAGE = OFF_VA + AUX;      // bytes of one staged chunk (a multiple of 16)
  static constexpr int PG = (GQ + 3) / 4 * 4;              // a key's p in shared memory: GQ heads, padded to float4s
  static constexpr bool P_IN_K = 32 * CR >= 32 * PG * 4;  // p of the chunk fits over its consumed K codes
  static constexpr size_t SMEM_HEAD = size_t(GQ) * D * 4 + (kQ8 ? 0 : size_t(kNW) * GQ * D * 4) +
                                      (P_IN_K ? 0 : size_t(kNW) * 32 * PG * 4);
  static constexpr size_t STAGES = size_t(kNW) * 2 * STAGE, RED = size_t(kNW) * GQ * (D + 2) * 4;
  static constexpr size_t SMEM = SMEM_HEAD + (STAGES > RED ? STAGES : RED);
  // unit `col` of K row `row` in a staged chunk (kv_unpack.hpp: swizzled, conflict-free for lane = row reads)
  __device__ static int kunit(int row, int col) { return kvq::kunit_offset(CR, row, col); }
};

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
using kvq::unpack_word;

template <int N>
__device__ __forceinline__ void cp_async_n(void *smem, const void *gmem) {
  if constexpr (N == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(smem)), "l"(gmem));
  } else {
    static_assert(N == 8 || N == 4, "cp.async copies 4, 8 or 16 bytes");
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(smem_u32(smem)), "l"(gmem), "n"(N));
  }
}
template <int BYTES>
__device__ __forceinline__ void copy_seg(uint8_t *dst, const void *src, int lane) {
  static_assert(BYTES % 16 == 0, "segments are whole 16-byte units");
  const uint8_t *s = static_cast<const uint8_t *>(src);
#pragma unroll
  for (int u = lane; u < BYTES / 16; u += 32) cp_async_n<16>(dst + 16 * u, s + 16 * u);
}

// Issues the cp.async copies of the quantized chunk [k0, k0 + 32) of stream st into dst (one stage).
template <class C>
__device__ __forceinline__ void stage_chunk(uint8_t *dst, const KvqDev &kv, int64_t st, int64_t k0, int lane) {
  constexpr int D = C::E * 32;
  const uint8_t *kc = kv.kc + kv.lay.code_off(st, k0);
#pragma unroll
  for (int u = lane; u < 32 * C::UPR; u += 32) cp_async_n<C::CU>(dst + C::kunit(u / C::UPR, u % C::UPR), kc + u * C::CU);
  copy_seg<32 * C::CR>(dst + C::OFF_VC, kv.vc + kv.lay.code_off(st, k0), lane);
  if constexpr (C::kQ8) {
    copy_seg<2 * D>(dst + C::OFF_KA, kv.ks + kv.lay.q8_scale_off(st, k0), lane);
    copy_seg<2 * D>(dst + C::OFF_VA, kv.vs + kv.lay.q8_scale_off(st, k0), lane);
  } else {
    copy_seg<2 * D>(dst + C::OFF_KA, kv.ks + kv.lay.kk_sz_off(st, k0 / 32), lane);
    copy_seg<2 * D>(dst + C::OFF_KA + 2 * D, kv.kz + kv.lay.kk_sz_off(st, k0 / 32), lane);
    copy_seg<2 * D>(dst + C::OFF_VA, kv.vs + kv.lay.kv_sz_off(st, k0), lane);
    copy_seg<2 * D>(dst + C::OFF_VA + 2 * D, kv.vz + kv.lay.kv_sz_off(st, k0), lane);
  }
}

// sc[j] += q[j][ch0 .. ch0 + n) . x (q rows of D floats in shared memory, read as broadcast float4)
template <int D, int GQ, int N>
__device__ __forceinline__ void dot_heads(float *sc, const float *q, int ch0, const float *x) {
#pragma unroll
  for (int j = 0; j < GQ; ++j)
#pragma unroll
    for (int e = 0; e < N; e += 4) {
      const float4 qq = *reinterpret_cast<const float4 *>(q + j * D + ch0 + e);
      sc[j] = fmaf(qq.x, x[e], sc[j]);
      sc[j] = fmaf(qq.y, x[e + 1], sc[j]);
      sc[j] = fmaf(qq.z, x[e + 2], sc[j]);
      sc[j] = fmaf(qq.w, x[e + 3], sc[j]);
    }
}

// Scores of a staged, quantized chunk: lane = key (every key of a quantized chunk is valid).
template <class C, int GQ>
__device__ __forceinline__ void scores_quant(float *sc, const uint8_t *cur, const float *q_s, float *qk, int lane) {
  constexpr int D = C::E * 32;
  constexpr int WPU = C::CU / 4;  // words per unit
  if constexpr (C::kQ8) {
    const uint16_t *ksc = reinterpret_cast<const uint16_t *>(cur + C::OFF_KA) + lane * (D / 32);
#pragma unroll
    for (int j = 0; j < GQ; ++j) sc[j] = 0.f;
#pragma unroll
    for (int b = 0; b < D / 32; ++b) {  // 32-channel blocks: two 16-byte units
      float part[GQ];
#pragma unroll
      for (int j = 0; j < GQ; ++j) part[j] = 0.f;
#pragma unroll
      for (int v = 0; v < 2; ++v) {
        const uint4 w = *reinterpret_cast<const uint4 *>(cur + C::kunit(lane, 2 * b + v));
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float x[4];
          unpack_word<8>(words[i], x);
          dot_heads<D, GQ, 4>(part, q_s, b * 32 + v * 16 + i * 4, x);
        }
      }
      const float sb = h2f(ksc[b]);
#pragma unroll
      for (int j = 0; j < GQ; ++j) sc[j] = fmaf(sb, part[j], sc[j]);
    }
  } else {
    // fold the group's per-channel scale into q (x = c s + z: q.x = (q s).c + q.z)
    const uint16_t *ks = reinterpret_cast<const uint16_t *>(cur + C::OFF_KA), *kz = ks + D;
    float bias[GQ];
#pragma unroll
    for (int j = 0; j < GQ; ++j) bias[j] = 0.f;
#pragma unroll
    for (int c = lane; c < D; c += 32) {
      const float sv = h2f(ks[c]), zv = h2f(kz[c]);
#pragma unroll
      for (int j = 0; j < GQ; ++j) {
        const float qv = q_s[j * D + c];
        qk[j * D + c] = qv * sv;
        bias[j] = fmaf(qv, zv, bias[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < GQ; ++j) sc[j] = warp_sum(bias[j]);
    __syncwarp();
#pragma unroll
    for (int u = 0; u < C::UPR; ++u) {
      uint32_t words[WPU];
      if constexpr (C::CU == 16) {
        const uint4 w = *reinterpret_cast<const uint4 *>(cur + C::kunit(lane, u));
        words[0] = w.x; words[1] = w.y; words[2] = w.z; words[3] = w.w;
      } else {
        const uint2 w = *reinterpret_cast<const uint2 *>(cur + C::kunit(lane, u));
        words[0] = w.x; words[1] = w.y;
      }
#pragma unroll
      for (int i = 0; i < WPU; ++i) {
        float x[C::EPW];
        unpack_word<C::BITS>(words[i], x);
        dot_heads<D, GQ, C::EPW>(sc, qk, (u * WPU + i) * C::EPW, x);
      }
    }
  }
}

// Scores of a bf16 chunk (kivi residual): lane = key, its row from the step's rows or the ring (global memory),
// 8 loads of 16 bytes in flight per lane.
template <int D, int GQ>
__device__ __forceinline__ void scores_bf16(float *sc, const uint16_t *row, const float *q_s) {
#pragma unroll
  for (int j = 0; j < GQ; ++j) sc[j] = 0.f;
#pragma unroll
  for (int v0 = 0; v0 < D / 8; v0 += 8) {
    constexpr int NV = D / 8 < 8 ? D / 8 : 8;
    uint4 w[NV];
#pragma unroll
    for (int i = 0; i < NV; ++i) w[i] = reinterpret_cast<const uint4 *>(row)[v0 + i];
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const float x[8] = {bf16_lo(w[i].x), bf16_hi(w[i].x), bf16_lo(w[i].y), bf16_hi(w[i].y),
                          bf16_lo(w[i].z), bf16_hi(w[i].z), bf16_lo(w[i].w), bf16_hi(w[i].w)};
      dot_heads<D, GQ, 8>(sc, q_s, (v0 + i) * 8, x);
    }
  }
}

// acc[j][e] += p[j] * v[e] (p: the key's GQ probabilities in shared memory, PG-float stride)
template <int GQ, int PG, int E>
__device__ __forceinline__ void pv_fma(float (*acc)[E], const float *pk, const float *v) {
#pragma unroll
  for (int j = 0; j < PG; j += 4) {
    const float4 p4 = *reinterpret_cast<const float4 *>(pk + j);
    const float pj[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (j + t < GQ)
#pragma unroll
        for (int e = 0; e < E; ++e) acc[j + t][e] = fmaf(pj[t], v[e], acc[j + t][e]);
  }
}

// P.V of a staged, quantized chunk: lane = channels E*lane .. E*lane + E - 1 of the nk keys.
template <class C, int GQ>
__device__ __forceinline__ void pv_quant(float (*acc)[C::E], const uint8_t *cur, const float *pw, int nk, int lane) {
  constexpr int D = C::E * 32, E = C::E;
  const kvq::LaneCodes<C::BITS> lc(E, lane);
  const int grp = (E * lane) / 32;  // the lane's 32-channel group: q8 block, kivi value group
  const uint8_t *vc = cur + C::OFF_VC;
  const uint16_t *va = reinterpret_cast<const uint16_t *>(cur + C::OFF_VA);
#pragma unroll 4
  for (int kk = 0; kk < nk; ++kk) {
    const uint32_t word = reinterpret_cast<const uint32_t *>(vc + kk * C::CR)[lc.wi];
    float v[E];
    if constexpr (C::kQ8) {
      const float sv = h2f(va[kk * (D / 32) + grp]);
#pragma unroll
      for (int e = 0; e < E; ++e) v[e] = lc.code(word, e) * sv;
    } else {
      const float sv = h2f(va[kk * (D / 32) + grp]), zv = h2f(va[32 * (D / 32) + kk * (D / 32) + grp]);
#pragma unroll
      for (int e = 0; e < E; ++e) v[e] = fmaf(lc.code(word, e), sv, zv);
    }
    pv_fma<GQ, C::PG, E>(acc, pw + kk * C::PG, v);
  }
}

template <int E> struct RawE;
template <> struct RawE<4> { using T = uint2; };
template <> struct RawE<2> { using T = uint32_t; };
template <> struct RawE<1> { using T = uint16_t; };

// P.V of a bf16 chunk (kivi residual): 8 keys' values in flight per lane.
template <int D, int GQ, int PG>
__device__ __forceinline__ void pv_bf16(float (*acc)[D / 32], const KvqDev &kv, const KvqStep &s, int64_t st, int r, int pos,
                                        int slot, int h, int64_t k0, const float *pw, int nk, int lane) {
  constexpr int E = D / 32;
  using T = typename RawE<E>::T;
#pragma unroll 1
  for (int k8 = 0; k8 < nk; k8 += 8) {
    T raw[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int kk = min(k8 + u, nk - 1);
      raw[u] = *reinterpret_cast<const T *>(kvq_res_row(kv, s, s.v, kv.vr, st, r, pos, slot, h, k0 + kk) + E * lane);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      if (k8 + u >= nk) break;  // warp-uniform
      float v[E];
      if constexpr (E == 4) {
        v[0] = bf16_lo(raw[u].x); v[1] = bf16_hi(raw[u].x); v[2] = bf16_lo(raw[u].y); v[3] = bf16_hi(raw[u].y);
      } else if constexpr (E == 2) {
        v[0] = bf16_lo(raw[u]); v[1] = bf16_hi(raw[u]);
      } else {
        v[0] = __uint_as_float(uint32_t(raw[u]) << 16);
      }
      pv_fma<GQ, PG, E>(acc, pw + (k8 + u) * PG, v);
    }
  }
}

template <int D, int TYPE, int GQ>
__global__ void __launch_bounds__(kNW * 32, 3) kvq_attn2_kernel(const KvqDev kv, const KvqStep s, const KvqAttnArgs a) {
  using C = Cfg<D, TYPE, GQ>;
  constexpr int E = C::E;
  extern __shared__ __align__(16) uint8_t smem[];
  float *q_s = reinterpret_cast<float *>(smem);                  // [GQ][D], scaled by log2(e)/sqrt(D)
  float *qk_s = q_s + GQ * D;                                    // kivi: [kNW][GQ][D], q * the chunk's key scale
  float *p_s = qk_s + (C::kQ8 ? 0 : kNW * GQ * D);               // unless P_IN_K: [kNW][32][PG]
  uint8_t *stg = reinterpret_cast<uint8_t *>(p_s + (C::P_IN_K ? 0 : kNW * 32 * C::PG));  // [kNW][2][STAGE]

  const int r = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
  const int gq = a.n_heads / kv.lay.kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int pos = s.row_pos[r], slot = s.row_slot[r];
  const int64_t n_keys = int64_t(pos) + 1;
  const int64_t nq = C::kQ8 ? n_keys : kvq::kivi_nq(n_keys);  // chunks below nq are quantized (nq % 32 == 0)
  const int64_t st = kv.lay.stream(s.layer, slot, h);
  const int64_t qd = int64_t(a.n_heads) * D;
  const float qscale = kLog2e / sqrtf(float(D));
  for (int i = threadIdx.x; i < GQ * D; i += blockDim.x)
    q_s[i] = i < gq * D ? __bfloat162float(a.q[r * qd + int64_t(h) * gq * D + i]) * qscale : 0.f;
  __syncthreads();

  const int64_t chunks = (n_keys + 31) / 32, step = int64_t(a.n_split) * kNW;
  uint8_t *mine = stg + warp * 2 * C::STAGE;
  float *qk = qk_s + warp * GQ * D;
  float m[GQ], l[GQ], acc[GQ][E];
#pragma unroll
  for (int j = 0; j < GQ; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[j][e] = 0.f;
  }
  int64_t c = split + int64_t(a.n_split) * warp;
  if (c < chunks && c * 32 < nq) stage_chunk<C>(mine, kv, st, c * 32, lane);
  cp_async_commit();
  for (int it = 0; c < chunks; ++it, c += step) {
    uint8_t *cur = mine + (it & 1) * C::STAGE;
    const int64_t cn = c + step;
    if (cn < chunks && cn * 32 < nq) stage_chunk<C>(mine + ((it + 1) & 1) * C::STAGE, kv, st, cn * 32, lane);
    cp_async_commit();
    cp_async_wait<1>();  // this chunk's copies (every group but the newest)
    __syncwarp();        // ... and the other lanes' copies, visible
    const int64_t k0 = c * 32;
    const bool quant = k0 < nq;
    const int nk = n_keys - k0 < 32 ? int(n_keys - k0) : 32;
    const bool valid = lane < nk;
    float sc[GQ], pp[C::PG];
#pragma unroll
    for (int j = GQ; j < C::PG; ++j) pp[j] = 0.f;
    if (quant) {
      scores_quant<C, GQ>(sc, cur, q_s, qk, lane);
    } else {
      const uint16_t *row = kvq_res_row(kv, s, s.k, kv.kr, st, r, pos, slot, h, k0 + (valid ? lane : 0));
      scores_bf16<D, GQ>(sc, row, q_s);
    }
    float *pw = C::P_IN_K ? reinterpret_cast<float *>(cur) : p_s + warp * 32 * C::PG;
    __syncwarp();  // every lane is done with the K codes that pw may overwrite
#pragma unroll
    for (int j = 0; j < GQ; ++j) {
      const float x = valid ? sc[j] : -INFINITY;
      const float mn = fmaxf(m[j], warp_max(x));  // finite: lane 0 of a processed chunk is valid
      const float corr = exp2f(m[j] - mn);        // m = -inf: 0
      const float pj = valid ? exp2f(x - mn) : 0.f;
      l[j] = l[j] * corr + pj;  // this lane's keys; corr is warp-uniform, so the lanes' sums add up at the end
#pragma unroll
      for (int e = 0; e < E; ++e) acc[j][e] *= corr;
      m[j] = mn;
      pp[j] = pj;
    }
#pragma unroll
    for (int j = 0; j < C::PG; j += 4) *reinterpret_cast<float4 *>(pw + lane * C::PG + j) = make_float4(pp[j], pp[j + 1], pp[j + 2], pp[j + 3]);
    __syncwarp();
    if (quant) pv_quant<C, GQ>(acc, cur, pw, nk, lane);
    else pv_bf16<D, GQ, C::PG>(acc, kv, s, st, r, pos, slot, h, k0, pw, nk, lane);
    __syncwarp();  // the stage (and pw) are refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();
#pragma unroll
  for (int j = 0; j < GQ; ++j) l[j] = warp_sum(l[j]);
  __syncthreads();  // every warp is done with its stages: the reduction aliases them
  float *red_m = reinterpret_cast<float *>(stg), *red_l = red_m + kNW * GQ, *red_acc = red_l + kNW * GQ;
  if (lane == 0)
#pragma unroll
    for (int j = 0; j < GQ; ++j) {
      red_m[warp * GQ + j] = m[j];
      red_l[warp * GQ + j] = l[j];
    }
#pragma unroll
  for (int j = 0; j < GQ; ++j)
#pragma unroll
    for (int e = 0; e < E; ++e) red_acc[(warp * GQ + j) * D + E * lane + e] = acc[j][e];
  __syncthreads();
  for (int idx = threadIdx.x; idx < gq * D; idx += blockDim.x) {
    const int j = idx / D, ch = idx % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kNW; ++w) M = fmaxf(M, red_m[w * GQ + j]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
#pragma unroll
      for (int w = 0; w < kNW; ++w) {
        const float mw = red_m[w * GQ + j];
        if (mw == -INFINITY) continue;
        const float f = exp2f(mw - M);
        L += red_l[w * GQ + j] * f;
        A += red_acc[(w * GQ + j) * D + ch] * f;
      }
    kvq_store_merged(a, r, h * gq + j, split, D, ch, M, L, A);  // M in log2 units: kvq_combine2_kernel uses exp2
  }
}

// Merges the splits of one (row, query head): D threads = channels. The split maxima and weights go through
// shared memory once; the channel sums then read independent workspace entries.
template <int D>
__global__ void __launch_bounds__(D) kvq_combine2_kernel(const KvqAttnArgs a) {
  __shared__ float w_s[kKvqMaxSplit2];
  __shared__ float red_s[D / 32];
  __shared__ float ml_s[2];
  const int r = blockIdx.x, hq = blockIdx.y, t = threadIdx.x, ns = a.n_split;
  const float *ws = a.ws + (int64_t(r) * a.n_heads + hq) * ns * (D + 2);
  float mx = -INFINITY;
  for (int sp = t; sp < ns; sp += D) mx = fmaxf(mx, ws[sp * (D + 2)]);
  mx = warp_max(mx);
  if ((t & 31) == 0) red_s[t >> 5] = mx;
  __syncthreads();
  if (t == 0) {
    float M = red_s[0];
    for (int w = 1; w < D / 32; ++w) M = fmaxf(M, red_s[w]);
    ml_s[0] = M;  // finite: split 0 holds chunk 0
  }
  __syncthreads();
  const float M = ml_s[0];
  float lsum = 0.f;
  for (int sp = t; sp < ns; sp += D) {
    const float ms = ws[sp * (D + 2)];
    const float f = ms == -INFINITY ? 0.f : exp2f(ms - M);
    w_s[sp] = f;
    lsum += ws[sp * (D + 2) + 1] * f;
  }
  lsum = warp_sum(lsum);
  __syncthreads();  // red_s reuse; w_s complete
  if ((t & 31) == 0) red_s[t >> 5] = lsum;
  __syncthreads();
  if (t == 0) {
    float L = 0.f;
    for (int w = 0; w < D / 32; ++w) L += red_s[w];
    ml_s[1] = L;
  }
  __syncthreads();
  float A = 0.f;
#pragma unroll 8
  for (int sp = 0; sp < ns; ++sp) A = fmaf(w_s[sp], ws[sp * (D + 2) + 2 + t], A);
  a.out[int64_t(r) * a.n_heads * D + int64_t(hq) * D + t] = __float2bfloat16(A / ml_s[1]);
}

template <int V>
using IC = std::integral_constant<int, V>;

// Calls f(IC<D>, IC<TYPE>, IC<GQ bucket>) for the cache's type, head_dim and group size.
template <class F>
auto visit2(KvType t, int d, int gq, F &&f) {
  auto by_gq = [&](auto dd, auto tt) { return gq <= 4 ? f(dd, tt, IC<4>{}) : gq == 7 ? f(dd, tt, IC<7>{}) : f(dd, tt, IC<8>{}); };
  auto by_type = [&](auto dd) {
    switch (t) {
      case KvType::Q8: return by_gq(dd, IC<int(KvType::Q8)>{});
      case KvType::KIVI4: return by_gq(dd, IC<int(KvType::KIVI4)>{});
      case KvType::KIVI2: return by_gq(dd, IC<int(KvType::KIVI2)>{});
      default: break;
    }
    throw qw::Error(QW_ERR_INTERNAL, "kvq attention v2: not a quantized cache type");
  };
  if (d == 32) return by_type(IC<32>{});
  if (d == 64) return by_type(IC<64>{});
  if (d == 128) return by_type(IC<128>{});
  throw qw::Error(QW_ERR_UNSUPPORTED, "quantized kvCache on cuda: head_dim must be 32, 64 or 128");
}

// The kernel of one instantiation, opted in to its dynamic shared memory (per device, once).
template <int D, int TYPE, int GQ>
auto opted_kernel() {
  static SmemOptIn opt_in;  // per instantiation: the attribute is per kernel
  opt_in(kvq_attn2_kernel<D, TYPE, GQ>, Cfg<D, TYPE, GQ>::SMEM);
  return kvq_attn2_kernel<D, TYPE, GQ>;
}

}  // namespace

int32_t kvq_attn2_blocks_per_sm(KvType t, int32_t d, int32_t gq) {
  return visit2(t, d, gq, [&](auto dd, auto tt, auto gg) {
    constexpr int D = decltype(dd)::value, T = decltype(tt)::value, G = decltype(gg)::value;
    int n = 0;
    QWC_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, opted_kernel<D, T, G>(), kNW * 32, Cfg<D, T, G>::SMEM));
    return std::max(1, n);
  });
}

int32_t kvq_attn2_pick_split(int32_t rows, int32_t n_kv, int32_t max_keys, int32_t slots) {
  const int64_t blocks = std::max<int64_t>(1, int64_t(rows) * n_kv);
  const int64_t fit = slots / blocks;                                                 // one wave of resident blocks
  const int64_t most = std::max<int64_t>(1, (int64_t(max_keys) + 31) / 32 / (2 * kNW));  // >= 2 chunks per warp
  return int32_t(std::max<int64_t>(1, std::min<int64_t>(std::min(fit, most), kKvqMaxSplit2)));
}

const char *launch_kvq_attn2(const KvqDev &kv, const KvqStep &s, const KvqAttnArgs &a, cudaStream_t stream) {
  if (kv.lay.ctx % 32 != 0)
    throw qw::Error(QW_ERR_INTERNAL, "kvq attention v2: the layout's ctx must be a multiple of 32 (KvqCache::configure rounds it)");
  if (a.n_heads / kv.lay.kv_heads > 8) throw qw::Error(QW_ERR_UNSUPPORTED, "quantized kvCache on cuda: more than 8 query heads per kv head");
  if (a.n_split < 1 || a.n_split > kKvqMaxSplit2) throw qw::Error(QW_ERR_INTERNAL, "kvq attention v2: n_split must be 1..128");
  const char *name = visit2(kv.lay.type, kv.lay.d, a.n_heads / kv.lay.kv_heads, [&](auto dd, auto tt, auto gg) {
    constexpr int D = decltype(dd)::value, T = decltype(tt)::value, G = decltype(gg)::value;
    opted_kernel<D, T, G>()<<<dim3(s.rows, kv.lay.kv_heads, a.n_split), kNW * 32, Cfg<D, T, G>::SMEM, stream>>>(kv, s, a);
    if (a.n_split > 1) kvq_combine2_kernel<D><<<dim3(s.rows, a.n_heads), D, 0, stream>>>(a);
    return T == int(KvType::Q8) ? "attn_kvq8_v2" : T == int(KvType::KIVI4) ? "attn_kivi4_v2" : "attn_kivi2_v2";
  });
  QWC_LAUNCH_CHECK("kvq_attention_v2");
  return name;
}

}  // namespace qwc
