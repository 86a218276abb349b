// fa3_prefill.cu — flash prefill attention for sm_90a (see fa3_prefill.cuh). WRITTEN WITHOUT A GPU, compile-checked only.
//
// CTA = 1 + NC warpgroups (NC = 2 consumers at hd 128: 384 threads, 128-row tiles; NC = 3 at hd 64: 512 threads,
// 192-row tiles), grid (ceil(n / P), nKV), P = 64 * NC / G query positions per tile:
//   warpgroup 0, producer: after setmaxnreg.dec one thread issues TMA — Q once (D/64 boxes of (64, G, 1, P)), then for
//     every key tile j the K and V boxes into stage j % S, after waiting on empty[stage] (parity of the previous round).
//   warpgroups 1..NC, consumers (packed rows 64(wg-1) .. 64(wg-1)+63): per key tile, S = Q.K^T by wgmma m64n128k16 (Q and K
//     K-major from swizzled shared memory), causal mask on the tiles that reach past the CTA's first query position,
//     online softmax in the accumulator layout (a row lives in 4 lanes of a quad), P packed to bf16 straight from S's
//     registers (the f32 accumulator layout is the bf16 A-operand layout), O += P.V by wgmma with A from registers and
//     V MN-major (trans-b), then one arrival per warp on empty[stage]. As FA3: tile j's Q.K^T is issued together with
//     tile j-1's P.V and tile j's softmax overlaps that P.V (intra-warpgroup overlap); with PP the consumer warpgroups
//     also take turns issuing, round robin (pingpong), so one's softmax overlaps another's GEMMs.
// Invariants: every smem tile base is 1024-aligned (128B swizzle atom, see fa3_layout.hpp); each barrier phase gets
// exactly one expect_tx arrival and all the bytes of its boxes (TMA counts zero-filled out-of-bounds elements too).
// Not yet done (FA3 has them): a persistent tile scheduler, one launch for a whole varlen batch (the engine's prefill
// steps hold one sequence), an smem-staged TMA store of O.
#include "fa3_prefill.cuh"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000
#include <cuda_fp8.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "dca_positions.hpp"
#include "fa3_layout.hpp"
#include "fa3_sm90.cuh"
#include "mma_sync.cuh"
#include "sage_layout.hpp"

namespace qwc {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
// log2(448): sage-fp8's static P scale (P' = e4m3(448 p), sage_ref.hpp) in the exponent, so exp2 gives P' directly
constexpr float kLog2E4m3Max = 8.807354922057604f;

// Two floats to e4m3 (round to nearest even, saturating: sage_ref.hpp e4m3_encode), lo in the low byte.
__device__ __forceinline__ uint32_t e4m3x2(float lo, float hi) {
  return (uint32_t)__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3);
}

struct Fa3Params {
  CUtensorMap tq, tk, tv;  // 64-byte aligned by their type; the kernel takes them by __grid_constant__ reference
  __nv_bfloat16 *out;      // z [n][nH * D]
  int32_t pos0, n, n_heads, g, p;
  float scale_log2;        // log2(e) / sqrt(D): scores live in the exp2 domain
  // ARM 1, 2 (sage-int8, sage-fp8): tq / tk map Sage's INT8 Q [n][nH][D] and K~ [nKV][ctx64][D] (sage.cuh SageBufs),
  // whose scales are qs [nH][qs_stride] (one per 32 query rows of the call) and ks [nKV][ks_n] (one per 64 keys).
  // ARM 2: tv maps the e4m3 V~ transposed, [nKV][D][ctx64] (keys in sage_vt_pos order per 32), with the per-channel
  // scale vs and mean vmean [nKV][D].
  const float *qs = nullptr, *ks = nullptr, *vs = nullptr, *vmean = nullptr;
  int32_t qs_stride = 0, ks_n = 0;
  // Dual Chunk Attention (ARM 0; launch_prefill_attention_dca_fa3): dca_part -1 is causal attention; 0, 1, 2 the
  // intra / successive / inter part (dca::part_keys over span dca_span): a row sees only its part's keys, tq maps that
  // part's queries. The first part writes z and lse (the rows' log2-sum-exp2 of their scaled scores, [n][nH]); a later
  // one (dca_merge) merges its (o, l, m) into them by log-sum-exp.
  int32_t dca_part = -1, dca_span = 0, dca_merge = 0;
  float *lse = nullptr;
};

