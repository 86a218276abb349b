// test_golden.cpp — the embedded model (models/tiny-qwen2-brown, bf16 safetensors) against what Hugging Face
// transformers computed in fp32 (test/fixtures/golden.json): top-20 logits at the last prompt position,
// and 32 greedy tokens. Skips (passes with a note) when the files are not in the checkout.
#include <fstream>
#include <sstream>

#include "json.hpp"
#include "testlib.hpp"

static bool read_file(const std::string &path, std::string *out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

// HF name -> GGUF name (qwen.h naming).
static std::string gguf_name(const std::string &hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  if (hf.compare(0, pre.size(), pre) != 0) return "";
  const size_t dot = hf.find('.', pre.size());
  const std::string layer = hf.substr(pre.size(), dot - pre.size()), rest = hf.substr(dot + 1);
  static const std::pair<const char *, const char *> map[] = {
      {"input_layernorm.weight", "attn_norm.weight"},     {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},       {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},       {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},       {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},  {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},            {"mlp.down_proj.weight", "ffn_down.weight"}};
  for (const auto &m : map)
    if (rest == m.first) return "blk." + layer + "." + m.second;
  return "";
}

int main() {
  // Run from cuda/ (make -C cuda test) or from the repository root.
  std::string root = "../";
  if (!std::ifstream(root + "models/tiny-qwen2-brown/config.json")) root = "./";
  const std::string dir = root + "models/tiny-qwen2-brown/";
  std::string st, cfg, golden;
  if (!read_file(dir + "model.safetensors", &st) || !read_file(dir + "config.json", &cfg) ||
      !read_file(root + "test/fixtures/golden.json", &golden)) {
    std::printf("test_golden: skipped (models/tiny-qwen2-brown or test/fixtures/golden.json not found)\n");
    return 0;
  }
  qw_engine *e;
  qw_model *m;
  qw_session *s;
  CHECK_OK(qw_engine_create("{}", &e));
  CHECK_OK(qw_model_create(e, cfg.c_str(), &m));
  uint64_t hlen;
  std::memcpy(&hlen, st.data(), 8);
  const qw::Json header = qw::parse_json_object(std::string(st.data() + 8, size_t(hlen)).c_str(), "safetensors header");
  const char *data = st.data() + 8 + hlen;
  int loaded = 0;
  for (const auto &kv : header.obj) {
    if (kv.first == "__metadata__") continue;
    const std::string name = gguf_name(kv.first);
    CHECK(!name.empty(), "unmapped tensor %s", kv.first.c_str());
    const qw::Json &shape = *kv.second.get("shape"), &off = *kv.second.get("data_offsets");
    CHECK(kv.second.get("dtype")->str == "BF16", "dtype of %s", kv.first.c_str());
    const int64_t ne0 = int64_t(shape.arr.back().num), ne1 = shape.arr.size() == 2 ? int64_t(shape.arr[0].num) : 1;
    const uint64_t a = uint64_t(off.arr[0].num), b = uint64_t(off.arr[1].num);
    CHECK_OK(qw_model_load_tensor(m, name.c_str(), QW_GGML_BF16, int32_t(shape.arr.size()), ne0, ne1, 1, 1, data + a, b - a));
    ++loaded;
  }
  CHECK_OK(qw_model_finalize(m));
  CHECK_OK(qw_session_create(m, "{\"max_context\":128}", &s));
  CHECK_OK(qw_session_set_toggle(s, "kvCache", "f32", -1));  // HF golden is fp32 end to end
  CHECK_OK(qw_session_set_logits_mode(s, 1));
  const qw::Json g = qw::parse_json_object(golden.c_str(), "golden.json");
  int n_prompts = 0;
  double worst = 0;
  for (const auto &p : g.get("prompts")->arr) {
    std::vector<int32_t> ids;
    for (const auto &v : p.get("ids")->arr) ids.push_back(int32_t(v.num));
    CHECK_OK(qw_session_reset(s, 0));
    int32_t tok = -1;
    CHECK_OK(qw_session_prefill(s, 0, ids.data(), int32_t(ids.size()), &tok));
    int32_t rows, V;
    CHECK_OK(qw_session_logits_shape(s, &rows, &V));
    std::vector<float> lg(size_t(rows) * size_t(V));
    CHECK_OK(qw_session_read_logits(s, lg.data(), int64_t(lg.size())));
    const auto &tid = p.get("top20_ids")->arr, &tlg = p.get("top20_logits")->arr;
    for (size_t i = 0; i < tid.size(); ++i) {
      const double err = std::fabs(double(lg[size_t(tid[i].num)]) - tlg[i].num);
      worst = std::max(worst, err);
      CHECK(err < 1e-3, "prompt %d top%zu logit %.6f vs HF %.6f", n_prompts, i, lg[size_t(tid[i].num)], tlg[i].num);
    }
    CHECK(tok == int32_t(p.get("argmax")->num), "argmax %d vs %d", tok, int(p.get("argmax")->num));
    // 32 greedy tokens
    std::vector<int32_t> gen{tok};
    for (int i = 1; i < 32; ++i) {
      const int32_t seq = 0, in = tok;
      CHECK_OK(qw_session_decode(s, 1, &seq, &in, &tok));
      gen.push_back(tok);
    }
    const auto &want = p.get("greedy32")->arr;
    int same = 0;
    for (size_t i = 0; i < want.size() && i < gen.size(); ++i) same += gen[i] == int32_t(want[i].num);
    CHECK(same == 32, "prompt %d: %d of 32 greedy tokens match HF", n_prompts, same);
    ++n_prompts;
  }
  std::printf("  %d tensors, %d prompts, worst top-20 logit error vs HF fp32 %.2e\n", loaded, n_prompts, worst);
  CHECK_OK(qw_session_destroy(s));
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  return finish("test_golden");
}
