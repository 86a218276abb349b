// test_api.cpp — API misuse returns statuses (never crashes) and leaves state unchanged; JSON protocols.
#include "json.hpp"
#include "refmodel.hpp"

// qw_catalog_json: the shape of qwen.h, names equal to the per-id calls, toggles equal to the registry.
static qw::Json check_catalog(const std::string &registry) {
  uint64_t len = 0;
  CHECK_OK(qw_catalog_json(nullptr, 0, &len));
  std::vector<char> buf(size_t(len) + 1);
  CHECK_OK(qw_catalog_json(buf.data(), buf.size(), &len));
  CHECK(std::strlen(buf.data()) == len, "catalog copied whole");
  CHECK_ST(qw_catalog_json(nullptr, 3, &len), QW_ERR_INVALID_ARGUMENT);
  const std::string text(buf.data());
  CHECK(text.find(",\"toggles\":" + registry + "}") != std::string::npos, "catalog toggles = registry");
  const qw::Json c = qw::parse_json_object(text.c_str(), "catalog");
  CHECK(c.obj.size() == 5 && c.obj[0].first == "abi" && c.obj[1].first == "ops" && c.obj[2].first == "hooks" &&
            c.obj[3].first == "profilingModes" && c.obj[4].first == "toggles",
        "catalog keys in order");
  CHECK(c.get("abi")->num == QW_ABI_VERSION, "catalog abi");
  const qw::Json &ops = *c.get("ops");
  CHECK(ops.arr.size() == QW_OP_COUNT, "catalog ops %zu", ops.arr.size());
  for (size_t i = 0; i < ops.arr.size(); ++i) {
    const qw::Json &o = ops.arr[i];
    CHECK(o.get("id")->num == double(i) && o.get("name")->str == qw_op_name(int32_t(i)), "op %zu", i);
    CHECK(o.get("cost")->kind == qw::Json::String && o.get("cost")->str.size() > 10, "op %zu cost text", i);
  }
  const qw::Json &pl = *c.get("hooks")->get("perLayer"), &gl = *c.get("hooks")->get("global");
  CHECK(pl.arr.size() == 10 && pl.arr[0].str == "hook_resid_pre" && pl.arr[1].str == "attn.hook_q" &&
            pl.arr[9].str == "hook_resid_post",
        "per-layer hooks");
  CHECK(gl.arr.size() == 2 && gl.arr[0].str == "hook_logits" && gl.arr[1].str == "ln_final.hook_normalized", "global hooks");
  const qw::Json &pm = *c.get("profilingModes");
  CHECK(pm.arr.size() == QW_PROFILING_COUNT, "profiling modes");
  for (size_t i = 0; i < pm.arr.size(); ++i)
    CHECK(pm.arr[i].get("id")->num == double(i) && pm.arr[i].get("name")->str == qw_profiling_mode_name(int32_t(i)) &&
              pm.arr[i].get("description")->str.size() > 10,
          "profiling mode %zu", i);
  return c;
}

