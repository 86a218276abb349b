// test_sage.cpp — the Sage CPU arms (sage_cpu.cpp): the e4m3 codec against the format's definition (all 256
// codes, ties, saturation), the INT8 block quantizer's bounds, smooth-K invariance, both arms against an fp64
// reference that applies the same quantization steps, and the layer call (attention_sage) over lengths 1, 17, 127,
// 128, 129, chunked prefill against a cache, and GQA ratios 1, 4, 7.
//
// `test_sage bench [T...]`: accuracy of both arms against exact attention on random 7B-like heads (printed, not
// asserted; README's SageAttention numbers).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu.hpp"
#include "half.hpp"
#include "gqa.hpp"
#include "kvcache.hpp"
#include "sage_cpu.hpp"
#include "sage_layout.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

// e4m3 by its definition: sign * (E == 0 ? M/8 * 2^-6 : (1 + M/8) * 2^(E-7)), S.1111.111 = NaN.
double e4m3_def(int c) {
  const int E = (c >> 3) & 15, M = c & 7;
  if (E == 15 && M == 7) return NAN;
  const double a = E == 0 ? M / 8.0 * std::pow(2.0, -6) : (1 + M / 8.0) * std::pow(2.0, E - 7);
  return (c & 0x80) ? -a : a;
}

// The nearest finite e4m3 value to x by exhaustive search (ties: the even code), saturating at +-448.
int e4m3_nearest(double x) {
  int best = -1;
  double bd = INFINITY;
  for (int c = 0; c < 256; ++c) {
    const double v = e4m3_def(c);
    if (std::isnan(v) || std::signbit(v) != std::signbit(x)) continue;
    const double dd = std::fabs(v - x);
    if (dd < bd || (dd == bd && (c & 1) == 0)) bd = dd, best = c;
  }
  return best;
}

void test_e4m3(Rng &r) {
  int bad = 0;
  for (int c = 0; c < 256; ++c) {
    const double want = e4m3_def(c);
    const float got = e4m3_decode(uint8_t(c));
    if (std::isnan(want)) {
      bad += !std::isnan(got) || e4m3_encode(got) != c;
      continue;
    }
    bad += double(got) != want || std::signbit(got) != std::signbit(want);
    bad += e4m3_encode(got) != c;  // every finite code round-trips, -0 included
  }
  CHECK(bad == 0, "e4m3: %d of 256 codes differ from the definition or do not round-trip", bad);
  CHECK(e4m3_decode(0x7E) == 448.0f && e4m3_decode(0x01) == std::ldexp(1.0f, -9), "e4m3 extremes");
  // Midpoints between neighbouring positive values: ties go to the even code; just off the tie goes to the nearer.
  int ties = 0, bad_ties = 0;
  for (int c = 0; c < 0x7E; ++c) {
    const float lo = e4m3_decode(uint8_t(c)), hi = e4m3_decode(uint8_t(c + 1));
    const float mid = 0.5f * (lo + hi);  // exact in fp32
    const int want = (c & 1) == 0 ? c : c + 1;
    ++ties;
    bad_ties += e4m3_encode(mid) != want || e4m3_encode(-mid) != (want | 0x80);
    bad_ties += e4m3_encode(std::nextafter(mid, 0.0f)) != c || e4m3_encode(std::nextafter(mid, 1e9f)) != c + 1;
  }
  CHECK(bad_ties == 0 && ties == 126, "e4m3 ties: %d of %d wrong", bad_ties, ties);
  // Saturation at 448 (no inf in e4m3fn), NaN stays NaN.
  for (float x : {448.0f, 449.0f, 464.0f, 480.0f, 1e6f, INFINITY})
    CHECK(e4m3_encode(x) == 0x7E && e4m3_encode(-x) == 0xFE, "saturation of %g", double(x));
  CHECK(std::isnan(e4m3_round(NAN)), "NaN");
  // Random values over the whole range (and into the subnormals) against the exhaustive nearest.
  int bad_r = 0;
  for (int i = 0; i < 20000; ++i) {
    const float x = float((r.uniform() - 0.5) * std::pow(2.0, -12 + 22 * r.uniform()));
    bad_r += e4m3_encode(x) != e4m3_nearest(double(x));
  }
  CHECK(bad_r == 0, "e4m3: %d of 20000 random values not rounded to nearest even", bad_r);
}

