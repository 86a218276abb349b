// tp_group.cuh — the rank group of tensor parallelism on CUDA (toggle "parallel", tp_plan.hpp): one process drives
// every rank, rank r on device devices[r] with its own stream and its NCCL communicator (ncclCommInitAll: one
// communicator clique, so the Bun side keeps one model handle). Collectives are issued for all ranks inside one
// ncclGroupStart / ncclGroupEnd (a single thread calling NCCL for several devices must group them, else the first
// call waits for peers that are never launched).
//
// Graph capture: capture() begins stream capture on every rank's stream, runs `body` (kernels and collectives for
// all ranks), ends capture and instantiates one graph per rank; replay() launches them all. NCCL >= 2.9 supports
// capturing its collectives. The per-rank forward (src/cuda/tp_cuda.cuh) uses the communicators only (comm(r)):
// each rank's thread captures its own decode graph around its own collectives. Compile-checked here; run by
// cuda/dev/tplab.cu on a multi-GPU machine.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <vector>

#include "nccl.cuh"

namespace qwc {

class TpGroup {
 public:
  // Ranks 0..n-1 on devices first_device .. first_device + n - 1. Throws CudaError naming what is missing (devices,
  // NCCL, peer access is not required: NCCL picks NVLink / PCIe / shared memory itself).
  TpGroup(int n, int first_device = 0);
  ~TpGroup();
  TpGroup(const TpGroup &) = delete;
  TpGroup &operator=(const TpGroup &) = delete;

  int ranks() const { return int(devices_.size()); }
  int device(int r) const { return devices_[size_t(r)]; }
  cudaStream_t stream(int r) const { return streams_[size_t(r)]; }
  // Rank r's communicator, for NCCL calls from rank r's own thread on a stream of rank r's device (the per-rank CUDA
  // forward, src/cuda/tp_cuda.cuh: one thread per device, each with its comm, needs no group calls).
  ncclComm_t comm(int r) const { return comms_[size_t(r)]; }

  // In place on every rank: buf[r][0..count) = sum over ranks (NCCL's order: ring or tree, not the rank order).
  void all_reduce_sum(void *const *buf, size_t count, NcclType type);
  // recv[r][q * count .. (q + 1) * count) = send[q][0..count) for every rank r (the logits gather of lm_head).
  void all_gather(const void *const *send, void *const *recv, size_t count, NcclType type);
  // Runs f(r) for every rank with its device current.
  void each(const std::function<void(int)> &f);
  void sync();  // waits for every rank's stream

  // One graph per rank of what body() issues on the ranks' streams (body runs once, under capture).
  void capture(const std::function<void()> &body);
  void replay();
  bool captured() const { return !graphs_.empty(); }

 private:
  std::vector<int> devices_;
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  std::vector<cudaGraph_t> graphs_;
  std::vector<cudaGraphExec_t> execs_;
  void drop_graphs();
};

}  // namespace qwc
