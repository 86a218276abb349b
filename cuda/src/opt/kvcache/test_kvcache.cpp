// test_kvcache.cpp — the quantized KV cache (src/opt/kvcache/kv_quant_cpu.cpp, kvCache = q8 | kivi4 | kivi2) on the CPU, linked
// in from the CPU objects:
//  - round trips: q8 rows (error <= dq / 2 plus the fp16 rounding of dq), kivi value rows and key channel
//    groups (error <= s / 2 plus fp16 rounding), constant groups (s = 0) exact, 2-bit and 4-bit packing;
//  - the kivi residual window: after every step, positions >= nq(len) read back as bf16(x) exactly, positions
//    below as the codes, at lengths around the group and window edges (1, 17, 127, 128, 129, 160, 161, 192, 600);
//  - attention against an explicit dequantize-then-attend reference in fp64 (every query sees keys < nq(p+1)
//    quantized, as kv_format.hpp specifies), GQA ratios 1, 4, 7, 8, a batch of two sequences with mixed
//    lengths in one step, chunked prefill == token-by-token decode, rollback (cut by 50 tokens, regrow with other
//    tokens) == a fresh run of the same tokens, bitwise;
//  - the kivi truncation limit (kivi_min_truncate): a cut to it is exact, one token deeper is not.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cpu.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;
using kvq::KvType;

