// attention_avx512.cpp — blocked causal attention for prefill chunks (>= kBlockedMinRows new rows) with
// 512-bit vectors; attention.cpp calls it only after cpu_has_avx512() (decode keeps the per-row kernel).
//
// Same math as attention.cpp (HF eager in fp32: S = q.K / sqrt(d), softmax before P.V, the same softmax
// code), with both products as register-blocked outer products so that each K or V vector loaded feeds up to
// 6 queries (the query heads of one KV group, for one query row: they share the keys and the causal length):
//   QK: K of the (sequence, kv head) is transposed once per call to Kt [d][len] (fp32, exactly widened from
//       bf16); a tile of MT queries x 64 keys is 4 zmm x MT accumulators, one broadcast of q[i] per query and
//       4 loads of Kt row i per step (no horizontal sums).
//   PV: V rows [len][d] (fp32 cache in place, bf16 widened once per call); a tile of MT queries x 64 output
//       lanes, one broadcast of p[k] per query and 4 V loads per key.
// Each score and each output lane is one FMA chain in a fixed order whatever the tile holds, so gqa
// broadcast (one query per KV copy) and native give bit-identical results, and any thread split too.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "cpu.hpp"
#include "gqa_cpu.hpp"
#include "half.hpp"

// GCC 12 warns about the intentionally undefined pass-through operand inside some AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace qw {
namespace cpu {

namespace {

constexpr int kMaxMT = 6;

// S[j][k0 .. k0 + n) = q_j . K[k] for MT queries; Kt is [d][ldk], n <= 64.
template <int MT>
void qk_tile(const float *const *q, const float *Kt, int64_t ldk, int32_t d, int64_t k0, int n, float *const *S) {
  __m512 acc[MT][4];
  for (int j = 0; j < MT; ++j)
    for (int v = 0; v < 4; ++v) acc[j][v] = _mm512_setzero_ps();
  __mmask16 m[4];
  for (int v = 0; v < 4; ++v) {
    const int left = std::clamp(n - 16 * v, 0, 16);
    m[v] = __mmask16(left == 16 ? 0xFFFF : (1u << left) - 1);
  }
  for (int32_t i = 0; i < d; ++i) {
    const float *row = Kt + int64_t(i) * ldk + k0;
    __m512 kv[4];
    for (int v = 0; v < 4; ++v) kv[v] = _mm512_maskz_loadu_ps(m[v], row + 16 * v);
    for (int j = 0; j < MT; ++j) {
      const __m512 qb = _mm512_set1_ps(q[j][i]);
      for (int v = 0; v < 4; ++v) acc[j][v] = _mm512_fmadd_ps(qb, kv[v], acc[j][v]);
    }
  }
  for (int j = 0; j < MT; ++j)
    for (int v = 0; v < 4; ++v) _mm512_mask_storeu_ps(S[j] + k0 + 16 * v, m[v], acc[j][v]);
}

// z_j[c0 .. c0 + 64) = sum_{k < n} P_j[k] V[k][c0 ..] for MT queries; V rows of stride d.
template <int MT>
void pv_tile(const float *const *P, const float *V, int32_t d, int32_t c0, int64_t n, float *const *z) {
  __m512 acc[MT][4];
  for (int j = 0; j < MT; ++j)
    for (int v = 0; v < 4; ++v) acc[j][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const float *row = V + k * d + c0;
    __m512 vv[4];
    for (int v = 0; v < 4; ++v) vv[v] = _mm512_loadu_ps(row + 16 * v);
    for (int j = 0; j < MT; ++j) {
      const __m512 pb = _mm512_set1_ps(P[j][k]);
      for (int v = 0; v < 4; ++v) acc[j][v] = _mm512_fmadd_ps(pb, vv[v], acc[j][v]);
    }
  }
  for (int j = 0; j < MT; ++j)
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(z[j] + c0 + 16 * v, acc[j][v]);
}

template <class F>
void by_mt(int mt, F &&f) {
  switch (mt) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    default: f(std::integral_constant<int, 6>{}); break;
  }
}

// One (sequence, KV source) pair: its keys transposed and its values as fp32 rows, len positions.
struct KvSrc {
  std::vector<float> kt, vbuf;  // Kt [d][len]; V fp32 copy (bf16 cache or broadcast copy) when needed
  const float *v = nullptr;     // [len][d]
  int64_t len = 0;
};

}  // namespace

