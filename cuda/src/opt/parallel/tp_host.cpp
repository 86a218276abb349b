// tp_host.cpp — see tp_host.hpp.
#include "tp_host.hpp"

#include "dca.hpp"
#include "registry.hpp"

namespace qw {

TpWorkers::TpWorkers(int32_t n, std::function<void(int32_t)> init) : err_(size_t(n)) {
  for (int32_t r = 0; r < n; ++r) threads_.emplace_back([this, r, init] { loop(r, init); });
}

TpWorkers::~TpWorkers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  go_.notify_all();
  for (auto &t : threads_) t.join();
}

void TpWorkers::loop(int32_t r, const std::function<void(int32_t)> &init) {
  std::exception_ptr init_err;
  try {
    init(r);
  } catch (...) {
    init_err = std::current_exception();  // reported by every job of this rank
  }
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int32_t)> *job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      go_.wait(lk, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      job = job_;
    }
    std::exception_ptr e = init_err;
    if (!e) {
      try {
        (*job)(r);
      } catch (...) {
        e = std::current_exception();
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    err_[size_t(r)] = e;
    if (--pending_ == 0) done_.notify_all();
  }
}

void TpWorkers::run(const std::function<void(int32_t)> &job) {
  std::unique_lock<std::mutex> lk(mu_);
  job_ = &job;
  pending_ = size();
  for (auto &e : err_) e = nullptr;
  ++gen_;
  go_.notify_all();
  done_.wait(lk, [&] { return pending_ == 0; });
  failed_.clear();
  for (int32_t r = 0; r < size(); ++r)
    if (err_[size_t(r)]) failed_.push_back(r);
  if (!failed_.empty()) std::rethrow_exception(err_[size_t(failed_[0])]);
}

void RankSink::record(const qw_op_record &r) {
  qw_op_record c = r;
  c.rank = rank_;
  std::lock_guard<std::mutex> lk(mu_);
  s_.record(c);
}
void RankSink::capture(Hook h, int32_t layer, const float *host, int32_t rows, int32_t cols) {
  if (rank_ == 0) s_.capture(h, layer, host, rows, cols);
}
void RankSink::logits(const float *host, int32_t rows, int32_t vocab) {
  if (rank_ == 0) s_.logits(host, rows, vocab);
}

void RankSink::logits_deferred(LogitsReader &r, int32_t rows, int32_t vocab) {
  if (rank_ != 0) return;
  std::vector<float> host(size_t(rows) * size_t(vocab));
  r.fetch(host.data());
  s_.logits(host.data(), rows, vocab);
}

std::string tp_step_refusal(const Config &full, const Step &st, int32_t ranks) {
  const std::string tp = "parallel = tp" + std::to_string(ranks) + " on cuda";
  if (st.tree_base >= 0) return "tree steps (speculative = eagle): not with " + tp + "; use parallel = tp1";
  for (int32_t l = 0; l < full.num_layers; ++l) {
    const LayerToggles &lt = st.toggles.at(l);
    if (lt.dca == Dca::On)
      return "dca = on (layer " + std::to_string(l) + "): not with " + tp +
             " (the CPU reference, tp_cpu.hpp, does not run it either); use parallel = tp1 for DCA";
    if (lt.sparse_prefill != SparsePrefill::Off)
      return "sparsePrefill = " + value_name(lt.sparse_prefill) + " (layer " + std::to_string(l) + "): not with " + tp +
             " (no tensor-parallel reference for it); set sparsePrefill to off, or use parallel = tp1";
  }
  return "";
}

}  // namespace qw
