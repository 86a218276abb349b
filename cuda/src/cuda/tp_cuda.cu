// tp_cuda.cu — the CUDA ranks of tensor parallelism: model and session (see tp_cuda.cuh). Host code only.
#include "tp_cuda.cuh"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "session.cuh"
#include "tp_group.cuh"
#include "tp_host.hpp"
#include "tp_plan.hpp"

namespace qw {
namespace cuda_backend {
namespace {

std::string tp_name(int32_t n) { return "parallel = tp" + std::to_string(n); }

class TpCudaModel;

class TpCudaSession final : public BackendSession {
 public:
  TpCudaSession(TpCudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill);
  ~TpCudaSession() override;
  void configure(const StepToggles &t) override {
    workers_.run([&](int32_t r) { sessions_[size_t(r)]->configure(t); });
  }
  KvInfo kv_info() const override {  // the ranks' caches together (each holds its KV heads)
    KvInfo k = sessions_[0]->kv_info();
    for (size_t r = 1; r < sessions_.size(); ++r) {
      const KvInfo o = sessions_[r]->kv_info();
      k.bytes += o.bytes;
      k.bytes_per_token += o.bytes_per_token;
    }
    return k;
  }
  void reset(int32_t seq) override {
    for (auto &s : sessions_) s->reset(seq);  // host-only (KV rows are addressed by position)
  }
  void set_profiling(int32_t mode) override {
    if (mode == QW_PROFILING_KERNELS)
      throw Error(QW_ERR_UNSUPPORTED, "profiling mode kernels: not with " + tp_name(ranks()) +
                                          " on cuda (CUPTI's records are not mapped to ranks yet); use events, "
                                          "whose records carry their rank");
    if (mode == QW_PROFILING_COUNTERS)
      throw Error(QW_ERR_UNSUPPORTED, "profiling mode counters: not with " + tp_name(ranks()) +
                                          " on cuda (the range profiler's counters are not mapped to ranks yet); "
                                          "profile one GPU (parallel = none)");
    workers_.run([&](int32_t r) { sessions_[size_t(r)]->set_profiling(mode); });
  }
  void forward(const Step &st, Sink &sink, int32_t *out_tokens) override;

 private:
  int32_t ranks() const { return int32_t(sessions_.size()); }
  void warm_up(int64_t elems);
  TpCudaModel &m_;
  std::unique_ptr<qwc::TpGroup> group_;  // the communicators (a clique per session: a comm is not thread-safe)
  TpWorkers workers_;   // thread r: rank r, its device current
  std::vector<TpLink> links_;
  std::vector<std::unique_ptr<CudaSession>> sessions_;
  bool broken_ = false;  // a step failed on some ranks only: their collectives may be out of step
};

class TpCudaModel final : public BackendModel {
 public:
  TpCudaModel(const Config &cfg, int first_device)
      : full_(cfg), plan_(tp_plan(cfg, cfg.tp)), dev0_(first_device) {
    const std::string tp = tp_name(plan_.ranks);
    if (cfg.eagle_head) throw Error(QW_ERR_UNSUPPORTED, "an EAGLE head: not with " + tp + "; load it with tp1");
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    if (first_device < 0 || first_device + plan_.ranks > count)
      throw Error(QW_ERR_DEVICE, tp + " needs " + std::to_string(plan_.ranks) + " CUDA devices from device " +
                                     std::to_string(first_device) + "; this machine has " + std::to_string(count) +
                                     " (use fewer ranks, or a machine with more GPUs)");
    if (!qwc::nccl_available())
      throw Error(QW_ERR_UNSUPPORTED, tp + " on cuda needs NCCL: " + std::string(qwc::nccl_status()));
    for (int32_t r = 0; r < plan_.ranks; ++r) ranks_.push_back(std::make_unique<CudaModel>(plan_.rank_config(cfg, r)));
  }
  // Each rank keeps its shard only (host, until finalize uploads it to the rank's device).
  void add_tensor(NativeTensor &&t) override {
    for (int32_t r = 0; r < plan_.ranks; ++r) ranks_[size_t(r)]->add_tensor(tp_shard(plan_, full_, t, r));
  }
  void finalize() override {
    TpWorkers w(plan_.ranks, [&](int32_t r) { CK(cudaSetDevice(dev0_ + r)); });
    w.run([&](int32_t r) { ranks_[size_t(r)]->finalize(); });  // the ranks upload at once, each to its device
  }
  std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context, int32_t max_prefill) override {
    return std::make_unique<TpCudaSession>(*this, max_batch, max_context, max_prefill);
  }

  const Config &full() const { return full_; }
  const TpPlan &plan() const { return plan_; }
  int first_device() const { return dev0_; }
  CudaModel &rank(int32_t r) { return *ranks_[size_t(r)]; }