bool attention_blocked_ok(int32_t head_dim) { return head_dim % 64 == 0 && cpu_has_avx512(); }

void attention_blocked_avx512(KvStore &kv, const AttnArgs &a, const GqaKv &g) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const int64_t qd = int64_t(nH) * d;
  const size_t nS = st.seq.size();
  // KV sources: per sequence, one per kv head (native) or one per query head (broadcast copies).
  const int32_t nsrc = g.per_query_head ? nH : nKV, per_src = g.per_query_head ? 1 : group;
  std::vector<KvSrc> src(nS * size_t(nsrc));
  parallel_range(*a.pool, int64_t(src.size()), 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const size_t s = size_t(i) / size_t(nsrc);
      const int32_t h = int32_t(i % nsrc);
      KvSrc &o = src[size_t(i)];
      o.len = st.pos0[s] + st.n_new[s];
      o.kt.resize(size_t(d * o.len));
      auto keyf = [&](int64_t p, int32_t e) -> float {
        if (g.per_query_head) return g.k[s][size_t((h * o.len + p) * d + e)];
        const int64_t off = kv.offset(a.layer, st.seq[s], h, int32_t(p)) + e;
        return kv.bf16 ? bf16_to_float(kv.kb[size_t(off)]) : kv.kf[size_t(off)];
      };
      for (int64_t p = 0; p < o.len; ++p)
        for (int32_t e = 0; e < d; ++e) o.kt[size_t(e * o.len + p)] = keyf(p, e);
      if (g.per_query_head) {
        o.v = &g.v[s][size_t(h * o.len * d)];
      } else if (!kv.bf16) {
        o.v = &kv.vf[size_t(kv.offset(a.layer, st.seq[s], h, 0))];
      } else {
        o.vbuf.resize(size_t(o.len * d));
        const uint16_t *vb = &kv.vb[size_t(kv.offset(a.layer, st.seq[s], h, 0))];
        for (int64_t e = 0; e < o.len * d; ++e) o.vbuf[size_t(e)] = bf16_to_float(vb[e]);
        o.v = o.vbuf.data();
      }
    }
  });
  // Work items: (query row, source); each covers the source's per_src query heads.
  const StepRows rows(st);
  const int64_t items = rows.count() * nsrc;
  const float scale = 1.0f / std::sqrt(float(d));
  std::atomic<int64_t> next{0};
  a.pool->run(a.pool->size(), [&] {
    std::vector<float> sbuf;
    for (int64_t it = next++; it < items; it = next++) {
      const int64_t row = it / nsrc;
      const int32_t si = int32_t(it % nsrc);
      const size_t s = size_t(rows.seq[size_t(row)]);
      const KvSrc &o = src[s * size_t(nsrc) + size_t(si)];
      const int64_t n_keys = rows.n_keys(st, row);
      const int64_t lds = (n_keys + 15) / 16 * 16;
      sbuf.resize(size_t(per_src * lds));
      for (int32_t h0 = 0; h0 < per_src; h0 += kMaxMT) {
        const int mt = std::min(kMaxMT, per_src - h0);
        const float *q[kMaxMT];
        float *S[kMaxMT], *z[kMaxMT];
        for (int j = 0; j < mt; ++j) {
          const int32_t h = si * per_src + h0 + j;
          q[j] = a.q + row * qd + int64_t(h) * d;
          z[j] = a.z + row * qd + int64_t(h) * d;
          S[j] = sbuf.data() + (h0 + j) * lds;
        }
        by_mt(mt, [&](auto MT) {
          for (int64_t k0 = 0; k0 < n_keys; k0 += 64)
            qk_tile<MT>(q, o.kt.data(), o.len, d, k0, int(std::min<int64_t>(64, n_keys - k0)), S);
        });
        for (int j = 0; j < mt; ++j) softmax_scaled(S[j], int32_t(n_keys), scale);
        by_mt(mt, [&](auto MT) {
          for (int32_t c0 = 0; c0 < d; c0 += 64) pv_tile<MT>(S, o.v, d, c0, n_keys, z);
        });
      }
    }
  });
}

}  // namespace cpu
}  // namespace qw
