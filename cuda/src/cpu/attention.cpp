// attention.cpp — KV cache writes and causal GQA attention, fp32 math over an fp32 or bf16 cache.
//
// For query row j of sequence s (position p = pos0 + j) and query head h, with kv head kh = h / (nH / nKV):
//   S_k = (q . K_k) / sqrt(d) for k = 0..p;  P = softmax(S) (fp32, max-subtracted, P_k = e_k / sum);
//   z = sum_k P_k V_k.
// This is HF's eager attention in fp32 (softmax before the PV product). The bf16 cache stores K and V
// rounded to nearest even; they are widened exactly to fp32 for the math.
//
// Which KV heads are read is the layer's gqa arm (opt/gqa/gqa_cpu.hpp): native reads kv head kh straight from
// the cache; broadcast attends to per-query-head copies gqa_prepare() made; the same loaders and loop order
// give bit-identical results, at the cost of the copy.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "cpu.hpp"
#include "gqa_cpu.hpp"
#include "half.hpp"
#include "sage_cpu.hpp"
#include "vexp.hpp"

namespace qw {
namespace cpu {

StepRows::StepRows(const Step &st) {
  for (size_t i = 0; i < st.seq.size(); ++i) seq.insert(seq.end(), size_t(st.n_new[i]), int32_t(i));
}

int attention_threads(const Step &st, int32_t n_heads, int32_t head_dim, int64_t tasks, const Pool &pool) {
  double work = 0;  // multiply-adds of the causal step
  for (size_t s = 0; s < st.seq.size(); ++s)
    work += double(n_heads) * head_dim * 2.0 * (double(st.n_new[s]) * st.pos0[s] + double(st.n_new[s]) * (st.n_new[s] + 1) / 2);
  return work < 65536.0 ? 1 : int(std::max<int64_t>(1, std::min<int64_t>(pool.size(), tasks)));
}

// s[k] = softmax(scale * s)[k] over k < n (max-subtracted, e / sum): the one softmax of both attention
// paths (attention_avx512.cpp calls it too), so their probabilities are bit-identical.
void softmax_scaled(float *s, int32_t n_keys, float scale) {
  int32_t k = 0;
  float mx = -INFINITY;
  for (k = 0; k < n_keys; ++k) {
    s[k] *= scale;
    mx = std::max(mx, s[k]);
  }
  float sum = 0;
  k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  {
    const __m256 m = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; k + 8 <= n_keys; k += 8) {
      const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(s + k), m));
      _mm256_storeu_ps(s + k, e);
      acc = _mm256_add_ps(acc, e);
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, acc);
    for (float t : tmp) sum += t;
  }
#endif
  for (; k < n_keys; ++k) {
    s[k] = std::exp(s[k] - mx);
    sum += s[k];
  }
  for (k = 0; k < n_keys; ++k) s[k] /= sum;  // P = e / sum, as softmax does before P.V (vectorizes)
}

namespace {

// Row loaders: 8 fp32 values at element i of a row (f32 or bf16 storage), plus a scalar one for tails.
struct RowF32 {
  const float *p;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 load8(int64_t i) const { return _mm256_loadu_ps(p + i); }
#endif
  float at(int64_t i) const { return p[i]; }
};
struct RowBF16 {
  const uint16_t *p;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 load8(int64_t i) const {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
#endif
  float at(int64_t i) const { return bf16_to_float(p[i]); }
};

template <class R>
inline float dot(const float *q, const R &k, int32_t d) {
  int32_t i = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= d; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k.load8(i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), k.load8(i + 8), a1);
  }
  for (; i + 8 <= d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k.load8(i), a0);
  a0 = _mm256_add_ps(a0, a1);
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  s = _mm_cvtss_f32(lo);
#endif
  for (; i < d; ++i) s += q[i] * k.at(i);
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// Four keys at once: each q vector is loaded once for four FMAs, and one horizontal reduction serves four
// dot products. Requires d % 8 == 0.
template <class R>
inline void dot4(float *out, const float *q, const R &k0, const R &k1, const R &k2, const R &k3, int32_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int32_t i = 0; i < d; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    a0 = _mm256_fmadd_ps(qv, k0.load8(i), a0);
    a1 = _mm256_fmadd_ps(qv, k1.load8(i), a1);
    a2 = _mm256_fmadd_ps(qv, k2.load8(i), a2);
    a3 = _mm256_fmadd_ps(qv, k3.load8(i), a3);
  }
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

#endif

// One query row of one head over keys 0..n_keys-1. key(k) / val(k) give row loaders.
// Three passes: scores (4 keys at a time), softmax over the score row (vectorized exp), then P.V with the
// output row held in registers 64 lanes at a time (V rows are only read; z is written once).
template <class KF, class VF>
void attend(float *z, const float *q, int32_t d, int32_t n_keys, float scale, std::vector<float> &sc, const KF &key,
            const VF &val) {
  sc.resize(size_t(n_keys) + 8);
  float *s = sc.data();
  int32_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const bool vec = d % 8 == 0;
  if (vec)
    for (; k + 4 <= n_keys; k += 4) dot4(s + k, q, key(k), key(k + 1), key(k + 2), key(k + 3), d);
#endif
  for (; k < n_keys; ++k) s[k] = dot(q, key(k), d);
  softmax_scaled(s, n_keys, scale);
  int32_t c0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if (vec) {
    for (; c0 + 64 <= d; c0 += 64) {
      __m256 acc[8];
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
      for (k = 0; k < n_keys; ++k) {
        const __m256 p = _mm256_set1_ps(s[k]);
        const auto v = val(k);
        for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(p, v.load8(c0 + 8 * i), acc[i]);
      }
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(z + c0 + 8 * i, acc[i]);
    }
    for (; c0 + 8 <= d; c0 += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (k = 0; k < n_keys; ++k) acc = _mm256_fmadd_ps(_mm256_set1_ps(s[k]), val(k).load8(c0), acc);
      _mm256_storeu_ps(z + c0, acc);
    }
  }
#endif
  for (; c0 < d; ++c0) {
    float acc = 0;
    for (k = 0; k < n_keys; ++k) acc += s[k] * val(k).at(c0);
    z[c0] = acc;
  }
}

}  // namespace