 private:
  Config full_;
  TpPlan plan_;
  int dev0_;
  std::vector<std::unique_ptr<CudaModel>> ranks_;
};

TpCudaSession::TpCudaSession(TpCudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill)
    : m_(m),
      group_(dev_guard([&] { return std::make_unique<qwc::TpGroup>(m.plan().ranks, m.first_device()); })),
      workers_(m.plan().ranks, [&m](int32_t r) { CK(cudaSetDevice(m.first_device() + r)); }),
      links_(size_t(m.plan().ranks)),
      sessions_(size_t(m.plan().ranks)) {
  const TpPlan &p = m.plan();
  for (int32_t r = 0; r < p.ranks; ++r) {
    TpLink &k = links_[size_t(r)];
    k.rank = r;
    k.ranks = p.ranks;
    k.vocab0 = p.rank[size_t(r)].vocab0;
    k.vocab_part = p.vocab_part;
    k.full_vocab = m.full().vocab_size;
    k.comm = group_->comm(r);
  }
  workers_.run([&](int32_t r) {
    sessions_[size_t(r)] = std::make_unique<CudaSession>(m.rank(r), max_batch, max_context, max_prefill, &links_[size_t(r)]);
  });
  warm_up(max_batch * m.full().hidden_size);
}

// One eager all-reduce and all-gather of a decode step's size on every rank before any step: NCCL connects its
// channels on a communicator's first collectives, which is best not done under a decode graph's capture; and a
// group that cannot talk fails here, at session creation, not in the middle of a step.
void TpCudaSession::warm_up(int64_t elems) {
  workers_.run([&](int32_t r) {
    cudaStream_t s = nullptr;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    DBuf b((size_t)elems * 4 * (size_t)ranks());
    CK(cudaMemsetAsync(b.p, 0, b.bytes, s));
    const qwc::Nccl &nc = dev_guard([&]() -> const qwc::Nccl & { return qwc::nccl(); });
    const int a = nc.AllReduce(b.p, b.p, (size_t)elems, qwc::NCCL_FLOAT32, qwc::NCCL_SUM, links_[size_t(r)].comm, s);
    // in place: NCCL's in-place all-gather sends from the rank's own part of the receive buffer
    const int g = nc.AllGather(b.as<float>() + (size_t)r * elems, b.p, (size_t)elems, qwc::NCCL_FLOAT32,
                               links_[size_t(r)].comm, s);
    const cudaError_t e = cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
    dev_guard([&] {
      qwc::nccl_check(a, "ncclAllReduce (warm-up)");
      qwc::nccl_check(g, "ncclAllGather (warm-up)");
      return 0;
    });
    CK(e);
  });
}

TpCudaSession::~TpCudaSession() {
  try {  // each rank's buffers, streams and graphs released on its own device, before the communicators go
    workers_.run([&](int32_t r) { sessions_[size_t(r)].reset(); });
  } catch (...) {
  }
}

void TpCudaSession::forward(const Step &st, Sink &sink, int32_t *out_tokens) {
  const int32_t N = ranks();
  if (broken_)
    throw Error(QW_ERR_DEVICE, "an earlier step failed on some ranks of " + tp_name(N) +
                                   " only, so their collectives are out of step: destroy this session and create a "
                                   "new one");
  const std::string why = tp_step_refusal(m_.full(), st, N);
  if (!why.empty()) throw Error(QW_ERR_UNSUPPORTED, why);
  std::mutex record_mu;
  std::vector<RankSink> sinks;
  for (int32_t r = 0; r < N; ++r) sinks.emplace_back(sink, r, record_mu);
  const size_t S = st.seq.size();
  std::vector<int32_t> tokens(size_t(N) * S);
  try {
    workers_.run([&](int32_t r) { sessions_[size_t(r)]->forward(st, sinks[size_t(r)], tokens.data() + size_t(r) * S); });
  } catch (...) {
    // Failing on every rank (a refusal at the same op of every rank's forward) leaves the ranks in step.
    broken_ = int32_t(workers_.failed_ranks().size()) != N;
    throw;
  }
  // Greedy rows must agree bit for bit (argmax of identical logits). A sampled row may not: the device sampler's
  // shared-memory double sums are order-nondeterministic (as at tp1, run to run); rank 0's token is the step's, and
  // the next step's tokens come from the host to every rank, so the ranks' states never diverge.
  for (int32_t r = 1; r < N; ++r)
    for (size_t i = 0; i < S; ++i)
      if (st.temperature[i] <= 0.f && tokens[size_t(r) * S + i] != tokens[i])
        throw Error(QW_ERR_INTERNAL, tp_name(N) + ": rank " + std::to_string(r) + " sampled token " +
                                         std::to_string(tokens[size_t(r) * S + i]) + " for sequence " +
                                         std::to_string(i) + " where rank 0 sampled " + std::to_string(tokens[i]) +
                                         " (the gathered logits should be identical on every rank: a bug)");
  std::copy(tokens.begin(), tokens.begin() + S, out_tokens);
}

}  // namespace

std::unique_ptr<BackendModel> tp_cuda_model(const Config &cfg, int first_device) {
  return std::make_unique<TpCudaModel>(cfg, first_device);
}

}  // namespace cuda_backend
}  // namespace qw