void test_int8(Rng &r) {
  const int32_t rows = 5, w = 24, stride = 30;
  std::vector<float> x(size_t(rows * stride));
  std::vector<int8_t> q(size_t(rows * w));
  int bad = 0;
  for (int rep = 0; rep < 50; ++rep) {
    const float mag = float(std::pow(10.0, -3 + 6 * r.uniform()));
    for (float &t : x) t = r.normal() * mag;
    const float sc = quant_int8_block(x.data(), stride, rows, w, q.data());
    float mx = 0;
    int hit127 = 0;
    for (int32_t i = 0; i < rows; ++i)
      for (int32_t c = 0; c < w; ++c) {
        mx = std::max(mx, std::fabs(x[size_t(i * stride + c)]));
        const int8_t v = q[size_t(i * w + c)];
        hit127 += std::abs(int(v)) == 127;
        bad += v < -127 || std::fabs(x[size_t(i * stride + c)] - float(v) * sc) > 0.5f * sc * (1 + 1e-5f);
      }
    bad += sc != mx / 127.0f || hit127 < 1;
  }
  CHECK(bad == 0, "int8 block: %d values outside |x - q s| <= s/2, or the max not at +-127", bad);
  std::fill(x.begin(), x.end(), 0.0f);
  std::fill(q.begin(), q.end(), int8_t(5));
  CHECK(quant_int8_block(x.data(), stride, rows, w, q.data()) == 0.0f &&
            std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 0; }),
        "int8 block of zeros: scale 0, q 0");
}

