// test_requant.cpp — the `weights` model option (src/opt/weights/requant.hpp): q8 / q4 / bf16 requantization
// (round trip, error bounds, exact products, group edges), the option's errors, per-layer overrides reaching
// exactly their layer, the output matrix (weights_layers "output": requantized on an untied model, left alone
// by default, refused on a tied one), the session toggle that reports it, and the CPU forward of a requantized
// model against the fp64 reference forward run on the same requantized weights.
#include <cfloat>

#include "convert.hpp"
#include "refmodel.hpp"
#include "requant.hpp"

namespace {

qw::NativeTensor f32_tensor(const std::string &name, int64_t rows, int64_t cols, const std::vector<float> &w) {
  qw::NativeTensor t;
  t.name = name;
  t.ggml_type = QW_GGML_F32;
  t.type = qw::NativeType::F32;
  t.rows = rows;
  t.cols = cols;
  t.data.resize(w.size() * 4);
  std::memcpy(t.data.data(), w.data(), t.data.size());
  return t;
}

std::vector<float> dequant(const qw::NativeTensor &t) {
  std::vector<float> y(size_t(t.rows * t.cols));
  qw::dequant_rows(y.data(), t, 0, t.rows);
  return y;
}

int sig_bits(float s) {  // significant bits of a positive normal float
  uint32_t u;
  std::memcpy(&u, &s, 4);
  uint32_t m = (u & 0x7FFFFF) | 0x800000;
  int n = 24;
  while (n > 1 && !(m & 1)) {
    m >>= 1;
    --n;
  }
  return n;
}

// Random rows with features that stress the formats: outliers, an all-zero group, an all-positive group,
// a constant group, tiny values.
std::vector<float> tricky(Rng &r, int64_t rows, int64_t cols) {
  std::vector<float> w(size_t(rows * cols));
  for (auto &x : w) x = 0.05f * r.normal();
  for (int64_t i = 0; i < rows * cols; i += 97) w[size_t(i)] *= 40.0f;  // outliers
  if (cols >= 256) {
    for (int64_t c = 0; c < 128; ++c) w[size_t(c)] = 0.0f;                        // row 0, group 0: zeros
    for (int64_t c = 128; c < 256; ++c) w[size_t(c)] = std::fabs(w[size_t(c)]);  // row 0, group 1: >= 0
  }
  if (rows > 1 && cols >= 128) {
    for (int64_t c = 0; c < 128; ++c) w[size_t(cols + c)] = 0.3f;         // row 1, group 0: constant
    for (int64_t c = 128; c < cols; ++c) w[size_t(cols + c)] *= 1e-30f;  // row 1: tiny values
  }
  return w;
}

void check_q(const char *label, const qw::NativeTensor &src, const qw::NativeTensor &q, bool asym) {
  const std::vector<float> w = dequant(src), y = dequant(q);
  CHECK(q.group == 128 && q.type == (asym ? qw::NativeType::W4 : qw::NativeType::W8), "%s: type/group", label);
  const int64_t gpr = q.cols / 128;
  CHECK(int64_t(q.scale.size()) == q.rows * gpr && q.offset.size() == q.scale.size(), "%s: scale/offset sizes", label);
  double worst = 0;
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t g = 0; g < gpr; ++g) {
      const float s = q.scale[size_t(r * gpr + g)], o = q.offset[size_t(r * gpr + g)];
      CHECK(s == 0.0f || (s >= FLT_MIN && sig_bits(s) <= 16), "%s: scale %g not 16-bit normal", label, double(s));
      if (!asym) CHECK(o == 0.0f && std::signbit(o), "%s: q8 offset must be -0", label);
      const double z = s > 0 ? -double(o) / double(s) : 0.0;
      CHECK(z == std::floor(z) && z >= 0 && z <= 15, "%s: zero point %g not an integer in [0, 15]", label, z);
      for (int64_t c = g * 128; c < (g + 1) * 128; ++c) {
        const size_t i = size_t(r * q.cols + c);
        int code;
        if (asym) {
          const uint8_t b = q.data[i / 2];
          code = (i & 1) ? b >> 4 : b & 0xF;
        } else {
          code = int8_t(q.data[i]);
          CHECK(code >= -127 && code <= 127, "%s: q8 code %d", label, code);
        }
        // w_hat = s * (q - z) exactly (the products are exact: 16-bit scales)
        CHECK(double(y[i]) == double(s) * (double(code) - z), "%s: w_hat not exact at %zu", label, i);
        const double err = std::fabs(double(w[i]) - double(y[i]));
        CHECK(err <= double(s) * 0.5 * (1 + 1e-9), "%s: |w - w_hat| = %g > s/2 = %g at (%lld, %lld)", label, err,
              double(s) / 2, (long long)r, (long long)c);
        if (s > 0) worst = std::max(worst, err / double(s));
      }
    }
  std::printf("  %-34s ok (max |w - w_hat| / s = %.4f)\n", label, worst);
}