namespace {

KvCache to_opt(KvType t) {
  return t == KvType::Q8 ? KvCache::Q8 : t == KvType::KIVI4 ? KvCache::Kivi4 : t == KvType::KIVI2 ? KvCache::Kivi2
         : t == KvType::F32 ? KvCache::F32 : KvCache::Bf16;
}

void test_q8_roundtrip(Rng &r) {
  const int32_t d = 128;
  std::vector<float> x(d);
  for (int32_t i = 0; i < d; ++i) x[size_t(i)] = r.normal() * (i < 32 ? 1e-3f : i < 64 ? 40.0f : 1.0f);
  for (int32_t i = 96; i < 128; ++i) x[size_t(i)] = 0.0f;  // an all-zero block: dq = 0, codes 0
  std::vector<int8_t> c(d);
  std::vector<uint16_t> s(d / 32);
  kvq::q8_quant_row(x.data(), d, c.data(), s.data());
  for (int32_t i = 0; i < d; ++i) {
    float amax = 0;
    for (int32_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(x[size_t(j)]));
    const float dq = amax / 127.0f, y = kvq::q8_deq(c.data(), s.data(), i);
    CHECK(std::fabs(y - x[size_t(i)]) <= dq * (0.5f + 127.0f / 2048.0f) + 1e-30f, "q8 %d: %g vs %g (dq %g)", i, y, x[size_t(i)], dq);
  }
  CHECK(kvq::q8_deq(c.data(), s.data(), 100) == 0.0f, "zero block");
}

void test_kivi_rows(Rng &r) {
  for (int32_t bits : {4, 2}) {
    const int32_t d = 64;
    std::vector<float> x(d);
    for (int32_t i = 0; i < d; ++i) x[size_t(i)] = r.normal() * 3.0f + 5.0f;
    for (int32_t i = 32; i < 64; ++i) x[size_t(i)] = 1.25f;  // constant group: s = 0, exact
    std::vector<uint8_t> c(size_t(d * bits / 8), 0);
    uint16_t s[2], z[2];
    kvq::kivi_quant_value_row(x.data(), d, bits, c.data(), s, z);
    for (int32_t i = 0; i < d; ++i) {
      const float sf = kvq::f16_to_f32(s[i / 32]), zf = kvq::f16_to_f32(z[i / 32]);
      const float y = kvq::kivi_deq(kvq::kivi_get(c.data(), i, bits), sf, zf);
      CHECK(std::fabs(y - x[size_t(i)]) <= 0.5f * sf + 2e-3f * (std::fabs(x[size_t(i)]) + 1.0f), "kivi%d value %d: %g vs %g", bits, i, y, x[size_t(i)]);
      CHECK(kvq::kivi_get(c.data(), i, bits) < (1u << bits), "code range");
    }
    CHECK(kvq::f16_to_f32(s[1]) == 0.0f, "constant group scale");
    // keys: one channel over G rows
    std::vector<float> kx(size_t(32 * d));
    for (auto &v : kx) v = r.normal() * 10.0f;
    std::vector<uint8_t> kc(size_t(32 * d * bits / 8), 0);
    for (int32_t ch = 0; ch < d; ++ch) {
      uint16_t ks, kz;
      kvq::kivi_quant_key_channel(kx.data(), d, ch, bits, kc.data(), d * bits / 8, &ks, &kz);
      for (int32_t t = 0; t < 32; ++t) {
        const float sf = kvq::f16_to_f32(ks), zf = kvq::f16_to_f32(kz);
        const float y = kvq::kivi_deq(kvq::kivi_get(kc.data() + t * d * bits / 8, ch, bits), sf, zf);
        const float xv = kx[size_t(t * d + ch)];
        CHECK(std::fabs(y - xv) <= 0.5f * sf + 2e-3f * (std::fabs(xv) + 1.0f), "kivi%d key ch %d t %d: %g vs %g", bits, ch, t, y, xv);
      }
    }
  }
  // fp16 conversion agrees with the exact half.hpp decoder on a sweep, and rounds to nearest even
  for (uint32_t h = 0; h < 0x7C00u; h += 7) CHECK(kvq::f32_to_f16(half_to_float(uint16_t(h))) == h, "f16 %u", h);
  CHECK(kvq::f32_to_f16(1.0f + 1.0f / 2048.0f) == 0x3C00u, "tie to even");
  CHECK(kvq::f32_to_f16(1e6f) == 0x7C00u, "overflow to inf");
}

// A stream of random K/V rows, the cache under test, and steps to feed it.
struct Harness {
  int32_t nH, nKV, d, ctx, batch;
  KvType type;
  KvStore kv;
  Pool pool{2};
  std::vector<std::vector<float>> K, V, Q;  // per sequence: [pos][nKV*d], [pos][nKV*d], [pos][nH*d]
  Harness(KvType t, int32_t nh, int32_t nkv, int32_t d_, int32_t ctx_, int32_t b, uint64_t seed)
      : nH(nh), nKV(nkv), d(d_), ctx(ctx_), batch(b), type(t) {
    kv.configure(to_opt(t), 1, b, nkv, ctx_, d_);
    Rng r(seed);
    K.resize(size_t(b));
    V.resize(size_t(b));
    Q.resize(size_t(b));
    for (int32_t s = 0; s < b; ++s) {
      for (int32_t p = 0; p < ctx; ++p) {
        std::vector<float> k(size_t(nkv * d)), v(size_t(nkv * d)), q(size_t(nh * d));
        for (int32_t e = 0; e < nkv * d; ++e) {
          k[size_t(e)] = r.normal() * (e % d == 3 ? 8.0f : 1.0f) + (e % d == 5 ? 4.0f : 0.0f);  // outlier channels (KIVI's case)
          v[size_t(e)] = r.normal();
        }
        for (auto &x : q) x = r.normal();
        K[size_t(s)].insert(K[size_t(s)].end(), k.begin(), k.end());
        V[size_t(s)].insert(V[size_t(s)].end(), v.begin(), v.end());
        Q[size_t(s)].insert(Q[size_t(s)].end(), q.begin(), q.end());
      }
    }
  }
  // One step: sequence s gets positions [pos0[i], pos0[i] + n[i]). Returns z rows [rows][nH*d].
  std::vector<float> step(const std::vector<int32_t> &seqs, const std::vector<int32_t> &pos0, const std::vector<int32_t> &n) {
    Step st;
    st.seq = seqs;
    st.pos0 = pos0;
    st.n_new = n;
    int32_t rows = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      st.row_offset.push_back(rows);
      rows += n[i];
    }
    std::vector<float> q(size_t(rows * nH * d)), k(size_t(rows * nKV * d)), v(size_t(rows * nKV * d)), z(size_t(rows * nH * d), NAN);
    for (size_t i = 0; i < seqs.size(); ++i)
      for (int32_t j = 0; j < n[i]; ++j) {
        const size_t row = size_t(st.row_offset[i] + j), p = size_t(pos0[i] + j), s = size_t(seqs[i]);
        std::copy_n(&Q[s][p * size_t(nH * d)], nH * d, &q[row * size_t(nH * d)]);
        std::copy_n(&K[s][p * size_t(nKV * d)], nKV * d, &k[row * size_t(nKV * d)]);
        std::copy_n(&V[s][p * size_t(nKV * d)], nKV * d, &v[row * size_t(nKV * d)]);
      }
    const AttnArgs a{&st, 0, nH, nKV, d, q.data(), k.data(), v.data(), z.data(), Gqa{}, &pool};  // Gqa{}: native
    attention(kv, a);
    return z;
  }
  // fp64 dequantize-then-attend reference for query position p of sequence s (head hq), the cache read at
  // stream length len (>= p + 1) for the quantized part.
  void reference(int32_t s, int32_t p, int32_t len, std::vector<double> &out) {
    out.assign(size_t(nH * d), 0.0);
    const bool kivi = kvq::is_kivi(type);
    const int64_t nq = kivi ? kvq::kivi_nq(p + 1) : p + 1;
    std::vector<float> row(static_cast<size_t>(d));
    for (int32_t hk = 0; hk < nKV; ++hk) {
      const int64_t stid = kv.quant->lay.stream(0, s, hk);
      std::vector<std::vector<float>> Kd(size_t(p + 1)), Vd(size_t(p + 1));
      for (int32_t k = 0; k <= p; ++k) {
        if (k < nq) {
          kvq_dequant_key(*kv.quant, stid, k, len, row.data());
          Kd[size_t(k)] = row;
          kvq_dequant_value(*kv.quant, stid, k, len, row.data());
          Vd[size_t(k)] = row;
        } else {  // the bf16 residual
          Kd[size_t(k)].resize(size_t(d));
          Vd[size_t(k)].resize(size_t(d));
          for (int32_t e = 0; e < d; ++e) {
            Kd[size_t(k)][size_t(e)] = bf16_to_float(float_to_bf16(K[size_t(s)][size_t(k * nKV * d + hk * d + e)]));
            Vd[size_t(k)][size_t(e)] = bf16_to_float(float_to_bf16(V[size_t(s)][size_t(k * nKV * d + hk * d + e)]));
          }
        }
      }
      for (int32_t j = 0; j < nH / nKV; ++j) {
        const int32_t hq = hk * (nH / nKV) + j;
        std::vector<double> sc(size_t(p + 1));
        double mx = -1e300;
        for (int32_t k = 0; k <= p; ++k) {
          double acc = 0;
          for (int32_t e = 0; e < d; ++e) acc += double(Q[size_t(s)][size_t(p * nH * d + hq * d + e)]) * Kd[size_t(k)][size_t(e)];
          sc[size_t(k)] = acc / std::sqrt(double(d));
          mx = std::max(mx, sc[size_t(k)]);
        }
        double sum = 0;
        for (auto &x : sc) sum += (x = std::exp(x - mx));
        for (int32_t k = 0; k <= p; ++k)
          for (int32_t e = 0; e < d; ++e) out[size_t(hq * d + e)] += sc[size_t(k)] / sum * Vd[size_t(k)][size_t(e)];
      }
    }
  }
  double max_err(const float *z, int32_t s, int32_t p, int32_t len) {
    std::vector<double> ref;
    reference(s, p, len, ref);
    double e = 0;
    for (size_t i = 0; i < ref.size(); ++i) e = std::max(e, std::fabs(double(z[i]) - ref[i]));
    return e;
  }
};

