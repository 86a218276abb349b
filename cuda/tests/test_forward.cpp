// test_forward.cpp — the CPU forward of a tiny random Qwen2 model against an independent fp64 forward
// (refmodel.hpp), for F32 weights and for every quantized type; prefill, chunked prefill, decode, batched
// decode, gqa broadcast, bf16/f32 KV cache, captures, records and logits modes.
#include <algorithm>
#include <cstdlib>
#include <thread>

#include "refmodel.hpp"

static std::vector<int32_t> tokens_of(Rng &r, int n, int V) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto &x : t) x = int32_t(r.next() % uint64_t(V));
  return t;
}

// Prefill all at once (mode 2) and compare every position; then decode 4 tokens teacher-forced.
static void check_model(const char *label, const RefModel &ref, bool kv_bf16, double tol) {
  Run run(ref);
  if (!kv_bf16) CHECK_OK(qw_session_set_toggle(run.s, "kvCache", "f32", -1));
  Rng r(99);
  const std::vector<int32_t> toks = tokens_of(r, 13, ref.c.V);
  const std::vector<double> want = ref.forward(toks, kv_bf16);
  const size_t V = size_t(ref.c.V);
  CHECK_OK(qw_session_set_logits_mode(run.s, 2));
  int32_t next = -1;
  CHECK_OK(qw_session_prefill(run.s, 0, toks.data(), 9, &next));
  std::vector<float> got = run.logits();
  CHECK(got.size() == 9 * V, "%s: prefill logits rows", label);
  double e = rel_err(got, want, got.size());
  CHECK(e < tol, "%s: prefill logits rel err %.3g (tol %.3g)", label, e, tol);
  // greedy next token = argmax of the last row
  const float *last = &got[8 * V];
  CHECK(next == int32_t(std::max_element(last, last + V) - last), "%s: greedy token", label);
  // decode the remaining 4 tokens one by one (teacher forcing)
  for (int i = 9; i < 13; ++i) {
    const int32_t seq = 0;
    CHECK_OK(qw_session_decode(run.s, 1, &seq, &toks[size_t(i)], &next));
    got = run.logits();
    e = rel_err(got, &want[size_t(i) * V], V);
    CHECK(e < tol, "%s: decode pos %d rel err %.3g", label, i, e);
  }
  std::printf("  %-34s ok (last err %.2e)\n", label, e);
}