void test_formats() {
  Rng r(7);
  CHECK(qw::round_up_sig16(1.0) == 1.0 && qw::round_up_sig16(1.0 + 1e-9) == 1.0 + 1.0 / 32768,
        "round_up_sig16 rounds up to 16 bits");
  CHECK(qw::round_half_away(2.5) == 3 && qw::round_half_away(-2.5) == -3 && qw::round_half_away(-0.4) == 0,
        "round_half_away");
  const std::vector<float> w = tricky(r, 6, 384);
  const qw::NativeTensor src = f32_tensor("blk.0.attn_q.weight", 6, 384, w);
  check_q("q8 from f32 (tricky groups)", src, qw::requant_q8(src), false);
  check_q("q4 from f32 (tricky groups)", src, qw::requant_q4(src), true);
  // zero group -> zero scale and zero weights; constant group is represented exactly by q4
  const qw::NativeTensor q4 = qw::requant_q4(src), q8 = qw::requant_q8(src);
  CHECK(q4.scale[0] == 0.0f && q8.scale[0] == 0.0f, "an all-zero group has scale 0");
  const std::vector<float> y4 = dequant(q4);
  CHECK(std::fabs(y4[384] - 0.3f) <= q4.scale[3] / 2, "constant group within s/2");
  // bf16: round to nearest even of the exact values
  const qw::NativeTensor b = qw::requant_bf16(src);
  const std::vector<float> yb = dequant(b);
  bool same = b.type == qw::NativeType::BF16;
  for (size_t i = 0; i < w.size(); ++i) same = same && yb[i] == qw::bf16_to_float(qw::float_to_bf16(w[i]));
  CHECK(same, "bf16 requant = float_to_bf16 of every element");
  // any source type: GGUF Q4_K and Q6_K converted exactly first, then requantized
  for (int32_t t : {QW_GGML_Q4_K, QW_GGML_Q6_K, QW_GGML_BF16, QW_GGML_F16}) {
    const std::vector<uint8_t> raw = random_ggml(r, t, 4 * 512, 0.05f);
    const qw::NativeTensor nt = qw::convert_tensor("blk.1.ffn_down.weight", t, 4, 512, raw.data(), false);
    check_q((std::string("q8 from ggml type ") + std::to_string(t)).c_str(), nt, qw::requant_q8(nt), false);
    check_q((std::string("q4 from ggml type ") + std::to_string(t)).c_str(), nt, qw::requant_q4(nt), true);
  }
  // q8 of a q8 (idempotent: the codes already sit on the grid)
  const qw::NativeTensor qq = qw::requant_q8(q8);
  CHECK(dequant(qq) == dequant(q8), "q8 of a q8 tensor gives the same weights");
  // group edges: cols not a multiple of 128 fail with the tensor's name and the remedy
  for (int64_t cols : {64, 96, 192, 320}) {
    const qw::NativeTensor e = f32_tensor("blk.2.attn_k.weight", 2, cols, std::vector<float>(size_t(2 * cols), 0.1f));
    for (int k = 0; k < 2; ++k) {
      try {
        if (k == 0) (void)qw::requant_q8(e);
        else (void)qw::requant_q4(e);
        CHECK(false, "cols %lld: no error", (long long)cols);
      } catch (const qw::Error &x) {
        const std::string m = x.what();
        CHECK(x.status == QW_ERR_SHAPE && m.find("blk.2.attn_k.weight") != std::string::npos &&
                  m.find("multiple of the group size 128") != std::string::npos && m.find("weights_layers") != std::string::npos,
              "cols %lld: message: %s", (long long)cols, m.c_str());
      }
    }
  }
}

