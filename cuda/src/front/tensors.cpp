// tensors.cpp — config parsing, the required-tensor table and shape checks.
#include "tensors.hpp"

#include <cmath>

#include "json.hpp"

namespace qw {

Config parse_config(const char *text) {
  const char *what = "model config";
  Json o = parse_json_object(text, what);
  Config c;
  auto req_int = [&](const char *key, int64_t lo, int64_t hi) -> int32_t {
    int64_t v;
    if (!json_int(o, key, lo, hi, what, &v))
      throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"" + key + "\" is required");
    return int32_t(v);
  };
  const int64_t big = int64_t(1) << 30;
  c.vocab_size = req_int("vocab_size", 1, big);
  c.hidden_size = req_int("hidden_size", 1, 1 << 20);
  c.intermediate_size = req_int("intermediate_size", 1, 1 << 22);
  c.num_layers = req_int("num_hidden_layers", 1, 4096);
  c.num_heads = req_int("num_attention_heads", 1, 4096);
  int64_t v;
  // HF semantics: a missing/null num_key_value_heads means no GQA.
  c.num_kv_heads = json_int(o, "num_key_value_heads", 1, 4096, what, &v) ? int32_t(v) : c.num_heads;
  c.head_dim = json_int(o, "head_dim", 1, 4096, what, &v) ? int32_t(v) : c.hidden_size / c.num_heads;
  c.max_position = req_int("max_position_embeddings", 1, big);
  double d;
  // rope_theta: top level (released Qwen2/2.5 configs) or rope_parameters.rope_theta (transformers 5).
  if (!json_num(o, "rope_theta", what, &d)) {
    const Json *rp = o.get("rope_parameters");
    if (!rp || rp->kind != Json::Object || !json_num(*rp, "rope_theta", what, &d))
      throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"rope_theta\" is required");
  }
  if (!(d > 1.0) || !std::isfinite(d) || d > 1e12)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": rope_theta must be in (1, 1e12]");
  c.rope_theta = float(d);
  if (!json_num(o, "rms_norm_eps", what, &d))
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"rms_norm_eps\" is required");
  if (!(d > 0.0) || d > 1.0) throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": rms_norm_eps must be in (0, 1]");
  c.rms_eps = float(d);
  if (!json_bool(o, "tie_word_embeddings", what, &c.tie_embeddings))
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"tie_word_embeddings\" is required");
  json_bool(o, "eagle_head", what, &c.eagle_head);
  if (c.eagle_head && c.num_layers != 1)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": an EAGLE head (eagle_head = true) has exactly one decoder layer, "
                                             "the config says num_hidden_layers = " + std::to_string(c.num_layers));

  // Dual Chunk Attention defaults (backend.hpp Config): Qwen2.5-1M's dual_chunk_attention_config, else the
  // trained length. A malformed block is an error, not a silent fallback.
  int64_t trained = c.max_position;
  if (json_int(o, "original_max_position_embeddings", 1, big, what, &v)) trained = v;
  c.dca_chunk = int32_t(trained);
  c.dca_local = c.dca_chunk / 8;
  if (const Json *dc = o.get("dual_chunk_attention_config")) {
    if (dc->kind != Json::Object) throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": dual_chunk_attention_config must be an object");
    const char *w2 = "model config dual_chunk_attention_config";
    if (json_int(*dc, "chunk_size", 2, big, w2, &v)) c.dca_chunk = int32_t(v), c.dca_local = c.dca_chunk / 8;
    if (json_int(*dc, "local_size", 0, big, w2, &v)) c.dca_local = int32_t(v);
    if (c.dca_local >= c.dca_chunk)
      throw Error(QW_ERR_INVALID_ARGUMENT, std::string(w2) + ": local_size (" + std::to_string(c.dca_local) +
                                               ") must be smaller than chunk_size (" + std::to_string(c.dca_chunk) + ")");
  }
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": num_attention_heads (" + std::to_string(c.num_heads) +
                                             ") is not a multiple of num_key_value_heads (" +
                                             std::to_string(c.num_kv_heads) + ")");
  if (c.head_dim % 2 != 0)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": head_dim must be even (RoPE pairs i with i + d/2)");
  if (!o.get("head_dim") && c.hidden_size % c.num_heads != 0)
    throw Error(QW_ERR_INVALID_ARGUMENT,
                std::string(what) + ": hidden_size is not a multiple of num_attention_heads and head_dim is not given");
  if (int64_t(c.num_heads) * c.head_dim > (1 << 22))
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": num_attention_heads * head_dim is too large");
  return c;
}

