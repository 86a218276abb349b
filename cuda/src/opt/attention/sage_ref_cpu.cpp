// sage_ref_cpu.cpp — the reference math of the Sage arms (the steps and roundings: sage_ref.hpp).
// Scalar loops in a fixed order (the compiler vectorizes the int8 dot and the P.V row update); speed is not the
// point of this arm, being an exact, readable reference is. Built into libqwen_cpu and the CUDA lab (qwlab).
#include "sage_ref.hpp"

#include <algorithm>
#include <cmath>

#include "half.hpp"

namespace qw {
namespace cpu {

uint8_t e4m3_encode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return uint8_t(sign | 0x7F);
  const float a = std::fabs(x);
  if (a >= kE4m3Max) return uint8_t(sign | 0x7E);  // saturate (448 = 1.75 * 2^8 is code 0x7E)
  if (a == 0) return sign;                          // frexp(0) has no binade
  int e2 = 0;
  std::frexp(a, &e2);  // a = f * 2^e2, f in [0.5, 1): floor(log2 a) = e2 - 1
  const int e = std::max(e2 - 1, -6);  // below 2^-6 the quantum stays 2^-9 (subnormals)
  // a / 2^(e-3) is exact (a power-of-two scale); rint rounds half to even in the default rounding mode.
  const int m = int(std::rint(std::ldexp(a, 3 - e)));  // 0..16; 8..16 when normal
  if (e == -6 && m < 8) return uint8_t(sign | m);       // subnormal (or zero)
  int E = e + 7, M = m - 8;                             // biased exponent, mantissa
  if (M == 8) ++E, M = 0;                               // rounded up to the next binade
  return uint8_t(sign | (E << 3) | M);                  // E <= 15 and (E, M) != (15, 7): a < 448 rounds <= 448
}

float e4m3_decode(uint8_t c) {
  const int E = (c >> 3) & 15, M = c & 7;
  float a;
  if (E == 15 && M == 7)
    a = NAN;
  else if (E == 0)
    a = std::ldexp(float(M), -9);
  else
    a = std::ldexp(float(8 + M), E - 10);
  return (c & 0x80) ? -a : a;
}

float quant_int8_block(const float *x, int64_t stride, int32_t rows, int32_t w, int8_t *q) {
  float mx = 0;
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t c = 0; c < w; ++c) mx = std::max(mx, std::fabs(x[r * stride + c]));
  if (!(mx > 0)) {
    std::fill(q, q + int64_t(rows) * w, int8_t(0));
    return 0.0f;
  }
  const float inv = 127.0f / mx;
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t c = 0; c < w; ++c) {
      const float t = std::rint(x[r * stride + c] * inv);
      q[int64_t(r) * w + c] = int8_t(std::min(127.0f, std::max(-127.0f, t)));
    }
  return mx / 127.0f;
}

void sage_prepare_kv(bool fp8, const float *K, const float *V, int32_t len, int32_t d, SageKv &kv) {
  kv.fp8 = fp8;
  kv.len = len;
  kv.d = d;
  kv.mean.assign(size_t(d), 0.0f);
  for (int32_t c = 0; c < d; ++c) {
    double s = 0;
    for (int32_t k = 0; k < len; ++k) s += double(K[int64_t(k) * d + c]);
    kv.mean[size_t(c)] = float(s / double(len));
  }
  std::vector<float> ks(size_t(len) * d);  // K~ = K - mean
  for (int32_t k = 0; k < len; ++k)
    for (int32_t c = 0; c < d; ++c) ks[size_t(k) * d + c] = K[int64_t(k) * d + c] - kv.mean[size_t(c)];
  const int32_t nb = (len + kSageKBlock - 1) / kSageKBlock;
  kv.kq.resize(size_t(len) * d);
  kv.ks.resize(size_t(nb));
  for (int32_t b = 0; b < nb; ++b) {
    const int32_t k0 = b * kSageKBlock, n = std::min(kSageKBlock, len - k0);
    kv.ks[size_t(b)] = quant_int8_block(&ks[size_t(k0) * d], d, n, d, &kv.kq[size_t(k0) * d]);
  }
  kv.v.resize(size_t(len) * d);
  if (!fp8) {
    kv.vs.clear();
    for (int64_t i = 0; i < int64_t(len) * d; ++i) kv.v[size_t(i)] = bf16_to_float(float_to_bf16(V[i]));
    return;
  }
  kv.vs.assign(size_t(d), 0.0f);
  kv.vmean.assign(size_t(d), 0.0f);
  for (int32_t c = 0; c < d; ++c) {
    double sum = 0;
    for (int32_t k = 0; k < len; ++k) sum += double(V[int64_t(k) * d + c]);
    const float mu = float(sum / double(len));
    kv.vmean[size_t(c)] = mu;
    float mx = 0;
    for (int32_t k = 0; k < len; ++k) mx = std::max(mx, std::fabs(V[int64_t(k) * d + c] - mu));
    const float inv = mx > 0 ? kE4m3Max / mx : 0.0f;
    kv.vs[size_t(c)] = mx / kE4m3Max;
    for (int32_t k = 0; k < len; ++k) kv.v[size_t(k) * d + c] = e4m3_round((V[int64_t(k) * d + c] - mu) * inv);
  }
}

