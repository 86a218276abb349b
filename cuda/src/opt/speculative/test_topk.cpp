// test_topk.cpp — the host top-k of qw_session_read_topk (topk.cpp): the vectorized softmax denominator against
// its std::exp reference on rows with NaN, -inf, ties and wide ranges; the ids and log-probabilities of row_topk
// against a sort (ties: the lower id, across the blocks the scan skips); and lp = NULL gives the same ids (the
// argmax path).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "testlib.hpp"
#include "topk.hpp"

using namespace qw;

int main() {
  std::mt19937 g(7);
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t V = 1 + int32_t(g() % 9000);
    std::normal_distribution<float> d(0.0f, trial % 4 == 0 ? 40.0f : 3.0f);  // some rows span hundreds (underflow)
    std::vector<float> row(static_cast<size_t>(V));
    for (auto &x : row) x = d(g);
    if (V > 10) {
      row[3] = NAN;
      row[5] = -INFINITY;
      row[size_t(V - 1)] = row[2];  // a tie: the lower id first
    }
    float m = -INFINITY;
    for (float x : row) if (!std::isnan(x) && x > m) m = x;
    const double a = sum_exp_below(row.data(), V, m), b = sum_exp_below_ref(row.data(), V, m);
    CHECK(std::fabs(a - b) <= 1e-13 * b, "trial %d V %d: sum %.17g vs reference %.17g", trial, V, a, b);
    for (int isa : {1, 2}) {  // each vector path this CPU has (a missing one falls back: then the check repeats)
      const double c = sum_exp_below_isa(row.data(), V, m, isa);
      CHECK(std::fabs(c - b) <= 1e-13 * b, "trial %d V %d isa %d: sum %.17g vs reference %.17g", trial, V, isa, c, b);
    }
    for (int32_t k : {1, 4, 16}) {
      std::vector<int32_t> ids(static_cast<size_t>(k)), ids2(static_cast<size_t>(k));
      std::vector<double> lp(static_cast<size_t>(k));
      row_topk(row.data(), V, k, ids.data(), lp.data());
      row_topk(row.data(), V, k, ids2.data(), nullptr);
      CHECK(ids == ids2, "trial %d k %d: the ids without lp differ", trial, k);
      std::vector<int32_t> order;
      for (int32_t i = 0; i < V; ++i) if (!std::isnan(row[size_t(i)])) order.push_back(i);
      std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return row[size_t(x)] > row[size_t(y)]; });
      const double lse = double(m) + std::log(b);
      for (int32_t j = 0; j < k; ++j) {
        if (j >= int32_t(order.size())) {
          CHECK(ids[size_t(j)] == -1 && std::isinf(lp[size_t(j)]), "trial %d k %d: pad %d", trial, k, j);
          continue;
        }
        CHECK(ids[size_t(j)] == order[size_t(j)], "trial %d k %d: id %d is %d, want %d", trial, k, j, ids[size_t(j)], order[size_t(j)]);
        CHECK(std::fabs(lp[size_t(j)] - (double(row[size_t(order[size_t(j)])]) - lse)) < 1e-12, "trial %d k %d: lp %d", trial, k, j);
      }
    }
  }
  {  // ties across blocks of 8: the lower id wins, whatever block the scan skips
    std::vector<float> row(100, 0.0f);
    row[9] = row[20] = row[95] = 5.0f;
    row[50] = row[51] = 4.0f;
    int32_t ids[4];
    row_topk(row.data(), 100, 4, ids, nullptr);
    CHECK(ids[0] == 9 && ids[1] == 20 && ids[2] == 95 && ids[3] == 50, "ties: %d %d %d %d", ids[0], ids[1], ids[2], ids[3]);
    row_topk(row.data(), 100, 1, ids, nullptr);
    CHECK(ids[0] == 9, "argmax tie: %d", ids[0]);
  }
  {  // every logit NaN: all pads
    std::vector<float> row(64, NAN);
    int32_t ids[2];
    double lp[2];
    row_topk(row.data(), 64, 2, ids, lp);
    CHECK(ids[0] == -1 && ids[1] == -1 && std::isinf(lp[0]) && lp[0] < 0, "all-NaN row pads");
  }
  return finish("test_topk");
}