// Independent fp64 reference of one query head over a kv head: the same quantization (fp32 smoothing of K, and of V
// in the fp8 arm, INT8 Q/K, bf16 / e4m3 V') then exact int dots, online softmax over 64-key blocks in fp64, P' rounded from the fp64 p.
// quant = false: plain fp64 softmax attention over (smoothed when smooth) fp32 K.
enum class Arm { Exact, Int8, Fp8 };
void ref_attend(Arm arm, bool smooth, const float *Q, int32_t rows, int32_t pos_first, const float *K, const float *V,
                int32_t len, int32_t d, double *z) {
  std::vector<float> Ks(K, K + size_t(len) * d);
  if (smooth)
    for (int32_t c = 0; c < d; ++c) {
      double s = 0;
      for (int32_t k = 0; k < len; ++k) s += K[size_t(k) * d + c];
      const float m = float(s / len);
      for (int32_t k = 0; k < len; ++k) Ks[size_t(k) * d + c] = K[size_t(k) * d + c] - m;
    }
  const double sm = 1.0 / std::sqrt(double(float(d)));
  auto i8 = [](const float *x, int64_t n, std::vector<double> &out) {  // dequantized int8 values, in units of scale
    float mx = 0;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, std::fabs(x[i]));
    out.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = mx > 0 ? std::rint(x[i] * (127.0f / mx)) : 0.0;
    return double(mx / 127.0f);
  };
  std::vector<double> Vq(size_t(len) * d), vs(size_t(d), 1.0), vm(size_t(d), 0.0);
  for (int32_t c = 0; c < d; ++c) {
    float mu = 0;  // smooth-V (fp8 arm): the per-channel mean, added back to z
    if (arm == Arm::Fp8) {
      double s = 0;
      for (int32_t k = 0; k < len; ++k) s += V[size_t(k) * d + c];
      mu = float(s / len);
    }
    vm[size_t(c)] = mu;
    float mx = 0;
    for (int32_t k = 0; k < len; ++k) mx = std::max(mx, std::fabs(V[size_t(k) * d + c] - mu));
    if (arm == Arm::Fp8) vs[size_t(c)] = double(mx / 448.0f);
    for (int32_t k = 0; k < len; ++k) {
      const float v = arm == Arm::Fp8 ? V[size_t(k) * d + c] - mu : V[size_t(k) * d + c];
      Vq[size_t(k) * d + c] = arm == Arm::Exact ? v
                              : arm == Arm::Int8 ? bf16_to_float(float_to_bf16(v))
                                                 : e4m3_decode(uint8_t(e4m3_nearest(double(v * (mx > 0 ? 448.0f / mx : 0.0f)))));
    }
  }
  std::vector<std::vector<double>> kq((size_t(len) + 63) / 64);
  std::vector<double> ks(kq.size());
  for (size_t b = 0; b < kq.size(); ++b)
    ks[b] = i8(&Ks[b * 64 * d], int64_t(std::min<size_t>(64, size_t(len) - b * 64)) * d, kq[b]);
  for (int32_t r0 = 0; r0 < rows; r0 += 32) {
    const int32_t n = std::min(32, rows - r0);
    std::vector<double> qq;
    const double sq = i8(Q + size_t(r0) * d, int64_t(n) * d, qq);
    for (int32_t i = 0; i < n; ++i) {
      const int32_t nk = pos_first + r0 + i + 1;
      double m = -INFINITY, l = 0;
      std::vector<double> acc(size_t(d), 0.0);
      for (int32_t k0 = 0; k0 < nk; k0 += 64) {
        const int32_t nb = std::min(64, nk - k0);
        std::vector<double> s(static_cast<size_t>(nb));
        double bm = -INFINITY;
        for (int32_t j = 0; j < nb; ++j) {
          double dot = 0;
          for (int32_t c = 0; c < d; ++c)
            dot += arm == Arm::Exact ? double(Q[size_t(r0 + i) * d + c]) * Ks[size_t(k0 + j) * d + c]
                                     : qq[size_t(i) * d + c] * kq[size_t(k0 / 64)][size_t(j) * d + c];
          s[size_t(j)] = arm == Arm::Exact ? dot * sm : dot * sq * ks[size_t(k0 / 64)] * sm;
          bm = std::max(bm, s[size_t(j)]);
        }
        const double mn = std::max(m, bm), alpha = std::exp(m - mn);
        for (int32_t c = 0; c < d; ++c) acc[size_t(c)] *= alpha;
        l *= alpha;
        for (int32_t j = 0; j < nb; ++j) {
          const double p = std::exp(s[size_t(j)] - mn);
          l += p;
          const double pq = arm == Arm::Exact ? p
                            : arm == Arm::Int8 ? bf16_to_float(float_to_bf16(float(p)))
                                               : e4m3_def(e4m3_nearest(p * 448.0));
          for (int32_t c = 0; c < d; ++c) acc[size_t(c)] += pq * Vq[size_t(k0 + j) * d + c];
        }
        m = mn;
      }
      for (int32_t c = 0; c < d; ++c)
        z[size_t(r0 + i) * d + c] = acc[size_t(c)] * (arm == Arm::Fp8 ? vs[size_t(c)] / 448.0 : 1.0) / l + vm[size_t(c)];
    }
  }
}

struct Err {
  double cos, rel_l1, max_abs;
};
Err compare(const float *a, const double *b, size_t n) {
  double ab = 0, aa = 0, bb = 0, l1 = 0, l1b = 0, mx = 0;
  for (size_t i = 0; i < n; ++i) {
    ab += a[i] * b[i];
    aa += double(a[i]) * a[i];
    bb += b[i] * b[i];
    l1 += std::fabs(a[i] - b[i]);
    l1b += std::fabs(b[i]);
    mx = std::max(mx, std::fabs(a[i] - b[i]));
  }
  return {ab / std::sqrt(aa * bb), l1 / l1b, mx};
}

// Random head data: Q ~ N(0, qs^2); K ~ N(0, 1) + a per-channel offset N(0, koff^2) (the outlier channels smooth-K
// removes); V ~ N(0, 1).
void fill(Rng &r, std::vector<float> &x, int32_t n, int32_t d, float scale, float off) {
  std::vector<float> b(static_cast<size_t>(d));
  for (float &t : b) t = off * r.normal();
  x.resize(size_t(n) * d);
  for (int32_t i = 0; i < n; ++i)
    for (int32_t c = 0; c < d; ++c) x[size_t(i) * d + c] = scale * r.normal() + b[size_t(c)];
}

