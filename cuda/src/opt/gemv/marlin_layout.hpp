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

#include <cstdint>

#if defined(__CUDACC__)
#define QW_MARLIN_HD __host__ __device__ __forceinline__
#else
#define QW_MARLIN_HD inline
#endif

namespace qwc {

constexpr int kMarlinUnitCols = 128;
constexpr int kMarlinTileRows = 8;
constexpr int kMarlinBlockRows = 64;  // rows per thread block (2 warps x 4 tiles of 8 rows)
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
};

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
  int32_t n_blk = 0;  // 64-row blocks
  int32_t ksu = 0;    // 128-column units per K slice (<= ksu_max: the slice's activations sit in shared memory)
  int32_t S = 0;      // K slices (blocks per row block); S > 1 adds the partials in slice order
  size_t part_bytes() const { return (size_t)n_blk * S * kMarlinBlockRows * 16 * sizeof(float); }
};
// ksu_max / bps: the launcher's knobs (MarlinKnobs in marlin.cuh); the defaults are those of the first GPU run.
QW_MARLIN_HD MarlinPlan marlin_plan(int64_t rows, int64_t cols, int sms, int ksu_max = 8, int bps = 2) {
  MarlinPlan p;
  const int ku = (int)(cols / kMarlinUnitCols);
  p.n_blk = (int)(rows / kMarlinBlockRows);
  int S = (ku + ksu_max - 1) / ksu_max;
  // bps blocks per SM (default 2: the shared-memory budget) and no K slice of less than one unit
  while ((int64_t)p.n_blk * S < (int64_t)bps * sms && S < ku) ++S;
  p.ksu = (ku + S - 1) / S;
  p.S = (ku + p.ksu - 1) / p.ksu;
  return p;
}

QW_MARLIN_HD bool marlin_group_ok(int32_t group) { return group == 16 || group == 32 || group == 64 || group == 128; }
QW_MARLIN_HD int32_t marlin_unit_bytes(int32_t type_w4, int32_t group) {
  return (type_w4 ? 512 : 1024) + (kMarlinUnitCols / group) * 64;
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

}  // namespace qwc
