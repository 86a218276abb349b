// kv_quant.cu — quantized KV-cache kernels (kv_quant.cuh; formats: kv_format.hpp; CPU reference:
// kv_quant_cpu.cpp). head_dim 32, 64 or 128 (what the CUDA backend supports).
//
// Attention v1 (QW_KVQ_ATTN=v1; the default is v2 in kv_quant_attn2.cu, which says why v1 is slow): one block per
// (query row, kv head, key split), 4 warps. A warp takes 32-key chunks; chunk
// boundaries are multiples of 32, so a kivi chunk is either entirely quantized (one key group: the warp
// stages its per-channel scale/zero in shared memory once) or entirely bf16. Scores: lane = key, looping over
// the channels of its own key row (codes dequantized in registers) against the group's queries in shared
// memory (nH / nKV <= 8 heads: each key row is read once for all of them). Online softmax per head over the
// chunks (warp max / sum), then P.V: lane = channels lane + 32 i, the chunk's probabilities broadcast by
// shuffle. The warps' partial states merge in shared memory; with several splits a combine kernel merges them.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend.hpp"
#include "common.cuh"
#include "kv_quant.cuh"
#include "kv_quant_dev.cuh"

namespace qwc {

namespace kvq = qw::kvq;
using kvq::KvType;

namespace {

constexpr int kNW = 4;      // warps per attention block
constexpr int kMaxGQ = 8;   // query heads per kv head

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <int D>
__global__ void kvq_write_kernel(KvqDev kv, KvqStep s) {
  const int r = blockIdx.x, h = blockIdx.y;
  const int p = s.row_pos[r], slot = s.row_slot[r];
  const KvType type = kv.lay.type;
  const int64_t st = kv.lay.stream(s.layer, slot, h);
  const int64_t kvd = int64_t(kv.lay.kv_heads) * D;
  if (type == KvType::Q8) {
    for (int t = threadIdx.x; t < 2 * (D / 32); t += blockDim.x) {
      const bool isv = t >= D / 32;
      const int b = isv ? t - D / 32 : t;
      const __nv_bfloat16 *src = (isv ? s.v : s.k) + r * kvd + int64_t(h) * D + b * 32;
      float x[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) x[i] = __bfloat162float(src[i]);
      uint8_t *codes = (isv ? kv.vc : kv.kc) + kv.lay.code_off(st, p) + b * 32;
      uint16_t *sc = (isv ? kv.vs : kv.ks) + kv.lay.q8_scale_off(st, p) + b;
      kvq::q8_quant_row(x, 32, reinterpret_cast<int8_t *>(codes), sc);
    }
    return;
  }
  // kivi: does this row complete a group? (nq(p + 1) > nq(p))
  if (!(p + 1 > kvq::kKiviResidual && (p + 1 - kvq::kKiviResidual) % kvq::kKiviGroup == 0)) return;
  const int64_t g0 = p + 1 - kvq::kKiviResidual - kvq::kKiviGroup;
  const int bits = kv.lay.bits(), per = 8 / bits;
  const int CR = D * bits / 8;
  // keys: thread t owns byte column t (channels t*per .. t*per+per-1) of the group's 32 code rows
  for (int t = threadIdx.x; t < CR; t += blockDim.x) {
    uint8_t ob[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) ob[i] = 0;
    for (int e = 0; e < per; ++e) {
      const int ch = t * per + e;
      float x[32];
      for (int tk = 0; tk < 32; ++tk)
        x[tk] = kvq::bf16_bits_to_f32(kvq_res_row(kv, s, s.k, kv.kr, st, r, p, slot, h, g0 + tk)[ch]);
      uint16_t sh, zh;
      kvq::kivi_scale_zero(x, 1, 32, bits, &sh, &zh);
      kv.ks[kv.lay.kk_sz_off(st, g0 / 32) + ch] = sh;
      kv.kz[kv.lay.kk_sz_off(st, g0 / 32) + ch] = zh;
      const float sf = kvq::f16_to_f32(sh), zf = kvq::f16_to_f32(zh);
      for (int tk = 0; tk < 32; ++tk) ob[tk] |= uint8_t(kvq::kivi_code(x[tk], sf, zf, bits) << (e * bits));
    }
    for (int tk = 0; tk < 32; ++tk) kv.kc[kv.lay.code_off(st, g0 + tk) + t] = ob[tk];
  }
  // values: thread t owns (token tk, channel group gg): 32 elements, 32 * bits / 8 bytes
  for (int t = threadIdx.x; t < 32 * (D / 32); t += blockDim.x) {
    const int tk = t / (D / 32), gg = t % (D / 32);
    const uint16_t *src = kvq_res_row(kv, s, s.v, kv.vr, st, r, p, slot, h, g0 + tk) + gg * 32;
    float x[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) x[i] = kvq::bf16_bits_to_f32(src[i]);
    uint16_t sh, zh;
    kvq::kivi_scale_zero(x, 1, 32, bits, &sh, &zh);
    kv.vs[kv.lay.kv_sz_off(st, g0 + tk) + gg] = sh;
    kv.vz[kv.lay.kv_sz_off(st, g0 + tk) + gg] = zh;
    const float sf = kvq::f16_to_f32(sh), zf = kvq::f16_to_f32(zh);
    uint8_t *row = kv.vc + kv.lay.code_off(st, g0 + tk) + gg * 32 * bits / 8;
    for (int b = 0; b < 32 * bits / 8; ++b) {
      uint32_t byte = 0;
      for (int e = 0; e < per; ++e) byte |= kvq::kivi_code(x[b * per + e], sf, zf, bits) << (e * bits);
      row[b] = uint8_t(byte);
    }
  }
}

template <int D>
__global__ void kvq_ring_kernel(KvqDev kv, KvqStep s) {
  const int r = blockIdx.x, h = blockIdx.y;
  const int p = s.row_pos[r], slot = s.row_slot[r];
  const int64_t later = int64_t(r) + kvq::kKiviRing;  // a later row of this step that takes the same slot
  if (later < s.rows && s.row_slot[later] == slot && s.row_pos[later] == p + kvq::kKiviRing) return;
  const int64_t st = kv.lay.stream(s.layer, slot, h);
  const int64_t src = int64_t(r) * kv.lay.kv_heads * D + int64_t(h) * D, dst = kv.lay.ring_off(st, p);
  const uint16_t *k = reinterpret_cast<const uint16_t *>(s.k), *v = reinterpret_cast<const uint16_t *>(s.v);
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    kv.kr[dst + i] = k[src + i];
    kv.vr[dst + i] = v[src + i];
  }
}

template <int D, int TYPE>
__global__ void __launch_bounds__(kNW * 32) kvq_attn_kernel(KvqDev kv, KvqStep s, KvqAttnArgs a) {
  constexpr int CPL = D / 32;  // channels per lane in P.V
  const int r = blockIdx.x, h = blockIdx.y, split = blockIdx.z;  // rows in x: a prefill may exceed 65535 rows
  const int nKV = kv.lay.kv_heads, gq = a.n_heads / nKV;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ float qs[kMaxGQ][D];
  __shared__ float ksz[kNW][2][D];
  __shared__ float red_m[kNW][kMaxGQ], red_l[kNW][kMaxGQ];
  __shared__ float red_acc[kNW][kMaxGQ][D];
  const int p = s.row_pos[r], slot = s.row_slot[r];
  const int64_t n_keys = int64_t(p) + 1;
  constexpr bool kQ8 = TYPE == int(KvType::Q8);
  constexpr int bits = TYPE == int(KvType::KIVI4) ? 4 : 2;
  const int64_t nq = kQ8 ? n_keys : kvq::kivi_nq(n_keys);
  const int64_t st = kv.lay.stream(s.layer, slot, h);
  const int64_t qd = int64_t(a.n_heads) * D;
  for (int i = threadIdx.x; i < gq * D; i += blockDim.x)
    qs[i / D][i % D] = __bfloat162float(a.q[r * qd + int64_t(h) * gq * D + i]);
  __syncthreads();
  const float scale = 1.0f / sqrtf(float(D));
  const int64_t chunks = (n_keys + 31) / 32, per = (chunks + a.n_split - 1) / a.n_split;
  const int64_t c0 = split * per, c1 = min(chunks, c0 + per);
  float m[kMaxGQ], l[kMaxGQ], acc[kMaxGQ][CPL];
#pragma unroll
  for (int j = 0; j < kMaxGQ; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.f;
#pragma unroll
    for (int i = 0; i < CPL; ++i) acc[j][i] = 0.f;
  }
  for (int64_t c = c0 + warp; c < c1; c += kNW) {
    const int64_t k0 = c * 32, k = k0 + lane;
    const bool valid = k < n_keys, quant = k0 < nq;  // nq % 32 == 0: the whole chunk is one kind
    if (!kQ8 && quant) {
      const int64_t o = kv.lay.kk_sz_off(st, k0 / 32);
      for (int i = lane; i < D; i += 32) {
        ksz[warp][0][i] = kvq::f16_to_f32(kv.ks[o + i]);
        ksz[warp][1][i] = kvq::f16_to_f32(kv.kz[o + i]);
      }
    }
    __syncwarp();
    float sc[kMaxGQ];
#pragma unroll
    for (int j = 0; j < kMaxGQ; ++j) sc[j] = 0.f;
    if (valid) {
      if (kQ8 || quant) {
        const uint8_t *row = kv.kc + kv.lay.code_off(st, k);
        const uint16_t *qsc = kQ8 ? kv.ks + kv.lay.q8_scale_off(st, k) : nullptr;
        for (int w = 0; w < D * (kQ8 ? 8 : bits) / 32; ++w) {  // 32-bit words of the code row
          const uint32_t word = reinterpret_cast<const uint32_t *>(row)[w];
          constexpr int EPW = kQ8 ? 4 : 32 / bits;  // elements per word
#pragma unroll
          for (int e = 0; e < EPW; ++e) {
            const int ch = w * EPW + e;
            float x;
            if (kQ8) {
              x = float(int8_t((word >> (8 * e)) & 0xFFu)) * kvq::f16_to_f32(qsc[ch / 32]);
            } else {
              x = kvq::kivi_deq((word >> (e * bits)) & ((1u << bits) - 1u), ksz[warp][0][ch], ksz[warp][1][ch]);
            }
            for (int j = 0; j < gq; ++j) sc[j] += qs[j][ch] * x;
          }
        }
      } else {
        const uint16_t *row = kvq_res_row(kv, s, s.k, kv.kr, st, r, p, slot, h, k);
        for (int ch = 0; ch < D; ++ch) {
          const float x = kvq::bf16_bits_to_f32(row[ch]);
          for (int j = 0; j < gq; ++j) sc[j] += qs[j][ch] * x;
        }
      }
    }
    float pr[kMaxGQ];
#pragma unroll
    for (int j = 0; j < kMaxGQ; ++j) {
      if (j >= gq) break;
      const float x = valid ? sc[j] * scale : -INFINITY;
      const float mn = fmaxf(m[j], warp_max(x));  // finite: lane 0 of a processed chunk is valid
      const float corr = expf(m[j] - mn);        // m = -inf: 0
      pr[j] = valid ? expf(x - mn) : 0.f;
      l[j] = l[j] * corr + warp_sum(pr[j]);
#pragma unroll
      for (int i = 0; i < CPL; ++i) acc[j][i] *= corr;
      m[j] = mn;
    }
    const int nk = n_keys - k0 < 32 ? int(n_keys - k0) : 32;
    for (int kk = 0; kk < nk; ++kk) {
      const int64_t kp = k0 + kk;
      float v[CPL];
      if (kQ8) {
        const int8_t *row = reinterpret_cast<const int8_t *>(kv.vc + kv.lay.code_off(st, kp));
        const uint16_t *qsc = kv.vs + kv.lay.q8_scale_off(st, kp);
#pragma unroll
        for (int i = 0; i < CPL; ++i) v[i] = float(row[lane + 32 * i]) * kvq::f16_to_f32(qsc[i]);
      } else if (quant) {
        const uint8_t *row = kv.vc + kv.lay.code_off(st, kp);
        const int64_t o = kv.lay.kv_sz_off(st, kp);
#pragma unroll
        for (int i = 0; i < CPL; ++i)
          v[i] = kvq::kivi_deq(kvq::kivi_get(row, lane + 32 * i, bits), kvq::f16_to_f32(kv.vs[o + i]), kvq::f16_to_f32(kv.vz[o + i]));
      } else {
        const uint16_t *row = kvq_res_row(kv, s, s.v, kv.vr, st, r, p, slot, h, kp);
#pragma unroll
        for (int i = 0; i < CPL; ++i) v[i] = kvq::bf16_bits_to_f32(row[lane + 32 * i]);
      }
#pragma unroll
      for (int j = 0; j < kMaxGQ; ++j) {
        if (j >= gq) break;
        const float pk = __shfl_sync(0xffffffffu, pr[j], kk);
#pragma unroll
        for (int i = 0; i < CPL; ++i) acc[j][i] += pk * v[i];
      }
    }
    __syncwarp();
  }
  // merge the warps
  for (int j = 0; j < gq; ++j) {
    if (lane == 0) {
      red_m[warp][j] = m[j];
      red_l[warp][j] = l[j];
    }
#pragma unroll
    for (int i = 0; i < CPL; ++i) red_acc[warp][j][lane + 32 * i] = acc[j][i];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < gq * D; idx += blockDim.x) {
    const int j = idx / D, ch = idx % D;
    float M = -INFINITY;
    for (int w = 0; w < kNW; ++w) M = fmaxf(M, red_m[w][j]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
      for (int w = 0; w < kNW; ++w) {
        if (red_m[w][j] == -INFINITY) continue;
        const float f = expf(red_m[w][j] - M);
        L += red_l[w][j] * f;
        A += red_acc[w][j][ch] * f;
      }
    kvq_store_merged(a, r, h * gq + j, split, D, ch, M, L, A);
  }
}

template <int D>
__global__ void kvq_combine_kernel(KvqAttnArgs a) {
  const int r = blockIdx.x, hq = blockIdx.y, ch = threadIdx.x;
  const float *ws = a.ws + (int64_t(r) * a.n_heads + hq) * a.n_split * (D + 2);
  float M = -INFINITY;
  for (int sp = 0; sp < a.n_split; ++sp) M = fmaxf(M, ws[sp * (D + 2)]);
  float L = 0.f, A = 0.f;
  for (int sp = 0; sp < a.n_split; ++sp) {
    const float ms = ws[sp * (D + 2)];
    if (ms == -INFINITY) continue;
    const float f = expf(ms - M);
    L += ws[sp * (D + 2) + 1] * f;
    A += ws[sp * (D + 2) + 2 + ch] * f;
  }
  a.out[int64_t(r) * a.n_heads * D + int64_t(hq) * D + ch] = __float2bfloat16(A / L);
}

template <int D>
void write_d(const KvqDev &kv, const KvqStep &s, cudaStream_t stream) {
  kvq_write_kernel<D><<<dim3(s.rows, kv.lay.kv_heads), 128, 0, stream>>>(kv, s);
}
template <int D>
void ring_d(const KvqDev &kv, const KvqStep &s, cudaStream_t stream) {
  kvq_ring_kernel<D><<<dim3(s.rows, kv.lay.kv_heads), D, 0, stream>>>(kv, s);
}
template <int D>
const char *attn_d(const KvqDev &kv, const KvqStep &s, const KvqAttnArgs &a, cudaStream_t stream) {
  const dim3 grid(s.rows, kv.lay.kv_heads, a.n_split), block(kNW * 32);
  const char *name = nullptr;
  switch (kv.lay.type) {
    case KvType::Q8: kvq_attn_kernel<D, int(KvType::Q8)><<<grid, block, 0, stream>>>(kv, s, a); name = "attn_kvq8"; break;
    case KvType::KIVI4: kvq_attn_kernel<D, int(KvType::KIVI4)><<<grid, block, 0, stream>>>(kv, s, a); name = "attn_kivi4"; break;
    case KvType::KIVI2: kvq_attn_kernel<D, int(KvType::KIVI2)><<<grid, block, 0, stream>>>(kv, s, a); name = "attn_kivi2"; break;
    default: throw qw::Error(QW_ERR_INTERNAL, "kvq attention: not a quantized cache type");
  }
  if (a.n_split > 1) kvq_combine_kernel<D><<<dim3(s.rows, a.n_heads), D, 0, stream>>>(a);
  return name;
}

void check_d(int d) {
  if (d != 32 && d != 64 && d != 128) throw qw::Error(QW_ERR_UNSUPPORTED, "quantized kvCache on cuda: head_dim must be 32, 64 or 128");
}

}  // namespace

void launch_kvq_write(const KvqDev &kv, const KvqStep &s, cudaStream_t stream) {
  check_d(kv.lay.d);
  if (kv.lay.d == 32) write_d<32>(kv, s, stream);
  else if (kv.lay.d == 64) write_d<64>(kv, s, stream);
  else write_d<128>(kv, s, stream);
  QWC_LAUNCH_CHECK("kvq_write");
}

void launch_kvq_ring(const KvqDev &kv, const KvqStep &s, cudaStream_t stream) {
  if (!kvq::is_kivi(kv.lay.type)) return;
  check_d(kv.lay.d);
  if (kv.lay.d == 32) ring_d<32>(kv, s, stream);
  else if (kv.lay.d == 64) ring_d<64>(kv, s, stream);
  else ring_d<128>(kv, s, stream);
  QWC_LAUNCH_CHECK("kvq_ring");
}

size_t kvq_attn_ws_floats(int32_t rows, int32_t n_heads, int32_t head_dim, int32_t n_split) {
  return n_split > 1 ? size_t(rows) * n_heads * n_split * (head_dim + 2) : 0;
}

int32_t kvq_attn_pick_split(int32_t rows, int32_t n_kv, int32_t max_keys, int32_t sms) {
  const int64_t blocks = int64_t(rows) * n_kv;
  if (blocks >= 2 * sms) return 1;
  const int64_t want = (2 * sms + blocks - 1) / blocks;
  const int64_t most = std::max<int64_t>(1, (max_keys + 127) / 128);  // at least one chunk per warp
  return int32_t(std::min<int64_t>(std::min<int64_t>(want, most), 64));
}

void KvqCache::release() {
  for (void *p : bufs_) cudaFree(p);
  bufs_.clear();
  dev_ = KvqDev{};
  ws_ = nullptr;
  ws_floats_ = 0;
  bytes_ = 0;
}

void KvqCache::configure(KvType t, int32_t L, int32_t B, int32_t nkv, int32_t ctx, int32_t d, int32_t n_heads, int32_t sms) {
  release();
  if (t == KvType::BF16 || t == KvType::F32) return;
  check_d(d);
  impl_ = kvq_attn_impl_from_env();
  KvqDev k;
  k.lay = kvq::KvLayout::of(t, L, B, nkv, (ctx + 31) / 32 * 32, d);
  auto alloc = [&](size_t bytes) -> void * {
    void *p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
      cudaGetLastError();
      release();
      throw qw::Error(QW_ERR_OUT_OF_MEMORY, "quantized KV cache: cudaMalloc of " + std::to_string(bytes) + " bytes failed: " +
                                                cudaGetErrorString(e) + " (reduce max_batch or max_context)");
    }
    bufs_.push_back(p);
    bytes_ += bytes;
    return p;
  };
  const bool kivi = kvq::is_kivi(t);
  k.kc = static_cast<uint8_t *>(alloc(size_t(k.lay.code_bytes())));
  k.vc = static_cast<uint8_t *>(alloc(size_t(k.lay.code_bytes())));
  const size_t ks = size_t(kivi ? k.lay.kk_sz_elems() : k.lay.q8_scale_elems()) * 2;
  const size_t vs = size_t(kivi ? k.lay.kv_sz_elems() : k.lay.q8_scale_elems()) * 2;
  k.ks = static_cast<uint16_t *>(alloc(ks));
  k.vs = static_cast<uint16_t *>(alloc(vs));
  if (kivi) {
    k.kz = static_cast<uint16_t *>(alloc(ks));
    k.vz = static_cast<uint16_t *>(alloc(vs));
    k.kr = static_cast<uint16_t *>(alloc(size_t(k.lay.ring_elems()) * 2));
    k.vr = static_cast<uint16_t *>(alloc(size_t(k.lay.ring_elems()) * 2));
  }
  const uint64_t cache_bytes = bytes_;
  // decode splits: sized for the largest rows x splits a step of 1..B rows picks, v1 or v2 (allocated here,
  // never during a graph capture; a larger step, i.e. a prefill, falls back to one split)
  slots2_ = sms * kvq_attn2_blocks_per_sm(t, d, n_heads / nkv);
  ws_floats_ = 0;
  for (int32_t rows = 1; rows <= B; ++rows)
    ws_floats_ = std::max({ws_floats_, kvq_attn_ws_floats(rows, n_heads, d, kvq_attn_pick_split(rows, nkv, k.lay.ctx, sms)),
                           kvq_attn_ws_floats(rows, n_heads, d, kvq_attn2_pick_split(rows, nkv, k.lay.ctx, slots2_))});
  ws_ = static_cast<float *>(alloc(ws_floats_ * 4));
  bytes_ = cache_bytes;  // the workspace is scratch, not cache
  dev_ = k;
  n_heads_ = n_heads;
  sms_ = sms;
  batch_ = B;
}

