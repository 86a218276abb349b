// kv_format.hpp — the quantized KV-cache formats (toggle kvCache = q8 | kivi4 | kivi2), shared by the CPU
// backend (the exact reference), the CUDA kernels and the lab. Plain C++17; every function is usable from
// device code too (QW_HD), so CPU and GPU quantize with the same arithmetic.
//
// A "stream" is the cache of one (layer, sequence slot, kv head): positions 0 .. ctx-1, head_dim d.
//
// q8 (llama.cpp q8_0 KV): every row (position) of K and of V is cut into blocks of 32 elements along d;
//   block scale dq = amax / 127 stored as fp16, codes q = round(x / dq) (roundf, id = 1 / dq computed from
//   the unrounded dq, as ggml's quantize_row_q8_0_ref); x' = q * fp16(dq). Same bits as block_q8_0 (34 bytes
//   per 32 elements), stored as two planes (codes [ctx][d] int8, scales [ctx][d/32] fp16) so that both are
//   aligned for vector loads.
//
// kivi4 / kivi2 (KIVI, Liu et al. 2024, github.com/jy-yuan/KIVI): asymmetric b-bit codes, x' = c * s + z,
//   s = (max - min) / (2^b - 1), z = min over the group (both stored fp16, codes computed against the rounded
//   s and z: c = clamp(rint((x - z) / s), 0, 2^b - 1); s == 0 gives c = 0).
//   keys:   per CHANNEL, groups of G = 32 consecutive tokens (KIVI's group along the token axis): one (s, z)
//           per (token group, channel); codes token-major [ctx][d] packed along d.
//   values: per TOKEN, groups of G = 32 consecutive channels: one (s, z) per (token, channel group).
//   Packing: 4-bit, two codes per byte, low nibble = even channel; 2-bit, four per byte, bits 2i..2i+1 =
//   channel 4j + i.
//   Residual window: the most recent tokens stay in bf16. With len tokens in the stream, positions
//   [0, nq(len)) are quantized and [nq(len), len) are full precision, nq(len) = G * floor((len - R) / G)
//   for len > R, else 0: at least R (= kKiviResidual = 128) recent tokens are exact, and whole groups of G
//   move into the quantized part as the window slides. The full-precision rows live in a ring of
//   W = kKiviRing bf16 slots per stream (slot = pos % W).
//   State per sequence: none in the backends beyond its length. nq is a function of len, the ring is indexed
//   by position, and a group is quantized from the ring's bf16 rows when it completes. So truncating a
//   sequence (e.g. speculative-decoding rollback) to new_len is exact when the ring still holds the rows that
//   become full precision again, [nq(new_len), new_len). Of the positions below the longest length `peak` the
//   sequence reached since its last reset, the ring surely holds [peak - W, peak) (a later write of position
//   q evicts q - W; cuts that obey this rule never go below peak - W, so no row under it is rewritten). The
//   shortest exact length is therefore kivi_min_truncate(peak) = R + G * ceil((peak - W) / G) for peak > W
//   (else 0): a cut of up to kKiviMaxRollback = W - R - G + 1 (= 97) tokens below peak is always exact. The
//   front tracks peak and refuses a deeper cut (qw_session_truncate, kv_cache_min_truncate in kvcache.hpp):
//   the caller resets the sequence and prefills the tokens it keeps again.
//   Attention semantics (prefill and decode alike): the query at position p sees the cache as it was when
//   p was the newest token, i.e. keys < nq(p + 1) quantized and the rest from bf16. Prefill therefore gives
//   the same result as token-by-token decode (up to fp summation order) and perplexity measures what decode
//   would see.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#ifdef __CUDACC__
#define QW_HD __host__ __device__ __forceinline__
#else
#define QW_HD inline
#endif