// A config whose matrices all have ne0 in multiples of 128 (q8/q4 groups).
RefConfig cfg128(int L, int nH, int nKV, int d, bool tied = true) {
  RefConfig c;
  c.H = 128;
  c.F = 256;
  c.L = L;
  c.nH = nH;
  c.nKV = nKV;
  c.d = d;
  c.tied = tied;
  return c;
}

std::string with_weights(const RefConfig &c, const std::string &extra) {
  std::string j = c.json();
  return j.substr(0, j.size() - 1) + "," + extra + "}";
}

void test_option_errors() {
  const RefConfig cfg = cfg128(4, 2, 1, 64);
  qw_engine *e = nullptr;
  CHECK_OK(qw_engine_create("{\"threads\":1}", &e));
  struct Bad {
    const char *extra, *want;
  } bad[] = {
      {"\"weights\":\"q5\"", "weights = \"q5\" is not a weight format (accepted: as-loaded, bf16, q8, q4)"},
      {"\"weights\":8", "weights = a non-string value is not a weight format"},
      {"\"weights_layers\":{\"4\":\"bf16\"}", "weights_layers key \"4\" is not a layer of this model (0..3)"},
      {"\"weights_layers\":{\"-1\":\"bf16\"}", "key \"-1\" is not a layer"},
      {"\"weights_layers\":{\"01\":\"bf16\"}", "key \"01\" is not a layer"},
      {"\"weights_layers\":{\"x\":\"bf16\"}", "key \"x\" is not a layer"},
      {"\"weights_layers\":{\"1\":\"int3\"}", "weights_layers[\"1\"] = \"int3\" is not a weight format"},
      {"\"weights_layers\":[\"bf16\"]", "weights_layers must be an object"},
      // a bad key names both kinds of key it accepts
      {"\"weights_layers\":{\"lm_head\":\"q8\"}", "key \"lm_head\" is not a layer of this model (0..3) nor \"output\""},
      {"\"weights_layers\":{\"output\":\"q3\"}", "weights_layers[\"output\"] = \"q3\" is not a weight format"},
      // cfg is tied: its lm_head is the embedding, which the option must not change
      {"\"weights_layers\":{\"output\":\"q8\"}", "ties its lm_head to the token embedding"},
      {"\"weights\":\"q4\",\"weights_layers\":{\"output\":\"bf16\"}", "drop the \"output\" key"},
  };
  for (const auto &b : bad) {
    qw_model *m = nullptr;
    CHECK_ST(qw_model_create(e, with_weights(cfg, b.extra).c_str(), &m), QW_ERR_INVALID_ARGUMENT);
    CHECK(m == nullptr && std::string(qw_last_error()).find(b.want) != std::string::npos, "%s -> %s", b.extra, qw_last_error());
  }
  // q8 on a model whose ne0 is not a multiple of 128: the load of the first such projection fails clearly
  RefConfig odd = cfg;
  odd.H = 96;
  odd.nH = 2;
  odd.d = 48;
  const RefModel ref(odd, 5, [](const std::string &, int64_t) { return QW_GGML_F32; });
  qw_model *m = nullptr;
  CHECK_OK(qw_model_create(e, with_weights(odd, "\"weights\":\"q8\"").c_str(), &m));
  CHECK_ST(ref.load(m), QW_ERR_SHAPE);
  CHECK(std::string(qw_last_error()).find("blk.0.attn_q.weight: weights = q8 needs ne0") != std::string::npos, "%s", qw_last_error());
  CHECK_OK(qw_model_destroy(m));
  // the same for the output matrix of an untied model: the remedy names the "output" key
  odd.tied = false;
  const RefModel odd_untied(odd, 5, [](const std::string &, int64_t) { return QW_GGML_F32; });
  m = nullptr;
  CHECK_OK(qw_model_create(e, with_weights(odd, "\"weights_layers\":{\"output\":\"q4\"}").c_str(), &m));
  CHECK_ST(odd_untied.load(m), QW_ERR_SHAPE);
  const std::string msg = qw_last_error();
  CHECK(msg.find("output.weight: weights = q4 needs ne0") != std::string::npos &&
            msg.find("keep the output as-loaded or bf16 (weights_layers \"output\")") != std::string::npos,
        "%s", msg.c_str());
  CHECK_OK(qw_model_destroy(m));
  // a tied model may name the output as-loaded (what it is anyway)
  m = nullptr;
  CHECK_OK(qw_model_create(e, with_weights(cfg, "\"weights_layers\":{\"output\":\"as-loaded\"}").c_str(), &m));
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  std::printf("  %-34s ok\n", "option errors");
}