int main() {
  char buf[8192];
  uint64_t len = 0;
  // library
  CHECK(qw_abi_version() == QW_ABI_VERSION, "abi");
  CHECK(std::strstr(qw_build_info(), "\"backend\":\"cpu\"") != nullptr, "build info %s", qw_build_info());
  CHECK_OK(qw_toggle_registry_json(nullptr, 0, &len));
  CHECK(len > 100, "registry size");
  CHECK_OK(qw_toggle_registry_json(buf, 8, &len));
  CHECK(std::strlen(buf) == 7, "truncated copy keeps NUL");
  std::vector<char> reg(size_t(len) + 1);
  CHECK_OK(qw_toggle_registry_json(reg.data(), reg.size(), &len));
  CHECK(std::strstr(reg.data(), "\"id\":\"kivi4\"") == nullptr && std::strstr(reg.data(), "\"kivi4\"") != nullptr,
        "registry lists unimplemented values");
  CHECK_ST(qw_toggle_registry_json(nullptr, 5, &len), QW_ERR_INVALID_ARGUMENT);
  const qw::Json catalog = check_catalog(reg.data());
  CHECK(std::string(qw_op_name(QW_OP_GATE_UP)) == "gate_up" && std::string(qw_op_name(99)) == "", "op names");
  CHECK(std::string(qw_kernel_name(-1)) == "" && std::string(qw_kernel_name(1 << 30)) == "", "kernel names");

  // engine
  qw_engine *e = nullptr;
  CHECK_ST(qw_engine_create("{\"threads\":", &e), QW_ERR_INVALID_ARGUMENT);
  CHECK(std::strstr(qw_last_error(), "invalid JSON") != nullptr, "json error message: %s", qw_last_error());
  CHECK_ST(qw_engine_create("{\"thread\":2}", &e), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_engine_create("{\"threads\":-1}", &e), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_engine_create("[1]", &e), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_engine_create("{}", nullptr), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_engine_create(nullptr, &e));
  CHECK_OK(qw_engine_info_json(e, buf, sizeof buf, &len));
  CHECK(std::strstr(buf, "\"threads\"") != nullptr, "engine info %s", buf);
  CHECK_ST(qw_engine_info_json(nullptr, buf, sizeof buf, &len), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_engine_destroy(nullptr), QW_ERR_INVALID_ARGUMENT);

  // model config
  RefConfig cfg;
  qw_model *m = nullptr;
  CHECK_ST(qw_model_create(e, "{}", &m), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_model_create(e, nullptr, &m), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_model_create(nullptr, cfg.json().c_str(), &m), QW_ERR_INVALID_ARGUMENT);
  {
    RefConfig bad = cfg;
    bad.nKV = 3;  // 4 heads not a multiple of 3
    CHECK_ST(qw_model_create(e, bad.json().c_str(), &m), QW_ERR_INVALID_ARGUMENT);
    std::string j = cfg.json();
    j.replace(j.find("\"rms_norm_eps\""), 14, "\"rms_norm_epz\"");
    CHECK_ST(qw_model_create(e, j.c_str(), &m), QW_ERR_INVALID_ARGUMENT);
    std::string nan = cfg.json();
    nan.replace(nan.find("\"hidden_size\":64"), 16, "\"hidden_size\":6.5");
    CHECK_ST(qw_model_create(e, nan.c_str(), &m), QW_ERR_INVALID_ARGUMENT);
  }
  const RefModel ref(cfg, 11, [](const std::string &, int64_t) { return QW_GGML_F32; });
  CHECK_OK(qw_model_create(e, cfg.json().c_str(), &m));
  qw_session *s = nullptr;
  CHECK_ST(qw_session_create(m, "{}", &s), QW_ERR_STATE);  // not finalized
  const RefTensor &emb = ref.t.at("token_embd.weight");
  CHECK_ST(qw_model_load_tensor(m, "blk.9.attn_q.weight", 0, 2, 64, 64, 1, 1, emb.raw.data(), 0), QW_ERR_NOT_FOUND);
  CHECK(std::strstr(qw_last_error(), "blk.9.attn_q.weight") != nullptr, "names the tensor");
  CHECK_ST(qw_model_load_tensor(m, "output.weight", 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 96, 64, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_SHAPE);
  CHECK(std::strstr(qw_last_error(), "[64, 96]") != nullptr && std::strstr(qw_last_error(), "[96, 64]") != nullptr,
        "shape message: %s", qw_last_error());
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size() - 1), QW_ERR_SHAPE);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 77, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_SHAPE);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", QW_GGML_Q4_K, 2, 64, 96, 1, 1, emb.raw.data(), 100), QW_ERR_SHAPE);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 64, 96, 1, 1, nullptr, emb.raw.size()), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 7, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_SHAPE);
  CHECK_ST(qw_model_load_tensor(m, nullptr, 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()));
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()),
           QW_ERR_INVALID_ARGUMENT);  // duplicate
  CHECK_ST(qw_model_finalize(m), QW_ERR_NOT_FOUND);  // missing tensors
  CHECK(std::strstr(qw_last_error(), "missing") != nullptr, "missing message: %s", qw_last_error());
  for (const auto &n : ref.order) {
    if (n == "token_embd.weight") continue;
    const RefTensor &x = ref.t.at(n);
    CHECK_OK(qw_model_load_tensor(m, n.c_str(), x.type, x.vector ? 1 : 2, x.ne0, x.vector ? 1 : x.ne1, 1, 1, x.raw.data(),
                                  x.raw.size()));
  }
  CHECK_OK(qw_model_finalize(m));
  CHECK_ST(qw_model_finalize(m), QW_ERR_STATE);
  CHECK_ST(qw_model_load_tensor(m, "token_embd.weight", 0, 2, 64, 96, 1, 1, emb.raw.data(), emb.raw.size()), QW_ERR_STATE);
  CHECK_OK(qw_model_info_json(m, nullptr, 0, &len));
  std::vector<char> info(size_t(len) + 1);
  CHECK_OK(qw_model_info_json(m, info.data(), info.size(), &len));
  CHECK(std::strstr(info.data(), "\"native\":\"f32\"") != nullptr, "model info");

  // session options
  CHECK_ST(qw_session_create(m, "{\"max_batch\":0}", &s), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_create(m, "{\"max_context\":8,\"max_prefill\":9}", &s), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_create(m, "{\"bogus\":1}", &s), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_create(m, "{\"max_batch\":4096,\"max_context\":1048576,\"max_prefill\":1}", &s),
           QW_ERR_OUT_OF_MEMORY);  // 4096 x 1M x 2 layers x 32 floats: refused, not attempted
  CHECK_OK(qw_session_create(m, "{\"max_batch\":2,\"max_context\":8,\"max_prefill\":4}", &s));
  CHECK_ST(qw_engine_destroy(e), QW_ERR_STATE);
  CHECK_ST(qw_model_destroy(m), QW_ERR_STATE);

  // prefill / decode misuse
  int32_t tok = -1, toks[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_ST(qw_session_prefill(s, 0, toks, 5, &tok), QW_ERR_INVALID_ARGUMENT);  // > max_prefill
  CHECK_ST(qw_session_prefill(s, 0, toks, 0, &tok), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_prefill(s, 2, toks, 1, &tok), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_prefill(s, -1, toks, 1, &tok), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_prefill(s, 0, nullptr, 1, &tok), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_prefill(s, 0, toks, 1, nullptr), QW_ERR_INVALID_ARGUMENT);
  const int32_t bad_tok[2] = {1, 96};
  CHECK_ST(qw_session_prefill(s, 0, bad_tok, 2, &tok), QW_ERR_INVALID_ARGUMENT);
  const int32_t neg_tok[1] = {-1};
  CHECK_ST(qw_session_prefill(s, 0, neg_tok, 1, &tok), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_prefill(s, 0, toks, 4, &tok));
  CHECK_OK(qw_session_prefill(s, 0, toks, 3, &tok));
  int32_t n = 0;
  CHECK_ST(qw_session_prefill(s, 0, toks, 2, &tok), QW_ERR_CONTEXT_OVERFLOW);
  CHECK_OK(qw_session_seq_len(s, 0, &n));
  CHECK(n == 7, "overflow leaves the length (%d)", n);
  const int32_t seqs_dup[2] = {1, 1}, seqs[2] = {0, 1}, two[2] = {3, 4};
  int32_t outs[2];
  CHECK_ST(qw_session_decode(s, 2, seqs_dup, two, outs), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_decode(s, 3, seqs, two, outs), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_decode(s, 0, seqs, two, outs), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_decode(s, 2, seqs, two, nullptr), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_decode(s, 2, seqs, two, outs));  // seq 0 reaches 8 = max_context
  CHECK_ST(qw_session_decode(s, 2, seqs, two, outs), QW_ERR_CONTEXT_OVERFLOW);
  CHECK_OK(qw_session_seq_len(s, 1, &n));
  CHECK(n == 1, "failed decode leaves seq 1 at 1 (%d)", n);
  CHECK_ST(qw_session_seq_len(s, 5, &n), QW_ERR_NOT_FOUND);
  CHECK_OK(qw_session_reset(s, 0));
  CHECK_OK(qw_session_seq_len(s, 0, &n));
  CHECK(n == 0, "reset");
  CHECK_ST(qw_session_reset(s, 7), QW_ERR_NOT_FOUND);

  // truncate (speculative rollback): misuse changes nothing; a truncated sequence continues exactly as one that
  // never held the dropped tokens (same sampled token, bitwise the same logits)
  CHECK_ST(qw_session_truncate(nullptr, 0, 0), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_truncate(s, 2, 0), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_truncate(s, -1, 0), QW_ERR_NOT_FOUND);
  CHECK_OK(qw_session_prefill(s, 0, toks, 4, &tok));
  CHECK_ST(qw_session_truncate(s, 0, 5), QW_ERR_INVALID_ARGUMENT);
  CHECK(std::strstr(qw_last_error(), "holds 4 tokens") != nullptr, "truncate message: %s", qw_last_error());
  CHECK_ST(qw_session_truncate(s, 0, -1), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_seq_len(s, 0, &n));
  CHECK(n == 4, "a refused truncate leaves the length (%d)", n);
  CHECK_OK(qw_session_truncate(s, 0, 4));  // no-op
  {
    const int32_t other[3] = {9, 10, 11};
    CHECK_OK(qw_session_set_logits_mode(s, 2));
    int32_t t_trunc = -1, t_fresh = -1;
    CHECK_OK(qw_session_truncate(s, 0, 2));
    CHECK_OK(qw_session_seq_len(s, 0, &n));
    CHECK(n == 2, "truncated to 2 (%d)", n);
    CHECK_OK(qw_session_prefill(s, 0, other, 3, &t_trunc));  // positions 2..4 overwrite the old rows 2..3
    int32_t rows = 0, vocab = 0;
    CHECK_OK(qw_session_logits_shape(s, &rows, &vocab));
    std::vector<float> a(size_t(rows) * size_t(vocab)), b(a.size());
    CHECK_OK(qw_session_read_logits(s, a.data(), int64_t(a.size())));
    CHECK_OK(qw_session_reset(s, 0));
    const int32_t full[5] = {toks[0], toks[1], other[0], other[1], other[2]};
    CHECK_OK(qw_session_prefill(s, 0, full, 2, &t_fresh));
    CHECK_OK(qw_session_prefill(s, 0, full + 2, 3, &t_fresh));
    CHECK_OK(qw_session_read_logits(s, b.data(), int64_t(b.size())));
    CHECK(t_trunc == t_fresh && std::memcmp(a.data(), b.data(), a.size() * 4) == 0,
          "truncate + prefill == fresh prefill (tokens %d vs %d)", t_trunc, t_fresh);
    // decode after a truncate continues at new_len
    CHECK_OK(qw_session_truncate(s, 0, 3));
    const int32_t one_seq[1] = {0}, one_tok[1] = {other[1]};
    int32_t one_out[1] = {-1};
    CHECK_OK(qw_session_decode(s, 1, one_seq, one_tok, one_out));
    CHECK_OK(qw_session_seq_len(s, 0, &n));
    CHECK(n == 4, "decode after truncate appends at 3 (%d)", n);
    CHECK_OK(qw_session_truncate(s, 0, 0));  // = reset
    CHECK_OK(qw_session_seq_len(s, 0, &n));
    CHECK(n == 0, "truncate to 0");
    CHECK_OK(qw_session_set_logits_mode(s, 0));
  }

  // sampling parameters
  CHECK_ST(qw_session_set_sampling(s, 0, NAN, 0, 1.0f, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 0, INFINITY, 0, 1.0f, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 0, 1.0f, 0, 0.0f, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 0, 1.0f, 0, 1.5f, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 0, 1.0f, 0, NAN, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 0, 101.0f, 0, 1.0f, 1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_sampling(s, 4, 1.0f, 0, 1.0f, 1), QW_ERR_NOT_FOUND);
  CHECK_OK(qw_session_set_sampling(s, -1, 0.7f, 5, 0.9f, 3));

  // toggles
  CHECK_ST(qw_session_set_toggle(s, "nope", "on", -1), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_set_toggle(s, "gqa", "sideways", -1), QW_ERR_INVALID_ARGUMENT);
  // tile (opt/tile): both values on the CPU; with no table, auto runs the fixed configuration
  CHECK_OK(qw_session_set_toggle(s, "tile", "auto", -1));
  CHECK_OK(qw_session_set_toggle(s, "tile", "fixed", -1));
  CHECK_ST(qw_session_tile_set(s, "{\"gemv.bf16:1x1\": \"rb3.c64.tall\"}"), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_tile_tune(s, "{\"reps\": 2}", nullptr, 0, nullptr), QW_ERR_INVALID_ARGUMENT);
  // the quantized caches need head_dim % 32 == 0 (this model's is 16): refused, the old cache stays
  CHECK_ST(qw_session_set_toggle(s, "kvCache", "kivi4", -1), QW_ERR_UNSUPPORTED);
  CHECK(std::strstr(qw_last_error(), "head_dim") != nullptr, "%s", qw_last_error());
  CHECK_OK(qw_session_set_toggle(s, "attention", "sage-int8", -1));  // the CPU's Sage reference arms
  CHECK_OK(qw_session_set_toggle(s, "attention", "flash-bf16", -1));
  CHECK_ST(qw_session_set_toggle(s, "graphs", "on", -1), QW_ERR_UNSUPPORTED);
  CHECK(std::strstr(qw_last_error(), "is not on the cpu backend") != nullptr, "%s", qw_last_error());  // CUDA has it
  CHECK_ST(qw_session_set_toggle(s, "kvCache", "f32", 0), QW_ERR_INVALID_ARGUMENT);  // not per-layer
  CHECK_ST(qw_session_set_toggle(s, "gqa", "broadcast", 2), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_toggle(s, nullptr, "x", -1), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_prefill(s, 1, toks, 2, &tok));
  CHECK_OK(qw_session_set_toggle(s, "kvCache", "f32", -1));
  CHECK_OK(qw_session_seq_len(s, 1, &n));
  CHECK(n == 0, "kvCache change resets sequences");
  CHECK_OK(qw_session_toggles_json(s, buf, sizeof buf, &len));
  CHECK(std::strstr(buf, "\"kvCache\":\"f32\"") && std::strstr(buf, "\"graphs\":\"off\""), "toggles %s", buf);

  // logits / records / captures misuse
  CHECK_ST(qw_session_set_logits_mode(s, 3), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_set_logits_mode(s, 1));
  CHECK_OK(qw_session_prefill(s, 0, toks, 3, &tok));
  float small[10];
  CHECK_ST(qw_session_read_logits(s, small, 10), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_read_logits(s, nullptr, 1000), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_profiling(s, QW_PROFILING_COUNT), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_profiling(s, -1), QW_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qw_profiling_mode_name(QW_PROFILING_KERNELS)) == "kernels" &&
            std::string(qw_profiling_mode_name(QW_PROFILING_EVENTS)) == "events" &&
            std::string(qw_profiling_mode_name(QW_PROFILING_OFF)) == "off" && qw_profiling_mode_name(QW_PROFILING_COUNT)[0] == 0,
        "profiling mode names");
  // On the CPU every mode is host timestamps around each op: both on-modes are accepted.
  CHECK_OK(qw_session_set_profiling(s, QW_PROFILING_KERNELS));
  CHECK_OK(qw_session_set_profiling(s, QW_PROFILING_EVENTS));
  CHECK_OK(qw_session_set_profiling(s, QW_PROFILING_OFF));
  int64_t got = 0;
  CHECK_ST(qw_session_read_records(s, nullptr, 5, &got), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_read_records(s, nullptr, -1, &got), QW_ERR_INVALID_ARGUMENT);
  CHECK_OK(qw_session_read_records(s, nullptr, 0, &got));
  CHECK_ST(qw_session_set_capture(s, "blocks.2.hook_resid_post"), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_set_capture(s, "blocks.0.hook_nope"), QW_ERR_NOT_FOUND);
  CHECK(std::strstr(qw_last_error(), "hook_nope") != nullptr, "hook message");
  CHECK_ST(qw_session_set_capture(s, "blocks.x.hook_resid_pre"), QW_ERR_NOT_FOUND);
  for (const auto &h : catalog.get("hooks")->get("perLayer")->arr)  // every catalog hook name is accepted
    CHECK_OK(qw_session_set_capture(s, ("blocks.1." + h.str).c_str()));
  for (const auto &h : catalog.get("hooks")->get("global")->arr) CHECK_OK(qw_session_set_capture(s, h.str.c_str()));
  CHECK_OK(qw_session_set_capture(s, " blocks.*.mlp.hook_post , hook_logits,"));
  CHECK_OK(qw_session_prefill(s, 0, toks, 2, &tok));
  CHECK_OK(qw_session_capture_count(s, &n));
  CHECK(n == 3, "captures %d", n);
  CHECK_ST(qw_session_capture_info(s, 3, buf, sizeof buf, &n, &n), QW_ERR_NOT_FOUND);
  CHECK_ST(qw_session_read_capture(s, 0, small, 10), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_read_capture(s, -1, small, 10), QW_ERR_NOT_FOUND);
  CHECK_OK(qw_session_set_capture(s, ""));
  CHECK_OK(qw_session_capture_count(s, &n));
  CHECK(n == 0, "capture off");

  // null handles everywhere
  CHECK_ST(qw_session_decode(nullptr, 1, seqs, two, outs), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_reset(nullptr, 0), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_toggles_json(nullptr, buf, 1, &len), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_logits_shape(nullptr, &n, &n), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_records_pending(nullptr, &got, &got), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_capture_count(nullptr, &n), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_model_info_json(nullptr, buf, 1, &len), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_destroy(nullptr), QW_ERR_INVALID_ARGUMENT);

  CHECK_OK(qw_session_destroy(s));
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  return finish("test_api");
}
