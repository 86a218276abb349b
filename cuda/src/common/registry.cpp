// registry.cpp — the toggle table. Values with an empty backend list are specified but not implemented yet;
// the UI shows them disabled and qw_session_set_toggle answers QW_ERR_UNSUPPORTED for them.
#include "registry.hpp"

#include "json.hpp"

namespace qw {

const std::vector<ToggleDef> &toggle_defs() {
  static const std::vector<ToggleDef> defs = {
      {"attention", {"flash-bf16", "sage-int8", "sage-fp8"}, "flash-bf16", true, false, {"flash-bf16"},
       {"flash-bf16"}, "QWEN-001",
       "Attention kernel. flash-bf16 is exact softmax attention (the CPU computes it in fp32); sage-int8 "
       "quantizes Q and K to INT8 with smooth-K; sage-fp8 adds FP8 P*V with two-level fp32 accumulation.", "Attention kernel"},
      {"gqa", {"native", "broadcast"}, "native", true, false, {"native", "broadcast"}, {"native", "broadcast"},
       "QWEN-002",
       "Grouped-query attention. native: query head h reads kv head h / (nH / nKV) in place; broadcast: "
       "materialize the repeated KV heads first (the naive arm of the ablation, same result).", "Grouped-query attention"},
      {"ffn", {"separate", "fused-swiglu", "fused-norm-gemv-swiglu"}, "separate", true, false, {"separate"},
       {"separate"}, "QWEN-003, QWEN-009",
       "MLP kernels: separate gate/up GEMV, SiLU*up and down; or fused variants.", "MLP kernels"},
      {"norm", {"separate", "fused-residual-norm"}, "separate", true, false, {"separate"}, {"separate"},
       "QWEN-013", "RMSNorm as its own op, or fused with the preceding residual add.", "RMSNorm fusion"},
      {"weights", {"as-loaded", "bf16", "q8", "q4"}, "as-loaded", true, true, {"as-loaded", "bf16", "q8", "q4"},
       {"as-loaded", "bf16", "q8", "q4"}, "QWEN-005",
       "Weight format of the 7 projections per layer, chosen when the model loads (model option weights / "
       "weights_layers; changing it reloads the model): as-loaded keeps each tensor's own type (exact native "
       "layout); bf16 rounds; q8 = int8 symmetric, group 128; q4 = uint4 with scale and zero point, group 128 "
       "(min/max, no calibration). Embeddings and lm_head stay as loaded.", "Weight format"},
      {"gemv", {"simple", "marlin"}, "simple", false, false, {"simple"}, {"simple"}, "QWEN-005",
       "Quantized GEMV/GEMM kernel family.", "Quantized GEMV kernel"},
      {"kvCache", {"bf16", "f32", "q8", "kivi4", "kivi2"}, "bf16", false, true, {"bf16", "f32"}, {"bf16"},
       "QWEN-007", "KV cache element type. Changing it clears every sequence of the session.", "KV-cache type"},
      {"graphs", {"on", "off"}, "on", false, false, {"off"}, {"on", "off"}, "launch overhead",
       "CUDA graph replay for decode steps (the CPU backend has no graphs: always off there).", "CUDA graphs"},
      {"speculative", {"off", "draft", "eagle"}, "off", false, true, {"off"}, {"off"}, "QWEN-004",
       "Speculative decoding: a smaller draft model or an EAGLE draft head with tree verification.", "Speculative decoding"},
      {"dca", {"off", "on"}, "off", true, true, {"off"}, {"off"}, "QWEN-006",
       "Dual Chunk Attention for contexts past the trained length.", "Dual Chunk Attention"},
      {"sparsePrefill", {"off", "vertical-slash"}, "off", true, false, {"off"}, {"off"}, "QWEN-008",
       "MInference-style dynamic sparse prefill attention.", "Sparse prefill attention"},
      {"actQuant", {"off", "int8"}, "off", true, false, {"off", "int8"}, {"off"}, "issue 15",
       "Activations of prefill GEMMs with 8/4-bit weights. off: exact (fp32 on the CPU); int8: quantize the "
       "activations per token and weight group to int8 (d = max|x| / 127, as llama.cpp's q8_0) and use integer "
       "dot products (CPU: AVX-512 VNNI; elsewhere the exact kernel runs, its op records name the kernel). "
       "Decode (one token) always stays exact.", "Int8 activations (prefill GEMM)"},
      {"tile", {"auto", "fixed"}, "auto", false, false, {"auto"}, {"auto"}, "QWEN-010",
       "Kernel tile sizes: measured per device (auto) or fixed.", "Kernel tile sizes"},
  };
  return defs;
}

const ToggleDef *find_toggle(const std::string &id) {
  for (const auto &t : toggle_defs())
    if (id == t.id) return &t;
  return nullptr;
}

const std::vector<std::string> &implemented(const ToggleDef &t, const std::string &backend) {
  return backend == "cuda" ? t.cuda : t.cpu;
}

std::string initial_value(const ToggleDef &t, const std::string &backend) {
  const auto &impl = implemented(t, backend);
  for (const auto &v : impl)
    if (v == t.def) return v;
  return impl.empty() ? std::string(t.def) : impl.front();
}

std::string toggle_registry_json() {
  JsonWriter w;
  w.begin_array();
  for (const auto &t : toggle_defs()) {
    w.begin_object();
    w.key("id").value(t.id);
    w.key("name").value(t.name ? t.name : t.id);
    w.key("type").value("enum");
    w.key("values").begin_array();
    for (const auto &v : t.values) w.value(v);
    w.end_array();
    w.key("default").value(t.def);
    w.key("perLayer").value(t.per_layer);
    w.key("needsReset").value(t.needs_reset);
    w.key("backends").begin_object();
    w.key("cpu").begin_array();
    for (const auto &v : t.cpu) w.value(v);
    w.end_array();
    w.key("cuda").begin_array();
    for (const auto &v : t.cuda) w.value(v);
    w.end_array();
    w.end_object();
    w.key("spec").value(t.spec);
    w.key("description").value(t.description);
    w.end_object();
  }
  w.end_array();
  return w.str();
}

}  // namespace qw
