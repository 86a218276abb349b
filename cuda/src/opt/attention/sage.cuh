// sage.cuh — SageAttention prefill on CUDA (toggle attention = sage-int8 | sage-fp8): the kernels and their scratch.
// The reference they are checked against is the CPU arm (sage_ref.hpp lists every step and rounding); the lab case
// is cuda/dev/lab/sage.cu. One call = one sequence's chunk of n query rows at positions pos0..pos0+n-1 against the
// bf16 cache [slots][nKV][max_ctx][d], keys [0, pos0 + n) (chunked prefill against the existing cache, causal).
//
// Five launches per call (sage.cu):
//  1. stats    grid (ceil(len / 256), nKV), (d, 8) threads: per chunk of keys, fp64 sums of K and V and min / max of V
//              per channel; 1b. final, grid nKV: the partials (chunk order) into the smooth-K / smooth-V vectors and
//              V's fp8 scale.
//  2. kv quant grid (ceil(len / 64), nKV): K~ = K - mean as
//              INT8 per 64-key block with its scale; sage-fp8 also V~ = V - vmean per channel as e4m3 with the
//              per-channel scale 448 / max|V~|, stored transposed [nKV][d][keys] in the key order the FP8 mma's A
//              operand has when P comes straight from the Q.K accumulators (sage_layout.hpp).
//  3. q quant  grid (ceil(n / 32), nH): Q as INT8 per 32 rows of one query head with its scale.
//  4. attend   grid (ceil(n / R), nKV), 128 threads, R = 64 / G query positions: the block's 64 mma rows are the G
//              query heads of one kv head times R positions (row m = position m / G, head m % G), so the heads of a
//              group share every K / V tile load. Q.K~ on mma.sync m16n8k32 s8 (int32), dequantized per row
//              (sq) and per tile (sk) into the fp32 online softmax; P.V in bf16 m16n8k16 (sage-int8, V read from
//              the bf16 cache) or FP8 e4m3 m16n8k32 (sage-fp8, sm_89+) into a per-tile fp32 partial that is added
//              to the running output after the tile's rescale (two-level accumulation).
//              At hd 128 on sm_90 (unless QW_SAGE_WGMMA=0) the attend step is the wgmma flash kernel with these INT8 /
//              e4m3 operands instead (fa3_prefill.cuh launch_sage_fa3).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention.cuh"
#include "sage_layout.hpp"

namespace qwc {

constexpr int kSageQRows = 32;     // query rows per INT8 scale (sage_ref.hpp kSageQBlock)
constexpr int kSageKeys = 64;      // keys per INT8 scale and per softmax / P.V tile (kSageKBlock)
constexpr int kSageChunk = 256;    // keys per partial of the stats pass (a block of 8 strands x d channels)

// Device scratch of the Sage arms, sized for one call of up to `rows` query rows and `max_ctx` keys. The kernels get
// it by value (SageBufs); SageScratch owns the one allocation.
struct SageBufs {
  int8_t *qi = nullptr;   // [rows][nH][d]
  float *qs = nullptr;    // [nH][ceil(rows / 32)]
  int8_t *ki = nullptr;   // [nKV][ctx64][d]
  float *ks = nullptr;    // [nKV][ctx64 / 64]
  uint8_t *vt = nullptr;  // [nKV][d][ctx64] e4m3, sage_vt_pos order inside each 32 keys
  float *vs = nullptr;    // [nKV][d] V scale (max|V~| / 448)
  float *vmean = nullptr; // [nKV][d] smooth-V vector (every arm; the fp8 arms add it back)
  float *kmean = nullptr; // [nKV][d] smooth-K vector
  float *vinv = nullptr;  // [nKV][d] 448 / max|V~| (0 where V~ is 0): the fp8 quantizer's multiplier
  double *part = nullptr; // [nKV][chunks][2][d] fp64 sums of K and V
  float *vext = nullptr;  // [nKV][chunks][2][d] min and max of V
  int32_t rows = 0, n_heads = 0, n_kv = 0, head_dim = 0, ctx64 = 0;
};
struct SageScratch {
  SageBufs b;
  void *base = nullptr;
  size_t bytes = 0;
  // (Re)allocates when the shapes grow; throws CudaError on failure.
  void ensure(int32_t rows, int32_t n_heads, int32_t n_kv, int32_t head_dim, int32_t max_ctx);
  void release();
  SageScratch() = default;
  SageScratch(const SageScratch &) = delete;
  SageScratch &operator=(const SageScratch &) = delete;
  ~SageScratch() { release(); }
};

// One sequence's call: the flash kernel's arguments (attention.cuh) plus the arm and the scratch.
struct SagePrefillArgs {
  PrefillAttnArgs p;          // out, q (after RoPE), the bf16 cache, slot, pos0, n, shapes
  bool fp8 = false;
  SageScratch *ws = nullptr;  // ensure()d by the launcher
};

// The mma kernels need head_dim 64 or 128 and G = nH / nKV <= 8; sage-fp8 needs compute capability >= 8.9.
// Returns an empty string when the shape and device can run the arm, else what is missing.
const char *sage_unsupported(bool fp8, int32_t head_dim, int32_t n_heads, int32_t n_kv, int device);
// Runs the four launches on `stream`; returns the kernel name of the record ("attn_prefill_sage_int8" / "_fp8").
const char *launch_sage_prefill(const SagePrefillArgs &a, cudaStream_t stream);

}  // namespace qwc
