// marlin_layout.hpp — the repacked weight layout of gemv = marlin (issue 10 item 2), shared by the device packer
// and kernel (marlin.cu), the host reference packer and the CPU tests (test_marlin.cpp). Plain C++: no CUDA types.
//
// Why a repack: the kernel feeds dequantized weights to mma.sync m16n8k16 as the B operand (8 weight rows = the
// n side, 16 columns = k), activations as the A operand (the small batch, padded to 16 rows = m). A lane
// (gid = lane / 4, tig = lane % 4) holds, for k-step j, b0 = W[gid][16j + 2tig, +1] and b1 = W[gid][16j + 8 + 2tig,
// +1]. The repack puts exactly those values, for 8 consecutive k-steps (128 columns), in one 16-byte (W4) or
// 32-byte (W8) piece per lane, so a warp streams 512 / 1024 contiguous bytes per unit and dequantizes in registers.
//
// Unit = 8 rows x 128 columns of one matrix, `unit_bytes` bytes, stored at ((row / 8) * (cols / 128) + col / 128):
//   [weights: 32 lanes x 16 bytes (W4) or 32 bytes (W8)][scales: 128 / group groups x 8 rows x (scale, offset) fp32]
//   W4, lane l, 32-bit word w (0..3), nibble n (0..7): step j = 2w + (n & 3) / 2, b-register h = n & 1, element
//       e = n / 4: W[gid][16j + 8h + 2tig + e]. So bits (n, n + 4) of a word are the two bf16 halves of one
//       B register: ((word >> 4p) & 0x000F000F) | 0x43004300 is the bf16 pair (128 + q_lo, 128 + q_hi).
//   W8, lane l, word j (0..7) = step j, byte i (0..3): h = i / 2, e = i % 2: W[gid][16j + 8h + 2tig + e] (int8).
//   scales of group gi (columns 128u + group * gi ...) at weights + 64 gi: row r's (scale, offset) at 8 r, so a
//       lane reads the (s, o) of rows 2tig and 2tig + 1 (its C-fragment columns) as one 16-byte load.
// w = scale * q + offset as in every native layout (backend.hpp); the kernel computes
//   y = sum_g scale_g * (sum_{k in g} q_k a_k) + offset_g * (sum_{k in g} a_k)
// with q exact in bf16 (small integers) and fp32 tensor-core accumulation, i.e. the exact weights, not weights
// rounded to bf16 (Marlin's fp16 scaling), so the result is within fp32 summation error of the CPU reference.
// Requirements (else the simple kernels run): type W4 or W8, rows % 64 == 0, cols % 128 == 0, group in
// {16, 32, 64, 128}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QW_MARLIN_HD __host__ __device__ __forceinline__
#else
#define QW_MARLIN_HD inline
#endif

