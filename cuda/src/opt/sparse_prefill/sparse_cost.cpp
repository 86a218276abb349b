// sparse_cost.cpp — the work and op cost of a sparse prefill step (sparse_cost.hpp).
#include "sparse_cost.hpp"

#include <algorithm>

namespace qw {

namespace {

// Vertical-slash, sum over rows i in [p0, N) of |{j <= i : j a column or i - j a diagonal}|: columns and diagonals
// counted apart, less the pairs (c, o) with c + o = i in [p0, N) (a key on both is visited once).
double vs_visited(const SparsePattern &p, int32_t p0, int32_t N) {
  double s = 0;
  for (int32_t c : p.cols) s += std::max(0, N - std::max(p0, c));
  for (int32_t o : p.diags) s += std::max(0, N - std::max(p0, o));
  for (int32_t c : p.cols) {
    const auto lo = std::lower_bound(p.diags.begin(), p.diags.end(), p0 - c);
    const auto hi = std::upper_bound(p.diags.begin(), p.diags.end(), N - 1 - c);
    if (hi > lo) s -= double(hi - lo);
  }
  return s;
}

// Block-sparse: rows of query block qb in [p0, N), each visiting the keys <= i of its blocks.
double bs_visited(const SparsePattern &p, int32_t p0, int32_t N) {
  const int32_t B = kSparseBlock;
  double s = 0;
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    const int32_t qb = p.qb0 + int32_t(b), r0 = std::max(p0, qb * B), r1 = std::min(N, qb * B + B);
    if (r1 <= r0) continue;
    for (int32_t kb : p.blocks[b]) {
      if (kb < qb) s += double(r1 - r0) * B;
      else if (kb == qb) s += double(r1 - r0) * (r0 + r1 - 1 - 2.0 * qb * B + 2) / 2;  // sum of (i - qb*B + 1)
    }
  }
  return s;
}

// Marks [a, b] (clipped to [0, n)) in the difference array `diff` (size n + 1).
void mark(std::vector<int32_t> &diff, int32_t a, int32_t b) {
  a = std::max(a, 0), b = std::min(b, int32_t(diff.size()) - 2);
  if (a > b) return;
  ++diff[size_t(a)];
  --diff[size_t(b) + 1];
}

// The keys some query of rows p0 .. N-1 visits under pattern p, marked in diff.
void mark_visited(std::vector<int32_t> &diff, SparsePrefill mode, const SparsePattern &p, int32_t p0, int32_t N) {
  if (mode == SparsePrefill::VerticalSlash) {
    for (int32_t c : p.cols) mark(diff, c, c);
    for (int32_t o : p.diags) mark(diff, p0 - o, N - 1 - o);
    return;
  }
  const int32_t B = kSparseBlock;
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    const int32_t qb = p.qb0 + int32_t(b), last = std::min(N, qb * B + B) - 1;
    for (int32_t kb : p.blocks[b]) mark(diff, kb * B, std::min(kb * B + B - 1, last));
  }
}

}  // namespace

int64_t sparse_row_keys(SparsePrefill mode, const SparsePattern &p, int32_t i) {
  return int64_t(sparse_visited(mode, p, i, i + 1));
}

double sparse_visited(SparsePrefill mode, const SparsePattern &p, int32_t p0, int32_t N) {
  return mode == SparsePrefill::BlockSparse ? bs_visited(p, p0, N) : vs_visited(p, p0, N);
}

void add_sparse_work(SparseWork &w, SparsePrefill mode, const std::vector<SparsePattern> &pat, int32_t nKV, int32_t p0,
                     int32_t N, int32_t lq, int32_t head_dim) {
  const int32_t nH = int32_t(pat.size()), group = nKV > 0 ? nH / nKV : 1, n = N - p0;
  for (const SparsePattern &p : pat) w.visited += sparse_visited(mode, p, p0, N);
  if (mode == SparsePrefill::BlockSparse) {
    const int32_t B = kSparseBlock, qb0 = p0 / B, qb1 = (N - 1) / B;
    double pairs = 0;  // (query block, key block <= it)
    for (int32_t qb = qb0; qb <= qb1; ++qb) pairs += qb + 1;
    w.est_dots += double(nH) * pairs;
    w.est_adds += (double(nKV) * N + double(nH) * n) * head_dim;
  } else {
    // the last lq rows i = N - lq .. N - 1 score keys 0..i
    w.est_dots += double(nH) * (double(lq) * N - double(lq) * (lq - 1) / 2);
  }
  w.k_rows += double(nKV) * N;
  std::vector<int32_t> diff;
  for (int32_t k = 0; k < nKV; ++k) {
    diff.assign(size_t(N) + 1, 0);
    for (int32_t h = k * group; h < (k + 1) * group && h < nH; ++h) mark_visited(diff, mode, pat[size_t(h)], p0, N);
    int32_t run = 0;
    for (int32_t j = 0; j < N; ++j) w.v_rows += (run += diff[size_t(j)]) > 0;
  }
}

OpCost cost_sparse_attention(const SparseWork &w, int64_t rows, int64_t n_heads, int64_t n_kv_heads, int64_t d,
                             double kv_bytes, double act_bytes) {
  OpCost c;
  c.flops = w.visited * (4.0 * double(d) + 5.0) + w.est_dots * (2.0 * double(d) + 5.0) + w.est_adds;
  c.bytes = (w.k_rows + w.v_rows) * double(d) * kv_bytes;       // K and V rows read
  c.bytes += 2.0 * double(rows) * double(n_kv_heads * d) * kv_bytes;  // new K and V written
  c.bytes += double(rows) * double(n_heads * d) * 2.0 * act_bytes;    // q in, z out
  return c;
}

}  // namespace qw