// ARM 0: flash (bf16). ARM 1, sage-int8 (hd 128 only): Q.K~^T by m64n128k32 s8 wgmma from 128-byte int8 rows (one
// column block), dequantized into S by the row's Q scale and the key block's K scale; the softmax, P.V (bf16 V of the
// cache) and the pipeline are the bf16 kernel's. ARM 2, sage-fp8: ARM 1's Q.K~, then P' = e4m3(448 p) from S's registers
// times the transposed e4m3 V~ by m64n128k32 e4m3 wgmma (V~'s key order makes S's register order P's A fragment, as in
// the mma.sync kernel: sage_layout.hpp), each tile's P.V into a partial from zero that is added to O (two levels,
// sage_ref.hpp step 4); z = O vs / 448 / l + vmean. ARM 3: ARM 2 with every fourth score's exp2 on the FMA pipe
// (sage_exp2_poly; QW_SAGE_POLY_EXP=1, a lab A/B: the SFU's 16 exp2 a clock per SM bound fp8 by count).
// ST: stages of the K/V ring (0: fa3_stages(D)). KSPLIT: a stage's K is released as soon as its Q.K^T has finished
// (k_empty) and its V after its P.V (v_empty), as FA3's two pipelines, instead of both after P.V: the producer may load
// the next K while a P.V still reads the old V. KSPLIT is the default at hd 128 (fa3_variant says why); ST 3 a lab variant.
template <int D, int NC, bool PP, int ARM, int ST = 0, bool KSPLIT = false>
__global__ void __launch_bounds__(fa3_threads(NC), 1) fa3_prefill_kernel(const __grid_constant__ Fa3Params prm) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool I8 = ARM >= 1, F8 = ARM >= 2, POLY = ARM == 3;  // ARM 3: sage-fp8 with a quarter of exp2 on FMAs
  static_assert(!I8 || D == 128, "sage on wgmma: head dim 128 (one 128-byte int8 row per query / key)");
  constexpr int S = ST > 0 ? ST : fa3_stages(D);
  constexpr int ROWS = fa3_rows(NC);  // packed query rows of the tile
  constexpr int KB = D / kFa3Atom;  // 64-column blocks per row
  constexpr int QKB = I8 ? 1 : KB;  // 128-byte column blocks of a Q / K row
  constexpr int NO = D / 2;         // O registers per thread (m64nD f32: D/8 chunks x 4)
  constexpr float kNegBig = -1e30f;  // masked score: finite, so 2^(kNegBig * scale - m) is 0 without inf - inf
  extern __shared__ unsigned char smem_raw[];
  // the dynamic base is only 16-aligned by contract: round up to the swizzle atom (fa3_smem_bytes adds the slack)
  const uint32_t base = (smem_u32(smem_raw) + (kFa3SwizzleAtom - 1)) & ~(uint32_t)(kFa3SwizzleAtom - 1);
  const uint32_t bar = base + fa3_bar_off(D, NC, S), abort_word = base + fa3_abort_off(D, NC, S, KSPLIT);
  const uint32_t q_full = bar;
  auto k_full = [&](int s) { return bar + 8u * (uint32_t)(1 + s); };
  auto v_full = [&](int s) { return bar + 8u * (uint32_t)(1 + S + s); };
  auto empty = [&](int s) { return bar + 8u * (uint32_t)(1 + 2 * S + s); };  // KSPLIT: K's release only
  auto v_empty = [&](int s) { return KSPLIT ? bar + 8u * (uint32_t)(1 + 3 * S + s) : empty(s); };

  const int qt = (int)gridDim.x - 1 - (int)blockIdx.x;  // the longest (last) query tiles start first
  const int kvh = blockIdx.y;
  const int t0 = qt * prm.p;
  // The CTA's keys (fa3_cta_keys): causal, every key up to its last row's position; a DCA part, from its first row's
  // lo to its last row's hi (dca::part_keys).
  const int p_first = prm.pos0 + t0, p_last = fa3_kv_end(prm.pos0, prm.n, t0, prm.p) - 1;
  int lo_first = 0, hi_first = p_first + 1, lo_last = 0, hi_last = p_last + 1;
  if (prm.dca_part >= 0) {
    qw::dca::part_keys(prm.dca_part, p_first, prm.dca_span, &lo_first, &hi_first);
    qw::dca::part_keys(prm.dca_part, p_last, prm.dca_span, &lo_last, &hi_last);
  }
  const Fa3CtaKeys keys = fa3_cta_keys(lo_first, hi_first, lo_last, hi_last);
  const int jb = keys.jb, n_tiles = keys.n_tiles;  // loop step j reads key tile jb + j
  if (n_tiles == 0) return;  // block-uniform: no row of the tile has a key of this DCA part (a merging part only)
  const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;

  if (threadIdx.x == 0) {
    fa3_mbar_init(q_full, 1);
    for (int s = 0; s < S; ++s) {
      fa3_mbar_init(k_full(s), 1);
      fa3_mbar_init(v_full(s), 1);
      fa3_mbar_init(empty(s), 4 * NC);  // one arrival per consumer warp
      if (KSPLIT) fa3_mbar_init(v_empty(s), 4 * NC);
    }
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(abort_word), "r"(0u) : "memory");
    fa3_fence_barrier_init();
  }
  __syncthreads();
  pdl_wait();  // q and the cache rows come from the kernels before this one
  pdl_trigger();

  if (wg == 0) {  // ------------------------------------------------------------------------------- producer
    fa3_setmaxnreg_dec<kFa3ProducerRegs>();
    if (warp == 0 && lane == 0) {
      fa3_prefetch_map(&prm.tq);
      fa3_prefetch_map(&prm.tk);
      fa3_prefetch_map(&prm.tv);
      fa3_mbar_expect_tx(q_full, (uint32_t)QKB * fa3_block_bytes(prm.g * prm.p));
      for (int c = 0; c < QKB; ++c)
        fa3_tma_4d(base + fa3_q_off() + (uint32_t)c * fa3_block_bytes(ROWS), &prm.tq, q_full, c * kFa3Atom, 0, kvh,
                   t0);
      for (int j = 0; j < n_tiles; ++j) {
        const int s = j % S;
        fa3_mbar_wait(empty(s), ((j / S) & 1) ^ 1, abort_word);  // KSPLIT: K's slot only; V's below
        fa3_mbar_expect_tx(k_full(s), (uint32_t)QKB * fa3_block_bytes(kFa3Keys));
        for (int c = 0; c < QKB; ++c)
          fa3_tma_3d(base + fa3_k_off(D, NC, s) + (uint32_t)c * fa3_block_bytes(kFa3Keys), &prm.tk, k_full(s),
                     c * kFa3Atom, (jb + j) * kFa3Keys, kvh);
        if (KSPLIT) fa3_mbar_wait(v_empty(s), ((j / S) & 1) ^ 1, abort_word);
        if constexpr (F8) {  // V~^T: D channel rows of the tile's 128 key bytes
          fa3_mbar_expect_tx(v_full(s), fa3_block_bytes(D));
          fa3_tma_3d(base + fa3_v_off(D, NC, s, S), &prm.tv, v_full(s), (jb + j) * kFa3Keys, 0, kvh);
        } else {
          fa3_mbar_expect_tx(v_full(s), fa3_tile_bytes(kFa3Keys, D));
          for (int c = 0; c < KB; ++c)
            fa3_tma_3d(base + fa3_v_off(D, NC, s, S) + (uint32_t)c * fa3_block_bytes(kFa3Keys), &prm.tv, v_full(s),
                       c * kFa3Atom, (jb + j) * kFa3Keys, kvh);
        }
      }
      fa3_check_abort(abort_word);
    }
    return;  // no block-wide barrier follows the role split
  }

  // ---------------------------------------------------------------------------------------------- consumers
  fa3_setmaxnreg_inc<fa3_consumer_regs(NC)>();
  const int cw = wg - 1, row0 = 64 * cw;  // this warpgroup's packed rows row0..row0+63
  int qpos[2];                            // cache position of this thread's two rows (accumulator rows r, r + 8)
