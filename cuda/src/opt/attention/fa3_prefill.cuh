// fa3_prefill.cuh — flash prefill attention for sm_90a in the manner of FlashAttention-3 (fa3_prefill.cu): TMA loads
// of Q and of a multi-stage K/V ring, wgmma from swizzled shared memory, one producer warpgroup and two (hd 128) or
// three (hd 64) consumer warpgroups, causal GQA over the bf16 KV cache with chunked prefill (queries at
// pos0..pos0+n-1 see all earlier keys).
// The query heads of a kv group are packed into one 128- (hd 128) or 192-row (hd 64) tile, so each K/V tile is loaded
// once for the group.
//
// The default prefill attention on an sm_90 device since its H100 runs (2026-12-05: every lab case and engine test
// correct; 0.94-1.17x cuDNN at hd 128 with the split K/V release, README "Third run"). QW_FLASH_WGMMA=0 selects the
// mma.sync kernel, which stays the sm_80 path, the fallback for shapes this kernel refuses and the lab's reference arm.
#pragma once

#include "attention.cuh"

namespace qwc {

// Why this kernel cannot run `a` on a device of compute capability major.minor ("" when it can): sm_90 only, head
// dim 64 or 128, G = nH / nKV <= the tile's rows, no tree mask, 16-byte aligned q and cache.
const char *fa3_prefill_unsupported(const PrefillAttnArgs &a, int cc_major, int cc_minor);
// The same on the current device (its compute capability queried; a CUDA error throws CudaError).
const char *fa3_prefill_unsupported_here(const PrefillAttnArgs &a);
// False when QW_FLASH_WGMMA=0 (read at every call, so a process may flip it between runs); unset or 1: true. Any other
// value throws CudaError naming the two.
bool fa3_prefill_requested();
// The driver's cuTensorMapEncodeTiled (a PFN_cuTensorMapEncodeTiled_v12000, reached through
// cudaGetDriverEntryPointByVersion: no -lcuda), or null when the driver has none. Shared with gemv = marlin's prefill
// GEMM (opt/gemv/marlin_gemm.cu).
void *fa3_tensor_map_encoder();
// One sequence, like launch_prefill_attention; throws CudaError when unsupported or when the driver has no
// cuTensorMapEncodeTiled. Returns the kernel's name for the op record. pingpong = false: the consumer warpgroups issue
// their GEMMs unordered (the lab times both).
const char *launch_prefill_attention_fa3(const PrefillAttnArgs &a, cudaStream_t stream, bool pingpong = true);

// Dual Chunk Attention prefill on this kernel (a.dca set, the intra queries in a.q; head dim 64 or 128, any span): three
// launches, one per DCA part (intra, successive, inter: dca::part_keys), each over only its part's key tiles with its
// part's queries, the later two merged into z by log-sum-exp through lse ([a.n][nH] floats of scratch). Same FLOPs as
// causal attention; z rounds to bf16 between parts (the mma.sync kernel's one online softmax does not).
// QW_DCA_WGMMA=0 (dca_prefill_fa3_requested false) keeps the mma.sync DCA kernel.
bool dca_prefill_fa3_requested();
const char *launch_prefill_attention_dca_fa3(const PrefillAttnArgs &a, float *lse, cudaStream_t stream);

// SageAttention on wgmma (sage.cu: on an sm_90 device at head dim 128 unless QW_SAGE_WGMMA=0): the INT8 Q and smoothed K~ that
// Sage's quant kernels wrote (sage.cuh SageBufs) and their scales; sage-int8's P.V reads the bf16 V of the cache as
// flash does, sage-fp8's the transposed e4m3 V~ with its per-channel scale and mean.
struct Fa3Sage {
  const int8_t *qi = nullptr;   // [n][nH][128]
  const float *qs = nullptr;    // [nH][qs_stride]: one scale per 32 query rows of the call
  const int8_t *ki = nullptr;   // [nKV][ctx64][128]
  const float *ks = nullptr;    // [nKV][ctx64 / 64]: one scale per 64 keys
  const uint8_t *vt = nullptr;  // fp8: [nKV][128][ctx64] e4m3, sage_vt_pos key order inside each 32
  const float *vs = nullptr, *vmean = nullptr;  // fp8: [nKV][128]
  int32_t qs_stride = 0, ctx64 = 0;
};
const char *launch_sage_fa3(const PrefillAttnArgs &a, const Fa3Sage &q, bool fp8, cudaStream_t stream);

}  // namespace qwc