namespace {

inline int32_t dot_i8(const int8_t *a, const int8_t *b, int32_t d) {
  int32_t s = 0;
  for (int32_t c = 0; c < d; ++c) s += int32_t(a[c]) * int32_t(b[c]);
  return s;
}

// One query row (int8 qi with scale sq) over keys 0..n_keys-1: steps 3 and 4 of sage_cpu.hpp.
void attend_row(const SageKv &kv, const int8_t *qi, float sq, int32_t n_keys, float *z, float *acc, float *part) {
  const int32_t d = kv.d;
  const float sm = 1.0f / std::sqrt(float(d));
  float s[kSageKBlock], p[kSageKBlock];
  float m = -INFINITY, l = 0;
  std::fill(acc, acc + d, 0.0f);
  for (int32_t k0 = 0; k0 < n_keys; k0 += kSageKBlock) {
    const int32_t n = std::min(kSageKBlock, n_keys - k0);
    const float deq = (sq * kv.ks[size_t(k0 / kSageKBlock)]) * sm;
    float bm = -INFINITY;
    for (int32_t j = 0; j < n; ++j) {
      s[j] = float(dot_i8(qi, &kv.kq[size_t(k0 + j) * d], d)) * deq;
      bm = std::max(bm, s[j]);
    }
    const float mn = std::max(m, bm);
    const float alpha = m == -INFINITY ? 0.0f : std::exp(m - mn);
    float ls = 0;
    for (int32_t j = 0; j < n; ++j) {
      const float e = std::exp(s[j] - mn);
      ls += e;
      p[j] = kv.fp8 ? e4m3_round(e * kE4m3Max) : bf16_to_float(float_to_bf16(e));
    }
    l = l * alpha + ls;
    std::fill(part, part + d, 0.0f);
    for (int32_t j = 0; j < n; ++j) {
      const float *vr = &kv.v[size_t(k0 + j) * d];
      for (int32_t c = 0; c < d; ++c) part[c] += p[j] * vr[c];
    }
    for (int32_t c = 0; c < d; ++c) acc[c] = acc[c] * alpha + part[c];
    m = mn;
  }
  if (kv.fp8)
    for (int32_t c = 0; c < d; ++c) z[c] = (acc[c] * (kv.vs[size_t(c)] / kE4m3Max)) / l + kv.vmean[size_t(c)];
  else
    for (int32_t c = 0; c < d; ++c) z[c] = acc[c] / l;
}

}  // namespace

void sage_attend(const SageKv &kv, const float *q, int64_t q_stride, int32_t rows, int32_t pos_first, float *z,
                 int64_t z_stride) {
  const int32_t d = kv.d;
  std::vector<int8_t> qq(size_t(kSageQBlock) * d);
  std::vector<float> acc(static_cast<size_t>(d)), part(static_cast<size_t>(d));
  for (int32_t r0 = 0; r0 < rows; r0 += kSageQBlock) {
    const int32_t n = std::min(kSageQBlock, rows - r0);
    const float sq = quant_int8_block(q + r0 * q_stride, q_stride, n, d, qq.data());
    for (int32_t i = 0; i < n; ++i)
      attend_row(kv, &qq[size_t(i) * d], sq, pos_first + r0 + i + 1, z + (r0 + i) * z_stride, acc.data(),
                 part.data());
  }
}

}  // namespace cpu
}  // namespace qw