void test_against_ref(Rng &r) {
  const int32_t d = 64;
  for (int32_t len : {1, 17, 127, 128, 129, 200}) {
    for (int32_t pos_first : {0, len / 3}) {
      const int32_t rows = len - pos_first;
      std::vector<float> Q, K, V;
      fill(r, Q, rows, d, 1.5f, 0.0f);
      fill(r, K, len, d, 1.0f, 3.0f);
      fill(r, V, len, d, 1.0f, 1.0f);  // V offsets: smooth-V (fp8 arm) must add them back
      float vmax = 0;
      for (float v : V) vmax = std::max(vmax, std::fabs(v));
      for (bool fp8 : {false, true}) {
        SageKv kv;
        sage_prepare_kv(fp8, K.data(), V.data(), len, d, kv);
        std::vector<float> z(size_t(rows) * d);
        sage_attend(kv, Q.data(), d, rows, pos_first, z.data(), d);
        std::vector<double> ref(z.size());
        ref_attend(fp8 ? Arm::Fp8 : Arm::Int8, true, Q.data(), rows, pos_first, K.data(), V.data(), len, d, ref.data());
        // Equal to fp32 rounding, except where fp32 and fp64 p straddle a rounding boundary of P' (bf16 / e4m3):
        // one such flip moves z by at most one ulp of P' times max|V| (l >= 1).
        const double tight = 2e-5 * vmax, flip = (fp8 ? 32.0 / 448.0 : 1.0 / 128.0) * vmax;
        size_t loose = 0;
        double worst = 0;
        for (size_t i = 0; i < z.size(); ++i) {
          const double e = std::fabs(double(z[i]) - ref[i]);
          loose += e > tight;
          worst = std::max(worst, e);
        }
        CHECK(worst <= flip && loose * 200 <= z.size() + 199, "%s len %d pos %d: worst %.3g, %zu of %zu beyond %.3g",
              fp8 ? "fp8" : "int8", len, pos_first, worst, loose, z.size(), tight);
      }
    }
  }
}

// Smooth-K: without quantization it changes nothing but rounding; with quantization, a per-channel K offset
// (which smoothing removes) leaves the arm's output where it was.
void test_smooth(Rng &r) {
  const int32_t d = 64, len = 150;
  std::vector<float> Q, K, V;
  fill(r, Q, len, d, 1.5f, 0.0f);
  fill(r, K, len, d, 1.0f, 0.0f);
  fill(r, V, len, d, 1.0f, 0.0f);
  std::vector<double> a(size_t(len) * d), b(a.size());
  ref_attend(Arm::Exact, false, Q.data(), len, 0, K.data(), V.data(), len, d, a.data());
  ref_attend(Arm::Exact, true, Q.data(), len, 0, K.data(), V.data(), len, d, b.data());
  double mx = 0;
  for (size_t i = 0; i < a.size(); ++i) mx = std::max(mx, std::fabs(a[i] - b[i]));
  CHECK(mx < 1e-5, "smoothing without quantization moved the output by %g", mx);
  std::vector<float> Ko = K;
  for (int32_t c = 0; c < d; ++c) {
    const float off = 8.0f * r.normal();
    for (int32_t k = 0; k < len; ++k) Ko[size_t(k) * d + c] += off;
  }
  for (bool fp8 : {false, true}) {
    SageKv k1, k2;
    sage_prepare_kv(fp8, K.data(), V.data(), len, d, k1);
    sage_prepare_kv(fp8, Ko.data(), V.data(), len, d, k2);
    std::vector<float> z1(a.size()), z2(a.size());
    sage_attend(k1, Q.data(), d, len, 0, z1.data(), d);
    sage_attend(k2, Q.data(), d, len, 0, z2.data(), d);
    std::vector<double> z1d(z1.begin(), z1.end());
    const Err e = compare(z2.data(), z1d.data(), z1.size());
    const Err ex = compare(z2.data(), a.data(), a.size());
    CHECK(e.cos > 0.9999 && ex.cos > 0.999, "%s with a K offset: cos %.6f to no offset, %.6f to exact",
          fp8 ? "fp8" : "int8", e.cos, ex.cos);
  }
}

