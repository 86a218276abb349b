// test_fusion.cpp — the CPU arms of toggles ffn (ffn_cpu.cpp) and norm (norm/norm_cpu.cpp) compute the same
// function: every combination of arms, on every layer or on one, gives logits bit-identical to the default arms
// (fused-norm-gemv-swiglu, fused-residual-norm), for prefill and batched decode, with 1 and 2 threads, for f32
// weights with an intermediate size that is not a multiple of 8 (SwiGLU's padded tail), for Q4_0 (group offsets:
// the norm prologue then runs as its own pass first), for a K-quant mix prefilled in chunks of >= 8 rows (the GEMM
// kernels) and under actQuant = int8. The op records name what each arm ran: 11 ops per layer unfused, 6 fused.
#include <cstring>

#include "refmodel.hpp"

namespace {

using Toggles = std::vector<std::pair<std::string, std::string>>;  // (id, value), value "id@L" = layer L only

struct Engine {
  qw_engine *e = nullptr;
  qw_model *m = nullptr;
  qw_session *s = nullptr;
  Engine(const RefModel &ref, const char *engine_opts) {
    CHECK_OK(qw_engine_create(engine_opts, &e));
    CHECK_OK(qw_model_create(e, ref.c.json().c_str(), &m));
    CHECK_OK(ref.load(m));
    CHECK_OK(qw_session_create(m, "{\"max_batch\":2,\"max_context\":64}", &s));
  }
  ~Engine() {
    qw_session_destroy(s);
    qw_model_destroy(m);
    qw_engine_destroy(e);
  }
  void append_logits(std::vector<float> &out) {
    int32_t rows = 0, V = 0;
    CHECK_OK(qw_session_logits_shape(s, &rows, &V));
    const size_t at = out.size();
    out.resize(at + size_t(rows) * size_t(V));
    CHECK_OK(qw_session_read_logits(s, out.data() + at, int64_t(size_t(rows) * size_t(V))));
  }
};

// Prefill sequence 0 with 11 tokens in one step (or 8 + 3 when chunked) and sequence 1 with 5, all-position logits;
// then 3 batched decode steps of both (teacher-forced). Every logit of the run, in order.
std::vector<float> run(const RefModel &ref, const char *engine_opts, const Toggles &toggles, bool chunked = false) {
  Engine g(ref, engine_opts);
  for (const auto &t : toggles) {
    const size_t at = t.second.find('@');
    const std::string v = t.second.substr(0, at);
    const int32_t layer = at == std::string::npos ? -1 : std::atoi(t.second.c_str() + at + 1);
    CHECK_OK(qw_session_set_toggle(g.s, t.first.c_str(), v.c_str(), layer));
  }
  Rng r(5);
  std::vector<int32_t> toks(20);
  for (auto &x : toks) x = int32_t(r.next() % uint64_t(ref.c.V));
  std::vector<float> out;
  int32_t nx = 0;
  CHECK_OK(qw_session_set_logits_mode(g.s, 2));
  if (chunked) {
    CHECK_OK(qw_session_prefill(g.s, 0, toks.data(), 8, &nx));
    g.append_logits(out);
    CHECK_OK(qw_session_prefill(g.s, 0, toks.data() + 8, 3, &nx));
  } else {
    CHECK_OK(qw_session_prefill(g.s, 0, toks.data(), 11, &nx));
  }
  g.append_logits(out);
  CHECK_OK(qw_session_prefill(g.s, 1, toks.data() + 11, 5, &nx));
  g.append_logits(out);
  CHECK_OK(qw_session_set_logits_mode(g.s, 1));
  for (int i = 0; i < 3; ++i) {
    const int32_t seqs[2] = {0, 1}, tk[2] = {toks[size_t(16 + i)], toks[size_t(i)]};
    int32_t outs[2];
    CHECK_OK(qw_session_decode(g.s, 2, seqs, tk, outs));
    g.append_logits(out);
  }
  return out;
}

const char *kFfn[] = {"separate", "fused-swiglu", "fused-norm-gemv-swiglu"};
const char *kNorm[] = {"separate", "fused-residual-norm"};

// Every arm combination, and a per-layer mix, against the default arms: bitwise.
void check_arms(const char *label, const RefModel &ref, const Toggles &base = {}, bool chunked = false) {
  for (const char *threads : {"{\"threads\":1}", "{\"threads\":2}"}) {
    const std::vector<float> want = run(ref, threads, base, chunked);
    bool finite = !want.empty();
    for (float v : want) finite = finite && std::isfinite(v);
    CHECK(finite, "%s: default arms give finite logits", label);
    int n = 0;
    for (const char *f : kFfn)
      for (const char *nm : kNorm) {
        Toggles t = base;
        t.push_back({"ffn", f});
        t.push_back({"norm", nm});
        const std::vector<float> got = run(ref, threads, t, chunked);
        CHECK(got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size() * 4) == 0,
              "%s %s: ffn=%s norm=%s differs from the default arms", label, threads, f, nm);
        ++n;
      }
    Toggles mix = base;  // layer 1 unfused, layer 0 default
    mix.push_back({"ffn", "separate@1"});
    mix.push_back({"norm", "separate@1"});
    const std::vector<float> got = run(ref, threads, mix, chunked);
    CHECK(got == want, "%s %s: layer 1 separate, layer 0 fused differs", label, threads);
    std::printf("  %-40s %s: %d arm combinations + a per-layer mix bitwise equal\n", label, threads, n);
  }
}

