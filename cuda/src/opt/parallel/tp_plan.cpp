// tp_plan.cpp — the sharding plan of tp_plan.hpp: the divisibility checks, the split of each tensor, the exact
// slicers and the emulated all-reduce. Needs only backend.hpp and convert.cpp (native_type_name), so the multi-GPU
// lab (cuda/dev/tplab.cu) builds it too; parse_parallel, which reads the registry, is in parallel.cpp.
#include "tp_plan.hpp"

#include <algorithm>
#include <cstring>


namespace qw {

namespace {

bool ends_with(const std::string &s, const char *suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// "tp2, tp4" ... the values whose rank count divides every count of the model (always at least tp1).
std::string workable(const Config &c) {
  std::string out;
  for (int32_t v = 0; v < 4; ++v) {
    const int32_t n = tp_ranks(Parallel(v));
    if (c.num_heads % n == 0 && c.num_kv_heads % n == 0 && c.intermediate_size % n == 0 &&
        int64_t(n - 1) * ((c.vocab_size + n - 1) / n) < c.vocab_size)
      out += (out.empty() ? "" : ", ") + std::string("tp") + std::to_string(n);  // the registry's value names
  }
  return out;
}

}  // namespace

Config TpPlan::rank_config(const Config &full, int32_t r) const {
  Config c = full;
  const TpRank &k = rank[size_t(r)];
  c.num_heads = k.heads;
  c.num_kv_heads = k.kv_heads;
  c.intermediate_size = k.ffn;
  c.vocab_size = k.vocab;
  c.tp = 1;  // a rank's forward is a tp1 forward over its slices
  return c;
}

TpSplit tp_split_of(const std::string &name) {
  if (name == "token_embd.weight" || name == "output.weight") return TpSplit::Vocab;
  for (const char *s : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".ffn_gate.weight", ".ffn_up.weight"})
    if (ends_with(name, s)) return TpSplit::OutRows;
  for (const char *s : {".attn_q.bias", ".attn_k.bias", ".attn_v.bias"})
    if (ends_with(name, s)) return TpSplit::Bias;
  if (ends_with(name, ".attn_output.weight") || ends_with(name, ".ffn_down.weight")) return TpSplit::InCols;
  return TpSplit::Replicated;
}

TpPlan tp_plan(const Config &c, int32_t n) {
  const std::string tp = "parallel = tp" + std::to_string(n);
  if (n != 1 && n != 2 && n != 4 && n != 8)
    throw Error(QW_ERR_INVALID_ARGUMENT, tp + ": the rank count must be 1, 2, 4 or 8");
  auto refuse = [&](const std::string &why) {
    throw Error(QW_ERR_INVALID_ARGUMENT, tp + ": " + why + "; this model splits as " + workable(c) +
                                             " (model option parallel)");
  };
  if (c.num_kv_heads % n)
    refuse("the model has " + std::to_string(c.num_kv_heads) + " KV heads, which " + std::to_string(n) +
           " ranks cannot split (each rank holds whole KV heads; KV heads are not replicated)");
  if (c.num_heads % n)
    refuse("the model has " + std::to_string(c.num_heads) + " query heads, which " + std::to_string(n) +
           " ranks cannot split evenly");
  if (c.intermediate_size % n)
    refuse("the intermediate size " + std::to_string(c.intermediate_size) + " is not a multiple of " +
           std::to_string(n));
  TpPlan p;
  p.ranks = n;
  p.vocab_part = (c.vocab_size + n - 1) / n;
  if (int64_t(n - 1) * p.vocab_part >= c.vocab_size)
    refuse("the vocabulary (" + std::to_string(c.vocab_size) + ") leaves a rank without vocab rows");
  for (int32_t r = 0; r < n; ++r) {
    TpRank k;
    k.heads = c.num_heads / n;
    k.head0 = r * k.heads;
    k.kv_heads = c.num_kv_heads / n;
    k.kv_head0 = r * k.kv_heads;
    k.ffn = c.intermediate_size / n;
    k.ffn0 = r * k.ffn;
    k.vocab0 = r * p.vocab_part;
    k.vocab = std::min(p.vocab_part, c.vocab_size - k.vocab0);
    p.rank.push_back(k);
  }
  return p;
}

TpRange tp_range(const TpPlan &p, const Config &c, const std::string &name, int32_t r) {
  const TpRank &k = p.rank[size_t(r)];
  const int64_t d = c.head_dim;
  const TpSplit s = tp_split_of(name);
  auto heads = [&](bool kv) -> TpRange {
    return kv ? TpRange{s, k.kv_head0 * d, (k.kv_head0 + k.kv_heads) * d} : TpRange{s, k.head0 * d, (k.head0 + k.heads) * d};
  };
  switch (s) {
    case TpSplit::Vocab: return {s, k.vocab0, int64_t(k.vocab0) + k.vocab};
    case TpSplit::OutRows:
    case TpSplit::Bias:
      if (ends_with(name, ".attn_q.weight") || ends_with(name, ".attn_q.bias")) return heads(false);
      if (name.find(".attn_k.") != std::string::npos || name.find(".attn_v.") != std::string::npos) return heads(true);
      return {s, k.ffn0, int64_t(k.ffn0) + k.ffn};  // ffn_gate / ffn_up
    case TpSplit::InCols:
      if (ends_with(name, ".attn_output.weight")) return heads(false);
      return {s, k.ffn0, int64_t(k.ffn0) + k.ffn};  // ffn_down
    case TpSplit::Replicated: break;
  }
  return {s, 0, 0};
}

NativeTensor slice_rows(const NativeTensor &t, int64_t r0, int64_t r1) {
  if (r0 < 0 || r1 > t.rows || r0 >= r1)
    throw Error(QW_ERR_INTERNAL, t.name + ": row slice [" + std::to_string(r0) + ", " + std::to_string(r1) +
                                     ") outside its " + std::to_string(t.rows) + " rows");
  NativeTensor s;
  s.name = t.name;
  s.ggml_type = t.ggml_type;
  s.type = t.type;
  s.rows = r1 - r0;
  s.cols = t.cols;
  s.group = t.group;
  const size_t row_bytes = t.data.size() / size_t(t.rows);  // every layout stores whole rows contiguously
  s.data.assign(t.data.begin() + r0 * int64_t(row_bytes), t.data.begin() + r1 * int64_t(row_bytes));
  if (t.group) {
    const int64_t gpr = t.cols / t.group;
    s.scale.assign(t.scale.begin() + r0 * gpr, t.scale.begin() + r1 * gpr);
    s.offset.assign(t.offset.begin() + r0 * gpr, t.offset.begin() + r1 * gpr);
  }
  return s;
}

NativeTensor slice_cols(const NativeTensor &t, int64_t c0, int64_t c1) {
  if (c0 < 0 || c1 > t.cols || c0 >= c1)
    throw Error(QW_ERR_INTERNAL, t.name + ": column slice [" + std::to_string(c0) + ", " + std::to_string(c1) +
                                     ") outside its " + std::to_string(t.cols) + " columns");
  if (t.group && (c0 % t.group || c1 % t.group))
    throw Error(QW_ERR_SHAPE, t.name + ": tensor parallelism splits its " + std::to_string(t.cols) +
                                  " input features at " + std::to_string(c0 ? c0 : c1) +
                                  ", which is not a multiple of its quantization group (" + std::to_string(t.group) +
                                  " elements, " + native_type_name(t.type) +
                                  "): load this layer as bf16 / as-loaded float (weights_layers) or use fewer ranks");
  NativeTensor s;
  s.name = t.name;
  s.ggml_type = t.ggml_type;
  s.type = t.type;
  s.rows = t.rows;
  s.cols = c1 - c0;
  s.group = t.group;
  // Bytes per element as stored: W4 packs two per byte (low nibble = even column; c0 is even: a group boundary).
  const size_t row_bytes = t.data.size() / size_t(t.rows);
  const size_t b0 = size_t(c0) * row_bytes / size_t(t.cols), b1 = size_t(c1) * row_bytes / size_t(t.cols);
  s.data.resize(size_t(t.rows) * (b1 - b0));
  for (int64_t r = 0; r < t.rows; ++r)
    std::memcpy(&s.data[size_t(r) * (b1 - b0)], &t.data[size_t(r) * row_bytes + b0], b1 - b0);
  if (t.group) {
    const int64_t gpr = t.cols / t.group, g0 = c0 / t.group, g1 = c1 / t.group;
    for (int64_t r = 0; r < t.rows; ++r) {
      s.scale.insert(s.scale.end(), t.scale.begin() + r * gpr + g0, t.scale.begin() + r * gpr + g1);
      s.offset.insert(s.offset.end(), t.offset.begin() + r * gpr + g0, t.offset.begin() + r * gpr + g1);
    }
  }
  return s;
}

NativeTensor tp_shard(const TpPlan &p, const Config &c, const NativeTensor &t, int32_t r) {
  const TpRange g = tp_range(p, c, t.name, r);
  switch (g.split) {
    case TpSplit::Replicated: return t;
    case TpSplit::OutRows:
    case TpSplit::Vocab: return slice_rows(t, g.a, g.b);
    case TpSplit::InCols:
    case TpSplit::Bias: return slice_cols(t, g.a, g.b);  // a bias is a [1, n] F32 vector
  }
  return t;
}

void tp_sum_in_rank_order(float *out, const float *const *parts, int32_t n_parts, int64_t n) {
  if (out != parts[0]) std::memcpy(out, parts[0], size_t(n) * sizeof(float));
  for (int32_t r = 1; r < n_parts; ++r)
    for (int64_t i = 0; i < n; ++i) out[i] += parts[r][i];
}

OpCost tp_all_reduce_cost(int64_t rows, int64_t hidden, int32_t ranks) { return cost_all_reduce(rows * hidden, 4.0, ranks); }
OpCost tp_logits_gather_cost(int64_t rows, int64_t vocab_part, int32_t ranks) {
  return cost_all_gather(double(rows) * double(vocab_part) * double(ranks) * 4.0, ranks);
}

}  // namespace qw
