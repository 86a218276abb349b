// dca_cpu.hpp — Dual Chunk Attention on the CPU backend (toggle "dca" = on; formulas in dca_positions.hpp).
// forward.cpp calls dca_positions once per step, dca_rope at the rope op and dca_attention at the attention op
// of every layer where the toggle is on.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "cpu.hpp"
#include "dca.hpp"
#include "half.hpp"

namespace qw {
namespace cpu {

// The remapped RoPE positions of a step's rows (row t has true position pos[t]).
struct DcaRows {
  std::vector<int32_t> key, intra, succ, inter;
  int32_t max_pos = 0;  // the largest of them: the RoPE table must cover it
};
void dca_positions(DcaRows &out, const int32_t *pos, int64_t R, int32_t chunk, int32_t local);

// Refuses (Error QW_ERR_UNSUPPORTED) a configuration where dca = on at some layer and the KV cache is not f32 or
// bf16: the kernels below read plain f32/bf16 rows. Session::configure calls it (both toggles need a reset).
void dca_check_config(const StepToggles &t);

// Ropes the raw queries q [R, nH * d] three ways (q: intra-chunk, q_succ, q_inter; both [R, nH * d], written)
// and the raw keys k [R, nKV * d] at pos mod s, in place.
void dca_rope(float *q, float *q_succ, float *q_inter, float *k, int64_t R, int32_t nH, int32_t nKV, int32_t d,
              const DcaRows &rows, const RopeTable &tab);

// Appends the step's K/V rows to the cache (kv_append) and computes z: per query row and head, one softmax
// partial per key group (inter, successive, intra), merged by log-sum-exp. a.q holds the intra-chunk queries.
// gqa = broadcast is not materialized here (the result is the same; DCA always reads kv heads in place).
void dca_attention(KvStore &kv, const AttnArgs &a, const float *q_succ, const float *q_inter, int32_t chunk,
                   int32_t local);

// Row `off` of the K (is_k) or V cache, widened exactly to fp32 (the DCA and sparse prefill kernels read rows so).
inline void kv_row_f32(float *dst, const KvStore &kv, int64_t off, bool is_k, int32_t d) {
  if (kv.bf16) {
    const uint16_t *src = (is_k ? kv.kb.get() : kv.vb.get()) + off;
    for (int32_t i = 0; i < d; ++i) dst[i] = bf16_to_float(src[i]);
  } else {
    std::memcpy(dst, (is_k ? kv.kf.get() : kv.vf.get()) + off, size_t(d) * sizeof(float));
  }
}

// a . b over d fp32 values: two 8-lane FMA accumulators, then the lanes in order, then the scalar tail (the DCA
// kernel's score; sparse prefill's pattern estimate uses it too).
inline float row_dot_f32(const float *a, const float *b, int32_t d) {
  int32_t i = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  if (i + 8 <= d) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    i += 8;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
  for (float x : lanes) s += x;
#endif
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

// Per-thread scratch of the DCA kernels.
struct DcaScratch {
  std::vector<float> sc, kr, op, acc, m, l;
};

// One query head (row at position i, kv head kvh, query variants qv[0..2] of that head) over the sorted key list
// keys[0..n_keys) (positions <= i): sparse prefill over DCA (opt/sparse_prefill/). The same arithmetic per head as
// dca_attention, so the full list 0..i gives z bit-identical to it. lse (optional, 1 float): log of the softmax
// normalizer over the listed keys (max scaled score + log of the sum), for the recall of attention mass.
void dca_attend_keys(const KvStore &kv, int32_t layer, int32_t seq, int32_t kvh, int32_t i, int32_t chunk,
                     int32_t local, int32_t d, const float *const qv[3], const int32_t *keys, int32_t n_keys, float *z,
                     float *lse, DcaScratch &w);

}  // namespace cpu
}  // namespace qw