#pragma unroll
  for (int h = 0; h < 2; ++h) qpos[h] = prm.pos0 + t0 + fa3_row_pos(row0 + fa3_acc_row(warp, lane, 2 * h), prm.g);
  int qlo[2], qhi[2];  // the keys [qlo, qhi) each of the two rows sees: causal, or its DCA part's
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    qlo[h] = 0;
    qhi[h] = qpos[h] + 1;
    if (prm.dca_part >= 0) qw::dca::part_keys(prm.dca_part, qpos[h], prm.dca_span, &qlo[h], &qhi[h]);
  }
  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; ++i) o[i] = 0.f;
  float m[2] = {kNegBig, kNegBig}, l[2] = {0.f, 0.f};  // running max (exp2 domain) and sum of this thread's rows
  float sc[kFa3Keys / 2];                              // S of the current tile, then its probabilities, in place
  uint32_t pa[F8 ? kFa3Keys / 32 : kFa3Keys / 16][4];  // P of the previous tile as the A operand of P.V
  float op[F8 ? NO : 1];                                // F8: the previous tile's P.V partial (from zero)
#pragma unroll
  for (int i = 0; i < (F8 ? NO : 1); ++i) op[i] = 0.f;
  float alpha[2];
  uint32_t si[I8 ? kFa3Keys / 2 : 1];  // I8: the s32 Q.K~ of the current tile (dequantized into sc)
  float sq[2] = {0.f, 0.f}, sk[2] = {0.f, 0.f};  // I8: this thread's two rows' Q scales; the tile's two K scales
  if constexpr (I8) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = row0 + fa3_acc_row(warp, lane, 2 * h), t = t0 + fa3_row_pos(i, prm.g);
      if (i < prm.g * prm.p && t < prm.n)
        sq[h] = prm.qs[(int64_t)(kvh * prm.g + fa3_row_head(i, prm.g)) * prm.qs_stride + t / 32];
    }
  }
  // the K scales of tile j (keys 128j.. in blocks of 64), loaded before its Q.K~ is waited for
  auto load_sk = [&](int j) {
    if constexpr (I8) {
      // a block past the call's keys (pos0 + n) reads the last written scale: the quantizer writes only the blocks
      // that hold keys (ks_n spans the whole cache, and the scratch is not cleared), and its columns are masked
      const float *k = prm.ks + (int64_t)kvh * prm.ks_n;
      const int last = min(prm.ks_n, (prm.pos0 + prm.n + 63) / 64) - 1;
      sk[0] = __ldg(k + min(2 * (jb + j), last));
      sk[1] = __ldg(k + min(2 * (jb + j) + 1, last));
    }
  };

  // S = Q.K^T of tile j into sc (I8: into si; issued and committed; the caller waits)
  auto issue_qk = [&](int j) {
    if constexpr (I8) {
#pragma unroll
      for (int kk = 0; kk < D / 32; ++kk)
        fa3_wgmma_ss_s8_n128(si, fa3_desc_kmajor(base + fa3_q_off(), ROWS, row0, kk),
                             fa3_desc_kmajor(base + fa3_k_off(D, NC, j % S), kFa3Keys, 0, kk), kk > 0);
    } else {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        fa3_wgmma_ss_n128(sc, fa3_desc_kmajor(base + fa3_q_off(), ROWS, row0, kk),
                          fa3_desc_kmajor(base + fa3_k_off(D, NC, j % S), kFa3Keys, 0, kk), kk > 0);
    }
    fa3_wgmma_commit();
  };
  // after the wait of issue_qk: pin S's registers; I8 converts them to floats in sc, unscaled (exact, no I2F): the Q and
  // K scales go into softmax's exp2 argument (columns 0..63 of the tile are registers 0..31: fa3_acc_col(lane, r) =
  // 8 (r / 4) + ..., so the second key block starts at r = 32)
  // FOLD (the Sage arms' default, non-split variants): the scales fold into exp2's FFMA as described at softmax. The
  // split variants (KSPLIT, a lab A/B for Sage) keep the dequantizing FMUL: folding costs them registers they do not
  // have (ptxas: 8 / 88 B of spills at int8 / fp8), where the non-split variants stay at 168 with none.
  constexpr bool FOLD = I8 && !KSPLIT;
  auto take_s = [&]() {
    if constexpr (FOLD) {
      fa3_pin(si);
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r) sc[r] = sage_s32_to_float((int32_t)si[r]);
    } else if constexpr (I8) {
      fa3_pin(si);
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r)
        sc[r] = sage_s32_to_float((int32_t)si[r]) * (sq[(r >> 1) & 1] * sk[r >= kFa3Keys / 4]);  // exact, no I2F
    } else {
      fa3_pin(sc);
    }
  };
  // O += P.V of tile j (F8: op = P'.V~' from zero; issued and committed)
  auto issue_pv = [&](int j) {
    if constexpr (F8) {
#pragma unroll
      for (int kk = 0; kk < kFa3Keys / 32; ++kk)
        fa3_wgmma_rs_e4m3_n128(op, pa[kk], fa3_desc_kmajor(base + fa3_v_off(D, NC, j % S, S), D, 0, kk), kk > 0);
    } else {
#pragma unroll
      for (int kk = 0; kk < kFa3Keys / 16; ++kk) {
        const uint64_t dv = fa3_desc_mnmajor(base + fa3_v_off(D, NC, j % S, S), kFa3Keys, kk);
        if constexpr (D == 128) fa3_wgmma_rs_n128(o, pa[kk], dv);
        else fa3_wgmma_rs_n64(o, pa[kk], dv);
      }
    }
    fa3_wgmma_commit();
  };
  // Online softmax of tile j, in place: the mask (only on tiles not inside every row's keys: causal, the diagonal
  // ones), row max over the quad's 4 lanes, the new running max and alpha, sc = exp2(sc * scale - m), masked
  // probabilities then set to 0 (a row with no key in the tile yet, possible in a DCA part, would get 2^0 there). O and
  // l are rescaled by the caller once the previous P.V has finished with O.
  // FOLD: sc holds the raw int scores; a row's scale for key block kb is sq * sk[kb] * scale_log2 (> 0, or 0 for an
  // all-zero block), so the max is taken raw per key block and scaled after, and each score costs one FFMA into exp2
  // (not a dequantizing FMUL, then the FFMA). F8: + log2(448) in the exponent makes sc = P' = 448 p directly (no FMUL
  // before the e4m3 conversion); l then sums 448 p, and the epilogue's z = O vs / l needs no 1 / 448.
  auto softmax = [&](int j) {
    const int k0 = (jb + j) * kFa3Keys;
    float mx[2] = {kNegBig, kNegBig};
    const bool masked = fa3_tile_masked(keys, k0);  // block-uniform
    auto out_of_range = [&](int r) {
      const int k = k0 + fa3_acc_col(lane, r), h = (r >> 1) & 1;
      return k < qlo[h] || k >= qhi[h];
    };
    if (masked) {
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r)
        if (out_of_range(r)) sc[r] = kNegBig;
    }
    // FOLD: the exp2-domain scale of row h's raw scores in key block kb (recomputed where used: 4 live registers fewer)
    auto cm = [&](int h, int kb) { return sq[h] * (sk[kb] * prm.scale_log2); };
    if constexpr (FOLD) {
      float mh[2][2] = {{kNegBig, kNegBig}, {kNegBig, kNegBig}};
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r) {
        float &x = mh[(r >> 1) & 1][r >= kFa3Keys / 4];
        x = fmaxf(x, sc[r]);
      }
      // in the exp2 domain; a block with every column masked for the row stays out of the max (its scale may be 0,
      // and 0 * kNegBig = -0 would force the running max up to 0)
      auto scaled = [&](int h, int kb) { return mh[h][kb] > kNegBig ? mh[h][kb] * cm(h, kb) : kNegBig; };
