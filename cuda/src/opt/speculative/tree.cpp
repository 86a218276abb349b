// tree.cpp — parents -> tree step (tree.hpp).
#include "tree.hpp"

#include <string>

#include "dca.hpp"
#include "decode.hpp"
#include "kvcache.hpp"
#include "parallel.hpp"

namespace qw {

void tree_step(Step &st, const int32_t *parents, int32_t first, int32_t n, int32_t tree_base) {
  const int32_t total = first + n;
  // Paths root..i of every node (ancestors ascending): only the rows of this step keep theirs.
  std::vector<std::vector<int32_t>> path(static_cast<size_t>(total));
  for (int32_t i = 0; i < total; ++i) {
    const int32_t p = parents[i];
    if (p < -1 || p >= i)
      throw Error(QW_ERR_INVALID_ARGUMENT, "tree: parents[" + std::to_string(i) + "] = " + std::to_string(p) +
                                               " must be -1 (a root) or the index of an earlier node (0.." +
                                               std::to_string(i - 1) + "): nodes come parents first");
    if (p >= 0) path[size_t(i)] = path[size_t(p)];
    path[size_t(i)].push_back(i);
  }
  st.tree_base = tree_base;
  st.tree_pos.resize(size_t(n));
  st.tree_keys.resize(size_t(n));
  for (int32_t j = 0; j < n; ++j) {
    std::vector<int32_t> &keys = path[size_t(first + j)];
    st.tree_pos[size_t(j)] = tree_base + int32_t(keys.size()) - 1;
    st.tree_keys[size_t(j)] = std::move(keys);
  }
}

void check_compact(int32_t base, const int32_t *keep, int32_t n, int32_t len) {
  if (n < 1) throw Error(QW_ERR_INVALID_ARGUMENT, "kv_compact: n must be >= 1 (the accepted path holds at least its root)");
  if (base < 0 || base > len)
    throw Error(QW_ERR_INVALID_ARGUMENT, "kv_compact: base = " + std::to_string(base) + " is outside [0, " +
                                             std::to_string(len) + "] (the sequence's length)");
  for (int32_t i = 0; i < n; ++i) {
    if (keep[i] < 0 || (i > 0 && keep[i] <= keep[i - 1]))
      throw Error(QW_ERR_INVALID_ARGUMENT, "kv_compact: keep must be ascending, unique and >= 0; keep[" +
                                               std::to_string(i) + "] = " + std::to_string(keep[i]));
    if (int64_t(base) + keep[i] >= len)
      throw Error(QW_ERR_INVALID_ARGUMENT, "kv_compact: base + keep[" + std::to_string(i) + "] = " +
                                               std::to_string(int64_t(base) + keep[i]) + " is not below the length " +
                                               std::to_string(len));
  }
}

void chain_step(Step &st, int32_t seq, int32_t len, const int32_t *tokens, int32_t n) {
  st.phase = QW_PHASE_DECODE;
  st.seq.assign(size_t(n), seq);
  st.n_new.assign(size_t(n), 1);
  st.pos0.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) st.pos0[size_t(i)] = len + i;
  st.tokens.assign(tokens, tokens + n);
}

std::string chain_step_refusal(const StepToggles &t, int32_t n_layers) {
  if (t.kv_cache != KvCache::Bf16 && t.kv_cache != KvCache::F32) return "a quantized kvCache (its rows are grouped per stream)";
  if (t.decode != Decode::Graph) return "decode = persistent";
  if (t.parallel != Parallel::Tp1) return "parallel != tp1";
  for (int32_t l = 0; l < n_layers; ++l)
    if (t.at(l).dca == Dca::On) return "dca = on (layer " + std::to_string(l) + ")";
  return "";
}

}  // namespace qw