// The ops a decode step records under (ffn, norm): op id -> count, and the kernel names.
void check_records(const RefModel &ref) {
  struct Want {
    const char *ffn, *norm;
    int per_layer;
    const char *gate_up_has, *down_has;
  };
  const Want wants[] = {{"separate", "separate", 11, nullptr, nullptr},
                        {"fused-swiglu", "separate", 10, "+swiglu", nullptr},
                        {"fused-norm-gemv-swiglu", "fused-residual-norm", 6, "cpu.rmsnorm+", "+residual"}};
  for (const Want &w : wants) {
    Engine g(ref, "{\"threads\":2}");
    CHECK_OK(qw_session_set_toggle(g.s, "ffn", w.ffn, -1));
    CHECK_OK(qw_session_set_toggle(g.s, "norm", w.norm, -1));
    const int32_t toks[3] = {1, 2, 3};
    int32_t nx = 0;
    CHECK_OK(qw_session_prefill(g.s, 0, toks, 3, &nx));
    CHECK_OK(qw_session_set_profiling(g.s, 1));
    const int32_t seq = 0;
    CHECK_OK(qw_session_decode(g.s, 1, &seq, &nx, &nx));
    int64_t pending = 0, dropped = 0;
    CHECK_OK(qw_session_records_pending(g.s, &pending, &dropped));
    std::vector<qw_op_record> recs(static_cast<size_t>(pending));
    int64_t got = 0;
    CHECK_OK(qw_session_read_records(g.s, recs.data(), pending, &got));
    int layer_ops = 0, ops_of[QW_OP_COUNT] = {};
    bool gate_up_ok = w.gate_up_has == nullptr, down_ok = w.down_has == nullptr;
    for (const qw_op_record &rc : recs) {
      if (rc.layer < 0 || rc.op == QW_OP_GAP || rc.op == QW_OP_POOL_WAKE) continue;
      ++layer_ops;
      ++ops_of[rc.op];
      const std::string k = qw_kernel_name(rc.kernel);
      if (rc.op == QW_OP_GATE_UP && w.gate_up_has) gate_up_ok = gate_up_ok || k.find(w.gate_up_has) != std::string::npos;
      if (rc.op == QW_OP_DOWN && w.down_has) down_ok = down_ok || k.find(w.down_has) != std::string::npos;
    }
    const int L = ref.c.L;
    CHECK(layer_ops == w.per_layer * L, "ffn=%s norm=%s: %d layer ops, want %d", w.ffn, w.norm, layer_ops,
          w.per_layer * L);
    const bool sep_norm = std::string(w.norm) == "separate", sep_ffn = std::string(w.ffn) == "separate";
    CHECK(ops_of[QW_OP_RESIDUAL] == (sep_norm ? 2 * L : 0) && ops_of[QW_OP_ATTN_NORM] == (sep_norm ? L : 0) &&
              ops_of[QW_OP_SWIGLU] == (sep_ffn ? L : 0) &&
              ops_of[QW_OP_FFN_NORM] == (std::string(w.ffn) == "fused-norm-gemv-swiglu" ? 0 : L),
          "ffn=%s norm=%s: which ops are their own", w.ffn, w.norm);
    CHECK(gate_up_ok && down_ok, "ffn=%s norm=%s: kernel names say what is fused", w.ffn, w.norm);
  }
  std::printf("  op records name the arms                ok\n");
}

}  // namespace

int main() {
  RefConfig c;
  c.H = 256;
  c.F = 1004;  // not a multiple of 8: SwiGLU's vector tail; big enough for 2 threads
  c.nH = 4;
  c.nKV = 2;
  c.d = 64;
  c.V = 160;
  const RefModel f32(c, 11, [](const std::string &, int64_t) { return QW_GGML_F32; });
  check_arms("f32 weights, F % 8 = 4", f32);
  check_records(f32);
  RefConfig q = c;
  q.F = 512;  // Q4_0 blocks of 32
  const RefModel q4(q, 12, [](const std::string &, int64_t) { return QW_GGML_Q4_0; });
  check_arms("q4_0 (group offsets)", q4);
  const RefModel kq(q, 13, [](const std::string &, int64_t ne0) { return ne0 % 256 == 0 ? QW_GGML_Q4_K : QW_GGML_Q8_0; });
  check_arms("k-quant mix, prefill 8 + 3", kq, {}, true);
  check_arms("k-quant mix, actQuant = int8", kq, {{"actQuant", "int8"}}, true);
  return finish("test_fusion");
}