namespace qwc {

constexpr int kMarlinUnitCols = 128;
constexpr int kMarlinTileRows = 8;
constexpr int kMarlinBlockRows = 64;  // rows per thread block, narrow shape (2 warps x 4 tiles of 8 rows; the packing unit)
constexpr int kMarlinWideRows = 256;  // rows per thread block, widest shape (8 warps x 4 tiles, each warp the whole
                                      // slice); 128 = 4 warps along rows x 2 along K
constexpr int kMarlinMaxKsu = 32;     // widest K slice (units): NB 16 activations = 16 x 4104 x 2 B = 131 KB of smem
constexpr int kMarlinMaxStages = 6;   // deepest cp.async ring (the kernel's wait_group switch goes to 7)

// A matrix in the repacked layout (device pointer). data == nullptr: not packed (the simple kernels run).
struct MarlinMat {
  const uint8_t *data = nullptr;
  int64_t rows = 0, cols = 0;
  int32_t type = 0;        // WT_W4 or WT_W8 (common.cuh)
  int32_t group = 0;       // 16, 32, 64 or 128
  int32_t unit_bytes = 0;
  int32_t has_offset = 0;  // some offset is not (+-)0: the kernel adds offset * (sum of the group's activations)
  int32_t zero_point = 0;  // W4, every offset is -(scale * z) with an integer z in 0..15, exactly (weights = q4): the
                           // kernel dequantizes q - z (exact in bf16) and needs no activation sums (has_offset unused)
};

// Whether (scale, offset) is an exact integer zero point: offset == -(scale * z), z in 0..15, with scale * z exact in
// fp32, so that scale * q + offset == scale * (q - z) for every code q; z as the kernel recovers it (rint(-o / s)).
QW_MARLIN_HD bool marlin_zero_point(float scale, float offset, int32_t *z_out = nullptr) {
  if (!(scale > 0.f)) {
    if (z_out) *z_out = 0;
    return offset == 0.f;
  }
  const float zf = -offset / scale;
  if (!(zf >= 0.f && zf <= 15.f)) return false;
  const int32_t z = (int32_t)zf;
  if ((float)z != zf || (double)scale * z != -(double)offset) return false;
  if (z_out) *z_out = z;
  return true;
}

// Scratch of the kernel, owned by the caller (the CUDA session): fp32 split-K partials, one arrival counter per
// 64-row block (zero before the first launch; every launch leaves them zero), and a bf16 [16][cols] buffer for the
// RMSNorm prologue (the kernel reads bf16 activations: the norm runs first, once per token row).
struct MarlinWs {
  float *part = nullptr;
  size_t part_bytes = 0;
  int32_t *cnt = nullptr;
  int32_t cnt_n = 0;
  void *xn = nullptr;  // __nv_bfloat16
  int64_t xn_elems = 0;
};

// How a matrix is split (a function of its shape and the SM count only, never of the batch: batch invariance).
struct MarlinPlan {
  int32_t n_blk = 0;  // row blocks of rb rows
  int32_t ksu = 0;    // 128-column units per K slice (<= ksu_max: the slice's activations sit in shared memory)
  int32_t S = 0;      // K slices (blocks per row block); S > 1 adds the partials in slice order
  int32_t rb = kMarlinBlockRows;  // rows per block: 64 (2 warps along rows x 4 along K), 128 (4 x 2) or 256 (8 x 1)
  size_t part_bytes() const { return (size_t)n_blk * S * rb * 16 * sizeof(float); }
};
// ksu_max / bps / rb: the split's knobs (MarlinKnobs in marlin.cuh; by default marlin_rule below picks them).
// rb 128 / 256 need rows % rb == 0 (else 64 is used).
QW_MARLIN_HD MarlinPlan marlin_plan(int64_t rows, int64_t cols, int sms, int ksu_max, int bps, int rb = kMarlinBlockRows) {
  MarlinPlan p;
  const int ku = (int)(cols / kMarlinUnitCols);
  p.rb = (rb == 128 || rb == kMarlinWideRows) && rows % rb == 0 ? rb : kMarlinBlockRows;
  p.n_blk = (int)(rows / p.rb);
  int S = (ku + ksu_max - 1) / ksu_max;
  // at least bps blocks per SM, and no K slice of less than one unit
  while ((int64_t)p.n_blk * S < (int64_t)bps * sms && S < ku) ++S;
  p.ksu = (ku + S - 1) / S;
  p.S = (ku + p.ksu - 1) / p.ksu;
  return p;
}

QW_MARLIN_HD bool marlin_group_ok(int32_t group) { return group == 16 || group == 32 || group == 64 || group == 128; }
QW_MARLIN_HD int32_t marlin_unit_bytes(int32_t type_w4, int32_t group) {
  return (type_w4 ? 512 : 1024) + (kMarlinUnitCols / group) * 64;
}

// Tiles = (row block, K slice) pairs in slice-major order (tile = sl * n_blk + blk), T = n_blk * S of them. Block b of a
// grid of g blocks takes [lo, hi): contiguous, sizes differing by at most one, every tile once (test_marlin checks).
QW_MARLIN_HD void marlin_tile_range(int b, int g, int T, int &lo, int &hi) {
  lo = (int)((int64_t)b * T / g);
  hi = (int)((int64_t)(b + 1) * T / g);
}

// The warp sums' own region of a persistent launch (red [WK][RB][16] fp32: 16 KB for every block shape), added to
// marlin_smem_bytes when a block takes several tiles (with one tile they reuse the front of shared memory).
constexpr size_t kMarlinRedBytes = 16384;

// Dynamic shared memory of marlin_gemv_kernel (marlin.cu; the launcher and the CPU tests use this one formula):
// act_s [nr][ksu * 128 + 8] bf16 | 16 zero bytes | asum [nr][ksu * 128 / group] fp32, rounded up to 16 bytes |
// ring [8 warps][stages][4 tiles][unit_bytes]. nr: activation rows held (NB = 8 / 16, or the batch with compact).
QW_MARLIN_HD size_t marlin_smem_bytes(int ksu, bool w4, int32_t group, int nr, int stages) {
  const size_t sa = (size_t)ksu * kMarlinUnitCols + 8, ngmax = (size_t)ksu * (kMarlinUnitCols / group);
  return (size_t)nr * sa * 2 + 16 + (((size_t)nr * ngmax * 4 + 15) & ~(size_t)15) +
         (size_t)stages * 8 * 4 * (size_t)marlin_unit_bytes(w4, group);
}

// ---- the default knobs: a rule from the problem's dimensions (one place; MarlinKnobs' 0 / -1 values mean "rule") --
// Derived from `qwlab marlin --sweep` on an H100 80GB HBM3, 132 SMs (profiles/h100/2026-12-05-second-run/
// marlin-sweep.log: 36 knob rows x 7B qkv 4608x3584, o 3584x3584, gate_up 37888x3584, down 3584x18944 x W4/W8 g128 x
// M1/M16; rows that ran the same configuration agree within 0.6 % median, 1.8 % p90, so < 3 % is noise). The old
// defaults were ksu_max 8, bps 2, stages W4 3 / W8 2, compact 0. The rule's pick (sweep row 8/1/def/1; W8 gate_up
// 32/1/def/1) against the old defaults' row (8/2/def/0 (cur)), us (gain; "=" within 3 %):
//   qkv     W4 M1 15.18 -> 14.18 (+7 %)   M16 22.94 -> 23.14 (=)     W8 M1 20.42 -> 20.54 (=)     M16 22.01 -> 21.82 (=)
//   o       W4 M1 14.76 -> 13.61 (+8 %)   M16 18.27 -> 15.56 (+17 %) W8 M1 18.42 -> 15.40 (+20 %) M16 19.55 -> 15.96 (+22 %)
//   gate_up W4 M1 74.96 -> 72.47 (+3 %)   M16 112.37 -> 113.17 (=)   W8 M1 105.98 -> 74.70 (+42 %) M16 116.68 -> 106.03 (+10 %)
//   down    W4 M1 42.64 -> 41.46 (=, 3 %) M16 58.44 -> 58.46 (=)     W8 M1 56.28 -> 58.36 (-4 %; the same configuration's
//                                                                     other row 56.88, -1 %)  M16 57.84 -> 58.22 (=)
//  * compact on: holding only the batch's activation rows frees shared memory at M < 8 / 16 (nothing at 8 / 16), so
//    more blocks are resident: W4 M1 +4..+10 % at the split below, up to 2x where the slice is wide (gate_up S1:
//    95.8 -> 48.5 us); W8 M1 0..-4 % where it only lifts residency from 2 to 3 blocks (at the 3 % noise edge), +19 %
//    where it lifts it from 1 (gate_up S1). At M16 both settings hold the same 16 rows (= within noise).
//  * stages W4 3, W8 2 (unchanged): deeper rings cut residency. Of 164 (split, compact, M) pairs, a deeper ring loses
//    > 3 % in 119 (median -16 %, worst -49 %), ties in 42 and wins in 3: qkv W4 M1 at S 2 (not the rule's split) and
//    two o W4 M1 single rows at S 4, non-monotone in depth (st 3 / 4 / 6: 14.90 / 12.80 / 17.04 us): not taken.
//  * split (batch-independent, as batch invariance needs): slices of <= 8 units and at least one block per SM (bps 1,
//    was 2). Only o changes (S 5 -> 4): 280 blocks were 1.06 waves at 2 resident per SM (a 16-block second wave);
//    224 are one. qkv keeps S 4 (S 2 loses 12..24 %), gate_up S 4, down S 19.
//  * W8 with >= 4 waves of 64-row blocks at one block per SM (n_blk >= 4 * SMs; 7B gate_up: 592): the whole K in
//    one slice (S = 1, <= kMarlinMaxKsu units, no split-K partials): a W8 block streams 2x the bytes of a W4 one per
//    column, so long slices keep its ring busy; it stays memory-bound at M16 with one resident block.
//  Not taken, because the split must not depend on M: W4 gate_up M1 is 48.5 us at S 1 (+47 % over the rule) but M16
//  171.6 (-34 %: its 16 activation rows leave one resident block and W4 M16 is bound by issue, not bytes: W4 and W8
//  take the same ~112 us at S 4); down M1 is 38.5 / 53.3 us at S 10 (+7 / +6 %) but M16 -37 / -21 %.
//  * rows per block (W4 only), from the H100 lab of 2026-12-06 (qwlab marlin --quick, each timed 7B case next to the
//    other block shapes; profiles/h100/2026-12-06-tenth-run/marlin-quick.md), us rb 64 -> the rule's pick:
//    W4 g128 gate_up (>= 4 x SMs row blocks of 64) rb 256: M1 79.78 -> 71.55, M16 103.17 -> 78.62 (rb 128: 70.72 /
//    86.18); W4 down (K >= 4 x rows) rb 128: g32 M1 50.62 -> 52.06 (-3 %), M16 87.17 -> 66.24 (g128 M1 46.50; rb 256
//    M16 58.30 but M1 63.94). Only where the wider block needs no deeper K split (its S <= rb 64's: no more partials).
//    qkv / o (rb 64 best at M1 and M16: 23.6 / 17.8 us M1 against 25.9 / 19.9 at rb 128) and every W8 shape (W8
//    gate_up M1 93.2 at rb 64 against 105.5 / 129.3) stay at 64. The persistent walk (QW_MARLIN_PERSIST) lost
//    at M1 (W4 gate_up 109.2 us, 2 resident blocks of 115-128 registers) and tied at M16: off.
// smem_limit: the device's opt-in shared memory per block; the slice is narrowed until M16 at 2 stages fits it.
struct MarlinRule {
  int32_t ksu_max = 8, bps = 1, stages = 3, compact = 1;
  int32_t rb = kMarlinBlockRows;  // rows per block (64 / 128 / 256; the rule's pick for large W4 matrices)
  int32_t persist = 0;            // one tile per block (the persistent walk lost on the H100: above)
};
QW_MARLIN_HD MarlinRule marlin_rule(int64_t rows, int64_t cols, int sms, bool w4, int32_t group, size_t smem_limit) {
  MarlinRule r;
  r.stages = w4 ? 3 : 2;
  const int64_t n_blk = rows / kMarlinBlockRows;
  if (!w4 && n_blk >= 4 * (int64_t)sms) {
    r.ksu_max = kMarlinMaxKsu;
    while (r.ksu_max > 8 &&
           marlin_smem_bytes(marlin_plan(rows, cols, sms, r.ksu_max, r.bps).ksu, w4, group, 16, 2) > smem_limit)
      --r.ksu_max;
  }
  if (w4) {  // wider blocks read each activation slice for more rows (M16: a quarter / half the activation bytes)
    const int want = n_blk >= 4 * (int64_t)sms ? kMarlinWideRows : cols >= 4 * rows ? 128 : kMarlinBlockRows;
    if (want != kMarlinBlockRows && rows % want == 0 &&
        marlin_plan(rows, cols, sms, r.ksu_max, r.bps, want).S <= marlin_plan(rows, cols, sms, r.ksu_max, r.bps).S)
      r.rb = want;
  }
  return r;
}

// Column (0..127 within the unit) of W4 nibble n of word w of lane (gid, tig); the row is gid.
QW_MARLIN_HD int marlin_w4_col(int tig, int w, int n) {
  const int j = 2 * w + ((n & 3) >> 1), h = n & 1, e = n >> 2;
  return 16 * j + 8 * h + 2 * tig + e;
}
// Column of W8 byte i of word j of lane (gid, tig).
QW_MARLIN_HD int marlin_w8_col(int tig, int j, int i) { return 16 * j + 8 * (i >> 1) + 2 * tig + (i & 1); }

// ---- A fragments: the activation row (token) and column offset (within the 16-column k-step) whose 16 bytes lane
// `lane` points ldmatrix at. nb16: .x4 (tokens 0..15 -> a0, a1, a2, a3); else .x2 (tokens 0..7 -> a0, a2).
QW_MARLIN_HD int marlin_ldsm_row(int lane, bool nb16) { return nb16 ? (lane & 15) : (lane & 7); }
QW_MARLIN_HD int marlin_ldsm_col(int lane, bool nb16) { return nb16 ? (lane >> 4) * 8 : ((lane >> 3) & 1) * 8; }

// ---- register dequantization (bit level; the kernel then subtracts the bias with one bf16x2 fma) ----------------
// W4: B register h (0 = b0, 1 = b1) of step j from the lane's 4 words: bf16 pair (128 + q_lo, 128 + q_hi).
QW_MARLIN_HD uint32_t marlin_w4_bits(const uint32_t wq[4], int j, int h) {
  const int p = 2 * (j & 1) + h;
  return ((wq[j >> 1] >> (4 * p)) & 0x000F000Fu) | 0x43004300u;
}
// W8: q = 16 hi + lo with lo = q & 15 (0..15) and hi = q >> 4 (-8..7). For B register h of the step's word:
// lo plane bf16 pair (128 + lo), hi plane bf16 pair (136 + hi) (the high nibble with its top bit flipped).
QW_MARLIN_HD uint32_t marlin_w8_spread(uint32_t word, int h) {
  // bytes (2h, 2h + 1) of the word to the low bytes of the two 16-bit halves: [b_2h, 0, b_2h+1, 0]
  const uint32_t b0 = (word >> (16 * h)) & 0xFFu, b1 = (word >> (16 * h + 8)) & 0xFFu;
  return b0 | (b1 << 16);
}
QW_MARLIN_HD uint32_t marlin_w8_lo_bits(uint32_t spread) { return (spread & 0x000F000Fu) | 0x43004300u; }
QW_MARLIN_HD uint32_t marlin_w8_hi_bits(uint32_t spread) { return ((spread >> 4) & 0x000F000Fu) ^ 0x43084308u; }

// ---- the prefill GEMM (marlin_gemm.cu): the same packed units as wgmma A fragments --------------------------------
// out[tokens, rows] = act[tokens, cols] . W^T computed transposed, D^T = W . act^T, with the dequantized weights as
// wgmma's A operand from registers (m64: weight rows) and the activations as B (n: tokens) from shared memory. A CTA
// takes 128 weight rows = 16 packed tiles of 8; consumer warpgroup c (0, 1), warp w (0..3) owns rows 64c + 16w ..
// +15, i.e. tiles 8c + 2w (rows +0..7) and 8c + 2w + 1 (+8..15). wgmma's A register r of a k16 step (fa3_layout.hpp:
// row l/4 + 8 (r & 1), k 8 (r >> 1) + 2 (l % 4) + {0, 1}) is exactly tile (r & 1)'s mma.sync B register h = r >> 1 of
// that step (row gid, k 8h + 2 tig + {0, 1}), which the packing already puts in the lane's piece: no new layout.
constexpr int kMarlinGemmRows = 128;    // weight rows per CTA (2 consumer warpgroups x 64)
constexpr int kMarlinGemmTokens = 128;  // tokens per CTA (wgmma n), or kMarlinGemmTokensWide when there are enough
constexpr int kMarlinGemmTokensWide = 256;  // CTAs: half the dequantization per FLOP (marlin_gemm_tokens)
constexpr int kMarlinGemmMaxStages = 4;
QW_MARLIN_HD int marlin_gemm_tile(int c, int w, int r) { return 8 * c + 2 * w + (r & 1); }
QW_MARLIN_HD float marlin_as_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;  // (kv_unpack.hpp has the same cast; this header stays free of the KV cache's)
  std::memcpy(&f, &b, 4);
  return f;
#endif
}
// The two codes of A register r of k-step j as exact floats (lo = the even column): W4 from the tile's 4 words
// (nibbles under the bf16 exponent of 128, as marlin_w4_bits), W8 from its 8 words (the byte, sign bit flipped, under
// the fp32 exponent of 2^23: 2^23 + 128 + q; subtracting is exact). No I2F (a quarter-rate instruction).
QW_MARLIN_HD void marlin_gemm_w4_codes(const uint32_t wq[4], int j, int r, float &lo, float &hi) {
  const uint32_t x = marlin_w4_bits(wq, j, r >> 1);
  lo = marlin_as_float(x << 16) - 128.f;
  hi = marlin_as_float(x & 0xFFFF0000u) - 128.f;
}
QW_MARLIN_HD void marlin_gemm_w8_codes(const uint32_t wq[8], int j, int r, float &lo, float &hi) {
  const uint32_t x = wq[j] ^ 0x80808080u, b = (uint32_t)(r >> 1) * 16u;
  lo = marlin_as_float(0x4B000000u | ((x >> b) & 0xFFu)) - 8388736.f;
  hi = marlin_as_float(0x4B000000u | ((x >> (b + 8)) & 0xFFu)) - 8388736.f;
}
// bf16 round to nearest even of a finite float, as __floats2bfloat162_rn (the host side of the CPU test)
inline uint16_t marlin_bf16_rn_host(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
// Shared memory of one pipeline stage: the activation tile (2 column blocks of tn tokens x 128 B, 128B-swizzled by
// TMA) then the 16 tiles' units (16 x unit_bytes), rounded up to the 1024-byte swizzle atom.
QW_MARLIN_HD constexpr uint32_t marlin_gemm_stage_bytes(int32_t unit_bytes, int tn = kMarlinGemmTokens) {
  return ((uint32_t)tn * 256u + 16u * (uint32_t)unit_bytes + 1023u) & ~1023u;
}
// The ring's depth for a shared-memory budget (stages + 2 x stages mbarriers + the abort word + 1024 of alignment):
// up to kMarlinGemmMaxStages, at least 2 (0: does not fit).
QW_MARLIN_HD int marlin_gemm_stages(int32_t unit_bytes, size_t smem_limit, int tn = kMarlinGemmTokens) {
  for (int st = kMarlinGemmMaxStages; st >= 2; --st)
    if ((size_t)st * marlin_gemm_stage_bytes(unit_bytes, tn) + 16u * st + 16u + 1024u <= smem_limit) return st;
  return 0;
}
QW_MARLIN_HD size_t marlin_gemm_smem_bytes(int32_t unit_bytes, int st, int tn = kMarlinGemmTokens) {
  return (size_t)st * marlin_gemm_stage_bytes(unit_bytes, tn) + 16u * st + 16u + 1024u;
}
// Tokens per CTA, by waves (one CTA per SM: 1 with either tile, its registers): a 256-token CTA costs ~1.48 times a
// 128-token one (twice the MMAs for one dequantization of the weight tile: 486 against 360 TFLOP/s on 7B gate_up W4,
// H100, thirteenth run), so 256 when ceil(CTAs256 / SMs) x 1.48 < ceil(CTAs128 / SMs) and the ring keeps 3 stages
// at 256 (W4; W8's units leave 2, and measured slower at 256 everywhere). 7B W4 on 132 SMs: at 512 tokens gate_up
// (9 waves against 5 x 1.48) and qkv (2 against 1 x 1.48) take 256, o and down (1 wave either way) 128; at 2048 all
// take 256; at <= 128 tokens always 128 (the same waves, half of the wide tile idle). The choice that measured ~1.5x
// slower before (the rule was ">= 2 CTAs per SM at 256"): qkv at 512, o / down at 2048. Depends on the shape only.
constexpr int kMarlinGemmWideCostPct = 148;  // a 256-token CTA's time in % of a 128-token CTA's (measured, above)
QW_MARLIN_HD int marlin_gemm_tokens(int64_t rows, int64_t m_tokens, int32_t unit_bytes, int sms, size_t smem_limit) {
  const int64_t row_ctas = rows / kMarlinGemmRows, s = sms > 0 ? sms : 1;
  const auto waves = [&](int64_t tn) { return (row_ctas * ((m_tokens + tn - 1) / tn) + s - 1) / s; };
  const bool wide = waves(kMarlinGemmTokensWide) * kMarlinGemmWideCostPct < waves(kMarlinGemmTokens) * 100;
  return wide && marlin_gemm_stages(unit_bytes, smem_limit, kMarlinGemmTokensWide) >= 3 ? kMarlinGemmTokensWide
                                                                                          : kMarlinGemmTokens;
}

// Whether the fused GEMM is expected to beat the chunked path (an L2-sized row chunk dequantized to bf16, then the
// bf16 GEMM) on a shape. The chunked path pays one dequantization per weight, spread over the tokens; the fused one
// pays its lower per-CTA efficiency on every FLOP. H100, thirteenth run, us fused / chunked: W4 at 512 tokens
// gate_up 285 / 372 and down 228 / 235 win, qkv 61 / 57 and o 59 / 55 lose (16.5 M and 12.8 M weights, 72 and 112
// CTAs: under one wave); at 2048 tokens every shape loses (0.54-0.91x); W8 ties at best (gate_up / down at 512:
// 1.03x), loses elsewhere (0.43-0.91x). So: >= 64 M weights and <= 1024 tokens (the crossover between 512 and 2048
// is not measured; 1024 is the lab's new middle row). Depends on the shape only (batch invariance).
constexpr int64_t kMarlinGemmMinWeights = int64_t(1) << 26;
constexpr int64_t kMarlinGemmMaxTokens = 1024;
QW_MARLIN_HD bool marlin_gemm_preferred(int64_t rows, int64_t cols, int64_t m_tokens) {
  return rows * cols >= kMarlinGemmMinWeights && m_tokens <= kMarlinGemmMaxTokens;
}

}  // namespace qwc