// Keys and values read back: residual positions exactly bf16(x), quantized ones within the code error.
void check_readback(Harness &h, int32_t s, int32_t len, const char *what) {
  const bool kivi = kvq::is_kivi(h.type);
  const int64_t nq = kivi ? kvq::kivi_nq(len) : len;
  std::vector<float> row(static_cast<size_t>(h.d));
  int bad = 0;
  for (int32_t hk = 0; hk < h.nKV; ++hk) {
    const int64_t st = h.kv.quant->lay.stream(0, s, hk);
    for (int32_t p = 0; p < len; ++p) {
      kvq_dequant_key(*h.kv.quant, st, p, len, row.data());
      for (int32_t e = 0; e < h.d; ++e) {
        const float x = h.K[size_t(s)][size_t(p * h.nKV * h.d + hk * h.d + e)];
        const float b = bf16_to_float(float_to_bf16(x));
        if (p >= nq) {
          bad += row[size_t(e)] != b;
        } else {
          const float tol = h.type == KvType::Q8 ? 0.02f * 8.0f : h.type == KvType::KIVI4 ? 0.04f * 40.0f : 0.2f * 40.0f;
          bad += !(std::fabs(row[size_t(e)] - x) <= tol);
        }
      }
    }
  }
  CHECK(bad == 0, "%s: %d key elements read back wrong at len %d", what, bad, len);
}

