// test_parallel.cpp — toggle "parallel" (opt/parallel/): the sharding plan's checks and ranges, the exact slicers,
// the emulated all-reduce order, and the CPU emulation of tp2 / tp4 through the C ABI against tp1 and an fp64
// forward (tp_cpu.hpp). This is the CPU reference of the CUDA ranks (README, "Tensor parallelism").
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>

#include "convert.hpp"
#include "cost.hpp"
#include "refmodel.hpp"
#include "requant.hpp"
#include "tp_plan.hpp"

namespace {

qw::Config config(int V, int H, int F, int nH, int nKV, int d) {
  qw::Config c;
  c.vocab_size = V;
  c.hidden_size = H;
  c.intermediate_size = F;
  c.num_layers = 2;
  c.num_heads = nH;
  c.num_kv_heads = nKV;
  c.head_dim = d;
  return c;
}

// The message of the Error that f throws with status `want` ("" when it throws none or another).
template <class Fn>
std::string refusal(Fn &&f, int32_t want) {
  try {
    f();
  } catch (const qw::Error &e) {
    return e.status == want ? e.what() : std::string("wrong status: ") + e.what();
  }
  return "";
}
bool has(const std::string &s, const char *part) { return s.find(part) != std::string::npos; }

void test_plan() {
  // Qwen2.5-0.5B: 14 query heads, 2 KV heads -> tp2 only.
  const qw::Config q05 = config(151936, 896, 4864, 14, 2, 64);
  CHECK(qw::tp_plan(q05, 2).rank[1].kv_head0 == 1, "0.5B tp2");
  std::string m = refusal([&] { qw::tp_plan(q05, 4); }, QW_ERR_INVALID_ARGUMENT);
  CHECK(has(m, "parallel = tp4") && has(m, "2 KV heads") && has(m, "splits as tp1, tp2"), "0.5B tp4: %s", m.c_str());
  // Qwen2.5-7B: 4 KV heads -> up to tp4.
  const qw::Config q7 = config(152064, 3584, 18944, 28, 4, 128);
  CHECK(qw::tp_plan(q7, 4).rank[3].head0 == 21, "7B tp4 heads");
  m = refusal([&] { qw::tp_plan(q7, 8); }, QW_ERR_INVALID_ARGUMENT);
  CHECK(has(m, "4 KV heads") && has(m, "tp1, tp2, tp4 "), "7B tp8: %s", m.c_str());
  // Qwen2.5-32B (40 / 8 heads) and 72B (64 / 8): tp8.
  CHECK(qw::tp_plan(config(152064, 5120, 27648, 40, 8, 128), 8).rank[7].heads == 5, "32B tp8");
  const qw::TpPlan p72 = qw::tp_plan(config(152064, 8192, 29568, 64, 8, 128), 8);
  const qw::TpRank &k7 = p72.rank[7];
  CHECK(k7.head0 == 56 && k7.heads == 8 && k7.kv_head0 == 7 && k7.kv_heads == 1 && k7.ffn0 == 25872 &&
            k7.ffn == 3696 && k7.vocab0 == 133056 && k7.vocab == 19008 && p72.vocab_part == 19008,
        "72B tp8 rank 7 ranges");
  // the embedded model (4 query heads, 1 KV head) cannot be split
  m = refusal([&] { qw::tp_plan(config(8256, 256, 768, 4, 1, 64), 2); }, QW_ERR_INVALID_ARGUMENT);
  CHECK(has(m, "1 KV heads") && has(m, "splits as tp1 "), "tiny tp2: %s", m.c_str());
  m = refusal([&] { qw::tp_plan(config(96, 64, 90, 8, 4, 16), 4); }, QW_ERR_INVALID_ARGUMENT);
  CHECK(has(m, "intermediate size 90"), "F = 90 at tp4: %s", m.c_str());
  // an uneven vocabulary: P = ceil(97 / 4) = 25, the last rank 22 rows; the ranges tile [0, V)
  const qw::TpPlan pv = qw::tp_plan(config(97, 64, 128, 8, 4, 16), 4);
  CHECK(pv.vocab_part == 25 && pv.rank[3].vocab0 == 75 && pv.rank[3].vocab == 22, "uneven vocab");
  m = refusal([&] { qw::tp_plan(config(5, 64, 128, 8, 8, 16), 8); }, QW_ERR_INVALID_ARGUMENT);
  CHECK(has(m, "without vocab rows"), "vocab 5 at tp8: %s", m.c_str());
  // the model option
  CHECK(qw::parse_parallel("{}") == qw::Parallel::Tp1 && qw::parse_parallel("{\"parallel\":\"tp8\"}") == qw::Parallel::Tp8,
        "parse_parallel");
  for (const char *bad : {"{\"parallel\":\"tp3\"}", "{\"parallel\":2}", "{\"parallel\":\"TP2\"}"}) {
    m = refusal([&] { qw::parse_parallel(bad); }, QW_ERR_INVALID_ARGUMENT);
    CHECK(has(m, "tp1, tp2, tp4, tp8"), "%s: %s", bad, m.c_str());
  }
  // which split each tensor gets
  using S = qw::TpSplit;
  CHECK(qw::tp_split_of("blk.3.attn_q.weight") == S::OutRows && qw::tp_split_of("blk.3.ffn_up.weight") == S::OutRows &&
            qw::tp_split_of("blk.3.attn_v.bias") == S::Bias && qw::tp_split_of("blk.3.attn_output.weight") == S::InCols &&
            qw::tp_split_of("blk.3.ffn_down.weight") == S::InCols && qw::tp_split_of("output.weight") == S::Vocab &&
            qw::tp_split_of("token_embd.weight") == S::Vocab && qw::tp_split_of("blk.3.ffn_norm.weight") == S::Replicated,
        "tp_split_of");
  std::printf("  %-34s ok\n", "plan checks and ranges");
}

std::vector<float> dequant(const qw::NativeTensor &t) {
  std::vector<float> y(size_t(t.rows * t.cols));
  qw::dequant_rows(y.data(), t, 0, t.rows);
  return y;
}

// Row and column slices of every native layout reassemble the tensor bit for bit.
void test_slicers() {
  Rng r(5);
  const int64_t rows = 12, cols = 256;
  for (int32_t type : {int32_t(QW_GGML_F32), int32_t(QW_GGML_F16), int32_t(QW_GGML_BF16), int32_t(QW_GGML_Q8_0),
                       int32_t(QW_GGML_Q4_0), int32_t(QW_GGML_Q6_K), int32_t(-1)}) {
    const std::vector<uint8_t> raw = random_ggml(r, type < 0 ? QW_GGML_F32 : type, rows * cols, 0.1f);
    qw::NativeTensor t = qw::convert_tensor("blk.0.ffn_down.weight", type < 0 ? QW_GGML_F32 : type, rows, cols, raw.data(), false);
    if (type < 0) t = qw::requant_q4(t);  // W4 g128 with offsets (the weights option)
    const std::vector<float> full = dequant(t);
    const int64_t step = t.group ? std::max<int64_t>(t.group, 64) : 64;
    bool ok = true;
    for (int64_t c0 = 0; c0 < cols; c0 += step) {
      const std::vector<float> s = dequant(qw::slice_cols(t, c0, c0 + step));
      for (int64_t i = 0; i < rows; ++i)
        ok = ok && std::memcmp(&s[size_t(i * step)], &full[size_t(i * cols + c0)], size_t(step) * 4) == 0;
    }
    const std::vector<float> a = dequant(qw::slice_rows(t, 0, 5)), b = dequant(qw::slice_rows(t, 5, rows));
    ok = ok && std::memcmp(a.data(), full.data(), a.size() * 4) == 0 &&
         std::memcmp(b.data(), &full[a.size()], b.size() * 4) == 0;
    CHECK(ok, "slices of %s (group %d) reassemble exactly", qw::native_type_name(t.type), t.group);
  }
  // a column split inside a group is refused, naming the tensor and the remedy
  const std::vector<uint8_t> raw = random_ggml(r, QW_GGML_F32, rows * cols, 0.1f);
  const qw::NativeTensor q8 = qw::requant_q8(qw::convert_tensor("blk.1.attn_output.weight", QW_GGML_F32, rows, cols, raw.data(), false));
  const std::string m = refusal([&] { qw::slice_cols(q8, 0, 64); }, QW_ERR_SHAPE);
  CHECK(has(m, "blk.1.attn_output.weight") && has(m, "group (128") && has(m, "weights_layers"), "%s", m.c_str());
  std::printf("  %-34s ok\n", "slicers (7 layouts)");
}

// The emulated all-reduce sums in rank order, so a sum whose value depends on the order is reproducible.
void test_sum_order() {
  const float p0[2] = {1e8f, 1.0f}, p1[2] = {1.0f, 1e8f}, p2[2] = {-1e8f, -1e8f}, p3[2] = {1.0f, 1.0f};
  const float *parts[4] = {p0, p1, p2, p3};
  float out[2];
  qw::tp_sum_in_rank_order(out, parts, 4, 2);
  // ((1e8 + 1) - 1e8) + 1 = 1 (1e8 + 1 rounds to 1e8); ((1 + 1e8) - 1e8) + 1 = 1 too; a tree (p0+p2)+(p1+p3) = 2.
  CHECK(out[0] == ((p0[0] + p1[0]) + p2[0]) + p3[0] && out[0] == 1.0f && out[1] == 1.0f, "rank order: %g %g", out[0], out[1]);
  std::printf("  %-34s ok\n", "all-reduce order");
}

// Run (refmodel.hpp) with the captures this file compares, and the model options in `model_json`.
struct TpRun : Run {
  TpRun(const RefModel &ref, const std::string &model_json, int32_t max_batch = 2)
      : Run(ref, ("{\"max_batch\":" + std::to_string(max_batch) + ",\"max_context\":64}").c_str(), "{\"threads\":2}",
            model_json) {
    CHECK_OK(qw_session_set_capture(s, "blocks.1.attn.hook_q,blocks.1.mlp.hook_post,blocks.0.hook_attn_out"));
    // An f32 KV cache: with bf16 K/V, fp32 reduction-order noise flips some bf16 roundings, and each flip moves the
    // logits by ~1e-5 (measured up to 3e-5 with Q8_0 weights), hiding what this file measures. (needsReset: every
    // rank's cache is reconfigured.)
    CHECK_OK(qw_session_set_toggle(s, "kvCache", "f32", -1));
  }
  std::vector<std::vector<float>> captures() {
    int32_t n = 0;
    CHECK_OK(qw_session_capture_count(s, &n));
    std::vector<std::vector<float>> out;
    for (int32_t i = 0; i < n; ++i) {
      char name[128];
      int32_t rows = 0, cols = 0;
      CHECK_OK(qw_session_capture_info(s, i, name, sizeof name, &rows, &cols));
      out.emplace_back(size_t(rows) * size_t(cols));
      CHECK_OK(qw_session_read_capture(s, i, out.back().data(), int64_t(out.back().size())));
    }
    return out;
  }
};

std::string with(const RefConfig &c, const std::string &extra) {
  const std::string j = c.json();
  return j.substr(0, j.size() - 1) + "," + extra + "}";
}

// What one model does: 9-row prefill (GEMM kernels) with all-position logits and captures, then a batched decode
// of two sequences (GEMV kernels); greedy tokens of every step.
struct Trace {
  std::vector<float> prefill, decode;
  std::vector<std::vector<float>> caps;
  std::vector<int32_t> tokens;
};
Trace trace(TpRun &run, const std::vector<int32_t> &toks) {
  Trace t;
  int32_t next = -1;
  CHECK_OK(qw_session_set_logits_mode(run.s, 2));
  CHECK_OK(qw_session_prefill(run.s, 0, toks.data(), 9, &next));
  t.prefill = run.logits();
  t.caps = run.captures();
  t.tokens.push_back(next);
  CHECK_OK(qw_session_prefill(run.s, 1, toks.data() + 9, 3, &next));
  t.tokens.push_back(next);
  CHECK_OK(qw_session_set_logits_mode(run.s, 1));
  const int32_t seqs[2] = {0, 1};
  for (int i = 0; i < 4; ++i) {
    int32_t in[2] = {t.tokens[t.tokens.size() - 2], t.tokens[t.tokens.size() - 1]}, out[2];
    CHECK_OK(qw_session_decode(run.s, 2, seqs, in, out));
    const std::vector<float> lg = run.logits();
    t.decode.insert(t.decode.end(), lg.begin(), lg.end());
    t.tokens.insert(t.tokens.end(), out, out + 2);
  }
  return t;
}

// 8 query heads, 4 KV heads (GQA 2:1), head_dim 16, an uneven vocabulary (97 = 49 + 48 = 25*3 + 22): splits 2 and 4 ways.
RefConfig tp_config(int H, int F) {
  RefConfig c;
  c.V = 97;
  c.H = H;
  c.F = F;
  c.L = 2;
  c.nH = 8;
  c.nKV = 4;
  c.d = 16;
  return c;
}

void test_emulation() {
  RefConfig cfg = tp_config(64, 128);
  // f32 tied, f32 untied, and Q8_0 untied (W8 g32: the row-parallel splits at 64 / 32 columns fall on group bounds)
  for (int variant = 0; variant < 3; ++variant) {
    const bool tied = variant == 0;
    const int32_t wt = variant == 2 ? int32_t(QW_GGML_Q8_0) : int32_t(QW_GGML_F32);
    cfg.tied = tied;
    const RefModel ref(cfg, 21, [wt](const std::string &, int64_t) { return wt; });
    Rng r(9);
    std::vector<int32_t> toks(12);
    for (auto &t : toks) t = int32_t(r.next() % uint64_t(cfg.V));
    const std::vector<double> want = ref.forward(std::vector<int32_t>(toks.begin(), toks.begin() + 9));
    Trace base;
    {
      TpRun tp1(ref, cfg.json());
      base = trace(tp1, toks);
    }
    CHECK(rel_err(base.prefill, want, want.size()) < 5e-6, "tp1 vs fp64");
    for (const char *tp : {"tp2", "tp4"}) {
      TpRun run(ref, with(cfg, std::string("\"parallel\":\"") + tp + "\""));
      const Trace t = trace(run, toks);
      const double ep = rel_err(t.prefill, base.prefill, base.prefill.size());
      const double ed = rel_err(t.decode, base.decode, base.decode.size());
      const double ef = rel_err(t.prefill, want, want.size());
      CHECK(ep < 5e-6 && ed < 5e-6 && ef < 5e-6, "%s tied=%d %s: prefill %.3g, decode %.3g vs tp1; %.3g vs fp64", tp, tied, qw::ggml_type_name(wt), ep, ed, ef);
      CHECK(t.tokens == base.tokens, "%s tied=%d %s: greedy tokens differ from tp1", tp, tied, qw::ggml_type_name(wt));
      bool caps_ok = t.caps.size() == base.caps.size() && t.caps.size() == 3;
      for (size_t i = 0; caps_ok && i < t.caps.size(); ++i)
        caps_ok = t.caps[i].size() == base.caps[i].size() && rel_err(t.caps[i], base.caps[i], t.caps[i].size()) < 5e-6;
      CHECK(caps_ok, "%s: captures (hook_q, hook_post, hook_attn_out) in the tp1 layout", tp);
      std::printf("  %-34s ok (%s, tied=%d: logits vs tp1 prefill %.1e decode %.1e, vs fp64 %.1e)\n",
                  (std::string("emulated ") + tp + " == tp1").c_str(), qw::ggml_type_name(wt), tied, ep, ed, ef);
    }
  }
}

// The lm_head requantized at load (weights_layers "output": W8 / W4 group 128) splits by vocab rows like any other:
// tp2 / tp4 give tp1's logits and tokens with the same option (hidden 128: one group per row; vocab 97: uneven).
void test_emulation_output() {
  RefConfig cfg = tp_config(128, 128);
  cfg.tied = false;
  const RefModel ref(cfg, 23, [](const std::string &, int64_t) { return int32_t(QW_GGML_F32); });
  Rng r(5);
  std::vector<int32_t> toks(12);
  for (auto &t : toks) t = int32_t(r.next() % uint64_t(cfg.V));
  for (const char *fmt : {"q8", "q4"}) {
    const std::string opt = std::string("\"weights_layers\":{\"output\":\"") + fmt + "\"}";
    Trace base;
    {
      TpRun tp1(ref, with(cfg, opt));
      base = trace(tp1, toks);
    }
    for (const char *tp : {"tp2", "tp4"}) {
      TpRun run(ref, with(cfg, opt + ",\"parallel\":\"" + tp + "\""));
      const Trace t = trace(run, toks);
      const double ep = rel_err(t.prefill, base.prefill, base.prefill.size());
      const double ed = rel_err(t.decode, base.decode, base.decode.size());
      CHECK(ep < 5e-6 && ed < 5e-6 && t.tokens == base.tokens, "output %s %s: prefill %.3g, decode %.3g vs tp1", fmt, tp, ep, ed);
      std::printf("  %-34s ok (logits vs tp1 prefill %.1e decode %.1e)\n",
                  (std::string("emulated ") + tp + ", output = " + fmt).c_str(), ep, ed);
    }
  }
}

// Profiled steps of one model (prefill of 9 rows, prefill of 3, a batched decode of both): every step's records and
// all logits. At tp1 the unfused arms (norm, ffn = separate), whose op sequence the emulated ranks follow.
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
struct Profiled {
  std::vector<std::vector<qw_op_record>> steps;  // per step, in the order recorded
  std::vector<float> logits;
};
Profiled profiled(const RefModel &ref, const std::string &model_json, bool profiling) {
  TpRun run(ref, model_json);
  if (!has(model_json, "\"parallel\"")) {
    CHECK_OK(qw_session_set_toggle(run.s, "norm", "separate", -1));
    CHECK_OK(qw_session_set_toggle(run.s, "ffn", "separate", -1));
  }
  CHECK_OK(qw_session_set_profiling(run.s, profiling ? QW_PROFILING_EVENTS : QW_PROFILING_OFF));
  CHECK_OK(qw_session_set_logits_mode(run.s, 1));
  Profiled p;
  auto step = [&](std::function<void()> f) {
    const int64_t t0 = steady_ns();
    f();
    const int64_t t1 = steady_ns();
    const std::vector<float> lg = run.logits();
    p.logits.insert(p.logits.end(), lg.begin(), lg.end());
    int64_t n = 0, dropped = 0, got = 0;
    CHECK_OK(qw_session_records_pending(run.s, &n, &dropped));
    p.steps.emplace_back(size_t(n));
    if (n > 0) CHECK_OK(qw_session_read_records(run.s, p.steps.back().data(), n, &got));
    CHECK(dropped == 0 && got == n, "records read");
    for (const qw_op_record &r : p.steps.back())  // the CPU's records are steady_clock times of this process
      CHECK(r.t_start_ns >= t0 && r.t_end_ns <= t1 && r.t_start_ns <= r.t_end_ns, "a record outside its step's call");
  };
  const int32_t toks[12] = {5, 17, 33, 2, 90, 61, 8, 44, 71, 12, 3, 96};
  int32_t a = -1, b = -1;
  step([&] { CHECK_OK(qw_session_prefill(run.s, 0, toks, 9, &a)); });
  step([&] { CHECK_OK(qw_session_prefill(run.s, 1, toks + 9, 3, &b)); });
  const int32_t seqs[2] = {0, 1};
  step([&] {
    int32_t in[2] = {a, b}, out[2];
    CHECK_OK(qw_session_decode(run.s, 2, seqs, in, out));
  });
  return p;
}

bool sharded(int32_t op) {  // the ops a rank runs on its shards (the others: replicated or collective)
  return op == QW_OP_EMBED || op == QW_OP_QKV || op == QW_OP_ROPE || op == QW_OP_ATTENTION || op == QW_OP_O_PROJ ||
         op == QW_OP_GATE_UP || op == QW_OP_SWIGLU || op == QW_OP_DOWN || op == QW_OP_LM_HEAD;
}

// tp2 / tp4 records against tp1's: per rank tp1's op sequence plus the collectives, kernel names of tp1, sharded
// FLOPs summing to tp1's, replicated ones whole on every rank, records tiling the step; logits unchanged by profiling.
void test_records() {
  const RefConfig cfg = tp_config(64, 128);
  const RefModel ref(cfg, 31, [](const std::string &, int64_t) { return QW_GGML_F32; });
  const Profiled one = profiled(ref, cfg.json(), true);
  const int64_t H = cfg.H;
  for (int32_t N : {2, 4}) {
    const std::string mj = with(cfg, "\"parallel\":\"tp" + std::to_string(N) + "\"");
    const Profiled off = profiled(ref, mj, false), on = profiled(ref, mj, true);
    CHECK(off.logits.size() == on.logits.size() &&
              std::memcmp(off.logits.data(), on.logits.data(), off.logits.size() * 4) == 0,
          "tp%d: logits with profiling on differ from off (bitwise)", N);
    for (const auto &st : off.steps) CHECK(st.empty(), "tp%d: records with profiling off", N);
    int other_gaps = 0;
    for (size_t s = 0; s < one.steps.size(); ++s) {
      const std::vector<qw_op_record> &base = one.steps[s], &all = on.steps[s];
      std::vector<const qw_op_record *> want;  // tp1's ops (no gaps) with the collectives put in
      for (const qw_op_record &r : base) {
        CHECK(r.rank == 0, "tp1 records have rank 0");
        if (r.op == QW_OP_GAP) continue;
        want.push_back(&r);
      }
      std::vector<std::vector<const qw_op_record *>> ops(static_cast<size_t>(N));  // per rank, no gaps
      std::vector<int64_t> first(size_t(N), -1), last(size_t(N), -1);
      for (const qw_op_record &r : all) {
        CHECK(r.rank >= 0 && r.rank < N, "tp%d: rank %d", N, r.rank);
        const size_t k = size_t(r.rank);
        // tiling: each rank's records follow each other without a hole
        CHECK(last[k] < 0 || r.t_start_ns == last[k], "tp%d step %zu rank %d: a hole or overlap before op %d", N, s,
              r.rank, r.op);
        if (first[k] < 0) first[k] = r.t_start_ns;
        last[k] = r.t_end_ns;
        if (r.op == QW_OP_GAP) other_gaps += std::string(qw_kernel_name(r.kernel)) == "cpu.gap.other_ranks";
        else ops[k].push_back(&r);
      }
      for (int32_t k = 0; k < N; ++k) {
        CHECK(first[size_t(k)] == first[0] && last[size_t(k)] == last[0] && last[0] > first[0],
              "tp%d step %zu: rank %d's records span another interval than rank 0's", N, s, k);
        // tp1's sequence with all_reduce after embed / o_proj / down and all_gather after lm_head
        size_t i = 0;
        bool seq_ok = true;
        for (const qw_op_record *w : want) {
          const qw_op_record *g = i < ops[size_t(k)].size() ? ops[size_t(k)][i++] : nullptr;
          seq_ok = seq_ok && g && g->op == w->op && g->layer == w->layer && g->n_tokens == w->n_tokens;
          if (!seq_ok) break;
          const std::string gk = qw_kernel_name(g->kernel), wk = qw_kernel_name(w->kernel);
          CHECK(gk == (w->op == QW_OP_EMBED ? std::string("cpu.embed.vocab_part") : wk), "tp%d: kernel %s for %s",
                N, gk.c_str(), wk.c_str());
          const int32_t coll = w->op == QW_OP_EMBED || w->op == QW_OP_O_PROJ || w->op == QW_OP_DOWN ? QW_OP_ALL_REDUCE
                               : w->op == QW_OP_LM_HEAD                                          ? QW_OP_ALL_GATHER
                                                                                                 : -1;
          if (coll < 0) continue;
          const qw_op_record *c = i < ops[size_t(k)].size() ? ops[size_t(k)][i++] : nullptr;
          seq_ok = c && c->op == coll && c->layer == w->layer;
          if (!seq_ok) break;
          // one rank's share of a ring: all-reduce of the [R, H] fp32 partials; all-gather of [N, rows, P] fp32
          const double share = double(N - 1) / N;
          const double bytes = coll == QW_OP_ALL_REDUCE ? 2 * share * double(c->n_tokens * H) * 4
                                                        : share * double(c->n_tokens) * ((cfg.V + N - 1) / N) * N * 4;
          CHECK(std::fabs(c->bytes - bytes) < 1e-6 * bytes && (coll == QW_OP_ALL_GATHER || c->flops > 0),
                "tp%d: %s bytes %g, want %g", N, coll == QW_OP_ALL_REDUCE ? "all_reduce" : "all_gather", c->bytes, bytes);
        }
        CHECK(seq_ok && i == ops[size_t(k)].size(), "tp%d step %zu rank %d: op sequence != tp1's + collectives", N, s, k);
      }
      // FLOPs: a sharded op's ranks sum to tp1's; a replicated op is whole on every rank (and so are the embedding
      // rows: every rank writes [R, H], zeros for tokens it does not own). Attention bytes are per head: they sum too.
      for (size_t j = 0; j < want.size(); ++j) {
        const qw_op_record &w = *want[j];
        double sum = 0, attn_bytes = 0;
        bool whole = true;
        for (int32_t k = 0; k < N; ++k) {
          size_t nth = 0;  // the record of the same op and layer on rank k (the same occurrence as w's)
          for (size_t jj = 0; jj < j; ++jj) nth += want[jj]->op == w.op && want[jj]->layer == w.layer;
          for (const qw_op_record *g : ops[size_t(k)])
            if (g->op == w.op && g->layer == w.layer && nth-- == 0) {
              sum += g->flops;
              attn_bytes += g->bytes;
              whole = whole && g->flops == w.flops && g->bytes == w.bytes;
              break;
            }
        }
        if (w.op == QW_OP_EMBED || !sharded(w.op))
          CHECK(whole, "tp%d step %zu: %s (layer %d) is not whole on every rank", N, s, qw::op_name(w.op), w.layer);
        else
          CHECK(std::fabs(sum - w.flops) <= 1e-12 * w.flops && (w.op != QW_OP_ATTENTION || attn_bytes == w.bytes),
                "tp%d step %zu: %s (layer %d) flops over the ranks %g, tp1 %g", N, s, qw::op_name(w.op), w.layer, sum,
                w.flops);
      }
    }
    CHECK(other_gaps > 0, "tp%d: no gap names the other ranks' time", N);
    std::printf("  %-34s ok (%zu steps, %zu records in the prefill step)\n",
                ("records per rank, tp" + std::to_string(N)).c_str(), on.steps.size(), on.steps[0].size());
  }
}

void test_model_option() {
  const RefConfig cfg = tp_config(128, 256);
  const RefModel ref(cfg, 4, [](const std::string &, int64_t) { return QW_GGML_F32; });
  qw_engine *e = nullptr;
  qw_model *m = nullptr;
  CHECK_OK(qw_engine_create("{\"threads\":1}", &e));
  CHECK_ST(qw_model_create(e, with(cfg, "\"parallel\":\"tp8\"").c_str(), &m), QW_ERR_INVALID_ARGUMENT);
  CHECK(has(qw_last_error(), "4 KV heads") && has(qw_last_error(), "tp1, tp2, tp4"), "%s", qw_last_error());
  CHECK_ST(qw_model_create(e, with(cfg, "\"parallel\":\"tp6\"").c_str(), &m), QW_ERR_INVALID_ARGUMENT);
  // q8 (group 128) cannot be split at 64 input features of attn_output (8 heads * 16 / 2)
  CHECK_OK(qw_model_create(e, with(cfg, "\"parallel\":\"tp2\",\"weights\":\"q8\"").c_str(), &m));
  CHECK_ST(ref.load(m), QW_ERR_SHAPE);
  CHECK(has(qw_last_error(), "attn_output.weight") && has(qw_last_error(), "group (128"), "%s", qw_last_error());
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  {
    TpRun run(ref, with(cfg, "\"parallel\":\"tp2\",\"weights\":\"bf16\""), 1);
    char buf[8192];
    CHECK_OK(qw_session_toggles_json(run.s, buf, sizeof buf, nullptr));
    CHECK(has(buf, "\"parallel\":\"tp2\""), "toggles: %s", buf);
    CHECK_OK(qw_session_set_toggle(run.s, "parallel", "tp2", -1));  // unchanged: accepted
    CHECK_ST(qw_session_set_toggle(run.s, "parallel", "tp1", -1), QW_ERR_STATE);
    CHECK(has(qw_last_error(), "chosen when the model loads") && has(qw_last_error(), "this model: tp2"), "%s", qw_last_error());
    CHECK_OK(qw_session_set_profiling(run.s, QW_PROFILING_KERNELS));  // the CPU records both modes alike
    CHECK_OK(qw_session_set_profiling(run.s, QW_PROFILING_EVENTS));
    CHECK_ST(qw_session_set_profiling(run.s, QW_PROFILING_COUNTERS), QW_ERR_UNSUPPORTED);  // as at tp1
    CHECK(has(qw_last_error(), "counters"), "%s", qw_last_error());
    CHECK_OK(qw_session_set_profiling(run.s, QW_PROFILING_OFF));
    CHECK_OK(qw_session_set_toggle(run.s, "kvCache", "bf16", -1));  // a needsReset toggle reconfigures every rank
    CHECK_ST(qw_session_set_toggle(run.s, "dca", "on", -1), QW_OK);
    int32_t next = -1;
    const int32_t toks[3] = {1, 2, 3};
    CHECK_ST(qw_session_prefill(run.s, 0, toks, 3, &next), QW_ERR_UNSUPPORTED);
    CHECK(has(qw_last_error(), "Dual Chunk Attention"), "%s", qw_last_error());
    CHECK_OK(qw_session_set_toggle(run.s, "dca", "off", -1));
    CHECK_OK(qw_session_prefill(run.s, 0, toks, 3, &next));
    uint64_t n = 0;
    CHECK_OK(qw_model_info_json(run.m, buf, sizeof buf, &n));
    CHECK(has(buf, "\"parallel\":\"tp2\""), "model info");
  }
  std::printf("  %-34s ok\n", "model option and refusals");
}

}  // namespace

int main() {
  test_plan();
  test_slicers();
  test_sum_order();
  test_emulation();
  test_emulation_output();
  test_records();
  test_model_option();
  return finish("test_parallel");
}