const char *KvqCache::attend(const KvqStep &s, const __nv_bfloat16 *q, __nv_bfloat16 *out, cudaStream_t stream) const {
  KvqAttnArgs a;
  a.out = out;
  a.q = q;
  a.n_heads = n_heads_;
  a.ws = ws_;
  const bool v2 = impl_ == KvqAttnImpl::V2;
  a.n_split = v2 ? kvq_attn2_pick_split(s.rows, dev_.lay.kv_heads, dev_.lay.ctx, slots2_)
                 : kvq_attn_pick_split(s.rows, dev_.lay.kv_heads, dev_.lay.ctx, sms_);
  if (kvq_attn_ws_floats(s.rows, n_heads_, dev_.lay.d, a.n_split) > ws_floats_) a.n_split = 1;
  return v2 ? launch_kvq_attn2(dev_, s, a, stream) : launch_kvq_attention(dev_, s, a, stream);
}

KvqAttnImpl kvq_attn_impl_from_env() {
  const char *e = std::getenv("QW_KVQ_ATTN");
  // v2 is the default since its H100 run (2026-12-05 third run, kvqlab): every case PASS against the fp64 reference,
  // q8 at 32k 43 us = 3.4x the bf16 split-KV kernel and 8.5x v1. v1 stays for the A/B and as the simple reference.
  if (!e || !*e || std::strcmp(e, "v2") == 0) return KvqAttnImpl::V2;
  if (std::strcmp(e, "v1") == 0) return KvqAttnImpl::V1;
  throw qw::Error(QW_ERR_INVALID_ARGUMENT, std::string("QW_KVQ_ATTN must be v2 (the default) or v1 (the first quantized-KV "
                                                       "attention kernel, 8x slower at 32k), got '") + e +
                                               "': unset it or pick one");
}

const char *launch_kvq_attention(const KvqDev &kv, const KvqStep &s, const KvqAttnArgs &a, cudaStream_t stream) {
  check_d(kv.lay.d);
  if (a.n_heads / kv.lay.kv_heads > kMaxGQ) throw qw::Error(QW_ERR_UNSUPPORTED, "quantized kvCache on cuda: more than 8 query heads per kv head");
  const char *n = kv.lay.d == 32 ? attn_d<32>(kv, s, a, stream) : kv.lay.d == 64 ? attn_d<64>(kv, s, a, stream) : attn_d<128>(kv, s, a, stream);
  QWC_LAUNCH_CHECK("kvq_attention");
  return n;
}

}  // namespace qwc
