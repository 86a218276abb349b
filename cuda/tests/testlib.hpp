// testlib.hpp — helpers for the C++ tests: checks, a seeded RNG, GGUF block builders, an independent port
// of ggml's dequantize_row_* reference formulas, and a tiny random Qwen2 model with an fp64 forward.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "half.hpp"
#include "qwen.h"

static int g_failures = 0;
#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      ++g_failures;                                                       \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                  \
      std::fprintf(stderr, "\n");                                         \
    }                                                                     \
  } while (0)
#define CHECK_OK(expr)                                                                            \
  do {                                                                                            \
    int32_t st_ = (expr);                                                                         \
    if (st_ != QW_OK) {                                                                           \
      ++g_failures;                                                                               \
      std::fprintf(stderr, "FAIL %s:%d: %s -> %d (%s)\n", __FILE__, __LINE__, #expr, st_, qw_last_error()); \
    }                                                                                             \
  } while (0)
#define CHECK_ST(expr, want)                                                                         \
  do {                                                                                               \
    int32_t st_ = (expr);                                                                            \
    if (st_ != (want)) {                                                                             \
      ++g_failures;                                                                                  \
      std::fprintf(stderr, "FAIL %s:%d: %s -> %d, want %d (%s)\n", __FILE__, __LINE__, #expr, st_, int(want), \
                   qw_last_error());                                                                 \
    }                                                                                                \
  } while (0)

[[maybe_unused]] static int finish(const char *name) {
  if (g_failures) {
    std::fprintf(stderr, "%s: %d failure(s)\n", name, g_failures);
    return 1;
  }
  std::printf("%s: ok\n", name);
  return 0;
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  float normal() {
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return float(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  uint8_t byte() { return uint8_t(next() >> 56); }
};

// A random finite fp16 value of magnitude ~ 2^[lo, hi] with random sign.
[[maybe_unused]] static uint16_t rand_half(Rng &r, int lo = -12, int hi = -4) {
  const int e = lo + int(r.next() % uint64_t(hi - lo + 1));  // unbiased exponent
  const uint16_t mant = uint16_t(r.next() & 0x3FF);
  const uint16_t sign = (r.next() & 1) ? 0x8000 : 0;
  return uint16_t(sign | uint16_t((e + 15) << 10) | mant);
}
struct GgmlType {
  int32_t id;
  int block_elems, block_bytes;
};
[[maybe_unused]] static GgmlType ggml_type(int32_t id) {
  switch (id) {
    case QW_GGML_F32: return {id, 1, 4};
    case QW_GGML_F16: return {id, 1, 2};
    case QW_GGML_BF16: return {id, 1, 2};
    case QW_GGML_Q8_0: return {id, 32, 34};
    case QW_GGML_Q4_0: return {id, 32, 18};
    case QW_GGML_Q5_0: return {id, 32, 22};
    case QW_GGML_Q4_K: return {id, 256, 144};
    case QW_GGML_Q5_K: return {id, 256, 176};
    case QW_GGML_Q6_K: return {id, 256, 210};
  }
  return {id, 0, 0};
}

[[maybe_unused]] static void put16(uint8_t *p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
[[maybe_unused]] static uint16_t get16(const uint8_t *p) { return uint16_t(p[0] | (p[1] << 8)); }
[[maybe_unused]] static float h2f(const uint8_t *p) { return qw::half_to_float(get16(p)); }

// Random GGUF data of `n` elements (a multiple of the block size) of type t; float types from N(0, std).
[[maybe_unused]] static std::vector<uint8_t> random_ggml(Rng &r, int32_t t, int64_t n, float stdev = 0.05f) {
  const GgmlType g = ggml_type(t);
  std::vector<uint8_t> d(size_t(n / g.block_elems * g.block_bytes));
  if (t == QW_GGML_F32) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = r.normal() * stdev;
      std::memcpy(&d[size_t(4 * i)], &v, 4);
    }
    return d;
  }
  if (t == QW_GGML_BF16) {
    for (int64_t i = 0; i < n; ++i) put16(&d[size_t(2 * i)], qw::float_to_bf16(r.normal() * stdev));
    return d;
  }
  for (auto &b : d) b = r.byte();
  const int64_t nb = n / g.block_elems;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t *p = &d[size_t(b * g.block_bytes)];
    switch (t) {
      case QW_GGML_F16: {
        for (int k = 0; k < g.block_elems; ++k) put16(p, rand_half(r, -8, -3));
        break;
      }
      case QW_GGML_Q8_0: case QW_GGML_Q4_0: case QW_GGML_Q5_0: put16(p, rand_half(r, -11, -7)); break;
      case QW_GGML_Q4_K: case QW_GGML_Q5_K:
        put16(p, rand_half(r, -14, -10));
        put16(p + 2, rand_half(r, -14, -10));
        break;
      case QW_GGML_Q6_K: put16(p + 208, rand_half(r, -14, -10)); break;
    }
  }
  return d;
}

// Independent port of ggml-quants.c dequantize_row_* (written from the reference C, not from convert.cpp).
[[maybe_unused]] static void ref_dequant(float *y, int32_t t, const uint8_t *x, int64_t n) {
  const GgmlType g = ggml_type(t);
  const int64_t nb = n / g.block_elems;
  switch (t) {
    case QW_GGML_F32: std::memcpy(y, x, size_t(n) * 4); return;
    case QW_GGML_F16: for (int64_t i = 0; i < n; ++i) y[i] = h2f(x + 2 * i); return;
    case QW_GGML_BF16: for (int64_t i = 0; i < n; ++i) y[i] = qw::bf16_to_float(get16(x + 2 * i)); return;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t *b = x + i * g.block_bytes;
    switch (t) {
      case QW_GGML_Q8_0: {
        const float d = h2f(b);
        for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
        break;
      }
      case QW_GGML_Q4_0: {
        const float d = h2f(b);
        for (int j = 0; j < 16; ++j) {
          const int x0 = (b[2 + j] & 0x0F) - 8, x1 = (b[2 + j] >> 4) - 8;
          y[j] = float(x0) * d;
          y[j + 16] = float(x1) * d;
        }
        break;
      }
      case QW_GGML_Q5_0: {
        const float d = h2f(b);
        uint32_t qh;
        std::memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; ++j) {
          const uint8_t xh_0 = uint8_t(((qh >> (j + 0)) << 4) & 0x10);
          const uint8_t xh_1 = uint8_t(((qh >> (j + 12))) & 0x10);
          const int32_t x0 = ((b[6 + j] & 0x0F) | xh_0) - 16;
          const int32_t x1 = ((b[6 + j] >> 4) | xh_1) - 16;
          y[j] = float(x0) * d;
          y[j + 16] = float(x1) * d;
        }
        break;
      }
      case QW_GGML_Q4_K: case QW_GGML_Q5_K: {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *scales = b + 4;
        const uint8_t *qh = b + 16;
        const uint8_t *ql = t == QW_GGML_Q4_K ? b + 16 : b + 48;
        auto get = [&](int j, uint8_t *sc, uint8_t *m) {
          if (j < 4) {
            *sc = scales[j] & 63;
            *m = scales[j + 4] & 63;
          } else {
            *sc = uint8_t((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
            *m = uint8_t((scales[j + 4] >> 4) | ((scales[j - 0] >> 6) << 4));
          }
        };
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        float *yy = y;
        for (int j = 0; j < 256; j += 64) {
          uint8_t sc, m;
          get(is + 0, &sc, &m);
          const float d1 = d * sc, m1 = min * m;
          get(is + 1, &sc, &m);
          const float d2 = d * sc, m2 = min * m;
          if (t == QW_GGML_Q4_K) {
            for (int l = 0; l < 32; ++l) *yy++ = d1 * float(ql[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *yy++ = d2 * float(ql[l] >> 4) - m2;
          } else {
            for (int l = 0; l < 32; ++l) *yy++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *yy++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
          }
          ql += 32;
          is += 2;
          u1 = uint8_t(u1 << 2);
          u2 = uint8_t(u2 << 2);
        }
        break;
      }
      case QW_GGML_Q6_K: {
        const float d = h2f(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = reinterpret_cast<const int8_t *>(b + 192);
        float *yy = y;
        for (int n2 = 0; n2 < 256; n2 += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int8_t q1 = int8_t((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = int8_t((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yy[l + 0] = d * sc[is + 0] * q1;
            yy[l + 32] = d * sc[is + 2] * q2;
            yy[l + 64] = d * sc[is + 4] * q3;
            yy[l + 96] = d * sc[is + 6] * q4;
          }
          yy += 128;
          ql += 64;
          qh += 32;
          sc += 8;
        }
        break;
      }
    }
    y += g.block_elems;
  }
}