// The layer call: cache, sequences, GQA mapping and query-block tasks, against sage_attend per head directly.
void test_layer(Rng &r) {
  Pool pool(2);
  const int32_t d = 64;
  for (int32_t group : {1, 4, 7}) {
    const int32_t nKV = 2, nH = nKV * group, L = 2, B = 3, T = 300;
    for (bool bf16 : {true, false}) {
      KvStore kv;
      kv.configure(bf16 ? KvCache::Bf16 : KvCache::F32, L, B, nKV, T, d);
      Step st;
      // three sequences: 129 new rows after 40 cached, 17 new from scratch, one decode row after 127
      st.seq = {2, 0, 1};
      st.pos0 = {40, 0, 127};
      st.n_new = {129, 17, 1};
      st.row_offset = {0, 129, 146};
      const int32_t R = 147;
      std::vector<float> q, k, v, z(size_t(R) * nH * d);
      fill(r, q, R, nH * d, 1.5f, 0.0f);
      fill(r, k, R, nKV * d, 1.0f, 2.0f);
      fill(r, v, R, nKV * d, 1.0f, 0.0f);
      for (size_t s = 0; s < 3; ++s)  // the cached rows of earlier steps
        for (int32_t kh = 0; kh < nKV; ++kh)
          for (int32_t p = 0; p < st.pos0[s]; ++p)
            for (int32_t c = 0; c < d; ++c) {
              const int64_t o = kv.offset(1, st.seq[s], kh, p) + c;
              const float kk = r.normal() + 2.0f * float(c % 3), vv = r.normal();
              if (bf16) kv.kb[size_t(o)] = float_to_bf16(kk), kv.vb[size_t(o)] = float_to_bf16(vv);
              else kv.kf[size_t(o)] = kk, kv.vf[size_t(o)] = vv;
            }
      for (Attention arm : {Attention::SageInt8, Attention::SageFp8}) {
        AttnArgs a{&st, 1, nH, nKV, d, q.data(), k.data(), v.data(), z.data(), Gqa::Native, &pool, arm};
        attention(kv, a);
        int bad = 0;
        for (size_t s = 0; s < 3; ++s)
          for (int32_t kh = 0; kh < nKV; ++kh) {
            const int32_t len = st.pos0[s] + st.n_new[s];
            std::vector<float> K(size_t(len) * d), V(K.size());
            for (int32_t p = 0; p < len; ++p)
              for (int32_t c = 0; c < d; ++c) {
                const int64_t o = kv.offset(1, st.seq[s], kh, p) + c;
                K[size_t(p) * d + c] = bf16 ? bf16_to_float(kv.kb[size_t(o)]) : kv.kf[size_t(o)];
                V[size_t(p) * d + c] = bf16 ? bf16_to_float(kv.vb[size_t(o)]) : kv.vf[size_t(o)];
              }
            SageKv p;
            sage_prepare_kv(arm == Attention::SageFp8, K.data(), V.data(), len, d, p);
            for (int32_t h = kh * group; h < (kh + 1) * group; ++h) {
              std::vector<float> zz(size_t(st.n_new[s]) * d);
              const int64_t row = st.row_offset[s];
              sage_attend(p, q.data() + row * nH * d + h * d, int64_t(nH) * d, st.n_new[s], st.pos0[s], zz.data(), d);
              for (int32_t i = 0; i < st.n_new[s]; ++i)
                bad += std::memcmp(&zz[size_t(i) * d], z.data() + (row + i) * nH * d + h * d, size_t(d) * 4) != 0;
            }
          }
        CHECK(bad == 0, "layer call, group %d, %s cache, arm %d: %d rows differ from sage_attend", group,
              bf16 ? "bf16" : "f32", int(arm), bad);
      }
    }
  }
}

