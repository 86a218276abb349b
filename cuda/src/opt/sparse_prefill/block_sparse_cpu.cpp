// block_sparse_cpu.cpp — MInference block-sparse prefill on the CPU (toggle "sparsePrefill" = block-sparse; the
// driver, stats and DCA path are sparse_prefill_cpu.cpp's).
//
// Per prefill step, per sequence (rows at positions p0 .. N-1) and query head h, blocks of B = 64 positions aligned
// to position 0 (MInference's block_sparse_attention: block_size_M = block_size_N = 64):
//  1. Estimate: q̄[qb] = mean of the step's queries in query block qb, k̄[kb] = mean of the cached keys in key block
//     kb (every key 0..N-1); score(qb, kb) = q̄ . k̄ for kb <= qb (MInference's pooled QK^T with its causal block
//     mask; a softmax per row would not change the order). With DCA each block pair uses the query variant of its
//     chunk relation at (first row of qb, first key of kb): the same relation for the whole pair when the DCA span
//     is a multiple of 64 (chunk 512 / local 64: 448 = 7 * 64).
//  2. Select per query block (sparse::top_blocks): the first ceil(sink / 64) key blocks, the ceil(local / 64) nearest
//     (always the own block), and the `blocks` best others (MInference's topk, counted here on top of the forced ones).
//  3. Attend: query i visits the keys <= i of its query block's key blocks, ascending: plain attention with the
//     dense kernel's arithmetic (each score one FMA chain over d, finish_row), so every block selected gives dense
//     attention bit for bit where the blocked kernel is the dense one; DCA through dca_attend_keys.
#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "dca_cpu.hpp"
#include "dca_positions.hpp"
#include "sparse_parts_cpu.hpp"
#include "sparse_select.hpp"

