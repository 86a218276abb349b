// test_tp_host.cpp — the host side of the CUDA ranks of tensor parallelism, without a GPU (tp_host.hpp, tp_layout.hpp,
// the all-reduce / all-gather ops and the rank field of qw_op_record): the logits gather's index math against the
// plan, token ownership of the vocab-parallel embedding, the per-rank worker threads, the rank sink and the
// step refusals. The CUDA code that uses them is compile-checked only (README, "Tensor parallelism").
#include <atomic>
#include <cstddef>
#include <map>
#include <stdexcept>

#include "cost.hpp"
#include "dca.hpp"
#include "registry.hpp"
#include "testlib.hpp"
#include "tp_host.hpp"
#include "tp_layout.hpp"
#include "tp_plan.hpp"

namespace {

bool has(const std::string &s, const char *part) { return s.find(part) != std::string::npos; }

qw::Config config(int V, int nH, int nKV, int F) {
  qw::Config c;
  c.vocab_size = V;
  c.hidden_size = 64;
  c.intermediate_size = F;
  c.num_layers = 3;
  c.num_heads = nH;
  c.num_kv_heads = nKV;
  c.head_dim = 16;
  return c;
}

// Every rank's [rows, P] slice (value = the logit's global id row * V + v; padding = -1), concatenated as NCCL's
// all-gather does, read back through tp_gathered_index: the tp1 layout, no padding read.
void test_gather_layout() {
  for (const int V : {97, 100, 4099})
    for (const int N : {2, 4, 8}) {
      const qw::TpPlan p = qw::tp_plan(config(V, 8, 8, 64), N);
      const int P = p.vocab_part;
      for (const int rows : {1, 3, 16}) {
        std::vector<float> gathered;
        for (int q = 0; q < N; ++q) {
          const qw::TpRank &k = p.rank[size_t(q)];
          for (int row = 0; row < rows; ++row)
            for (int j = 0; j < P; ++j) gathered.push_back(j < k.vocab ? float(row * V + k.vocab0 + j) : -1.0f);
        }
        int bad = 0;
        for (int row = 0; row < rows; ++row)
          for (int v = 0; v < V; ++v) {
            const int64_t i = qw::tp_gathered_index(row, v, rows, P);
            if (i < 0 || i >= int64_t(gathered.size()) || gathered[size_t(i)] != float(row * V + v)) ++bad;
          }
        CHECK(bad == 0, "V %d, tp%d, %d rows: %d logits misplaced", V, N, rows, bad);
      }
      // the embedding: each token is owned by exactly one rank, at a local row inside its shard
      int bad = 0;
      for (int tok = 0; tok < V; ++tok) {
        int owners = 0;
        for (const qw::TpRank &k : p.rank)
          if (qw::tp_owns_token(tok, k.vocab0, k.vocab)) owners += (tok - k.vocab0 >= 0 && tok - k.vocab0 < k.vocab) ? 1 : 100;
        bad += owners != 1;
      }
      CHECK(bad == 0, "V %d, tp%d: %d tokens without exactly one owning rank", V, N, bad);
    }
  std::printf("  %-34s ok\n", "logits gather layout, token owners");
}

thread_local int t_rank = -1;  // set by a worker's init: a job that sees it ran on that worker's thread

void test_workers() {
  {
    qw::TpWorkers w(4, [](int32_t r) { t_rank = r; });
    std::vector<int> seen(4, -2);
    for (int rep = 0; rep < 50; ++rep) w.run([&](int32_t r) { seen[size_t(r)] = t_rank; });
    CHECK(seen == std::vector<int>({0, 1, 2, 3}), "every job runs on its rank's thread");
    CHECK(w.failed_ranks().empty(), "no failure");
    // ranks 1 and 3 throw: the lowest rank's error is rethrown after every rank returned, both are listed
    std::atomic<int> ran{0};
    std::string msg;
    try {
      w.run([&](int32_t r) {
        ++ran;
        if (r % 2) throw std::runtime_error("rank " + std::to_string(r) + " failed");
      });
    } catch (const std::exception &e) {
      msg = e.what();
    }
    CHECK(msg == "rank 1 failed" && ran == 4, "rethrown: '%s', ran %d", msg.c_str(), ran.load());
    CHECK(w.failed_ranks() == std::vector<int32_t>({1, 3}), "failed ranks");
    w.run([&](int32_t) {});  // the group keeps working
    CHECK(w.failed_ranks().empty(), "failures cleared");
  }
  {
    // a rank whose init failed (CUDA: cudaSetDevice) fails every job, alone
    qw::TpWorkers w(3, [](int32_t r) {
      if (r == 2) throw std::runtime_error("no device 2");
    });
    std::string msg;
    try {
      w.run([](int32_t) {});
    } catch (const std::exception &e) {
      msg = e.what();
    }
    CHECK(msg == "no device 2" && w.failed_ranks() == std::vector<int32_t>({2}), "init failure: '%s'", msg.c_str());
  }
  std::printf("  %-34s ok\n", "per-rank worker threads");
}

struct FakeSink final : qw::Sink {
  std::vector<qw_op_record> recs;
  int captures = 0, logit_calls = 0;
  std::map<std::pair<int, int>, bool> want;
  int32_t kernel_id(const char *) override { return 7; }
  void record(const qw_op_record &r) override { recs.push_back(r); }  // not thread-safe: RankSink's mutex must hold
  bool wants(qw::Hook h, int32_t layer) const override { return want.count({int(h), layer}) > 0; }
  void capture(qw::Hook, int32_t, const float *, int32_t, int32_t) override { ++captures; }
  void logits(const float *, int32_t, int32_t) override { ++logit_calls; }
  void logits_deferred(qw::LogitsReader &, int32_t, int32_t) override { ++logit_calls; }
};

void test_rank_sink() {
  static_assert(sizeof(qw_op_record) == 72 && offsetof(qw_op_record, rank) == 64, "qw_op_record layout (ABI 8)");
  FakeSink real;
  real.want[{int(qw::HOOK_RESID_POST), 1}] = true;
  std::mutex mu;
  std::vector<qw::RankSink> sinks;
  for (int r = 0; r < 4; ++r) sinks.emplace_back(real, r, mu);
  qw::TpWorkers w(4, [](int32_t) {});
  w.run([&](int32_t r) {
    for (int i = 0; i < 500; ++i) {
      qw_op_record rec{};
      rec.op = QW_OP_ALL_REDUCE;
      rec.layer = i;
      sinks[size_t(r)].record(rec);
    }
    if (sinks[size_t(r)].wants(qw::HOOK_RESID_POST, 1)) sinks[size_t(r)].capture(qw::HOOK_RESID_POST, 1, nullptr, 1, 1);
    sinks[size_t(r)].logits(nullptr, 1, 1);
  });
  int per_rank[4] = {};
  for (const qw_op_record &r : real.recs) per_rank[r.rank & 3] += r.rank >= 0 && r.rank < 4 && r.op == QW_OP_ALL_REDUCE;
  CHECK(real.recs.size() == 2000 && per_rank[0] == 500 && per_rank[1] == 500 && per_rank[2] == 500 && per_rank[3] == 500,
        "records stamped with their rank: %zu", real.recs.size());
  CHECK(real.captures == 1 && real.logit_calls == 1, "hooks and logits from rank 0 only: %d, %d", real.captures,
        real.logit_calls);
  CHECK(sinks[0].wants(qw::HOOK_RESID_POST, 1) && sinks[3].wants(qw::HOOK_RESID_POST, 1) &&
            !sinks[1].wants(qw::HOOK_RESID_POST, 0),
        "every rank is told what rank 0 is (the same path on every rank)");
  CHECK(sinks[3].kernel_id("x") == 7, "kernel ids pass through");
  // the ops of the catalog and their cost model
  CHECK(std::string(qw::op_name(QW_OP_ALL_REDUCE)) == "all_reduce" && std::string(qw::op_name(QW_OP_ALL_GATHER)) == "all_gather",
        "op names");
  const qw::OpCost ar = qw::cost_all_reduce(1000, 4.0, 4), ag = qw::cost_all_gather(4000.0, 4);
  CHECK(ar.bytes == 6000.0 && ar.flops == 750.0 && ag.bytes == 3000.0 && ag.flops == 0.0, "costs %g %g %g", ar.bytes,
        ar.flops, ag.bytes);
  std::printf("  %-34s ok\n", "rank sink, ops, record layout");
}

void test_refusals() {
  const qw::Config c = config(97, 8, 4, 64);
  qw::Step st;
  st.toggles.layer.resize(size_t(c.num_layers));
  CHECK(qw::tp_step_refusal(c, st, 2).empty(), "a plain step runs (every hook too)");
  st.toggles.layer[2].dca = qw::Dca::On;
  std::string m = qw::tp_step_refusal(c, st, 4);
  CHECK(has(m, "dca = on (layer 2)") && has(m, "parallel = tp4 on cuda"), "dca: %s", m.c_str());
  st.toggles.layer[2].dca = qw::Dca::Off;
  st.toggles.layer[0].sparse_prefill = qw::SparsePrefill::VerticalSlash;
  m = qw::tp_step_refusal(c, st, 2);
  CHECK(has(m, "sparsePrefill = ") && has(m, "(layer 0)"), "sparse: %s", m.c_str());
  st.toggles.layer[0].sparse_prefill = qw::SparsePrefill::Off;
  st.tree_base = 5;
  CHECK(has(qw::tp_step_refusal(c, st, 8), "tree steps"), "tree");
  std::printf("  %-34s ok\n", "step refusals");
}

}  // namespace

int main() {
  test_gather_layout();
  test_workers();
  test_rank_sink();
  test_refusals();
  return finish("test_tp_host");
}
