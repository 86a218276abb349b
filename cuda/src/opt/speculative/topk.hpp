// topk.hpp — the host top-k of a logits row behind qw_session_read_topk (EAGLE drafting and greedy tree
// verification): the k best ids (ties: the lower id, NaN skipped) and, when asked, their log-softmax values.
// engine/spec/eagle-tree.ts topKLogProbs is its JS reference.
#pragma once

#include <cstdint>

namespace qw {

// ids[0..k) descending (padded with -1 when the row has fewer than k non-NaN logits); lp (nullable) gets
// row[id] - logsumexp(row) in fp64 (-inf for a pad). Without lp no exponential is computed: the greedy argmax of a
// row costs one pass.
void row_topk(const float *row, int32_t vocab, int32_t k, int32_t *ids, double *lp);

// sum over the non-NaN x of exp(double(x) - m), m >= every x: the softmax denominator of row_topk. On x86-64 with
// AVX-512 or AVX2 a vectorized exp (relative error ~2e-16 per term, sum order by lanes), else std::exp in index order.
double sum_exp_below(const float *row, int32_t n, double m);
// The std::exp reference of sum_exp_below (test_topk.cpp compares the two).
double sum_exp_below_ref(const float *row, int32_t n, double m);
// sum_exp_below on a chosen path, for the test: isa 2 AVX-512, 1 AVX2, 0 the reference (a path this CPU lacks falls
// back to the next one down).
double sum_exp_below_isa(const float *row, int32_t n, double m, int isa);

}  // namespace qw
