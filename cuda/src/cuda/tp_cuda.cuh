// tp_cuda.cuh — tensor parallelism on CUDA (model option parallel = tp2 | tp4 | tp8; plan: opt/parallel/tp_plan.hpp; CPU
// reference: tp_cpu.hpp). COMPILE-CHECKED ONLY: no multi-GPU machine has run it (README, "Tensor parallelism").
//
// One process, one model handle, N ranks on devices d0 .. d0 + N - 1 (d0 = the backend's "device" option):
//   load     every tensor is sharded as it arrives (tp_shard) and each rank's CudaModel keeps only its shard; the
//            ranks' finalize (the tp1 upload: fused qkv / gate_up layouts) runs on the ranks' threads, each on its
//            own device, so no device ever holds more than its shards.
//   session  one CudaSession per rank over its CudaModel (the rank's head / KV-head / intermediate / vocab counts),
//            linked to its rank by a TpLink (session.cuh), its KV cache holding its KV heads; one communicator
//            clique per session (TpGroup: ncclCommInitAll), one thread per rank (TpWorkers, tp_host.hpp).
//   step     every rank runs the tp1 forward of its session at once, on its thread; the forward calls the rank's
//            collectives where tp_ is set (tp_session.cu): embedding all-reduce, per layer o_proj -> all-reduce ->
//            residual add and down -> all-reduce -> residual add (the unfused arms: the fp32 partial sums are
//            summed before the add), lm_head slice -> all-gather -> unpack, then the device sampler on every rank
//            (identical logits, identical token: checked each step). The decode step, collectives included, is
//            each rank's CUDA graph (run_decode captures and replays it as at tp1).
//   records  each rank's records reach the front stamped with the rank (RankSink); all-reduce / all-gather are ops
//            of their own. Profiling mode kernels (CUPTI) is refused: its records are not mapped to ranks yet.
//   hooks    every rank is told the step's hooks (the same eager / graph path everywhere); replicated tensors are
//            captured from rank 0, sharded ones (q, k, v, z, mlp pre/post) all-gathered into the tp1 layout first.
#pragma once

#include <memory>

#include "backend.hpp"

namespace qw {
namespace cuda_backend {

// The backend model of a load with cfg.tp > 1. Throws naming what is missing: devices, NCCL, or a model the
// ranks cannot split (tp_plan's message).
std::unique_ptr<BackendModel> tp_cuda_model(const Config &cfg, int first_device);

}  // namespace cuda_backend
}  // namespace qw
