// decode_steps.cu — qw_session_decode_steps on CUDA: n decode steps queued back to back, the sampled tokens fed to
// the next step on the device, one synchronization at the end. A small model's decode step is shorter than the
// host's turnaround between two qw_session_decode calls (the FFI call, the parameter copy, the graph launch, the
// synchronization and the token's read-back: ~0.1–0.2 ms against a 0.5B step of ~0.8 ms on an H200), and here
// that turnaround overlaps the steps before it. Each step replays the same graph as qw_session_decode, so its
// tokens are those of the step-by-step loop, bit for bit.
#include <algorithm>
#include <cstring>

#include "decode.hpp"
#include "session.cuh"

namespace qw {
namespace cuda_backend {

constexpr int32_t kParamWords = int32_t(kDParamBytes / 4);
constexpr int32_t kOutWord = 64;  // d_out_ - d_tokens_ in the parameter block (backend_cuda.cu)

// Step j's parameters: params [kParamWords] (the live block the graph reads) <- staged [kParamWords], except its
// tokens [B], which are the tokens step j - 1 sampled: read from the live block's out words before the copy
// overwrites them, and kept in prev [B] (the run's output). staged = nullptr: only keep the last step's tokens.
static __global__ void feed_step_kernel(int32_t *params, int32_t *prev, const int32_t *staged, int32_t B) {
  __shared__ int32_t tok[16];
  const int32_t t = threadIdx.x;
  if (prev && t < B) {
    tok[t] = params[kOutWord + t];
    prev[t] = tok[t];
  }
  if (!staged) return;
  __syncthreads();
  for (int32_t w = t; w < kParamWords; w += blockDim.x) params[w] = (prev && w < B) ? tok[w] : staged[w];
}

bool CudaSession::forward_steps(const Step &first, int32_t n_steps, Sink &sink, int32_t *out_tokens) {
  const bool kernels = first.profiling_mode == QW_PROFILING_KERNELS && trace_.enabled();
  // the step-by-step loop: the persistent arm (its own launch path), tensor parallelism (its ranks' streams), graphs
  // off, events or counters profiling, a hook capture
  if (first.toggles.decode == Decode::Persistent || tp_ || !graphs_on(first) || (first.profiling && !kernels) ||
      wants_any(first, sink))
    return false;
  const int32_t B = (int32_t)first.seq.size();
  qwc::CudaTileScope tile_scope(first.toggles.tile == Tile::Auto ? &tiles_ : nullptr);
  return dev_guard([&] {
    begin_forward(first);  // profiling is off or kernels here: no event marks
    ensure_logits(max_batch_);
    const Graph *g = decode_graph(first, sink);
    if (!g) return false;
    if ((size_t)n_steps > steps_cap_) {
      if (hsteps_params_) cudaFreeHost(hsteps_params_);
      if (hsteps_out_) cudaFreeHost(hsteps_out_);
      hsteps_params_ = hsteps_out_ = nullptr;
      steps_cap_ = 0;
      const size_t cap = std::max<size_t>((size_t)n_steps, 64);
      steps_params_ = DBuf(cap * kDParamBytes);
      steps_out_ = DBuf(cap * 16 * 4);
      CK(cudaMallocHost(&hsteps_params_, cap * kDParamBytes));
      CK(cudaMallocHost(&hsteps_out_, cap * 16 * 4));
      steps_cap_ = cap;
    }
    // every step's parameter block in one copy (the previous call synchronized: the pinned buffer is free)
    Step st = first;
    for (int32_t j = 0; j < n_steps; ++j) {
      for (int32_t i = 0; i < B; ++i) st.pos0[(size_t)i] = first.pos0[(size_t)i] + j;
      decode_params(st, hsteps_params_ + (size_t)j * kParamWords);
    }
    CK(cudaMemcpyAsync(steps_params_.p, hsteps_params_, (size_t)n_steps * kDParamBytes, cudaMemcpyHostToDevice, stream_));
    int32_t *params = dparams_.as<int32_t>(), *outs = steps_out_.as<int32_t>();
    const int32_t *staged = steps_params_.as<int32_t>();
    for (int32_t j = 0; j < n_steps; ++j) {
      for (int32_t i = 0; i < B; ++i) st.pos0[(size_t)i] = first.pos0[(size_t)i] + j;
      step_index_ = first.step_index + j;
      host0_ns_ = now_ns();
      // the feed is not part of the step's records: in kernels mode it falls in the gap before the step's first kernel
      feed_step_kernel<<<1, 128, 0, stream_>>>(params, j > 0 ? outs + (size_t)(j - 1) * B : nullptr,
                                               staged + (size_t)j * kParamWords, B);
      CK(cudaGetLastError());
      if (kernels) trace_.begin_step(step_index_, QW_PHASE_DECODE, host0_ns_);
      const cudaError_t e = cudaGraphLaunch(g->exec, stream_);
      if (kernels) trace_.end_step(nullptr, e == cudaSuccess ? g->ops : nullptr, attention_costs(st), true);
      CK(e);
    }
    feed_step_kernel<<<1, 32, 0, stream_>>>(params, outs + (size_t)(n_steps - 1) * B, nullptr, B);
    CK(cudaGetLastError());
    CK(cudaMemcpyAsync(hsteps_out_, outs, (size_t)n_steps * B * 4, cudaMemcpyDeviceToHost, stream_));
    CK(cudaStreamSynchronize(stream_));
    std::memcpy(out_tokens, hsteps_out_, (size_t)n_steps * B * 4);
    return true;
  });
}

}  // namespace cuda_backend
}  // namespace qw