#pragma unroll
      for (int h = 0; h < 2; ++h) mx[h] = fmaxf(scaled(h, 0), scaled(h, 1));
    } else {
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r) mx[(r >> 1) & 1] = fmaxf(mx[(r >> 1) & 1], sc[r]);
    }
    float mneg[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float mn = fmaxf(m[h], FOLD ? mx[h] : mx[h] * prm.scale_log2);
      alpha[h] = fa3_exp2(m[h] - mn);
      m[h] = mn;
      mneg[h] = F8 ? kLog2E4m3Max - mn : -mn;
    }
    if constexpr (FOLD) {
      // POLY: every fourth register's exp2 on the FMA pipe (sage_exp2_poly), the rest on the SFU
      auto ex = [&](int r, float x) { return POLY && (r & 3) == 3 ? sage_exp2_poly(x) : fa3_exp2(x); };
      {  // one key block at a time (registers 0..31, then 32..63): its two scales live, not four
        const float c0 = cm(0, 0), c1 = cm(1, 0);
#pragma unroll
        for (int r = 0; r < kFa3Keys / 4; ++r) sc[r] = ex(r, fmaf(sc[r], (r >> 1) & 1 ? c1 : c0, mneg[(r >> 1) & 1]));
      }
      {
        const float c0 = cm(0, 1), c1 = cm(1, 1);
#pragma unroll
        for (int r = kFa3Keys / 4; r < kFa3Keys / 2; ++r)
          sc[r] = ex(r, fmaf(sc[r], (r >> 1) & 1 ? c1 : c0, mneg[(r >> 1) & 1]));
      }
    } else {
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r) sc[r] = fa3_exp2(fmaf(sc[r], prm.scale_log2, mneg[(r >> 1) & 1]));
    }
    if (masked) {
#pragma unroll
      for (int r = 0; r < kFa3Keys / 2; ++r)
        if (out_of_range(r)) sc[r] = 0.f;
    }
  };
  // After the previous P.V completed: rescale O and l by alpha, then P = bf16(sc) in the A-operand layout (k-step kk
  // takes S's chunks 2kk, 2kk+1: fa3_p_from_s). l sums the bf16-rounded probabilities that P.V multiplies.
  // F8: O = (O + the previous tile's partial) * alpha (both in the previous tile's max), then P' = e4m3(448 p) (sc is
  // 448 p already) with k-step kk's A registers from S's n8 chunks 4kk..4kk+3 (a0: chunks 4kk, 4kk+1 of row r; a1: the
  // same of row r + 8; a2, a3: chunks 4kk+2, 4kk+3), bytes in sage_vt_pos's key order; l sums the unrounded 448 p
  // (sage_ref.hpp sums p: the 448 cancels in the epilogue's z = O vs / l).
  auto rescale_and_pack = [&]() {
    if constexpr (F8) {
#pragma unroll
      for (int i = 0; i < NO; ++i) o[i] += op[i];
    }
    // FOLD (the Sage arms): O's rescale is skipped when no row of the warp raised its max (alpha == 1 exactly, so the
    // bits are the same): past the first tiles a row's max rarely moves, and the skip saves one FP32 op per score
    // on a softmax-bound kernel. Warp-uniform (a vote), as the wgmma accumulators are per warp.
    const bool rescale = !FOLD || !__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f);
    if (rescale) {
#pragma unroll
      for (int i = 0; i < NO; ++i) o[i] *= alpha[(i >> 1) & 1];
    }
    l[0] *= alpha[0];
    l[1] *= alpha[1];
    if constexpr (F8) {
#pragma unroll
      for (int kk = 0; kk < kFa3Keys / 32; ++kk)
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
          const int b = 16 * kk + 8 * (reg >> 1) + 2 * (reg & 1);
          l[reg & 1] += (sc[b] + sc[b + 1]) + (sc[b + 4] + sc[b + 5]);
          pa[kk][reg] = e4m3x2(sc[b], sc[b + 1]) | (e4m3x2(sc[b + 4], sc[b + 5]) << 16);
        }
    } else {
#pragma unroll
      for (int kk = 0; kk < kFa3Keys / 16; ++kk)
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
          const uint32_t pk = pack_bf16(sc[fa3_p_from_s(kk, reg, 0)], sc[fa3_p_from_s(kk, reg, 1)]);
          l[reg & 1] += bf16_lo(pk) + bf16_hi(pk);
          pa[kk][reg] = pk;
        }
    }
  };
  // Pingpong (PP): the consumer warpgroups take turns issuing their GEMMs, round robin (named barrier 1 + cw: this
  // warpgroup's 128 threads wait there for the previous one's 128 arrivals), so one's softmax runs while another's
  // wgmmas use the tensor cores. Consumer 0 goes first: the last consumer opens its first turn.
  auto turn_begin = [&]() { if constexpr (PP) fa3_named_sync(1 + cw, 256); };
  auto turn_end = [&]() { if constexpr (PP) fa3_named_arrive(1 + (cw + 1) % NC, 256); };
  if (PP && cw == NC - 1) fa3_named_arrive(1, 256);

  fa3_mbar_wait(q_full, 0, abort_word);
  // tile 0: S, softmax, P
  fa3_mbar_wait(k_full(0), 0, abort_word);
  load_sk(0);
  turn_begin();
  fa3_wgmma_fence();
  issue_qk(0);
  turn_end();
  fa3_wgmma_wait<0>();
  take_s();
  if (KSPLIT) {  // Q.K^T of tile 0 has read its K
    __syncwarp();
    if (lane == 0) fa3_mbar_arrive(empty(0));
  }
  softmax(0);
  rescale_and_pack();
  // Intra-warpgroup overlap: tile j's Q.K^T and tile j-1's P.V are in flight together; tile j's softmax runs while
  // P.V j-1 still computes, then O is rescaled and P_j packed. Stage j-1 is released once P.V j-1 is done.
  for (int j = 1; j < n_tiles; ++j) {
    fa3_mbar_wait(k_full(j % S), (uint32_t)(j / S) & 1u, abort_word);
    fa3_mbar_wait(v_full((j - 1) % S), (uint32_t)((j - 1) / S) & 1u, abort_word);
    load_sk(j);
    turn_begin();
    fa3_wgmma_fence();  // sc (softmax) and o / pa (rescale, pack) were written by ordinary instructions
    issue_qk(j);
    issue_pv(j - 1);
    turn_end();
    fa3_wgmma_wait<1>();  // groups retire in order: Q.K^T of tile j is done, P.V of j-1 may still run
    take_s();
    if (KSPLIT) {  // tile j's K is free for the producer while P.V j-1 still reads V j-1
      __syncwarp();
      if (lane == 0) fa3_mbar_arrive(empty(j % S));
    }
    softmax(j);
    fa3_wgmma_wait<0>();
    fa3_pin(o);
    if constexpr (F8) fa3_pin(op);
    fa3_pin(pa);
    __syncwarp();
    if (lane == 0) fa3_mbar_arrive(v_empty((j - 1) % S));  // this warp's reads of stage j-1 (KSPLIT: of V) are complete
    rescale_and_pack();
  }
  // the last tile's P.V
  fa3_mbar_wait(v_full((n_tiles - 1) % S), (uint32_t)((n_tiles - 1) / S) & 1u, abort_word);
  turn_begin();
  fa3_wgmma_fence();
  issue_pv(n_tiles - 1);
  if (cw != NC - 1) turn_end();  // consumer 0 has no later turn to open: no arrival is left pending at exit
  fa3_wgmma_wait<0>();
  fa3_pin(o);
  if constexpr (F8) fa3_pin(op);
  fa3_pin(pa);
  __syncwarp();
  if (lane == 0) fa3_mbar_arrive(v_empty((n_tiles - 1) % S));
  fa3_check_abort(abort_word);
  if constexpr (F8) {
#pragma unroll
    for (int i = 0; i < NO; ++i) o[i] += op[i];
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  const int qdim = prm.n_heads * D;
  // DCA parts: the row's lse before this part (a merging part reads what the earlier parts wrote; every lane of the
  // quad reads it before one of them writes the new one)
  const bool dca = prm.dca_part >= 0;
  int64_t at[2] = {-1, -1};  // the row's index into lse ([n][nH]); -1: an idle packed row or past the sequence
  float lse_prev[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = row0 + fa3_acc_row(warp, lane, 2 * h);
    const int t = t0 + fa3_row_pos(i, prm.g);
    if (i >= prm.g * prm.p || t >= prm.n) continue;
    at[h] = (int64_t)t * prm.n_heads + kvh * prm.g + fa3_row_head(i, prm.g);
    if (dca && prm.dca_merge) lse_prev[h] = prm.lse[at[h]];
  }
  if (dca) __syncwarp();
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (at[h] < 0) continue;  // idle packed rows, positions past the sequence
    const int i = row0 + fa3_acc_row(warp, lane, 2 * h);
    const int t = t0 + fa3_row_pos(i, prm.g);
    __nv_bfloat16 *dst = prm.out + (int64_t)t * qdim + (kvh * prm.g + fa3_row_head(i, prm.g)) * D;
    float inv = 1.f / l[h], wz = 0.f;  // z = o * inv + z_before * wz
    if (dca) {
      if (l[h] == 0.f) {  // no key of this part for the row: a merging part leaves it, the first writes an empty row
        if (!prm.dca_merge) {
          for (int c = 0; c < D / 8; ++c) *reinterpret_cast<uint32_t *>(dst + fa3_acc_col(lane, 4 * c)) = 0u;
          if ((lane & 3) == 0) prm.lse[at[h]] = -INFINITY;
        }
        continue;
      }
      // m: the running max in the exp2 domain, l: the sum under it (F8: of 448 p)
      const float cur = m[h] + __log2f(l[h]) - (F8 ? kLog2E4m3Max : 0.f);
      const float mx = fmaxf(cur, lse_prev[h]);
      const float wc = exp2f(cur - mx), wp = exp2f(lse_prev[h] - mx);  // wp = 0 for the first part (-inf)
      inv = wc / (l[h] * (wc + wp));
      wz = wp / (wc + wp);
      if ((lane & 3) == 0) prm.lse[at[h]] = mx + __log2f(wc + wp);
    }
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      const int col = fa3_acc_col(lane, 4 * c);
      float z0 = o[4 * c + 2 * h] * inv, z1 = o[4 * c + 2 * h + 1] * inv;
      if constexpr (F8) {  // z = O (vs / 448) / l + vmean = O vs / (448 l) + vmean, and the kernel's l is 448 l
        const float *vs = prm.vs + (int64_t)kvh * D, *vm = prm.vmean + (int64_t)kvh * D;
        z0 = fmaf(o[4 * c + 2 * h] * __ldg(vs + col), inv, __ldg(vm + col));
        z1 = fmaf(o[4 * c + 2 * h + 1] * __ldg(vs + col + 1), inv, __ldg(vm + col + 1));
      }
      if (wz > 0.f) {  // only then was z written before (a NaN of poisoned memory must not reach 0 * NaN)
        const uint32_t zb = *reinterpret_cast<const uint32_t *>(dst + col);
        z0 = fmaf(bf16_lo(zb), wz, z0);
        z1 = fmaf(bf16_hi(zb), wz, z1);
      }
      *reinterpret_cast<uint32_t *>(dst + col) = pack_bf16(z0, z1);
    }
  }