void kv_append(KvStore &kv, const AttnArgs &a) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nKV = a.n_kv_heads;
  const int64_t kvd = int64_t(nKV) * d;
  for (size_t s = 0; s < st.seq.size(); ++s)
    for (int32_t j = 0; j < st.n_new[s]; ++j) {
      const int64_t row = st.row_offset[s] + j;
      for (int32_t kh = 0; kh < nKV; ++kh) {
        const int64_t off = kv.offset(a.layer, st.seq[s], kh, st.pos0[s] + j);
        const float *ks = a.k + row * kvd + int64_t(kh) * d, *vs = a.v + row * kvd + int64_t(kh) * d;
        if (kv.bf16) {
          for (int32_t i = 0; i < d; ++i) {
            kv.kb[size_t(off + i)] = float_to_bf16(ks[i]);
            kv.vb[size_t(off + i)] = float_to_bf16(vs[i]);
          }
        } else {
          std::memcpy(&kv.kf[size_t(off)], ks, size_t(d) * 4);
          std::memcpy(&kv.vf[size_t(off)], vs, size_t(d) * 4);
        }
      }
    }
}

void attention(KvStore &kv, const AttnArgs &a) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const int64_t qd = int64_t(nH) * d;
  if (kv.quant) return kvq_attention(*kv.quant, a);  // q8 / kivi (opt/kvcache; gqa broadcast: same math, not materialized)
  // 1. Append the new K/V rows to the cache.
  kv_append(kv, a);
  if (a.attention != Attention::FlashBf16) {
    attention_sage(kv, a, a.attention == Attention::SageFp8);
    return;
  }
  // 2. The KV heads of the layer's gqa arm (broadcast: per-query-head copies).
  GqaKv g;
  gqa_prepare(kv, a, g);
  const StepRows rows(st);
  // 3a. Prefill chunks: the blocked AVX-512 kernels (same math, several queries per K/V load).
  // (A tree step runs 3b: its rows attend to their ancestors only, each row over the same key list a plain
  // sequence of its path would have, so a path's rows match decode steps bit for bit.)
  const bool tree = st.tree_base >= 0;
  if (!tree && rows.count() >= kBlockedMinRows && attention_blocked_ok(d)) {
    attention_blocked_avx512(kv, a, g);
    return;
  }
  // 3b. One task per (query row, head).
  const int64_t tasks = rows.count() * nH;
  const float scale = 1.0f / std::sqrt(float(d));
  const int nt = attention_threads(st, nH, d, tasks, *a.pool);
  std::atomic<int64_t> next{0};  // dynamic schedule: query rows late in a prefill attend to more keys
  a.pool->run(nt, [&] {
    std::vector<float> sc;
    for (int64_t task = next++; task < tasks; task = next++) {
      const int64_t row = task / nH;
      const int32_t h = int32_t(task % nH);
      const size_t s = size_t(rows.seq[size_t(row)]);
      // Key k of the row's list -> its KV position: the identity, or for a tree row the prefix [0, tree_base)
      // followed by the positions of its ancestors and itself (backend.hpp Step::tree_keys).
      const std::vector<int32_t> *tk = tree ? &st.tree_keys[size_t(row - st.row_offset[s])] : nullptr;
      const int32_t n_keys = tree ? st.tree_base + int32_t(tk->size()) : rows.n_keys(st, row);
      auto at = [&](int32_t k) -> int64_t { return (!tk || k < st.tree_base) ? k : st.tree_base + (*tk)[size_t(k - st.tree_base)]; };
      const float *q = a.q + row * qd + int64_t(h) * d;
      float *z = a.z + row * qd + int64_t(h) * d;
      if (g.per_query_head) {
        const int64_t len = st.pos0[s] + st.n_new[s];
        const float *K = &g.k[s][size_t(h * len * d)], *V = &g.v[s][size_t(h * len * d)];
        attend(z, q, d, n_keys, scale, sc, [&](int32_t k) { return RowF32{K + at(k) * d}; },
               [&](int32_t k) { return RowF32{V + at(k) * d}; });
      } else {
        const int64_t base = kv.offset(a.layer, st.seq[s], h / group, 0);
        if (kv.bf16) {
          const uint16_t *K = &kv.kb[size_t(base)], *V = &kv.vb[size_t(base)];
          attend(z, q, d, n_keys, scale, sc, [&](int32_t k) { return RowBF16{K + at(k) * d}; },
                 [&](int32_t k) { return RowBF16{V + at(k) * d}; });
        } else {
          const float *K = &kv.kf[size_t(base)], *V = &kv.vf[size_t(base)];
          attend(z, q, d, n_keys, scale, sc, [&](int32_t k) { return RowF32{K + at(k) * d}; },
                 [&](int32_t k) { return RowF32{V + at(k) * d}; });
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace qw
