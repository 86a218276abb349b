// dca_cpu.cpp — Dual Chunk Attention on the CPU (the exact reference of the CUDA kernels): fp32 math over the
// f32 or bf16 KV cache, whose keys were roped at pos mod s (s = chunk - local, dca_positions.hpp).
//
// For query row i (chunk ci = i / s) and query head h the keys 0..i fall into three contiguous groups:
//   inter [0, (ci - 1) s), successive [(ci - 1) s, ci s), intra [ci s, i]   (clamped at 0; empty groups skipped)
// Group g is scored with its own query variant: S_k = (q_g . K_k) / sqrt(d). Each group gives a partial
// (m_g = max S, l_g = sum e^(S - m_g), o_g = sum e^(S - m_g) V_k); the partials are merged exactly:
//   M = max m_g,  z = sum_g e^(m_g - M) o_g / sum_g e^(m_g - M) l_g,
// i.e. one softmax over all keys of the explicit per-(query, key) score table (test_dca.cpp checks it).
// One task is a (query row, kv head): each K/V row is widened to fp32 once for all query heads of the group.
#include "dca_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "dca_positions.hpp"
#include "half.hpp"
#include "registry.hpp"
#include "vexp.hpp"

namespace qw {
namespace cpu {

void dca_positions(DcaRows &out, const int32_t *pos, int64_t R, int32_t chunk, int32_t local) {
  const int32_t s = dca::span(chunk, local);
  out.key.resize(size_t(R));
  out.intra.resize(size_t(R));
  out.succ.resize(size_t(R));
  out.inter.resize(size_t(R));
  out.max_pos = 0;
  for (int64_t t = 0; t < R; ++t) {
    const size_t i = size_t(t);
    out.key[i] = dca::key_pos(pos[t], s);
    out.intra[i] = dca::q_intra(pos[t], s);
    // A query in chunk 0 has no successive keys, one in chunk <= 1 no inter keys: its unused variants are roped
    // at 0 so that the RoPE table never grows past what the sequence can use.
    const int32_t ci = pos[t] / s;
    out.succ[i] = ci >= 1 ? dca::q_succ(pos[t], s, chunk) : 0;
    out.inter[i] = ci >= 2 ? dca::q_inter(s, chunk) : 0;
    out.max_pos = std::max({out.max_pos, out.key[i], out.intra[i], out.succ[i], out.inter[i]});
  }
}

void dca_check_config(const StepToggles &t) {
  if (t.kv_cache == KvCache::Bf16 || t.kv_cache == KvCache::F32) return;
  for (const LayerToggles &lt : t.layer)
    if (lt.dca == Dca::On)
      throw Error(QW_ERR_UNSUPPORTED, "dca = on reads an f32 or bf16 KV cache; kvCache = " + value_name(t.kv_cache) +
                                          " is not supported with it: set kvCache to bf16 or f32, or dca to off");
}

void dca_rope(float *q, float *q_succ, float *q_inter, float *k, int64_t R, int32_t nH, int32_t nKV, int32_t d,
              const DcaRows &rows, const RopeTable &tab) {
  const int64_t qd = int64_t(nH) * d, kvd = int64_t(nKV) * d;
  std::memcpy(q_succ, q, size_t(R * qd) * sizeof(float));
  std::memcpy(q_inter, q, size_t(R * qd) * sizeof(float));
  rope_apply(q, R, qd, nH, d, rows.intra.data(), tab);
  rope_apply(q_succ, R, qd, nH, d, rows.succ.data(), tab);
  rope_apply(q_inter, R, qd, nH, d, rows.inter.data(), tab);
  rope_apply(k, R, kvd, nKV, d, rows.key.data(), tab);
}

namespace {

// e[k] = exp(e[k] - m) for k < n; returns the sum.
inline float exp_shift_sum(float *e, int32_t n, float m) {
  int32_t k = 0;
  float sum = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (; k + 8 <= n; k += 8) {
    const __m256 x = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(e + k), mv));
    _mm256_storeu_ps(e + k, x);
    acc = _mm256_add_ps(acc, x);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float x : lanes) sum += x;
#endif
  for (; k < n; ++k) {
    e[k] = std::exp(e[k] - m);
    sum += e[k];
  }
  return sum;
}

// One (query row, kv head) task: `group` query heads, keys 0..i of sequence slot `seq` (keys == nullptr), or
// the sorted key list keys[0..n_keys) (sparse prefill; then group is 1). lse (optional): per head, the log of the
// softmax normalizer over the visited keys, M + log(sum), scores scaled.
void dca_task(const KvStore &kv, int32_t layer, int32_t seq, int32_t kvh, int32_t i, int32_t s, int32_t group,
              int32_t d, float scale, const float *const qv[3], float *z, DcaScratch &w, const int32_t *keys = nullptr,
              int32_t n_keys = 0, float *lse = nullptr) {
  const int32_t ci = i / s;
  // [begin, end) of the key groups: 0 intra, 1 successive, 2 inter (dca::part of each key): positions, or for a
  // key list the index range of the list that falls in each group (the groups are contiguous position ranges).
  int32_t lo[3] = {ci * s, std::max(0, (ci - 1) * s), 0};
  int32_t hi[3] = {i + 1, ci * s, std::max(0, (ci - 1) * s)};
  if (keys) {
    for (int g3 = 0; g3 < 3; ++g3) {
      const int32_t a = lo[g3], b = hi[g3];
      lo[g3] = int32_t(std::lower_bound(keys, keys + n_keys, a) - keys);
      hi[g3] = int32_t(std::lower_bound(keys, keys + n_keys, b) - keys);
    }
  }
  auto key_at = [&](int32_t idx) { return keys ? keys[idx] : idx; };
  const int64_t base = kv.offset(layer, seq, kvh, 0);
  w.kr.resize(size_t(d));
  w.op.resize(size_t(group) * size_t(d));
  w.acc.assign(size_t(group) * size_t(d), 0.0f);
  w.m.assign(size_t(group), -INFINITY);
  w.l.assign(size_t(group), 0.0f);
  for (int g3 = 0; g3 < 3; ++g3) {
    const int32_t n = hi[g3] - lo[g3];
    if (n <= 0) continue;
    w.sc.resize(size_t(group) * size_t(n));
    for (int32_t k = 0; k < n; ++k) {
      kv_row_f32(w.kr.data(), kv, base + int64_t(key_at(lo[g3] + k)) * d, true, d);
      for (int32_t g = 0; g < group; ++g) w.sc[size_t(g) * size_t(n) + size_t(k)] = row_dot_f32(qv[g3] + int64_t(g) * d, w.kr.data(), d) * scale;
    }
    float mg[64], lg[64];  // group <= 64 (checked by the caller)
    for (int32_t g = 0; g < group; ++g) {
      float *e = &w.sc[size_t(g) * size_t(n)];
      float mx = -INFINITY;
      for (int32_t k = 0; k < n; ++k) mx = std::max(mx, e[k]);
      mg[g] = mx;
      lg[g] = exp_shift_sum(e, n, mx);
    }
    std::fill(w.op.begin(), w.op.end(), 0.0f);
    for (int32_t k = 0; k < n; ++k) {
      kv_row_f32(w.kr.data(), kv, base + int64_t(key_at(lo[g3] + k)) * d, false, d);
      for (int32_t g = 0; g < group; ++g) {
        const float p = w.sc[size_t(g) * size_t(n) + size_t(k)];
        float *o = &w.op[size_t(g) * size_t(d)];
        for (int32_t c = 0; c < d; ++c) o[c] += p * w.kr[size_t(c)];  // vectorizes (independent lanes)
      }
    }
    // Log-sum-exp merge of this group's partial into the running one.
    for (int32_t g = 0; g < group; ++g) {
      const float mn = std::max(w.m[size_t(g)], mg[g]);
      const float a_old = w.m[size_t(g)] == -INFINITY ? 0.0f : std::exp(w.m[size_t(g)] - mn);
      const float a_new = std::exp(mg[g] - mn);
      w.l[size_t(g)] = w.l[size_t(g)] * a_old + lg[g] * a_new;
      float *acc = &w.acc[size_t(g) * size_t(d)];
      const float *o = &w.op[size_t(g) * size_t(d)];
      for (int32_t c = 0; c < d; ++c) acc[c] = acc[c] * a_old + o[c] * a_new;
      w.m[size_t(g)] = mn;
    }
  }
  for (int32_t g = 0; g < group; ++g) {
    const float inv = 1.0f / w.l[size_t(g)];
    for (int32_t c = 0; c < d; ++c) z[int64_t(g) * d + c] = w.acc[size_t(g) * size_t(d) + size_t(c)] * inv;
    if (lse) lse[g] = w.m[size_t(g)] + std::log(w.l[size_t(g)]);
  }
}

}  // namespace