#else
  __trap();  // sm_90a only: the host never launches it elsewhere (fa3_prefill_unsupported)
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void *p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  });
  return fn;
}

}  // namespace

void *fa3_tensor_map_encoder() { return reinterpret_cast<void *>(encode_fn()); }

namespace {

void encode(CUtensorMap *m, const void *ptr, const Fa3MapShape &s, const char *what) {
  PFN_cuTensorMapEncodeTiled_v12000 fn = encode_fn();
  if (!fn) throw CudaError("flash prefill (wgmma): the driver offers no cuTensorMapEncodeTiled (needs CUDA 12+)");
  cuuint64_t dims[4], strides[3];
  cuuint32_t box[4], estr[4] = {1, 1, 1, 1};
  for (int k = 0; k < s.rank; ++k) { dims[k] = s.dims[k]; box[k] = s.box[k]; }
  for (int k = 0; k + 1 < s.rank; ++k) strides[k] = s.strides[k];
  const CUtensorMapDataType type = s.eb == 1 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const CUresult r = fn(m, type, (cuuint32_t)s.rank, const_cast<void *>(ptr), dims, strides,
                        box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw CudaError(std::string("flash prefill (wgmma): cuTensorMapEncodeTiled failed for ") + what + " (CUresult " +
                    std::to_string((int)r) + ")");
}

// (The Sage arms use the bf16 kernel's shared-memory map: their int8 Q and K and e4m3 V tiles fill the first half of
// their regions.)
template <int D, bool PP, int ARM = 0, int ST = 0, bool KSPLIT = false>
void launch_d(const Fa3Params &prm, int n_kv, cudaStream_t s) {
  constexpr int NC = fa3_consumers(D);
  constexpr uint32_t smem = fa3_smem_bytes(D, NC, ST, KSPLIT);
  static_assert(smem <= 232448u, "over the 227 KB of shared memory an sm_90 block may opt in to");
  static SmemOptIn opt_in;  // per device (common.cuh): each rank of parallel = tpN opts in on its own device
  opt_in(fa3_prefill_kernel<D, NC, PP, ARM, ST, KSPLIT>, smem);
  dim3 grid((prm.n + prm.p - 1) / prm.p, n_kv);
  launch(fa3_prefill_kernel<D, NC, PP, ARM, ST, KSPLIT>, grid, fa3_threads(NC), smem, s, prm);
}

// QW_FA3_VARIANT (the lab's A/B of the bf16 kernel, read at every call): "s3" a 3-stage K/V ring at hd 128 (2 by
// default; hd 64 has 3 already), "split" K released after its Q.K^T and V after its P.V, "s3split" both, "base"
// neither. Returns the variant ("" for the default). The default is split at hd 128 (H100 2026-12-05, 10 runs each:
// 4k 221 / 16k 3031 / 32k 13381 us against base's 277 / 3650 / 15181 and cuDNN's 260 / 2952 / 12536; s3 and s3split
// within their spreads of split, at more shared memory) and base at hd 64 (split within noise there).
const char *fa3_variant() {
  const char *e = std::getenv("QW_FA3_VARIANT");
  if (!e || !*e) return "";
  if (!std::strcmp(e, "s3") || !std::strcmp(e, "split") || !std::strcmp(e, "s3split") || !std::strcmp(e, "base")) return e;
  throw CudaError(std::string("QW_FA3_VARIANT=") + e + ": use base, s3, split or s3split (or leave it unset)");
}

}  // namespace

const char *fa3_prefill_unsupported(const PrefillAttnArgs &a, int cc_major, int cc_minor) {
  if (cc_major != 9 || cc_minor != 0) return "needs an sm_90 device (its code is built for sm_90a only)";
  if (a.head_dim != 64 && a.head_dim != 128) return "head_dim must be 64 or 128";
  if (a.n_kv <= 0 || a.n_heads % a.n_kv) return "n_heads must be a multiple of n_kv";
  if (a.n_heads / a.n_kv > fa3_rows(fa3_consumers(a.head_dim))) return "more query heads per kv head than tile rows";
  if (a.tree.bits) return "tree verification steps (speculative) use the mma.sync kernel";
  if ((reinterpret_cast<uintptr_t>(a.q) | reinterpret_cast<uintptr_t>(a.kcache) | reinterpret_cast<uintptr_t>(a.vcache)) & 15)
    return "q and the KV cache must be 16-byte aligned (TMA)";
  return "";
}

const char *fa3_prefill_unsupported_here(const PrefillAttnArgs &a) {
  // the default prefill path asks this before every call: a driver without the TMA map encoder falls back to
  // mma.sync instead of failing the prefill
  if (!encode_fn()) return "the driver offers no cuTensorMapEncodeTiled (needs CUDA 12+)";
  int dev = 0, major = 0, minor = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  QWC_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  QWC_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  return fa3_prefill_unsupported(a, major, minor);
}

// Throws `what` + the reason when this device cannot run the kernel on `a`.
static void require_device(const PrefillAttnArgs &a, const char *what) {
  const char *why = fa3_prefill_unsupported_here(a);
  if (*why) throw CudaError(std::string(what) + why);
}

// The fields every launch takes from a (its rows, heads, query positions per tile, score scale); the maps are the caller's.
Fa3Params fa3_params(const PrefillAttnArgs &a) {
  const int d = a.head_dim, g = a.n_heads / a.n_kv;
  Fa3Params prm;
  prm.out = a.out;
  prm.pos0 = a.pos0; prm.n = a.n; prm.n_heads = a.n_heads; prm.g = g; prm.p = fa3_pos_per_tile(g, fa3_consumers(d));
  prm.scale_log2 = kLog2e / std::sqrt((float)d);
  return prm;
}

// A TMA map of a's slot in one bf16 cache plane (K or V), keys 0 .. pos0 + n - 1.
void encode_cache(CUtensorMap *m, const __nv_bfloat16 *cache, const PrefillAttnArgs &a, const char *what) {
  const size_t slot_off = (size_t)a.slot * a.n_kv * a.max_ctx * a.head_dim;
  encode(m, cache + slot_off, fa3_kv_map(a.pos0 + a.n, a.n_kv, a.head_dim, a.max_ctx), what);
}

bool fa3_prefill_requested() {
  return env_switch_on("QW_FLASH_WGMMA", "the mma.sync kernel", "the wgmma kernel on sm_90");
}

const char *launch_prefill_attention_fa3(const PrefillAttnArgs &a, cudaStream_t s, bool pingpong) {
  if (a.n <= 0) return "attn_prefill_wgmma";
  require_device(a, "flash prefill (wgmma): ");
  const int d = a.head_dim;
  Fa3Params prm = fa3_params(a);
  encode(&prm.tq, a.q, fa3_q_map(a.n, a.n_heads, a.n_kv, d, fa3_consumers(d)), "q");
  encode_cache(&prm.tk, a.kcache, a, "k cache");
  encode_cache(&prm.tv, a.vcache, a, "v cache");
  const std::string v = fa3_variant();
  const bool s3 = v == "s3" || v == "s3split", split = v == "split" || v == "s3split" || (v.empty() && d == 128);
  if (d == 128 && pingpong) {
    if (s3 && split) launch_d<128, true, 0, 3, true>(prm, a.n_kv, s);
    else if (s3) launch_d<128, true, 0, 3, false>(prm, a.n_kv, s);
    else if (split) launch_d<128, true, 0, 0, true>(prm, a.n_kv, s);
    else launch_d<128, true>(prm, a.n_kv, s);
  } else if (d == 128) {
    launch_d<128, false>(prm, a.n_kv, s);
  } else if (pingpong) {
    if (split) launch_d<64, true, 0, 0, true>(prm, a.n_kv, s);
    else launch_d<64, true>(prm, a.n_kv, s);
  } else {
    launch_d<64, false>(prm, a.n_kv, s);
  }
  QWC_LAUNCH_CHECK("launch_prefill_attention_fa3");
  if (!pingpong) return "attn_prefill_wgmma:nopp";
  if (v.empty() || v == "base") return "attn_prefill_wgmma";
  return s3 ? (split ? "attn_prefill_wgmma:s3split" : "attn_prefill_wgmma:s3") : "attn_prefill_wgmma:split";
}

bool dca_prefill_fa3_requested() {
  return env_switch_on("QW_DCA_WGMMA", "the mma.sync DCA prefill kernel", "DCA prefill on the wgmma kernel");
}

const char *launch_prefill_attention_dca_fa3(const PrefillAttnArgs &a, float *lse, cudaStream_t s) {
  if (a.n <= 0) return "attn_dca_wgmma";
  require_device(a, "dca prefill (wgmma): ");
  if (!a.dca.succ || !a.dca.inter || a.dca.span < 1 || !lse)
    throw CudaError("dca prefill (wgmma): needs the three query variants, chunk - local >= 1 and the lse workspace");
  if ((reinterpret_cast<uintptr_t>(a.dca.succ) | reinterpret_cast<uintptr_t>(a.dca.inter)) & 15)
    throw CudaError("dca prefill (wgmma): the successive and inter queries must be 16-byte aligned (TMA)");
  const int d = a.head_dim;
  Fa3Params prm = fa3_params(a);
  encode_cache(&prm.tk, a.kcache, a, "k cache");
  encode_cache(&prm.tv, a.vcache, a, "v cache");
  prm.dca_span = a.dca.span;
  prm.lse = lse;
  // intra first: every row has a key there (its own), so the first part writes every row's z and lse
  const __nv_bfloat16 *qv[3] = {a.q, a.dca.succ, a.dca.inter};
  for (int pt = 0; pt < 3; ++pt) {
    encode(&prm.tq, qv[pt], fa3_q_map(a.n, a.n_heads, a.n_kv, d, fa3_consumers(d)), "dca q");
    prm.dca_part = pt;
    prm.dca_merge = pt > 0;
    // the release each head dim's bf16 kernel defaults to (fa3_variant)
    if (d == 128) launch_d<128, true, 0, 0, true>(prm, a.n_kv, s);
    else launch_d<64, true>(prm, a.n_kv, s);
    QWC_LAUNCH_CHECK("launch_prefill_attention_dca_fa3");
  }
  return "attn_dca_wgmma";
}

const char *launch_sage_fa3(const PrefillAttnArgs &a, const Fa3Sage &q8, bool fp8, cudaStream_t s) {
  const char *name = fp8 ? "attn_prefill_sage_fp8_wgmma" : "attn_prefill_sage_int8_wgmma";
  if (a.n <= 0) return name;
  require_device(a, "sage (wgmma): ");
  if (a.head_dim != 128) throw CudaError("sage (wgmma): head_dim must be 128");
  if ((reinterpret_cast<uintptr_t>(q8.qi) | reinterpret_cast<uintptr_t>(q8.ki) | reinterpret_cast<uintptr_t>(q8.vt)) & 15)
    throw CudaError("sage (wgmma): the INT8 Q and K and the e4m3 V must be 16-byte aligned (TMA)");
  const int d = 128;
  Fa3Params prm = fa3_params(a);
  encode(&prm.tq, q8.qi, fa3_q_map(a.n, a.n_heads, a.n_kv, d, fa3_consumers(d), 1), "int8 q");
  encode(&prm.tk, q8.ki, fa3_kv_map(a.pos0 + a.n, a.n_kv, d, q8.ctx64, 1), "int8 k");
  if (fp8) encode(&prm.tv, q8.vt, fa3_vt_map(q8.ctx64, a.n_kv, d), "e4m3 v");
  else encode_cache(&prm.tv, a.vcache, a, "v cache");
  prm.qs = q8.qs; prm.ks = q8.ks; prm.qs_stride = q8.qs_stride; prm.ks_n = q8.ctx64 / 64;
  prm.vs = q8.vs; prm.vmean = q8.vmean;
  // the split K / V release (the bf16 kernel's default at hd 128) only as a lab variant here (QW_FA3_VARIANT=split or
  // s3split) until it has run with the Sage arms; the default is the release the third H100 run validated
  const std::string v = fa3_variant();
  const bool split = v == "split" || v == "s3split";
  // QW_SAGE_POLY_EXP=1 (sage-fp8, the default release): a quarter of the exp2 on the FMA pipe; a lab A/B until measured
  const bool poly = fp8 && !split &&
                    env_opt_in("QW_SAGE_POLY_EXP", "every exp2 of sage-fp8 on the SFU", "a quarter of them on the FMA pipe");
  if (poly) name = "attn_prefill_sage_fp8_wgmma_poly";
  if (fp8 && split) launch_d<128, true, 2, 0, true>(prm, a.n_kv, s);
  else if (poly) launch_d<128, true, 3>(prm, a.n_kv, s);
  else if (fp8) launch_d<128, true, 2>(prm, a.n_kv, s);
  else if (split) launch_d<128, true, 1, 0, true>(prm, a.n_kv, s);
  else launch_d<128, true, 1>(prm, a.n_kv, s);
  QWC_LAUNCH_CHECK("launch_sage_fa3");
  return name;
}

}  // namespace qwc
