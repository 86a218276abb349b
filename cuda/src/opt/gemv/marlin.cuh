// marlin.cuh — gemv = marlin (issue 10 items 2 and 4): the launchers of opt/gemv/marlin.cu and dequant.cu.
//   * launch_gemv_marlin (declared in gemv.cuh, which launch_gemv calls first when GemvArgs::mw is set): decode
//     GEMV for batch 1..16 over W4/W8 weights in the repacked layout (marlin_layout.hpp) on mma.sync tensor cores.
//   * launch_marlin_pack: the repack, on the device, from a native W4/W8 matrix (done once per model, lazily).
//   * launch_dequant_bf16_fast: vectorized W4/W8/F16/F32 -> bf16 for prefill; the same values as the generic
//     dequant kernel (swiglu.cu launch_dequant_bf16), 8 elements per thread, no 64-bit division per element.
// COMPILE-ONLY so far: written without a GPU; cuda/dev/lab/marlin.cu checks every piece against a CPU reference.
#pragma once
#include "common.cuh"
#include "marlin_layout.hpp"

namespace qwc {

// Whether w can be repacked (type W4/W8, rows % 64, cols % 128, group in {16, 32, 64, 128}).
bool marlin_packable(const WMat &w);
// Bytes of the repacked matrix (0 when not packable).
size_t marlin_packed_bytes(const WMat &w);
// Repacks w into dst (marlin_packed_bytes(w) bytes) and returns its descriptor.
MarlinMat launch_marlin_pack(const WMat &w, uint8_t *dst, cudaStream_t stream);
// The split of a matrix as the launcher will use it (the knobs below, else the rule; type WT_W4 / WT_W8).
MarlinPlan marlin_plan_for(int64_t rows, int64_t cols, int32_t type, int32_t group);

// Run-time knobs of the decode kernel (issue 10; `qwlab marlin --sweep` times them). Read once from the environment
// (QW_MARLIN_KSU, QW_MARLIN_BPS, QW_MARLIN_STAGES, QW_MARLIN_COMPACT, QW_MARLIN_RB, QW_MARLIN_PERSIST). A knob left
// unset (or out of range) follows
// marlin_rule (marlin_layout.hpp: the defaults, a rule from N, K, bits and the SM count, derived from the H100 sweep
// of 2026-12-05); a set one overrides the rule for every matrix. They change the split, so the engine's split-K
// workspace (sized at upload from marlin_plan_for) must be sized under the same knobs: set them before the model
// loads (a launch whose partials do not fit the workspace runs the simple kernels instead).
struct MarlinKnobs {
  int ksu_max = 0;   // widest K slice, in 128-column units (1..kMarlinMaxKsu; 0: rule)
  int bps = 0;       // the plan splits K until n_blk * S >= bps * SMs (1..8; 0: rule)
  int stages = 0;    // cp.async ring depth per warp, 2..kMarlinMaxStages (0: rule). Lowered to fit smem.
  int compact = -1;  // 1: shared memory holds the batch's activation rows only, not 8 / 16 (padding reads zeros);
                     // 0: all 8 / 16; -1: rule
  int rb = 0;        // rows per block, 64 / 128 / 256 (QW_MARLIN_RB; 0: rule). Wider blocks read each activation
                     // slice once for more rows (at M16 a 64-row W4 block reads as many activation bytes as weight
                     // bytes); 128 / 256 need rows % rb == 0, else 64 runs.
  int persist = -1;  // 1: as many blocks as are resident at once, each walking a contiguous range of (row block, K
                     // slice) tiles with one cp.async ring (QW_MARLIN_PERSIST; same bits; rb 64 only); N >= 2: N
                     // blocks (the lab: uneven ranges on small matrices); 0: one tile per block; -1: rule
};
MarlinKnobs marlin_knobs();
// Sets the knobs for later plans and launches (the lab; clamped as the environment is); returns what was set.
MarlinKnobs marlin_set_knobs(const MarlinKnobs &k);
// The knobs in force for one matrix on the current device: the rule, overridden by every knob that is set.
MarlinRule marlin_knobs_for(int64_t rows, int64_t cols, int32_t type, int32_t group);
// What the last launch_gemv_marlin actually ran (host-side record for the lab; not synchronized, one caller).
struct MarlinLaunch {
  int S = 0, ksu = 0, stages = 0, blocks = 0, compact = 0, rb = 0, zero_point = 0;
  size_t smem = 0;
};
MarlinLaunch marlin_last_launch();

// ---- the prefill GEMM over the packed layout (marlin_gemm.cu; sm_90a: TMA, wgmma with the weights dequantized
// into its A registers). Why it cannot run (null when it can): no packed copy, rows % 128, unaligned activations, not
// an sm_90 device, no TMA map encoder in the driver.
struct GemmArgs;
const char *marlin_gemm_unsupported(const MarlinMat &w, int64_t m_tokens, int64_t lda, const void *act);
// Whether quantized prefill takes the fused GEMM for this shape: QW_MARLIN_GEMM=0 never (the chunked dequantization
// + bf16 GEMM everywhere), unset or 1 where marlin_gemm_preferred, 2 wherever it is supported (the A/B of the rule).
bool marlin_gemm_requested(int64_t rows, int64_t cols, int64_t m_tokens);
// g.c [g.m, g.n] (g.out_kind: bf16, fp32 or fp32 added) = g.a [g.m, g.k] . W^T with W = w (g.n x g.k, packed);
// g.w is not read. Throws CudaError when marlin_gemm_unsupported. Returns the kernel's name for the op record.
const char *launch_marlin_gemm(const GemmArgs &g, const MarlinMat &w, cudaStream_t stream);

// out [w.rows, w.cols] bf16 = the weights of w (any non-bf16 native type, cols % 8 == 0, group % 8 == 0).
// Returns false when the shape does not allow the vectorized kernel (the caller runs launch_dequant_bf16).
bool launch_dequant_bf16_fast(__nv_bfloat16 *out, const WMat &w, cudaStream_t stream);

}  // namespace qwc
