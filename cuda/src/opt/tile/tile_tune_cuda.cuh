// tile_tune_cuda.cuh — the CUDA tuner's measurement of one GEMV / GEMM shape (toggle tile, tile.hpp; the CPU's is
// tile_cpu.cpp tile_tune_json). The session glue (src/cuda/tile_session.cu) lists the model's shapes and writes the
// JSON; this part only needs a weight and the candidates, so the kernel lab can call it too.
// WRITTEN WITHOUT A GPU, compile-checked only (test/gpu/tile.test.ts runs it).
//
// What one shape's measurement does, on the session's stream:
//  - input: random bf16 activations in [-1, 1] (fixed seed), batch 1 for a GEMV (prologue bf16, epilogue fp32: the
//    decode GEMVs' prologues / epilogues do not change the candidate's blocking), `tokens` rows for a GEMM (the
//    weight dequantized to bf16 first where it is not bf16, as prefill does; fp32 out);
//  - the candidate is selected as in the engine: a CudaTileTable with the one entry key -> candidate, active through
//    a CudaTileScope around the launches;
//  - check: after max(1, warmup) unmeasured runs into an output poisoned with NaN, each candidate's output is compared
//    with fixed's: bitwise, else every element within the bound of a reordered fp32 sum of the same K products,
//    2 gamma_K a + 2 u a with a = sum_k |w_k x_k| (fp64 on the device, w as the kernels load it), gamma_K =
//    K u / (1 - K u), u = 2^-24 (Higham eq. 4.4, twice). GEMV candidates with another K split (ks) than fixed's
//    pick_ks are reordered sums, so they are within the bound, not bitwise (tile_cuda.cuh);
//  - timing: cudaEvents around `inner` back-to-back launches (inner makes one repetition last rep_ms; the first
//    fixed runs set it), divided by inner; repetitions interleaved over the candidates. A GEMV rotates over copies
//    of the weight that together exceed twice the L2 (at most 256 copies: a matrix under ~400 KiB stays partly
//    L2-resident, as it would in a model that small), so its weights stream from DRAM as in a decode step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.cuh"
#include "tile_cuda.cuh"

namespace qwc {

// A weight as the session holds it, with the byte sizes of its buffers (the GEMV's rotating copies).
struct TuneWeight {
  WMat m;
  size_t data_bytes = 0, scale_bytes = 0, offset_bytes = 0;
};

struct TuneParams {
  int reps = 5, warmup = 1;
  double rep_ms = 2.0;
  int64_t tokens = 1;   // GEMM rows (a GEMV runs batch 1)
  size_t l2_bytes = 0;  // the device's L2 (cudaDeviceProp::l2CacheSize)
};

struct TunedCandidate {
  const CudaTileCandidate *cand = nullptr;
  std::vector<double> samples_ns;  // per launch, one per repetition
  double max_abs = 0;              // the largest |candidate - fixed| (1e30 for NaN)
  bool bitwise = true, within = true;
};

struct TunedShapeResult {
  int64_t inner = 1;
  std::vector<TunedCandidate> cands;  // in the order given (fixed first)
};

// cands[0] must be fixed. Throws CudaError on a CUDA failure.
TunedShapeResult tune_cuda_shape(bool gemv, const TuneWeight &w, const std::vector<const CudaTileCandidate *> &cands,
                                 const TuneParams &p, cudaStream_t s);

}  // namespace qwc