struct Loaded {
  qw_engine *e = nullptr;
  qw_model *m = nullptr;
  qw_session *s = nullptr;
  Loaded(const RefModel &ref, const std::string &cfg_json) {
    CHECK_OK(qw_engine_create("{\"threads\":2}", &e));
    CHECK_OK(qw_model_create(e, cfg_json.c_str(), &m));
    CHECK_OK(ref.load(m));
    CHECK_OK(qw_session_create(m, "{\"max_batch\":1,\"max_context\":64}", &s));
  }
  ~Loaded() {
    CHECK_OK(qw_session_destroy(s));
    CHECK_OK(qw_model_destroy(m));
    CHECK_OK(qw_engine_destroy(e));
  }
  std::string info() {
    uint64_t n = 0;
    CHECK_OK(qw_model_info_json(m, nullptr, 0, &n));
    std::string out(size_t(n) + 1, '\0');
    CHECK_OK(qw_model_info_json(m, &out[0], n + 1, nullptr));
    out.resize(size_t(n));
    return out;
  }
  std::string toggles() {
    char buf[4096];
    CHECK_OK(qw_session_toggles_json(s, buf, sizeof buf, nullptr));
    return buf;
  }
};

// The native type the model info reports for a tensor ("?" when absent).
std::string native_of(const std::string &info, const std::string &name) {
  const size_t at = info.find("\"name\":\"" + name + "\"");
  if (at == std::string::npos) return "?";
  const size_t n = info.find("\"native\":\"", at) + 10;
  return info.substr(n, info.find('"', n) - n);
}

struct LogitErr {
  double prefill = 0, decode = 0, moved = 0;  // vs want: prefill / worst decode step; moved: want vs `before`
};

// Logits of `run` (prefill of 9 rows: the GEMM kernels, then 3 decode steps: the GEMV kernels) against the fp64
// forward of want_model; moved = how far want_model's logits are from before_model's (what the plan changed).
LogitErr compare_logits(Loaded &run, const RefModel &want_model, const RefModel &before_model, int32_t vocab) {
  CHECK_OK(qw_session_set_toggle(run.s, "kvCache", "f32", -1));
  Rng r(3);
  std::vector<int32_t> toks(12);
  for (auto &t : toks) t = int32_t(r.next() % uint64_t(vocab));
  const std::vector<double> want = want_model.forward(toks), before = before_model.forward(toks);
  CHECK_OK(qw_session_set_logits_mode(run.s, 2));
  int32_t next = -1;
  CHECK_OK(qw_session_prefill(run.s, 0, toks.data(), 9, &next));
  int32_t rows = 0, V = 0;
  CHECK_OK(qw_session_logits_shape(run.s, &rows, &V));
  std::vector<float> got(size_t(rows) * size_t(V));
  CHECK_OK(qw_session_read_logits(run.s, got.data(), int64_t(got.size())));
  LogitErr out;
  out.prefill = rel_err(got, want, got.size());
  out.moved = rel_err(before, want, before.size());
  for (int i = 9; i < 12; ++i) {
    const int32_t seq = 0;
    CHECK_OK(qw_session_decode(run.s, 1, &seq, &toks[size_t(i)], &next));
    CHECK_OK(qw_session_read_logits(run.s, got.data(), int64_t(V)));
    out.decode = std::max(out.decode, rel_err(got, &want[size_t(i) * size_t(V)], size_t(V)));
  }
  return out;
}

// The fp64 reference with every projection (and the output, when the plan says) replaced by what the plan
// makes of it.
RefModel requantized(RefModel ref, const qw::WeightPlan &plan) {
  for (auto &kv : ref.t) {
    RefTensor &x = kv.second;
    if (x.vector) continue;
    qw::NativeTensor nt = qw::convert_tensor(kv.first, x.type, x.ne1, x.ne0, x.raw.data(), false);
    qw::apply_weight_plan(plan, kv.first, nt);
    const std::vector<float> y = dequant(nt);
    x.w.assign(y.begin(), y.end());
  }
  return ref;
}