std::string config_json(const Config &c) {
  JsonWriter w;
  w.begin_object();
  w.key("vocab_size").value(c.vocab_size);
  w.key("hidden_size").value(c.hidden_size);
  w.key("intermediate_size").value(c.intermediate_size);
  w.key("num_hidden_layers").value(c.num_layers);
  w.key("num_attention_heads").value(c.num_heads);
  w.key("num_key_value_heads").value(c.num_kv_heads);
  w.key("head_dim").value(c.head_dim);
  w.key("max_position_embeddings").value(c.max_position);
  w.key("rope_theta").value(double(c.rope_theta));
  w.key("rms_norm_eps").value(double(c.rms_eps));
  w.key("tie_word_embeddings").value(c.tie_embeddings);
  if (c.eagle_head) w.key("eagle_head").value(true);
  w.end_object();
  return w.str();
}

std::vector<TensorSpec> tensor_specs(const Config &c) {
  const int64_t H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size, V = c.vocab_size;
  std::vector<TensorSpec> s;
  auto mat = [&](const std::string &n, int64_t ne0, int64_t ne1) { s.push_back({n, ne0, ne1, false, true}); };
  auto vec = [&](const std::string &n, int64_t ne0) { s.push_back({n, ne0, 1, true, true}); };
  mat("token_embd.weight", H, V);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (!c.eagle_head) vec(b + "attn_norm.weight", H);  // EAGLE's layer 0 has no input norm
    mat(b + "attn_q.weight", H, Q);
    vec(b + "attn_q.bias", Q);
    mat(b + "attn_k.weight", H, KV);
    vec(b + "attn_k.bias", KV);
    mat(b + "attn_v.weight", H, KV);
    vec(b + "attn_v.bias", KV);
    mat(b + "attn_output.weight", Q, H);
    vec(b + "ffn_norm.weight", H);
    mat(b + "ffn_gate.weight", H, F);
    mat(b + "ffn_up.weight", H, F);
    mat(b + "ffn_down.weight", F, H);
  }
  if (c.eagle_head) {  // fc: [embed(token), feature] (2H) -> H; no final norm (the head feeds the lm_head directly)
    mat("eagle.fc.weight", 2 * H, H);
    vec("eagle.fc.bias", H);
  } else {
    vec("output_norm.weight", H);
  }
  if (!c.tie_embeddings) mat("output.weight", H, V);
  return s;
}

const TensorSpec &find_spec(const std::vector<TensorSpec> &specs, const Config &c, const std::string &name) {
  for (const auto &s : specs)
    if (s.name == name) return s;
  if (name == "output.weight" && c.tie_embeddings)
    throw Error(QW_ERR_NOT_FOUND, "output.weight: the config has tie_word_embeddings = true, so the output "
                                  "projection is token_embd.weight; do not load output.weight");
  throw Error(QW_ERR_NOT_FOUND, name + ": not a tensor of this Qwen2 config (expected GGUF names such as "
                                       "token_embd.weight, blk.N.attn_q.weight, output_norm.weight)");
}

static std::string shape_str(int32_t n, const int64_t *ne) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

void check_shape(const TensorSpec &s, int32_t n_dims, const int64_t ne[4]) {
  const int64_t want[2] = {s.ne0, s.ne1};
  const int want_dims = s.vector ? 1 : 2;
  const std::string expected = shape_str(want_dims, want);
  if (n_dims < 1 || n_dims > 4)
    throw Error(QW_ERR_SHAPE, s.name + ": n_dims must be 1..4, got " + std::to_string(n_dims) + " (expected " +
                                  expected + ")");
  bool ok = true;
  // Trailing dimensions of size 1 are accepted ([H] == [H, 1]); anything else must match exactly.
  for (int i = 0; i < n_dims; ++i) {
    const int64_t w = i < want_dims ? want[i] : 1;
    if (ne[i] != w) ok = false;
  }
  if (n_dims < want_dims && want[1] != 1) ok = false;
  if (!ok)
    throw Error(QW_ERR_SHAPE, s.name + ": expected shape " + expected + " (ggml ne order), given " +
                                  shape_str(n_dims, ne));
}

}  // namespace qw
