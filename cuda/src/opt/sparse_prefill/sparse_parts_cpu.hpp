// sparse_parts_cpu.hpp — pieces the two CPU sparse prefill patterns share (internal to the CPU backend):
// sparse_prefill_cpu.cpp drives both and holds vertical-slash; block_sparse_cpu.cpp holds block-sparse's estimate
// and attend.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu.hpp"
#include "sparse_cost.hpp"

namespace qw {
namespace cpu {
namespace sparse_parts {

// Where the step's queries are: sequence si, query variants (DCA) and the chunk span.
struct SeqCtx {
  const AttnArgs *a;
  const KvStore *kv;
  size_t si;
  int32_t n, p0, N, kv_seq;
  int64_t r0;                // row of position p0
  const float *qv[3];        // intra (or plain), successive, inter queries [R, nH * d]
  int32_t span = 0;          // DCA s = chunk - local; 0 without DCA
  const float *q(int32_t var, int64_t row, int32_t h) const {
    return qv[var] + row * int64_t(a->n_heads) * a->head_dim + int64_t(h) * a->head_dim;
  }
};

// One (sequence, kv head): keys transposed Kt [d][len] and values as fp32 rows (the blocked dense kernel's layout).
struct KvF32 {
  std::vector<float> kt, vbuf;
  const float *v = nullptr;
  int64_t len = 0;
};

// Rows per plain-attention task (one register block of queries).
constexpr int32_t kRowBlock = 8;

struct BlockWork {
  std::vector<float> qt, dsc, csc, s;
  std::vector<int32_t> keys;
};

// Softmax of the raw scores s[0..n) of keys[0..n) (ascending; s has room for n + 8) and z = P . V, V fp32 rows: the
// blocked dense kernel's arithmetic (softmax_scaled, then one FMA chain per output lane over the keys in order).
// lse (optional): log of the softmax normalizer.
void finish_row(const int32_t *keys, float *s, int32_t n, float scale, const float *V, int32_t d, float *z, double *lse);

// Block-sparse (block_sparse_cpu.cpp). Estimate of head h: mean-pooled queries of each query block of the step and
// mean-pooled keys of every key block; score = pooled q . pooled k (DCA: the query variant of the blocks' chunk
// relation, taken at the query block's first row and the key block's first key); top_blocks per query block.
struct BsScratch {
  std::vector<float> kpool, qpool, score, kr;
};
void bs_estimate(const SeqCtx &c, const SparseBudget &b, int32_t h, SparsePattern &out, BsScratch &w);
// The keys query i visits (its query block's key blocks, keys <= i), ascending.
void bs_visit_list(const SparsePattern &p, int32_t i, std::vector<int32_t> &keys);
// Plain attention for the rows t0 .. t0 + nb - 1 (nb <= 8, one query block) of head h: scores 8 keys at a time
// from Kt for all rows, the FMA chain of the dense kernel per score; z rows written, lse[l] (optional), nk[l].
void bs_block_attend(const SeqCtx &c, int32_t h, int32_t t0, int32_t nb, const SparsePattern &p, const KvF32 &src,
                     float scale, BlockWork &w, double *lse, int32_t *nk);

}  // namespace sparse_parts
}  // namespace cpu
}  // namespace qw
