// two_level.hpp — the group scales of a W4 / W8 matrix in two levels, for the decode GEMVs (host side; no CUDA).
//
// Why: the native layout keeps an fp32 scale and an fp32 offset per group (w = scale * q + offset), 8 bytes a group.
// For GGUF K-quants that is most of the overhead: Q4_K (W4, groups of 32) reads 6 bits a weight instead of the file's
// 4.5, Q6_K (W8, groups of 16) 12 instead of 6.56; a 7B Q4_K_M decode step reads 6.44 GB instead of ~4.9. But a
// K-quant's group scale is d * sc (sc a small integer code, d one fp16 per 256 columns) and its offset -(dmin * m):
// stored so — a 16-bit word per group (low byte the scale code as int8, high byte the min code as uint8) and one
// (D, M) fp32 pair per 256 columns — the GEMV rebuilds scale = D * float(sc) and offset = -(M * float(m)), the very
// fp32 products the converter made (front/convert.cpp block_q4_k / q5_k / q6_k): the same bits, 0.75 / 1.25 bits a
// weight of scales instead of 2 / 4 (7B Q4_K_M: 5.05 GB a decode step instead of 6.44).
//
// make_two_level does not need the file: it searches, per 256 columns, a D (and M) that reproduces every group's
// fp32 scale (offset) bit for bit from an int8 (uint8) code, and gives up on the whole matrix at the first block
// without one (our q4 / q8 requantization, Q8_0, F16 sources: nothing to gain or no such form). Where it succeeds the
// kernels read the two levels; the fp32 arrays stay for every other reader (prefill, marlin's repack, the lab).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace qwc {

constexpr int64_t kTwoLevelBlock = 256;  // columns per (D, M) pair: a K-quant super-block

struct TwoLevel {
  std::vector<uint16_t> codes;  // [rows * cols / group]: low byte int8 scale code, high byte uint8 min code
  std::vector<float> dm;        // [rows * cols / 256][2]: D, M
  int32_t shift = 0;            // log2(groups per 256 columns): group g's pair is dm[2 * (g >> shift)]
};

// The rebuilt scale and offset of a group (the kernels compute the same expressions in fp32: group_so, common.cuh).
inline float two_level_scale(float D, uint16_t code) { return D * (float)(int8_t)(code & 0xff); }
inline float two_level_offset(float M, uint16_t code) { return -(M * (float)(code >> 8)); }

inline bool tl_same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

namespace tl_detail {

// A factor F and codes c[i] in [lo, hi] with F * float(c[i]) == v[i] bit for bit, for the n values of one block.
// Candidates: F = v[a] / k for the value of largest magnitude and every code k it could have (a value is F * k
// exactly when it came from such a product, so the true pair is among them), the codes ggml's quantizers give the
// largest value first (Q4_K / Q5_K: 63; Q6_K: -128 or 127); all-zero blocks take F = +-0.
inline bool factor(const float *v, int n, int lo, int hi, float *F, int *c) {
  const auto make = [](float f, int k) { return f * (float)k; };
  int a = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(v[i]) > std::fabs(v[a])) a = i;
  if (!std::isfinite(v[a])) return false;
  const auto fits = [&](float f) {
    for (int i = 0; i < n; ++i) {
      int k = 0;
      if (f != 0.f) {
        const double q = std::nearbyint((double)v[i] / (double)f);
        if (!(q >= lo && q <= hi)) return false;
        k = (int)q;
      }
      if (!tl_same_bits(make(f, k), v[i])) return false;
      c[i] = k;
    }
    *F = f;
    return true;
  };
  if (v[a] == 0.f) return fits(0.f) || fits(-0.f);
  const auto try_code = [&](int k) { return k != 0 && k >= lo && k <= hi && fits(v[a] / (float)k); };
  for (int k : {63, -128, 127, -64})
    if (try_code(k)) return true;
  for (int k = std::max(-lo, hi); k >= 1; --k)
    if (try_code(k) || try_code(-k)) return true;
  return false;
}

}  // namespace tl_detail

// The two-level form of a matrix's group scales and offsets ([rows, cols / group] each, w = scale * q + offset), or
// false where some 256-column block has none (then *out is left empty). cols must be a multiple of 256 and group a
// power of two dividing 256 with at most 32 groups a block.
inline bool make_two_level(const float *scale, const float *offset, int64_t rows, int64_t cols, int32_t group,
                           TwoLevel *out) {
  *out = TwoLevel{};
  if (group <= 0 || kTwoLevelBlock % group != 0 || cols % kTwoLevelBlock != 0) return false;
  const int gpb = (int)(kTwoLevelBlock / group);
  if (gpb > 32 || (gpb & (gpb - 1)) != 0) return false;
  int shift = 0;
  while ((1 << shift) < gpb) ++shift;
  const int64_t blocks = rows * (cols / kTwoLevelBlock);
  TwoLevel t;
  t.shift = shift;
  t.codes.resize((size_t)blocks * gpb);
  t.dm.resize((size_t)blocks * 2);
  int cs[32], cm[32];
  for (int64_t b = 0; b < blocks; ++b) {
    const float *s = scale + b * gpb, *o = offset + b * gpb;
    float D = 0.f, M = 0.f;
    // offsets are -(M * m): factor their negations (exact) as M * m
    float neg[32];
    for (int i = 0; i < gpb; ++i) neg[i] = -o[i];
    if (!tl_detail::factor(s, gpb, -128, 127, &D, cs) || !tl_detail::factor(neg, gpb, 0, 255, &M, cm)) return false;
    for (int i = 0; i < gpb; ++i) {
      const uint16_t code = (uint16_t)((uint8_t)(int8_t)cs[i] | (cm[i] << 8));
      // the kernels' expressions, checked once more on the packed code
      if (!tl_same_bits(two_level_scale(D, code), s[i]) || !tl_same_bits(two_level_offset(M, code), o[i])) return false;
      t.codes[(size_t)(b * gpb + i)] = code;
    }
    t.dm[(size_t)(2 * b)] = D;
    t.dm[(size_t)(2 * b + 1)] = M;
  }
  *out = std::move(t);
  return true;
}

}  // namespace qwc