void test_attention(KvType t, int32_t nH, int32_t nKV, int32_t d) {
  const int32_t ctx = 420;
  char what[96];
  std::snprintf(what, sizeof what, "%s nH %d nKV %d d %d", kvq::kv_type_name(t), nH, nKV, d);
  // 1. token by token (decode), checking every length near a group / window edge
  Harness dec(t, nH, nKV, d, ctx, 1, 7);
  std::vector<std::vector<float>> zdec;
  const std::vector<int32_t> probe = {0, 16, 126, 127, 128, 159, 160, 161, 191, 192, 289, 419};
  for (int32_t p = 0; p < ctx; ++p) {
    zdec.push_back(dec.step({0}, {p}, {1}));
    if (std::find(probe.begin(), probe.end(), p) != probe.end()) {
      const double e = dec.max_err(zdec.back().data(), 0, p, p + 1);
      CHECK(e < 2e-4, "%s decode p %d: max err %g vs dequantize-then-attend", what, p, e);
      check_readback(dec, 0, p + 1, what);
    }
  }
  // 2. chunked prefill (chunks crossing group and window edges) == decode, within fp32 summation order
  Harness pre(t, nH, nKV, d, ctx, 1, 7);
  int32_t p0 = 0;
  double worst = 0;
  for (int32_t n : {17, 110, 1, 33, 128, 131}) {
    const std::vector<float> z = pre.step({0}, {p0}, {n});
    for (int32_t j = 0; j < n; ++j)
      for (int32_t e = 0; e < nH * d; ++e)
        worst = std::max(worst, double(std::fabs(z[size_t(j * nH * d + e)] - zdec[size_t(p0 + j)][size_t(e)])));
    p0 += n;
  }
  CHECK(worst < 2e-5, "%s: chunked prefill differs from decode by %g", what, worst);
  // 3. a batch of two sequences with mixed lengths in one step vs the reference
  Harness bat(t, nH, nKV, d, ctx, 2, 11);
  bat.step({0, 1}, {0, 0}, {200, 5});
  const std::vector<float> z = bat.step({1, 0}, {5, 200}, {150, 1});
  CHECK(bat.max_err(&z[size_t(149 * nH * d)], 1, 154, 155) < 2e-4, "%s batch seq 1", what);
  CHECK(bat.max_err(&z[size_t(150 * nH * d)], 0, 200, 201) < 2e-4, "%s batch seq 0", what);
  check_readback(bat, 0, 201, what);
  check_readback(bat, 1, 155, what);
}

// Rollback: run to 300, cut to 250 and regrow with different rows; equals a fresh run of the final rows, bitwise.
void test_rollback(KvType t) {
  const int32_t d = 64, nH = 4, nKV = 2, ctx = 320;
  Harness a(t, nH, nKV, d, ctx, 1, 21), b(t, nH, nKV, d, ctx, 1, 21);
  a.step({0}, {0}, {300});
  Rng r(99);
  for (int32_t p = 250; p < 300; ++p)  // the regrown rows differ from the first ones
    for (int32_t e = 0; e < nKV * d; ++e) {
      a.K[0][size_t(p * nKV * d + e)] = b.K[0][size_t(p * nKV * d + e)] = r.normal();
      a.V[0][size_t(p * nKV * d + e)] = b.V[0][size_t(p * nKV * d + e)] = r.normal();
    }
  std::vector<float> za, zb;
  for (int32_t p = 250; p < 300; ++p) za = a.step({0}, {p}, {1});
  b.step({0}, {0}, {250});
  for (int32_t p = 250; p < 300; ++p) zb = b.step({0}, {p}, {1});
  CHECK(za == zb, "%s: rollback by 50 then regrow differs from a fresh run", kvq::kv_type_name(t));
  CHECK(50 <= kvq::kKiviMaxRollback, "rollback bound");
}