void test_model() {
  const RefConfig cfg = cfg128(3, 4, 2, 32, false);
  const RefModel ref(cfg, 11, [](const std::string &, int64_t) { return QW_GGML_BF16; });
  const std::string opt = "\"weights\":\"q4\",\"weights_layers\":{\"1\":\"bf16\",\"2\":\"q8\"}";
  Loaded run(ref, with_weights(cfg, opt));
  // per-layer override reaches exactly its layer; embeddings, output (untied, not named), norms stay as loaded
  const std::string info = run.info();
  for (const char *p : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
    const std::string l0 = native_of(info, std::string("blk.0.") + p + ".weight");
    CHECK(l0 == "w4", "layer 0 %s: %s", p, l0.c_str());
    CHECK(native_of(info, std::string("blk.1.") + p + ".weight") == "bf16", "layer 1 %s", p);
    CHECK(native_of(info, std::string("blk.2.") + p + ".weight") == "w8", "layer 2 %s", p);
  }
  CHECK(native_of(info, "token_embd.weight") == "bf16" && native_of(info, "output.weight") == "bf16" &&
            native_of(info, "blk.0.attn_norm.weight") == "f32",
        "embeddings / output / norms stay as loaded");
  CHECK(info.find("\"weights\":[\"q4\",\"bf16\",\"q8\"]") != std::string::npos, "model info weights: %s", info.c_str());
  CHECK(info.find("\"weights_output\":\"as-loaded\"") != std::string::npos, "model info weights_output: %s", info.c_str());
  // the session toggle reports the plan and refuses changes (a model option)
  CHECK(run.toggles().find("\"weights\":[\"q4\",\"bf16\",\"q8\"]") != std::string::npos, "toggles: %s", run.toggles().c_str());
  CHECK_OK(qw_session_set_toggle(run.s, "weights", "bf16", 1));  // unchanged: accepted
  CHECK_ST(qw_session_set_toggle(run.s, "weights", "q8", 0), QW_ERR_STATE);
  CHECK(std::string(qw_last_error()).find("chosen when the model loads") != std::string::npos, "%s", qw_last_error());
  CHECK_ST(qw_session_set_toggle(run.s, "weights", "q4", -1), QW_ERR_STATE);
  CHECK_ST(qw_session_set_toggle(run.s, "weights", "q3", -1), QW_ERR_INVALID_ARGUMENT);
  CHECK_ST(qw_session_set_toggle(run.s, "weights", "q4", 3), QW_ERR_INVALID_ARGUMENT);
  CHECK(run.toggles().find("\"weights\":[\"q4\",\"bf16\",\"q8\"]") != std::string::npos, "unchanged after refusals");
  // logits of the requantized model = the fp64 forward of the same requantized weights (fp32 rounding only);
  // decode runs the GEMV kernels (AVX-512 W8 g128 on layer 2)
  const RefModel want_model = requantized(ref, qw::parse_weight_plan(with_weights(cfg, opt).c_str(), cfg.L, cfg.tied));
  const LogitErr le = compare_logits(run, want_model, ref, cfg.V);
  CHECK(le.prefill < 2e-5, "prefill logits vs requantized fp64 reference: rel err %.3g", le.prefill);
  CHECK(le.decode < 2e-5, "decode logits vs requantized fp64 reference: rel err %.3g", le.decode);
  CHECK(le.moved > 1e-3, "requantization changed the logits (rel %.3g): the test would not see a missing requant", le.moved);
  std::printf("  %-34s ok (prefill rel err %.2e; requant moved logits by %.2e)\n", "q4/bf16/q8 per-layer model", le.prefill,
              le.moved);
}