// The sage-fp8 kernel's P.V fragments (sage_layout.hpp), simulated per thread: P packed from the Q.K accumulator
// layout, V stored at sage_vt_pos and read as the B operand, multiplied with m16n8k32's A/B semantics, must give
// P.V of the plain key order for every row and channel.
void test_fp8_layout(Rng &r) {
  int perm_bad = 0;
  std::vector<int> seen(32, 0);
  for (int k = 0; k < 32; ++k) seen[size_t(qwc::sage_vt_pos(k))]++;
  for (int c : seen) perm_bad += c != 1;
  CHECK(perm_bad == 0, "sage_vt_pos is not a permutation of 0..31");
  double P[16][32], V[32][8], A[16][32], B[32][8];
  for (auto &row : P) for (double &x : row) x = std::floor(r.uniform() * 8);
  for (auto &row : V) for (double &x : row) x = std::floor(r.uniform() * 8) - 4;
  double Vt[8][32];  // [channel][column]
  for (int k = 0; k < 32; ++k)
    for (int c = 0; c < 8; ++c) Vt[c][qwc::sage_vt_pos(k)] = V[k][c];
  for (int t = 0; t < 32; ++t) {
    const int g = t / 4, q = t % 4;
    // C fragment of n-tile nt: (row g, keys nt*8 + 2q + {0,1}), (row g + 8, same keys)
    auto C = [&](int nt, int c) { return P[g + (c >> 1) * 8][nt * 8 + 2 * q + (c & 1)]; };
    double a[4][4];  // a[reg][byte], packed as the kernel does: pa[hf*2 + 0] row g, pa[hf*2 + 1] row g + 8
    for (int hf = 0; hf < 2; ++hf) {
      const int n0 = hf * 2;
      const double row_g[4] = {C(n0, 0), C(n0, 1), C(n0 + 1, 0), C(n0 + 1, 1)};
      const double row_g8[4] = {C(n0, 2), C(n0, 3), C(n0 + 1, 2), C(n0 + 1, 3)};
      for (int i = 0; i < 4; ++i) a[hf * 2 + 0][i] = row_g[i], a[hf * 2 + 1][i] = row_g8[i];
    }
    // m16n8k32 A semantics: a0 = A[g][4q + i], a1 = A[g + 8][4q + i], a2 = A[g][16 + 4q + i], a3 = A[g + 8][16 + 4q + i]
    for (int i = 0; i < 4; ++i) {
      A[g][4 * q + i] = a[0][i];
      A[g + 8][4 * q + i] = a[1][i];
      A[g][16 + 4 * q + i] = a[2][i];
      A[g + 8][16 + 4 * q + i] = a[3][i];
      // B from ldmatrix over Vt rows (channel g), bytes 4q + i and 16 + 4q + i: b0 = B[4q + i][g], b1 = B[16 + 4q + i][g]
      B[4 * q + i][g] = Vt[g][4 * q + i];
      B[16 + 4 * q + i][g] = Vt[g][16 + 4 * q + i];
    }
  }
  int bad = 0;
  for (int m = 0; m < 16; ++m)
    for (int c = 0; c < 8; ++c) {
      double got = 0, want = 0;
      for (int k = 0; k < 32; ++k) got += A[m][k] * B[k][c], want += P[m][k] * V[k][c];
      bad += got != want;
    }
  CHECK(bad == 0, "fp8 P.V fragments: %d of 128 outputs differ from P.V in key order", bad);
}