namespace qw {
namespace cpu {
namespace sparse_parts {

void bs_estimate(const SeqCtx &c, const SparseBudget &b, int32_t h, SparsePattern &out, BsScratch &w) {
  const int32_t d = c.a->head_dim, group = c.a->n_heads / c.a->n_kv_heads, B = kSparseBlock, N = c.N;
  const int32_t qb0 = c.p0 / B, qb1 = (N - 1) / B, nkb = qb1 + 1, nvar = c.span ? 3 : 1;
  // pooled keys of every key block (the last one may be partial); per query head, so the heads of a kv group pool the
  // same keys again: N * d adds, small next to the scores and the attend
  w.kpool.assign(size_t(nkb) * size_t(d), 0.0f);
  w.kr.resize(size_t(d));
  const int64_t base = c.kv->offset(c.a->layer, c.kv_seq, h / group, 0);
  for (int32_t j = 0; j < N; ++j) {
    kv_row_f32(w.kr.data(), *c.kv, base + int64_t(j) * d, true, d);
    float *kp = &w.kpool[size_t(j / B) * size_t(d)];
    for (int32_t e = 0; e < d; ++e) kp[e] += w.kr[size_t(e)];
  }
  for (int32_t kb = 0; kb < nkb; ++kb) {
    const float inv = 1.0f / float(std::min(N, kb * B + B) - kb * B);
    for (int32_t e = 0; e < d; ++e) w.kpool[size_t(kb) * size_t(d) + size_t(e)] *= inv;
  }
  const int32_t sink_b = sparse::blocks_of(b.sink, B), local_b = sparse::blocks_of(b.local, B);
  out.cols.clear();
  out.diags.clear();
  out.qb0 = qb0;
  out.blocks.assign(size_t(qb1 - qb0 + 1), {});
  w.qpool.resize(size_t(nvar) * size_t(d));
  w.score.resize(size_t(nkb));
  for (int32_t qb = qb0; qb <= qb1; ++qb) {
    const int32_t i0 = std::max(c.p0, qb * B), i1 = std::min(N, qb * B + B);
    std::fill(w.qpool.begin(), w.qpool.end(), 0.0f);
    for (int32_t v = 0; v < nvar; ++v)
      for (int32_t i = i0; i < i1; ++i) {
        const float *q = c.q(v, c.r0 + (i - c.p0), h);
        for (int32_t e = 0; e < d; ++e) w.qpool[size_t(v * d + e)] += q[e];
      }
    for (float &x : w.qpool) x /= float(i1 - i0);
    for (int32_t kb = 0; kb <= qb; ++kb) {
      const int32_t var = c.span ? dca::part(i0, kb * B, c.span) : 0;
      w.score[size_t(kb)] = row_dot_f32(&w.qpool[size_t(var * d)], &w.kpool[size_t(kb) * size_t(d)], d);
    }
    out.blocks[size_t(qb - qb0)] = sparse::top_blocks(w.score.data(), qb, sink_b, local_b, b.blocks);
  }
}

void bs_visit_list(const SparsePattern &p, int32_t i, std::vector<int32_t> &keys) {
  keys.clear();
  const int32_t B = kSparseBlock;
  for (int32_t kb : p.blocks[size_t(i / B - p.qb0)])
    for (int32_t j = kb * B, e = std::min(kb * B + B - 1, i); j <= e; ++j) keys.push_back(j);
}

void bs_block_attend(const SeqCtx &c, int32_t h, int32_t t0, int32_t nb, const SparsePattern &p, const KvF32 &src,
                     float scale, BlockWork &w, double *lse, int32_t *nk) {
  const int32_t d = c.a->head_dim, i0 = c.p0 + t0, ilast = i0 + nb - 1;
  const float *kt = src.kt.data();
  const int64_t len = src.len;
  bs_visit_list(p, ilast, w.keys);  // the last row's keys; each row's are a prefix of them
  const int32_t nkeys = int32_t(w.keys.size()), stride = nkeys + 8;
  w.s.resize(size_t(kRowBlock) * size_t(stride));
  const float *q[kRowBlock];
  for (int32_t l = 0; l < nb; ++l) q[l] = c.q(0, c.r0 + t0 + l, h);
  // scores: the keys come in contiguous runs (one per key block); 8 keys of a run at a time, every row at once
  for (int32_t k0 = 0; k0 < nkeys;) {
    int32_t k1 = k0 + 1;
    while (k1 < nkeys && w.keys[size_t(k1)] == w.keys[size_t(k1 - 1)] + 1) ++k1;
    int32_t k = k0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; k + 8 <= k1; k += 8) {
      const float *kcol = kt + w.keys[size_t(k)];
      __m256 acc[kRowBlock];
      for (int32_t l = 0; l < kRowBlock; ++l) acc[l] = _mm256_setzero_ps();
      if (nb == kRowBlock) {
        for (int32_t e = 0; e < d; ++e) {
          const __m256 kv = _mm256_loadu_ps(kcol + int64_t(e) * len);
          for (int32_t l = 0; l < kRowBlock; ++l) acc[l] = _mm256_fmadd_ps(_mm256_set1_ps(q[l][e]), kv, acc[l]);
        }
      } else {
        for (int32_t e = 0; e < d; ++e) {
          const __m256 kv = _mm256_loadu_ps(kcol + int64_t(e) * len);
          for (int32_t l = 0; l < nb; ++l) acc[l] = _mm256_fmadd_ps(_mm256_set1_ps(q[l][e]), kv, acc[l]);
        }
      }
      for (int32_t l = 0; l < nb; ++l) _mm256_storeu_ps(&w.s[size_t(l) * size_t(stride) + size_t(k)], acc[l]);
    }
#endif
    for (; k < k1; ++k) {
      const float *kcol = kt + w.keys[size_t(k)];
      for (int32_t l = 0; l < nb; ++l) {
        float acc = 0;
        for (int32_t e = 0; e < d; ++e) acc = std::fma(q[l][e], kcol[int64_t(e) * len], acc);
        w.s[size_t(l) * size_t(stride) + size_t(k)] = acc;
      }
    }
    k0 = k1;
  }
  for (int32_t l = 0; l < nb; ++l) {
    const int32_t i = i0 + l;
    nk[l] = int32_t(std::upper_bound(w.keys.begin(), w.keys.end(), i) - w.keys.begin());
    float *z = c.a->z + (c.r0 + t0 + l) * int64_t(c.a->n_heads) * d + int64_t(h) * d;
    finish_row(w.keys.data(), &w.s[size_t(l) * size_t(stride)], nk[l], scale, src.v, d, z, lse ? &lse[l] : nullptr);
  }
}

}  // namespace sparse_parts
}  // namespace cpu
}  // namespace qw
