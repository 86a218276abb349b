// sparse_select.hpp — step 2 of vertical-slash sparse prefill (the selection of a head's lines from its estimated
// scores), host code shared by the CPU kernels (sparse_prefill_cpu.cpp) and the CUDA driver (sparse_kernels.cu), so
// that both backends pick lines by literally the same rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace qw {
namespace sparse {

// Indices [0, min(forced, n)) and the `extra` best others of [forced, n) by score (ties: lower index), ascending.
template <class T>
std::vector<int32_t> top_lines(const T *score, int32_t n, int32_t forced, int32_t extra) {
  const int32_t f = std::min(forced, n), rest = n - f, k = std::min(extra, rest);
  std::vector<int32_t> out(static_cast<size_t>(f));
  std::iota(out.begin(), out.end(), 0);
  std::vector<int32_t> idx(static_cast<size_t>(rest));
  std::iota(idx.begin(), idx.end(), f);
  if (k < rest && k > 0)
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
  out.insert(out.end(), idx.begin(), idx.begin() + k);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sparse
}  // namespace qw