namespace qw {
namespace kvq {

enum class KvType : int32_t { F32 = 0, BF16 = 1, Q8 = 2, KIVI4 = 3, KIVI2 = 4 };

constexpr int32_t kQ8Group = 32;        // elements per q8 block (along d)
constexpr int32_t kKiviGroup = 32;      // G: tokens per key group (per channel), channels per value group (per token)
constexpr int32_t kKiviResidual = 128;  // R: minimum full-precision recent tokens (KIVI's residual_length)
constexpr int32_t kKiviRing = 256;      // W: bf16 ring slots per stream (>= R + G)
constexpr int32_t kKiviMaxRollback = kKiviRing - kKiviResidual - kKiviGroup + 1;

// Parses a kvCache toggle value; returns false for an unknown one.
inline bool parse_kv_type(const std::string &v, KvType *out) {
  const char *names[] = {"f32", "bf16", "q8", "kivi4", "kivi2"};
  for (int i = 0; i < 5; ++i)
    if (v == names[i]) {
      *out = KvType(i);
      return true;
    }
  return false;
}
inline const char *kv_type_name(KvType t) {
  switch (t) {
    case KvType::F32: return "f32";
    case KvType::BF16: return "bf16";
    case KvType::Q8: return "q8";
    case KvType::KIVI4: return "kivi4";
    case KvType::KIVI2: return "kivi2";
  }
  return "?";
}
QW_HD bool is_kivi(KvType t) { return t == KvType::KIVI4 || t == KvType::KIVI2; }
QW_HD int32_t kv_bits(KvType t) {
  return t == KvType::Q8 ? 8 : t == KvType::KIVI4 ? 4 : t == KvType::KIVI2 ? 2 : t == KvType::BF16 ? 16 : 32;
}

// Positions of a stream of len tokens that are quantized (kivi); q8 quantizes every position.
QW_HD int64_t kivi_nq(int64_t len) { return len <= kKiviResidual ? 0 : (len - kKiviResidual) / kKiviGroup * kKiviGroup; }
// The shortest length a kivi stream that reached `peak` tokens since its reset can be truncated to exactly
// (see the residual window above); 0 (a reset) is always exact.
QW_HD int64_t kivi_min_truncate(int64_t peak) {
  return peak <= kKiviRing ? 0 : kKiviResidual + (peak - kKiviRing + kKiviGroup - 1) / kKiviGroup * kKiviGroup;
}

// fp32 -> fp16, round to nearest even (overflow to inf, subnormals kept), the same on host and device.
QW_HD uint16_t f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return uint16_t(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0u));  // inf / NaN
  if (ax >= 0x477FF000u) return uint16_t(sign | 0x7C00u);                                       // rounds to inf
  if (ax < 0x38800000u) {  // fp16 subnormal or zero: value = m * 2^-24
    if (ax < 0x33000000u) return uint16_t(sign);  // < 2^-25 rounds to zero
    const uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24 bits dropped to scale to 2^-24 units
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((ax >> 13) - (112u << 10));
  const uint32_t rem = ax & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}
QW_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  uint32_t u;
  if (e == 0x1F) {
    u = sign | 0x7F800000u | (m << 13);
  } else if (e != 0) {
    u = sign | ((e + 112u) << 23) | (m << 13);
  } else {
    float v = float(m) * 5.9604644775390625e-08f;  // exact: m < 2^10, times 2^-24
    return sign ? -v : v;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}
QW_HD float bf16_bits_to_f32(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
QW_HD uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Byte/element offsets of every plane. All planes are [layers][batch][kv_heads] streams back to back.
struct KvLayout {
  KvType type = KvType::BF16;
  int32_t layers = 0, batch = 0, kv_heads = 0, ctx = 0, d = 0;
  // The layout of a cache of `layers` x `batch` sequence slots x `kv_heads` streams of ctx positions, head size d.
  static QW_HD KvLayout of(KvType type, int32_t layers, int32_t batch, int32_t kv_heads, int32_t ctx, int32_t d) {
    KvLayout l;
    l.type = type;
    l.layers = layers;
    l.batch = batch;
    l.kv_heads = kv_heads;
    l.ctx = ctx;
    l.d = d;
    return l;
  }
  QW_HD int32_t bits() const { return kv_bits(type); }
  QW_HD int64_t streams() const { return int64_t(layers) * batch * kv_heads; }
  QW_HD int64_t stream(int32_t l, int32_t s, int32_t h) const { return (int64_t(l) * batch + s) * kv_heads + h; }
  QW_HD int64_t code_row() const { return int64_t(d) * bits() / 8; }       // code bytes per position
  QW_HD int64_t ctx_groups() const { return (int64_t(ctx) + kKiviGroup - 1) / kKiviGroup; }
  // codes (K and V alike): byte offset of position pos of stream st
  QW_HD int64_t code_off(int64_t st, int64_t pos) const { return (st * ctx + pos) * code_row(); }
  QW_HD int64_t code_bytes() const { return streams() * ctx * code_row(); }
  // q8 scales (K and V alike), fp16 elements: [stream][ctx][d / 32]
  QW_HD int64_t q8_scale_off(int64_t st, int64_t pos) const { return (st * ctx + pos) * (d / kQ8Group); }
  QW_HD int64_t q8_scale_elems() const { return streams() * ctx * (d / kQ8Group); }
  // kivi key scale / zero, fp16 elements: [stream][ctx_groups][d]
  QW_HD int64_t kk_sz_off(int64_t st, int64_t group) const { return (st * ctx_groups() + group) * d; }
  QW_HD int64_t kk_sz_elems() const { return streams() * ctx_groups() * d; }
  // kivi value scale / zero, fp16 elements: [stream][ctx][d / G]
  QW_HD int64_t kv_sz_off(int64_t st, int64_t pos) const { return (st * ctx + pos) * (d / kKiviGroup); }
  QW_HD int64_t kv_sz_elems() const { return streams() * ctx * (d / kKiviGroup); }
  // kivi bf16 ring (K and V alike), elements: [stream][W][d]
  QW_HD int64_t ring_off(int64_t st, int64_t pos) const { return (st * kKiviRing + pos % kKiviRing) * d; }
  QW_HD int64_t ring_elems() const { return streams() * kKiviRing * d; }
  // Bytes one more token adds to one stream for K and V together, once it is quantized.
  QW_HD double bytes_per_token_stream() const {
    switch (type) {
      case KvType::F32: return 8.0 * d;
      case KvType::BF16: return 4.0 * d;
      case KvType::Q8: return 2.0 * (d + 2.0 * d / kQ8Group);
      default: return 2.0 * (double(d) * bits() / 8) + 4.0 * d / kKiviGroup + 4.0 * d / kKiviGroup;
    }
  }
};

// d must be a multiple of 32 for q8 and kivi (every Qwen2 head_dim is).
inline bool kv_quant_shape_ok(int32_t d) { return d % 32 == 0; }

// ------------------------------------------------------------------------------------------ q8 (row)
// Quantizes one row x[d] into codes[d] (int8) and scales[d/32] (fp16 bits).
QW_HD void q8_quant_row(const float *x, int32_t d, int8_t *codes, uint16_t *scales) {
  for (int32_t b = 0; b < d / kQ8Group; ++b) {
    float amax = 0.0f;
    for (int32_t i = 0; i < kQ8Group; ++i) amax = fmaxf(amax, fabsf(x[b * kQ8Group + i]));
    const float dq = amax / 127.0f;
    const float id = dq != 0.0f ? 1.0f / dq : 0.0f;
    scales[b] = f32_to_f16(dq);
    for (int32_t i = 0; i < kQ8Group; ++i) codes[b * kQ8Group + i] = int8_t(roundf(x[b * kQ8Group + i] * id));
  }
}
QW_HD float q8_deq(const int8_t *codes, const uint16_t *scales, int32_t i) {
  return float(codes[i]) * f16_to_f32(scales[i / kQ8Group]);
}

// ------------------------------------------------------------------------------------------ kivi
// Asymmetric scale/zero of n values x[i * stride] for b bits, both as fp16 bits.
QW_HD void kivi_scale_zero(const float *x, int64_t stride, int32_t n, int32_t bits, uint16_t *s, uint16_t *z) {
  float mn = x[0], mx = x[0];
  for (int32_t i = 1; i < n; ++i) {
    mn = fminf(mn, x[i * stride]);
    mx = fmaxf(mx, x[i * stride]);
  }
  *s = f32_to_f16((mx - mn) / float((1 << bits) - 1));
  *z = f32_to_f16(mn);
}
QW_HD uint32_t kivi_code(float x, float s, float z, int32_t bits) {
  if (!(s > 0.0f)) return 0u;
  const float c = rintf((x - z) / s);
  const float hi = float((1 << bits) - 1);
  return uint32_t(c < 0.0f ? 0.0f : c > hi ? hi : c);
}
// Code of channel c in a packed row.
QW_HD uint32_t kivi_get(const uint8_t *row, int32_t c, int32_t bits) {
  return bits == 4 ? (row[c >> 1] >> ((c & 1) * 4)) & 0xFu : (row[c >> 2] >> ((c & 3) * 2)) & 0x3u;
}
QW_HD void kivi_put(uint8_t *row, int32_t c, int32_t bits, uint32_t code) {
  if (bits == 4) {
    const int sh = (c & 1) * 4;
    row[c >> 1] = uint8_t((row[c >> 1] & ~(0xFu << sh)) | (code << sh));
  } else {
    const int sh = (c & 3) * 2;
    row[c >> 2] = uint8_t((row[c >> 2] & ~(0x3u << sh)) | (code << sh));
  }
}
// Values: quantize one row x[d] per token (groups of G channels).
QW_HD void kivi_quant_value_row(const float *x, int32_t d, int32_t bits, uint8_t *codes, uint16_t *s, uint16_t *z) {
  for (int32_t g = 0; g < d / kKiviGroup; ++g) {
    kivi_scale_zero(x + g * kKiviGroup, 1, kKiviGroup, bits, &s[g], &z[g]);
    const float sf = f16_to_f32(s[g]), zf = f16_to_f32(z[g]);
    for (int32_t i = 0; i < kKiviGroup; ++i) kivi_put(codes, g * kKiviGroup + i, bits, kivi_code(x[g * kKiviGroup + i], sf, zf, bits));
  }
}
// Keys: quantize channel c of a group of G rows x[t * ldx + c] (t < G) into the G code rows (stride code_row).
QW_HD void kivi_quant_key_channel(const float *x, int64_t ldx, int32_t c, int32_t bits, uint8_t *codes, int64_t code_row,
                                  uint16_t *s, uint16_t *z) {
  kivi_scale_zero(x + c, ldx, kKiviGroup, bits, s, z);
  const float sf = f16_to_f32(*s), zf = f16_to_f32(*z);
  for (int32_t t = 0; t < kKiviGroup; ++t) kivi_put(codes + t * code_row, c, bits, kivi_code(x[t * ldx + c], sf, zf, bits));
}
QW_HD float kivi_deq(uint32_t code, float s, float z) { return float(code) * s + z; }

}  // namespace kvq
}  // namespace qw
