// kv_quant_cpu.cpp — quantized KV cache on the CPU: writes (q8 per row; kivi groups as they complete) and
// causal GQA attention that reads the codes directly. fp32 math, HF eager order (scores, softmax with the
// shared softmax_scaled, then P.V), like attention.cpp; one (query row, kv head) task serves all the query
// heads of the group, so each cache row is dequantized once per task, into a stack buffer.
#include "kv_quant_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "cpu.hpp"

namespace qw {
namespace cpu {

using kvq::KvLayout;
using kvq::KvType;
constexpr int32_t G = kvq::kKiviGroup;
constexpr int32_t kMaxD = 256;

uint64_t KvQuant::allocated_bytes() const {
  const bool kivi = kvq::is_kivi(lay.type);
  uint64_t b = 2 * uint64_t(lay.code_bytes());
  if (lay.type == KvType::Q8) b += 2 * 2 * uint64_t(lay.q8_scale_elems());
  if (kivi) b += 2 * 2 * uint64_t(lay.kk_sz_elems()) + 2 * 2 * uint64_t(lay.kv_sz_elems()) + 2 * 2 * uint64_t(lay.ring_elems());
  return b;
}

void kvq_configure(KvQuant &kv, KvType t, int32_t L, int32_t B, int32_t nkv, int32_t T, int32_t d) {
  if (!kvq::kv_quant_shape_ok(d) || d > kMaxD)
    throw Error(QW_ERR_UNSUPPORTED, std::string("kvCache = ") + kvq::kv_type_name(t) + " needs head_dim a multiple of 32 and <= 256 (got " +
                                        std::to_string(d) + ")");
  const KvLayout lay = KvLayout::of(t, L, B, nkv, T, d);
  const double est = double(lay.streams()) * T * lay.bytes_per_token_stream();
  if (est > double(int64_t(1) << 39))
    throw Error(QW_ERR_OUT_OF_MEMORY, "KV cache of " + std::to_string(est / 1e9) + " GB requested: reduce max_batch or max_context");
  kv = KvQuant{};
  kv.lay = lay;
  kv.kc.reset(new uint8_t[size_t(lay.code_bytes())]);
  kv.vc.reset(new uint8_t[size_t(lay.code_bytes())]);
  if (t == KvType::Q8) {
    kv.ks.reset(new uint16_t[size_t(lay.q8_scale_elems())]);
    kv.vs.reset(new uint16_t[size_t(lay.q8_scale_elems())]);
  } else {
    kv.ks.reset(new uint16_t[size_t(lay.kk_sz_elems())]);
    kv.kz.reset(new uint16_t[size_t(lay.kk_sz_elems())]);
    kv.vs.reset(new uint16_t[size_t(lay.kv_sz_elems())]);
    kv.vz.reset(new uint16_t[size_t(lay.kv_sz_elems())]);
    kv.kr.reset(new uint16_t[size_t(lay.ring_elems())]);
    kv.vr.reset(new uint16_t[size_t(lay.ring_elems())]);
  }
}

namespace {

// One row of codes to fp32, scale and zero per element group (vectorizable loops: one scale conversion per
// group, the unpacking specialized per bit width).
inline void q8_row(const int8_t *c, const uint16_t *sc, int32_t d, float *out) {
  for (int32_t b = 0; b < d / 32; ++b) {
    const float s = kvq::f16_to_f32(sc[b]);
    for (int32_t i = 0; i < 32; ++i) out[b * 32 + i] = float(c[b * 32 + i]) * s;
  }
}
inline void unpack_codes(const uint8_t *row, int32_t d, int32_t bits, float *out) {
  if (bits == 4) {
    for (int32_t i = 0; i < d / 2; ++i) {
      out[2 * i] = float(row[i] & 0xF);
      out[2 * i + 1] = float(row[i] >> 4);
    }
  } else {
    for (int32_t i = 0; i < d / 4; ++i)
      for (int32_t e = 0; e < 4; ++e) out[4 * i + e] = float((row[i] >> (2 * e)) & 3);
  }
}

// The rows one (sequence, kv head) stream reads during a step: the quantized planes, and the bf16 rows of
// the kivi residual (new rows of this step from `nk`/`nv`, older ones from the ring).
struct StreamView {
  const KvQuant *kv;
  int64_t st;
  int64_t pos0;
  const uint16_t *nk, *nv;  // kivi: this step's rows as bf16 [n][d]
  const uint16_t *res_k(int64_t k) const {
    return k >= pos0 ? nk + (k - pos0) * kv->lay.d : &kv->kr[size_t(kv->lay.ring_off(st, k))];
  }
  const uint16_t *res_v(int64_t k) const {
    return k >= pos0 ? nv + (k - pos0) * kv->lay.d : &kv->vr[size_t(kv->lay.ring_off(st, k))];
  }
};

// Key row k as seen by a query whose stream length is len (kivi: quantized below nq(len)).
// kg / ksz cache the fp32 scale and zero of the last key group converted.
struct KeyReader {
  explicit KeyReader(const StreamView &sv) : v(sv) {}
  const StreamView &v;
  int64_t cur_g = -1;
  float s[kMaxD], z[kMaxD];
  void row(int64_t k, int64_t nq, float *out) {
    const KvLayout &L = v.kv->lay;
    const int32_t d = L.d;
    if (L.type == KvType::Q8) {
      q8_row(reinterpret_cast<const int8_t *>(&v.kv->kc[size_t(L.code_off(v.st, k))]), &v.kv->ks[size_t(L.q8_scale_off(v.st, k))], d, out);
      return;
    }
    if (k >= nq) {
      const uint16_t *r = v.res_k(k);
      for (int32_t i = 0; i < d; ++i) out[i] = kvq::bf16_bits_to_f32(r[i]);
      return;
    }
    const int64_t g = k / G;
    if (g != cur_g) {
      const size_t o = size_t(L.kk_sz_off(v.st, g));
      for (int32_t i = 0; i < d; ++i) {
        s[i] = kvq::f16_to_f32(v.kv->ks[o + size_t(i)]);
        z[i] = kvq::f16_to_f32(v.kv->kz[o + size_t(i)]);
      }
      cur_g = g;
    }
    unpack_codes(&v.kv->kc[size_t(L.code_off(v.st, k))], d, L.bits(), out);
    for (int32_t i = 0; i < d; ++i) out[i] = out[i] * s[i] + z[i];  // = kivi_deq(code, s, z)
  }
};

void value_row(const StreamView &v, int64_t k, int64_t nq, float *out) {
  const KvLayout &L = v.kv->lay;
  const int32_t d = L.d;
  if (L.type == KvType::Q8) {
    q8_row(reinterpret_cast<const int8_t *>(&v.kv->vc[size_t(L.code_off(v.st, k))]), &v.kv->vs[size_t(L.q8_scale_off(v.st, k))], d, out);
    return;
  }
  if (k >= nq) {
    const uint16_t *r = v.res_v(k);
    for (int32_t i = 0; i < d; ++i) out[i] = kvq::bf16_bits_to_f32(r[i]);
    return;
  }
  unpack_codes(&v.kv->vc[size_t(L.code_off(v.st, k))], d, L.bits(), out);
  const size_t o = size_t(L.kv_sz_off(v.st, k));
  for (int32_t g = 0; g < d / G; ++g) {
    const float s = kvq::f16_to_f32(v.kv->vs[o + size_t(g)]), z = kvq::f16_to_f32(v.kv->vz[o + size_t(g)]);
    for (int32_t i = g * G; i < (g + 1) * G; ++i) out[i] = out[i] * s + z;
  }
}

inline float dotf(const float *a, const float *b, int32_t d) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (int32_t i = 0; i < d; i += 16) {  // d % 32 == 0
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
  }
  a0 = _mm256_add_ps(a0, a1);
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
#else
  float s = 0;
  for (int32_t i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
#endif
}

// Quantizes what completes in this step: q8 every new row (from fp32), kivi the groups [nq(pos0), nq(pos0+n))
// from their bf16 rows (so a replay after a rollback quantizes the same bits).
void write_stream(KvQuant &kv, const StreamView &v, const float *k, const float *vv, int64_t ld, int32_t n) {
  const KvLayout &L = kv.lay;
  const int32_t d = L.d, bits = L.bits();
  const int64_t cr = L.code_row();
  if (L.type == KvType::Q8) {
    for (int32_t j = 0; j < n; ++j) {
      const int64_t p = v.pos0 + j;
      kvq::q8_quant_row(k + j * ld, d, reinterpret_cast<int8_t *>(&kv.kc[size_t(L.code_off(v.st, p))]),
                        &kv.ks[size_t(L.q8_scale_off(v.st, p))]);
      kvq::q8_quant_row(vv + j * ld, d, reinterpret_cast<int8_t *>(&kv.vc[size_t(L.code_off(v.st, p))]),
                        &kv.vs[size_t(L.q8_scale_off(v.st, p))]);
    }
    return;
  }
  float xk[G * kMaxD], xv[kMaxD];
  for (int64_t g0 = kvq::kivi_nq(v.pos0); g0 < kvq::kivi_nq(v.pos0 + n); g0 += G) {
    for (int32_t t = 0; t < G; ++t) {
      const uint16_t *r = v.res_k(g0 + t);
      for (int32_t i = 0; i < d; ++i) xk[t * d + i] = kvq::bf16_bits_to_f32(r[i]);
    }
    uint8_t *kcodes = &kv.kc[size_t(L.code_off(v.st, g0))];
    std::memset(kcodes, 0, size_t(G * cr));
    const size_t so = size_t(L.kk_sz_off(v.st, g0 / G));
    for (int32_t c = 0; c < d; ++c) kvq::kivi_quant_key_channel(xk, d, c, bits, kcodes, cr, &kv.ks[so + size_t(c)], &kv.kz[so + size_t(c)]);
    for (int32_t t = 0; t < G; ++t) {
      const uint16_t *r = v.res_v(g0 + t);
      for (int32_t i = 0; i < d; ++i) xv[i] = kvq::bf16_bits_to_f32(r[i]);
      uint8_t *vcodes = &kv.vc[size_t(L.code_off(v.st, g0 + t))];
      std::memset(vcodes, 0, size_t(cr));
      const size_t vo = size_t(L.kv_sz_off(v.st, g0 + t));
      kvq::kivi_quant_value_row(xv, d, bits, vcodes, &kv.vs[vo], &kv.vz[vo]);
    }
  }
}

}  // namespace

const char *kvq_kernel_name(KvType t) {
  switch (t) {
    case KvType::Q8: return "cpu.attention.native.kv_q8";
    case KvType::KIVI4: return "cpu.attention.native.kv_kivi4";
    case KvType::KIVI2: return "cpu.attention.native.kv_kivi2";
    default: return "cpu.attention.native";
  }
}

void kvq_dequant_key(const KvQuant &kv, int64_t st, int64_t pos, int64_t len, float *out) {
  const StreamView v{&kv, st, len, nullptr, nullptr};
  KeyReader r(v);
  r.row(pos, kvq::is_kivi(kv.lay.type) ? kvq::kivi_nq(len) : len, out);
}
void kvq_dequant_value(const KvQuant &kv, int64_t st, int64_t pos, int64_t len, float *out) {
  const StreamView v{&kv, st, len, nullptr, nullptr};
  value_row(v, pos, kvq::is_kivi(kv.lay.type) ? kvq::kivi_nq(len) : len, out);
}

void kvq_attention(KvQuant &kv, const AttnArgs &a) {
  const Step &st = *a.step;
  const KvLayout &L = kv.lay;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const int64_t qd = int64_t(nH) * d, kvd = int64_t(nKV) * d;
  const size_t nS = st.seq.size();
  const bool kivi = kvq::is_kivi(L.type);
  // 1. This step's rows as bf16 (kivi residual) and the quantization of what completes.
  std::vector<std::vector<uint16_t>> nk(nS * size_t(nKV)), nv(nS * size_t(nKV));
  std::vector<StreamView> views(nS * size_t(nKV));
  for (size_t s = 0; s < nS; ++s)
    for (int32_t h = 0; h < nKV; ++h) {
      const size_t i = s * size_t(nKV) + size_t(h);
      if (kivi) {
        const int32_t n = st.n_new[s];
        nk[i].resize(size_t(n) * size_t(d));
        nv[i].resize(size_t(n) * size_t(d));
        for (int32_t j = 0; j < n; ++j) {
          const int64_t row = st.row_offset[s] + j;
          for (int32_t e = 0; e < d; ++e) {
            nk[i][size_t(j * d + e)] = kvq::f32_to_bf16_bits(a.k[row * kvd + h * d + e]);
            nv[i][size_t(j * d + e)] = kvq::f32_to_bf16_bits(a.v[row * kvd + h * d + e]);
          }
        }
      }
      views[i] = StreamView{&kv, L.stream(a.layer, st.seq[s], h), st.pos0[s], nk[i].data(), nv[i].data()};
    }
  parallel_range(*a.pool, int64_t(views.size()), 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const size_t s = size_t(i) / size_t(nKV);
      const int32_t h = int32_t(i % nKV);
      const int64_t row0 = st.row_offset[s];
      write_stream(kv, views[size_t(i)], a.k + row0 * kvd + h * d, a.v + row0 * kvd + h * d, kvd, st.n_new[s]);
    }
  });
  // 2. Attention: one task per (query row, kv head).
  const StepRows rows(st);
  const int64_t tasks = rows.count() * nKV;
  const float scale = 1.0f / std::sqrt(float(d));
  const int nt = attention_threads(st, nH, d, tasks, *a.pool);
  std::atomic<int64_t> next{0};
  a.pool->run(nt, [&] {
    std::vector<float> sc;
    std::vector<float> zacc;
    alignas(32) float buf[kMaxD];
    for (int64_t task = next++; task < tasks; task = next++) {
      const int64_t row = task / nKV;
      const int32_t h = int32_t(task % nKV);
      const size_t s = size_t(rows.seq[size_t(row)]);
      const StreamView &v = views[s * size_t(nKV) + size_t(h)];
      const int64_t n_keys = rows.n_keys(st, row);
      const int64_t nq = kivi ? kvq::kivi_nq(n_keys) : n_keys;
      sc.resize(size_t(group * n_keys) + 8);
      KeyReader kr(v);
      for (int64_t k = 0; k < n_keys; ++k) {
        kr.row(k, nq, buf);
        for (int32_t j = 0; j < group; ++j) sc[size_t(j * n_keys + k)] = dotf(a.q + row * qd + int64_t(h * group + j) * d, buf, d);
      }
      for (int32_t j = 0; j < group; ++j) softmax_scaled(&sc[size_t(j * n_keys)], int32_t(n_keys), scale);
      zacc.assign(size_t(group * d), 0.0f);
      for (int64_t k = 0; k < n_keys; ++k) {
        value_row(v, k, nq, buf);
        for (int32_t j = 0; j < group; ++j) {
          const float p = sc[size_t(j * n_keys + k)];
          float *z = &zacc[size_t(j * d)];
          for (int32_t e = 0; e < d; ++e) z[e] += p * buf[e];
        }
      }
      for (int32_t j = 0; j < group; ++j)
        std::memcpy(a.z + row * qd + int64_t(h * group + j) * d, &zacc[size_t(j * d)], size_t(d) * 4);
    }
  });
  // 3. kivi: the new rows join the ring (after attention: in a long prefill they overwrite slots it read).
  if (kivi)
    for (size_t i = 0; i < views.size(); ++i) {
      const size_t s = i / size_t(nKV);
      const int32_t n = st.n_new[s];
      for (int32_t j = std::max(0, n - kvq::kKiviRing); j < n; ++j) {
        const int64_t p = st.pos0[s] + j;
        std::memcpy(&kv.kr[size_t(L.ring_off(views[i].st, p))], &nk[i][size_t(j * d)], size_t(d) * 2);
        std::memcpy(&kv.vr[size_t(L.ring_off(views[i].st, p))], &nv[i][size_t(j * d)], size_t(d) * 2);
      }
    }
}

}  // namespace cpu
}  // namespace qw