void dca_attend_keys(const KvStore &kv, int32_t layer, int32_t seq, int32_t kvh, int32_t i, int32_t chunk,
                     int32_t local, int32_t d, const float *const qv[3], const int32_t *keys, int32_t n_keys, float *z,
                     float *lse, DcaScratch &w) {
  dca_task(kv, layer, seq, kvh, i, dca::span(chunk, local), 1, d, 1.0f / std::sqrt(float(d)), qv, z, w, keys, n_keys,
           lse);
}

void dca_attention(KvStore &kv, const AttnArgs &a, const float *q_succ, const float *q_inter, int32_t chunk,
                   int32_t local) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  if (group > 64) throw Error(QW_ERR_UNSUPPORTED, "dca: more than 64 query heads per kv head");
  const int32_t s = dca::span(chunk, local);
  const int64_t qd = int64_t(nH) * d;
  kv_append(kv, a);
  const StepRows rows(st);
  const int64_t tasks = rows.count() * nKV;
  const float scale = 1.0f / std::sqrt(float(d));
  const int nt = attention_threads(st, nH, d, tasks, *a.pool);  // a small decode step stays on one thread
  std::atomic<int64_t> next{0};
  a.pool->run(nt, [&] {
    DcaScratch w;
    for (int64_t task = next++; task < tasks; task = next++) {
      const int64_t row = task / nKV;
      const int32_t kvh = int32_t(task % nKV);
      const size_t si = size_t(rows.seq[size_t(row)]);
      const int32_t i = rows.n_keys(st, row) - 1;  // the row's position
      const int64_t off = row * qd + int64_t(kvh) * group * d;
      const float *qv[3] = {a.q + off, q_succ + off, q_inter + off};
      dca_task(kv, a.layer, st.seq[si], kvh, i, s, group, d, scale, qv, a.z + off, w);
    }
  });
}

}  // namespace cpu
}  // namespace qw