int main() {
  RefConfig cfg;
  // 1. F32 weights, f32 KV: fp32 engine vs fp64 reference.
  const RefModel f32(cfg, 1, [](const std::string &, int64_t) { return QW_GGML_F32; });
  check_model("f32 weights, f32 kv", f32, false, 2e-5);
  check_model("f32 weights, bf16 kv", f32, true, 2e-3);
  // 2. Every GGUF type (ne0 = 64 or 96 does not fit 256-blocks: use a wider config for K-quants).
  const int32_t small_types[] = {QW_GGML_F16, QW_GGML_BF16, QW_GGML_Q8_0, QW_GGML_Q4_0, QW_GGML_Q5_0};
  for (int32_t t : small_types) {
    const RefModel m(cfg, 2, [t](const std::string &, int64_t) { return t; });
    check_model((std::string("all ") + std::to_string(t) + " (ggml type id)").c_str(), m, false, 2e-5);
  }
  RefConfig wide = cfg;
  wide.H = 256;
  wide.F = 512;
  wide.nH = 4;
  wide.nKV = 1;
  wide.d = 64;
  wide.tied = false;
  wide.theta = 1e6;
  const int32_t k_types[] = {QW_GGML_Q4_K, QW_GGML_Q5_K, QW_GGML_Q6_K};
  for (int32_t t : k_types) {
    // K-quants where ne0 is a multiple of 256, Q8_0 elsewhere (like a real Q4_K_M mix)
    const RefModel m(wide, 3, [t](const std::string &, int64_t ne0) { return ne0 % 256 == 0 ? t : QW_GGML_Q8_0; });
    check_model((std::string("k-quant mix ") + std::to_string(t)).c_str(), m, false, 5e-5);
  }

  // 3. Batched decode equals single-sequence decode (to fp32 rounding); gqa broadcast equals native bitwise;
  //    chunked prefill equals one prefill; captures and records.
  {
    const RefModel &ref = f32;
    const size_t V = size_t(ref.c.V);
    Rng r(5);
    const std::vector<int32_t> a = tokens_of(r, 7, ref.c.V), b = tokens_of(r, 5, ref.c.V);
    std::vector<float> single_a, single_b, batched;
    int32_t nx;
    {
      Run run(ref);
      CHECK_OK(qw_session_set_logits_mode(run.s, 1));
      CHECK_OK(qw_session_prefill(run.s, 0, a.data(), 6, &nx));
      int32_t seq = 0;
      CHECK_OK(qw_session_decode(run.s, 1, &seq, &a[6], &nx));
      single_a = run.logits();
      CHECK_OK(qw_session_prefill(run.s, 1, b.data(), 4, &nx));
      seq = 1;
      CHECK_OK(qw_session_decode(run.s, 1, &seq, &b[4], &nx));
      single_b = run.logits();
    }
    {
      Run run(ref);
      CHECK_OK(qw_session_set_logits_mode(run.s, 1));
      // chunked prefill of a: 2 + 4 tokens
      CHECK_OK(qw_session_prefill(run.s, 1, a.data(), 2, &nx));
      CHECK_OK(qw_session_prefill(run.s, 1, a.data() + 2, 4, &nx));
      CHECK_OK(qw_session_prefill(run.s, 2, b.data(), 4, &nx));
      const int32_t seqs[2] = {1, 2}, toks[2] = {a[6], b[4]};
      int32_t outs[2];
      CHECK_OK(qw_session_set_capture(run.s, "blocks.*.hook_resid_post,blocks.0.attn.hook_q,hook_logits"));
      // the unfused arms: every norm, residual add and SwiGLU an op of its own (the fused defaults give the same
      // bits with 6 ops per layer: src/opt/ffn/test_fusion.cpp)
      CHECK_OK(qw_session_set_toggle(run.s, "ffn", "separate", -1));
      CHECK_OK(qw_session_set_toggle(run.s, "norm", "separate", -1));
      CHECK_OK(qw_session_set_profiling(run.s, 1));
      CHECK_OK(qw_session_decode(run.s, 2, seqs, toks, outs));
      batched = run.logits();
      CHECK(batched.size() == 2 * V, "batched logits rows");
      // T = 1 uses the single-stream GEMV, T = 2 the 2x2 tile: same math, different summation order.
      CHECK(rel_err(batched.data(), single_a.data(), V) < 1e-5, "batched row 0 == single decode");
      CHECK(rel_err(batched.data() + V, single_b.data(), V) < 1e-5, "batched row 1 == single decode");
      int32_t n = 0;
      CHECK_OK(qw_session_capture_count(run.s, &n));
      CHECK(n == ref.c.L + 2, "capture count %d", n);
      char name[64];
      int32_t rows, cols;
      CHECK_OK(qw_session_capture_info(run.s, 0, name, sizeof name, &rows, &cols));
      CHECK(std::string(name) == "blocks.0.hook_resid_post" && rows == 2 && cols == ref.c.H, "capture 0: %s %dx%d", name,
            rows, cols);
      CHECK_OK(qw_session_capture_info(run.s, n - 1, name, sizeof name, &rows, &cols));
      CHECK(std::string(name) == "hook_logits" && rows == 2 && cols == ref.c.V, "logits capture %s", name);
      std::vector<float> lc(size_t(rows * cols));
      CHECK_OK(qw_session_read_capture(run.s, n - 1, lc.data(), int64_t(lc.size())));
      CHECK(std::memcmp(lc.data(), batched.data(), lc.size() * 4) == 0, "hook_logits == logits");
      int64_t pending = 0, dropped = 0;
      CHECK_OK(qw_session_records_pending(run.s, &pending, &dropped));
      // embed + 11 per layer + final_norm + lm_head + sample, plus the pool wake-up and the gaps between ops:
      // together they tile the step, each record starting where the one before ended.
      std::vector<qw_op_record> recs(static_cast<size_t>(pending));
      int64_t got = 0;
      CHECK_OK(qw_session_read_records(run.s, recs.data(), pending, &got));
      std::vector<qw_op_record> ops;
      int wakes = 0;
      bool ok = got == pending, tiled = true;
      for (size_t i = 0; i < recs.size(); ++i) {
        const qw_op_record &rc = recs[i];
        ok = ok && rc.t_end_ns >= rc.t_start_ns && rc.phase == QW_PHASE_DECODE &&
             std::string(qw_kernel_name(rc.kernel)).size() > 0 && std::string(qw_op_name(rc.op)).size() > 0;
        if (i > 0) tiled = tiled && rc.t_start_ns == recs[i - 1].t_end_ns;
        if (rc.op == QW_OP_POOL_WAKE) {
          ++wakes;
        } else if (rc.op != QW_OP_GAP) {
          ok = ok && rc.n_tokens >= 1;
          ops.push_back(rc);
        }
      }
      CHECK(ops.size() == size_t(1 + 11 * ref.c.L + 3), "op records %zu", ops.size());
      CHECK(ok, "record contents");
      CHECK(wakes == 1, "one pool wake-up record per step (%d)", wakes);
      CHECK(tiled, "records tile the step");
      CHECK(ops.size() > 2 && ops[1].layer == 0 && ops[1].op == QW_OP_ATTN_NORM && ops.back().op == QW_OP_SAMPLE,
            "record order");
    }
    // gqa broadcast on every layer, and on one layer: bitwise equal to native
    for (int variant = 0; variant < 2; ++variant) {
      Run run(ref);
      CHECK_OK(qw_session_set_toggle(run.s, "gqa", "broadcast", variant == 0 ? -1 : 1));
      CHECK_OK(qw_session_set_logits_mode(run.s, 1));
      CHECK_OK(qw_session_prefill(run.s, 0, a.data(), 6, &nx));
      const int32_t seq = 0;
      CHECK_OK(qw_session_decode(run.s, 1, &seq, &a[6], &nx));
      const std::vector<float> bc = run.logits();
      CHECK(std::memcmp(bc.data(), single_a.data(), V * 4) == 0, "gqa broadcast (variant %d) == native bitwise", variant);
      char tj[512];
      uint64_t len = 0;
      CHECK_OK(qw_session_toggles_json(run.s, tj, sizeof tj, &len));
      if (variant == 1) CHECK(std::strstr(tj, "\"gqa\":[\"native\",\"broadcast\"]") != nullptr, "toggles json %s", tj);
    }
    // resid_post of the last layer vs the fp64 reference (prefill, all rows)
    {
      Run run(ref);
      CHECK_OK(qw_session_set_toggle(run.s, "kvCache", "f32", -1));
      CHECK_OK(qw_session_set_capture(run.s, "blocks.1.hook_resid_post"));
      CHECK_OK(qw_session_prefill(run.s, 0, a.data(), 7, &nx));
      std::vector<double> rp;
      ref.forward(a, false, &rp);
      std::vector<float> got(7 * size_t(ref.c.H));
      CHECK_OK(qw_session_read_capture(run.s, 0, got.data(), int64_t(got.size())));
      const double e = rel_err(got, rp, got.size());
      CHECK(e < 2e-5, "resid_post rel err %.3g", e);
    }
    // seeded sampling: replay gives the same tokens
    {
      std::vector<int32_t> gen[2];
      for (int rep = 0; rep < 2; ++rep) {
        Run run(ref);
        CHECK_OK(qw_session_set_sampling(run.s, 0, 0.9f, 20, 0.95f, 1234));
        CHECK_OK(qw_session_prefill(run.s, 0, a.data(), 7, &nx));
        for (int i = 0; i < 10; ++i) {
          gen[rep].push_back(nx);
          const int32_t seq = 0, tok = nx;
          CHECK_OK(qw_session_decode(run.s, 1, &seq, &tok, &nx));
        }
      }
      CHECK(gen[0] == gen[1], "seeded replay");
    }
  }
  // 3b. Prefill chunks of >= 8 rows with head_dim 64 (the blocked AVX-512 attention, the GEMM kernels):
  //     chunked 11 + 9 vs fp64, gqa broadcast == native bitwise, 1 thread == 2 threads bitwise, and the
  //     int8-activation arm (actQuant = int8) within a bounded error of the exact arm.
  {
    RefConfig g = wide;
    g.nKV = 2;
    const RefModel ref(g, 4, [](const std::string &, int64_t ne0) { return ne0 % 256 == 0 ? QW_GGML_Q4_K : QW_GGML_Q8_0; });
    Rng r(31);
    const std::vector<int32_t> toks = tokens_of(r, 20, ref.c.V);
    const std::vector<double> want = ref.forward(toks, true);
    auto prefill = [&](const char *engine_opts, const char *toggle, const char *value) {
      Run run(ref, "{\"max_batch\":1,\"max_context\":64}", engine_opts);
      if (toggle) CHECK_OK(qw_session_set_toggle(run.s, toggle, value, -1));
      CHECK_OK(qw_session_set_logits_mode(run.s, 2));
      int32_t nx;
      CHECK_OK(qw_session_prefill(run.s, 0, toks.data(), 11, &nx));
      std::vector<float> out = run.logits();
      CHECK_OK(qw_session_prefill(run.s, 0, toks.data() + 11, 9, &nx));
      const std::vector<float> b = run.logits();
      out.insert(out.end(), b.begin(), b.end());
      return out;
    };
    const std::vector<float> exact = prefill("{\"threads\":2}", nullptr, nullptr);
    const double e = rel_err(exact, want, exact.size());
    CHECK(e < 5e-5, "blocked prefill (11 + 9) rel err %.3g", e);
    CHECK(prefill("{\"threads\":1}", nullptr, nullptr) == exact, "blocked prefill: 1 thread == 2 threads");
    CHECK(prefill("{\"threads\":2}", "gqa", "broadcast") == exact, "blocked prefill: gqa broadcast == native");
    const std::vector<float> i8 = prefill("{\"threads\":2}", "actQuant", "int8");
    CHECK(prefill("{\"threads\":1}", "actQuant", "int8") == i8, "int8 arm: 1 thread == 2 threads");
    const double ei = rel_err(i8, exact, i8.size());
    // int8 activations (d = max|x| / 127 per group of 32) change the logits by ~1e-2 relative; 0 would mean
    // the arm did not run where the CPU has VNNI.
    CHECK(ei < 5e-2, "int8 arm vs exact rel err %.3g", ei);
    std::printf("  blocked prefill                    ok (err %.2e; int8 arm vs exact %.2e)\n", e, ei);
    // Decode-sized steps (under 8 tokens: the int8 arm's GEMV where the CPU has VNNI, else the exact GEMV, so
    // without VNNI the arms agree bitwise): a 7-token prefill then 6 decode steps, logits of each step, 1 thread ==
    // 2 threads bitwise, within the same bound of the exact arm.
    auto decode = [&](const char *engine_opts, const char *value) {
      Run run(ref, "{\"max_batch\":1,\"max_context\":64}", engine_opts);
      CHECK_OK(qw_session_set_toggle(run.s, "actQuant", value, -1));
      CHECK_OK(qw_session_set_logits_mode(run.s, 1));
      int32_t nx;
      CHECK_OK(qw_session_prefill(run.s, 0, toks.data(), 7, &nx));
      std::vector<float> out = run.logits();
      for (int i = 0; i < 6; ++i) {
        const int32_t seq = 0, tok = toks[size_t(7 + i)];
        CHECK_OK(qw_session_decode(run.s, 1, &seq, &tok, &nx));
        const std::vector<float> l = run.logits();
        CHECK(l.size() == size_t(ref.c.V), "int8 decode: one logits row per step");
        out.insert(out.end(), l.begin(), l.end());
      }
      return out;
    };
    const std::vector<float> dx = decode("{\"threads\":2}", "off"), d8 = decode("{\"threads\":2}", "int8");
    CHECK(decode("{\"threads\":1}", "int8") == d8, "int8 decode: 1 thread == 2 threads");
    const double ed = rel_err(d8, dx, d8.size());
    const char *no512 = std::getenv("QW_CPU_NO_AVX512");  // as the backend decides (matmul.cpp cpu_has_avx512)
    const bool vnni = !(no512 && no512[0] == '1') && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
    CHECK(ed < 5e-2 && (ed > 0) == vnni, "int8 decode vs exact rel err %.3g (vnni %d)", ed, int(vnni));
    std::printf("  int8 decode                        ok (int8 arm vs exact %.2e)\n", ed);
  }
  // 4. Sessions of one model used from different threads at once (the CPU backend allows it): each
  //    thread's logits equal a sequential run's, bit for bit.
  {
    const RefModel &ref = f32;
    qw_engine *e;
    qw_model *m;
    CHECK_OK(qw_engine_create("{\"threads\":2}", &e));
    CHECK_OK(qw_model_create(e, ref.c.json().c_str(), &m));
    CHECK_OK(ref.load(m));
    Rng r(77);
    const std::vector<int32_t> toks = tokens_of(r, 12, ref.c.V);
    auto run = [&](std::vector<float> *out) {
      qw_session *s = nullptr;
      CHECK_OK(qw_session_create(m, "{\"max_context\":64}", &s));
      CHECK_OK(qw_session_set_logits_mode(s, 1));
      int32_t nx = 0;
      for (int rep = 0; rep < 20; ++rep) {
        CHECK_OK(qw_session_reset(s, 0));
        CHECK_OK(qw_session_prefill(s, 0, toks.data(), 8, &nx));
        for (int i = 8; i < 12; ++i) {
          const int32_t seq = 0;
          CHECK_OK(qw_session_decode(s, 1, &seq, &toks[size_t(i)], &nx));
        }
      }
      out->resize(size_t(ref.c.V));
      CHECK_OK(qw_session_read_logits(s, out->data(), int64_t(out->size())));
      CHECK_OK(qw_session_destroy(s));
    };
    std::vector<float> seq_ref, t1, t2, t3;
    run(&seq_ref);
    std::thread a([&] { run(&t1); }), b([&] { run(&t2); }), c([&] { run(&t3); });
    a.join();
    b.join();
    c.join();
    CHECK(t1 == seq_ref && t2 == seq_ref && t3 == seq_ref, "concurrent sessions give the sequential logits");
    CHECK_OK(qw_model_destroy(m));
    CHECK_OK(qw_engine_destroy(e));
  }
  return finish("test_forward");
}