// Random 7B-like heads (head_dim 128, 7 query heads per kv head, one kv group): both arms against exact attention
// with bf16 K/V (what flash-bf16 computes), in fp64.
int bench(int argc, char **argv) {
  std::vector<int32_t> lens;
  for (int i = 2; i < argc; ++i) lens.push_back(std::atoi(argv[i]));
  if (lens.empty()) lens = {512, 1024, 4096};
  const int32_t d = 128, group = 7;
  std::printf("T\tarm\tcos_min\tcos_median\trel_l1_max\tmax_abs_max\n");
  for (int32_t T : lens) {
    Rng r(static_cast<uint64_t>(T));
    std::vector<float> K, V;
    fill(r, K, T, d, 1.0f, 2.0f);
    fill(r, V, T, d, 1.0f, 0.0f);
    for (float &t : K) t = bf16_to_float(float_to_bf16(t));
    for (float &t : V) t = bf16_to_float(float_to_bf16(t));
    std::vector<std::vector<float>> Qh(group);
    std::vector<std::vector<double>> ex(group);
    for (int32_t h = 0; h < group; ++h) {
      fill(r, Qh[size_t(h)], T, d, 1.5f, 0.0f);
      ex[size_t(h)].resize(size_t(T) * d);
      ref_attend(Arm::Exact, false, Qh[size_t(h)].data(), T, 0, K.data(), V.data(), T, d, ex[size_t(h)].data());
    }
    for (bool fp8 : {false, true}) {
      SageKv kv;
      sage_prepare_kv(fp8, K.data(), V.data(), T, d, kv);
      std::vector<double> cs;
      double rl = 0, ma = 0;
      for (int32_t h = 0; h < group; ++h) {
        std::vector<float> z(size_t(T) * d);
        sage_attend(kv, Qh[size_t(h)].data(), d, T, 0, z.data(), d);
        const Err e = compare(z.data(), ex[size_t(h)].data(), z.size());
        cs.push_back(e.cos);
        rl = std::max(rl, e.rel_l1);
        ma = std::max(ma, e.max_abs);
      }
      std::sort(cs.begin(), cs.end());
      std::printf("%d\t%s\t%.6f\t%.6f\t%.5f\t%.4g\n", T, fp8 ? "sage-fp8" : "sage-int8", cs.front(), cs[cs.size() / 2],
                  rl, ma);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

// sage_s32_to_float (the kernels' int32 -> float of Q.K~) equals the rounding conversion over its whole exact range:
// every value near 0 and near the ends, and a stride through the rest.
void test_s32_to_float() {
  int bad = 0;
  auto one = [&](int32_t x) { bad += qwc::sage_s32_to_float(x) != static_cast<float>(x); };
  for (int32_t x = -70000; x <= 70000; ++x) one(x);
  for (int32_t d = 0; d < 70000; ++d) { one(qwc::kSageS32Exact - d); one(-qwc::kSageS32Exact + d); }
  for (int32_t x = -qwc::kSageS32Exact; x <= qwc::kSageS32Exact; x += 977) one(x);
  CHECK(bad == 0, "sage_s32_to_float differs from (float)x inside |x| < 2^22");
  CHECK(128 * 127 * 127 <= qwc::kSageS32Exact, "an INT8 Q.K~ over 128 channels can leave the exact range");
}

// sage_exp2_poly (sage-fp8's exp2 on the FMA pipe for a quarter of the scores, QW_SAGE_POLY_EXP=1) against exp2:
// relative error <= 1e-3 over the arguments the kernel gives it (<= log2 448), and the clamp's ends stay finite.
void test_exp2_poly() {
  double worst = 0;
  for (double x = -120.0; x <= 9.0; x += 1.0 / 4096) {
    const double e = std::exp2(x), g = qwc::sage_exp2_poly(float(x));
    worst = std::max(worst, std::fabs(g - e) / e);
  }
  CHECK(worst < 1e-3, "sage_exp2_poly: max relative error %.3g over [-120, 9]", worst);
  const float lo = qwc::sage_exp2_poly(-1e30f), hi = qwc::sage_exp2_poly(1e30f);
  CHECK(lo > 0.f && lo < 1e-37f && std::isfinite(hi) && hi > 1000.f, "clamped ends %.3g %.3g", lo, hi);
  std::printf("  sage_exp2_poly: max relative error %.3g\n", worst);
}

int main(int argc, char **argv) {
  if (argc > 1 && std::strcmp(argv[1], "bench") == 0) return bench(argc, argv);
  test_s32_to_float();
  test_exp2_poly();
  Rng r(11);
  test_e4m3(r);
  test_int8(r);
  test_smooth(r);
  test_against_ref(r);
  test_layer(r);
  test_fp8_layout(r);
  return finish("test_sage");
}