// weights_layers "output" on an untied model: output.weight (and nothing else beyond the layers' plan) takes the
// format; the toggle still reports the layers only, the model info says it; the forward reads the requantized
// lm_head (GEMM at prefill, GEMV at decode) = the fp64 forward of the same weights.
void test_output() {
  const RefConfig cfg = cfg128(2, 4, 2, 32, false);
  const RefModel ref(cfg, 13, [](const std::string &, int64_t) { return QW_GGML_BF16; });
  struct Case {
    const char *opt, *native, *toggle, *out;
  } cases[] = {
      {"\"weights_layers\":{\"output\":\"q8\"}", "w8", "\"weights\":\"as-loaded\"", "q8"},
      {"\"weights\":\"q8\",\"weights_layers\":{\"0\":\"bf16\",\"output\":\"q4\"}", "w4",
       "\"weights\":[\"bf16\",\"q8\"]", "q4"},
  };
  for (const Case &c : cases) {
    Loaded run(ref, with_weights(cfg, c.opt));
    const std::string info = run.info();
    CHECK(native_of(info, "output.weight") == c.native, "%s: output.weight is %s", c.opt, native_of(info, "output.weight").c_str());
    CHECK(native_of(info, "token_embd.weight") == "bf16" && native_of(info, "output_norm.weight") == "f32",
          "%s: the embedding and the final norm stay as loaded", c.opt);
    CHECK(info.find(std::string("\"weights_output\":\"") + c.out + "\"") != std::string::npos, "%s: %s", c.opt, info.c_str());
    CHECK(run.toggles().find(c.toggle) != std::string::npos, "%s: toggles %s", c.opt, run.toggles().c_str());
    const qw::WeightPlan plan = qw::parse_weight_plan(with_weights(cfg, c.opt).c_str(), cfg.L, cfg.tied);
    qw::WeightPlan layers_only = plan;
    layers_only.output = qw::WeightFormat::AsLoaded;
    // moved: the output's own share of the change (same layers, lm_head as loaded against requantized)
    const LogitErr le = compare_logits(run, requantized(ref, plan), requantized(ref, layers_only), cfg.V);
    CHECK(le.prefill < 2e-5 && le.decode < 2e-5, "%s: rel err prefill %.3g decode %.3g", c.opt, le.prefill, le.decode);
    CHECK(le.moved > 1e-4, "%s: requantizing the output moved the logits by only %.3g", c.opt, le.moved);
    std::printf("  %-34s ok (rel err %.2e / %.2e; the output moved logits by %.2e)\n",
                (std::string("output = ") + c.out).c_str(), le.prefill, le.decode, le.moved);
  }
}

// A matrix large enough to be requantized on several threads (parallel_rows: >= 256 K elements a thread) gives the
// bytes of requantizing each row on its own (one row: one thread), whatever the machine's core count.
void test_threads_same_bytes() {
  Rng r(11);
  const int64_t rows = 1031, cols = 1024;  // 1.06 M elements: up to 4 threads; 1031 rows: uneven ranges
  const qw::NativeTensor src = f32_tensor("blk.0.ffn_up.weight", rows, cols, tricky(r, rows, cols));
  const qw::NativeTensor q4 = qw::requant_q4(src), q8 = qw::requant_q8(src), b = qw::requant_bf16(src);
  const size_t wb = size_t(cols) * 4, gpr = size_t(cols / 128);
  bool same4 = true, same8 = true, sameb = true;
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<float> row(static_cast<size_t>(cols));
    std::memcpy(row.data(), src.data.data() + size_t(i) * wb, wb);
    const qw::NativeTensor one = f32_tensor(src.name, 1, cols, row);
    const qw::NativeTensor o4 = qw::requant_q4(one), o8 = qw::requant_q8(one), ob = qw::requant_bf16(one);
    same4 = same4 && std::memcmp(o4.data.data(), q4.data.data() + size_t(i * cols / 2), size_t(cols / 2)) == 0 &&
            std::memcmp(o4.scale.data(), q4.scale.data() + size_t(i) * gpr, gpr * 4) == 0 &&
            std::memcmp(o4.offset.data(), q4.offset.data() + size_t(i) * gpr, gpr * 4) == 0;
    same8 = same8 && std::memcmp(o8.data.data(), q8.data.data() + size_t(i * cols), size_t(cols)) == 0 &&
            std::memcmp(o8.scale.data(), q8.scale.data() + size_t(i) * gpr, gpr * 4) == 0;
    sameb = sameb && std::memcmp(ob.data.data(), b.data.data() + size_t(i * cols * 2), size_t(cols * 2)) == 0;
  }
  CHECK(same4 && same8 && sameb, "threaded requantization = row by row (q4 %d, q8 %d, bf16 %d)", same4, same8, sameb);
  std::printf("  %-34s ok (%lld x %lld)\n", "threaded = row by row", (long long)rows, (long long)cols);
}

}  // namespace

int main() {
  test_formats();
  test_threads_same_bytes();
  test_option_errors();
  test_model();
  test_output();
  return finish("test_requant");
}
