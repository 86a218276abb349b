// tp_host.hpp — the host side of the CUDA ranks of tensor parallelism (toggle "parallel" = tp2..tp8; the group and
// its sessions: src/cuda/tp_cuda.cuh), kept free of CUDA so that the CPU tests exercise it (test_tp_host.cpp):
//   TpWorkers    one thread per rank (NCCL's one-thread-per-device model: each rank's session runs the tp1 forward
//                with its collectives inline, no NCCL group calls), all ranks run a job together, failures collected
//   RankSink     a rank's view of the step's Sink: records stamped with the rank (qw_op_record.rank); every rank is
//                told the same hooks are wanted (so that every rank takes the same path — eager or its decode graph —
//                and the collectives of the ranks stay alike), but only rank 0's captures and logits are kept (every
//                rank holds the same replicated tensors and the same gathered logits)
//   tp_step_refusal  what a tensor-parallel CUDA step refuses, said before any rank launches anything (a rank that
//                throws half-way would leave the others waiting in a collective)
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend.hpp"

namespace qw {

class TpWorkers {
 public:
  // n threads; thread r first runs init(r) (CUDA: cudaSetDevice of rank r's device, once: the device is per thread).
  TpWorkers(int32_t n, std::function<void(int32_t)> init);
  ~TpWorkers();
  TpWorkers(const TpWorkers &) = delete;
  TpWorkers &operator=(const TpWorkers &) = delete;
  int32_t size() const { return int32_t(threads_.size()); }
  // Runs job(r) on every rank's thread at once and waits for all. When some throw, rethrows the lowest rank's
  // exception after every rank has returned; failed_ranks() then lists them (else it is empty).
  void run(const std::function<void(int32_t)> &job);
  const std::vector<int32_t> &failed_ranks() const { return failed_; }

 private:
  void loop(int32_t r, const std::function<void(int32_t)> &init);
  std::mutex mu_;
  std::condition_variable go_, done_;
  const std::function<void(int32_t)> *job_ = nullptr;
  uint64_t gen_ = 0;
  int32_t pending_ = 0;
  bool stop_ = false;
  std::vector<std::exception_ptr> err_;
  std::vector<int32_t> failed_;
  std::vector<std::thread> threads_;
};

class RankSink final : public Sink {
 public:
  // `mu` serializes the ranks' record() calls into the one sink (shared by the step's RankSinks).
  RankSink(Sink &sink, int32_t rank, std::mutex &mu) : s_(sink), rank_(rank), mu_(mu) {}
  int32_t kernel_id(const char *name) override { return s_.kernel_id(name); }  // thread-safe (Sink's contract)
  void record(const qw_op_record &r) override;
  bool wants(Hook h, int32_t layer) const override { return s_.wants(h, layer); }
  void capture(Hook h, int32_t layer, const float *host, int32_t rows, int32_t cols) override;
  void logits(const float *host, int32_t rows, int32_t vocab) override;
  // Rank 0's rows are read at once, on the rank's thread (the reader's device is current there, not on the API's).
  void logits_deferred(LogitsReader &r, int32_t rows, int32_t vocab) override;

 private:
  Sink &s_;
  int32_t rank_;
  std::mutex &mu_;
};

// "" when a step of `ranks` ranks can run on CUDA, else the QW_ERR_UNSUPPORTED message: dca = on, sparsePrefill
// other than off, tree steps (speculative = eagle) — none of which the CPU reference (tp_cpu.hpp) runs either.
// Every hook runs: replicated ones (resid_*, attn_out, logits, ln_final) from rank 0, sharded ones (q, k, v, z, mlp
// pre/post) gathered into the tp1 layout, as the CPU emulation does.
std::string tp_step_refusal(const Config &full, const Step &st, int32_t ranks);

}  // namespace qw