// The truncation limit of kv_format.hpp (kivi_min_truncate, what qw_session_truncate enforces): run to `peak`,
// cut to `cut` and regrow to peak + 8 with other rows; compare with a fresh run of the final rows. At the limit
// the two are bitwise equal (also for a second cut after a partial regrowth, which stays above the limit of the
// first peak); one token below it they differ (a row that must be full precision again has left the ring).
bool cut_is_exact(KvType t, int32_t peak, int32_t cut, int32_t cut2 = -1, int32_t mid = -1) {
  const int32_t d = 32, nH = 2, nKV = 1, ctx = 448, end = peak + 8;
  Harness a(t, nH, nKV, d, ctx, 1, 31), b(t, nH, nKV, d, ctx, 1, 31);
  a.step({0}, {0}, {peak});
  Rng r(7);
  for (int32_t p = cut; p < end; ++p)
    for (int32_t e = 0; e < nKV * d; ++e) {
      a.K[0][size_t(p * nKV * d + e)] = b.K[0][size_t(p * nKV * d + e)] = r.normal();
      a.V[0][size_t(p * nKV * d + e)] = b.V[0][size_t(p * nKV * d + e)] = r.normal();
    }
  int32_t from = cut;
  if (cut2 >= 0) {  // regrow to mid (< peak) with the new rows, then cut again to cut2
    a.step({0}, {cut}, {mid - cut});
    from = cut2;
  }
  std::vector<float> za, zb;
  a.step({0}, {from}, {end - 1 - from});
  za = a.step({0}, {end - 1}, {1});
  b.step({0}, {0}, {end - 1});
  zb = b.step({0}, {end - 1}, {1});
  return za == zb;
}

void test_truncate_limit(KvType t) {
  const char *what = kvq::kv_type_name(t);
  // below the ring's size every cut is exact; above, the limit moves by whole groups
  CHECK(kvq::kivi_min_truncate(256) == 0 && kvq::kivi_min_truncate(257) == 160 && kvq::kivi_min_truncate(288) == 160 &&
            kvq::kivi_min_truncate(289) == 192,
        "kivi_min_truncate edges");
  for (int32_t peak = 257; peak <= 400; ++peak) {
    const int32_t back = peak - int32_t(kvq::kivi_min_truncate(peak));
    CHECK(back >= kvq::kKiviMaxRollback && back <= kvq::kKiviResidual, "peak %d: a cut of %d", peak, back);
  }
  CHECK(cut_is_exact(t, 200, 20), "%s: peak 200 (inside the ring), cut to 20", what);
  for (int32_t peak : {257, 300, 320, 383}) {
    const int32_t lim = int32_t(kvq::kivi_min_truncate(peak));
    CHECK(cut_is_exact(t, peak, lim), "%s: peak %d, cut to the limit %d is not exact", what, peak, lim);
    CHECK(!cut_is_exact(t, peak, lim - 1), "%s: peak %d, cut to %d (below the limit %d) is exact: the limit is not tight",
          what, peak, lim - 1, lim);
  }
  // a second cut after regrowing below the old peak: the old peak still sets the limit
  CHECK(cut_is_exact(t, 300, 250, 192, 280), "%s: 300 -> 250 -> 280 -> 192", what);
}

}  // namespace

int main() {
  Rng r(5);
  test_q8_roundtrip(r);
  test_kivi_rows(r);
  for (KvType t : {KvType::Q8, KvType::KIVI4, KvType::KIVI2}) {
    test_attention(t, 1, 1, 64);    // GQA 1
    test_attention(t, 4, 1, 64);    // GQA 4
    test_attention(t, 7, 1, 32);    // GQA 7
    test_attention(t, 16, 2, 128);  // GQA 8, two kv heads
    test_rollback(t);
    if (kvq::is_kivi(t)) test_truncate_limit(t);
  }
  // KvInfo: q8 <= 0.532x of bf16 per token; kivi4 / kivi2 smaller still
  {
    KvStore a, b, c;
    a.configure(KvCache::Bf16, 2, 1, 2, 64, 128);
    b.configure(KvCache::Q8, 2, 1, 2, 64, 128);
    c.configure(KvCache::Kivi2, 2, 1, 2, 64, 128);
    CHECK(b.info().bytes_per_token / a.info().bytes_per_token < 0.532, "q8 bytes/token %g vs bf16 %g", b.info().bytes_per_token, a.info().bytes_per_token);
    CHECK(c.info().bytes_per_token < b.info().bytes_per_token / 2, "kivi2 bytes/token");
    CHECK(c.info().residual_tokens == 128 && b.info().max_rollback == -1, "kv info fields");
  }
  if (g_failures) {
    std::printf("test_kvcache: %d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("test_kvcache: all passed\n");
  return 0;
}
