// fa3_layout.hpp — the layout arithmetic of the sm_90a flash prefill kernel (fa3_prefill.cu), in plain C++ so that the
// CPU test (test_fa3_layout.cpp) checks it without a GPU: the shared-memory tile geometry, TMA's 128-byte swizzle,
// the wgmma shared-memory matrix descriptors, the accumulator / A-operand register fragments, and the GQA row packing.
//
// Sources of the formulas (PTX ISA 8.x, "Asynchronous Warpgroup Level Matrix ..." and "Tensor Copy"):
//  - SWIZZLE_128B (TMA) and wgmma's 128B swizzle mode are one function of the shared-memory byte address: the 16-byte
//    chunk index (bits 4..6) is XORed with the 128-byte row index modulo 8 (bits 7..9). Both act on absolute addresses,
//    so every tile base here is 1024-byte aligned (one swizzle atom = 8 rows x 128 B) and both sides agree.
//  - Matrix descriptor (64 bit): start address >> 4 in bits 0..13, leading-dimension byte offset >> 4 in 16..29,
//    stride-dimension byte offset >> 4 in 32..45, base offset in 49..51 (0: atoms are 1024-aligned), swizzle mode in
//    62..63 (1 = 128B).
//  - K-major, 128B swizzle (Q as A and K as B of S = Q.K^T): rows of 64 bf16 (128 B) at 128 B, 8-row groups at SBO =
//    1024 B; LBO unused ("assumed 1"). A k16 step inside the 64-wide atom moves the start address by 32 B.
//  - MN-major, 128B swizzle (V as B of O += P.V, imm-trans-b = 1): 64 N-elements (128 B) contiguous per K row, K rows
//    at 128 B, 8-K-row groups at SBO = 1024 B, the next 64 N-elements at LBO. A k16 step moves 16 K rows = 2048 B.
//  - Accumulator of m64nNk16 (f32): warp w of the warpgroup owns rows 16w..16w+15; lane l holds, for n8 chunk j,
//    d[4j + i] at row 16w + l/4 + 8*(i/2), column 8j + 2*(l%4) + i%2.
//  - A from registers (bf16, m64k16): a0..a3 (two bf16 each) = (row l/4, k 2(l%4)+{0,1}), (row l/4+8, same k),
//    (row l/4, k 8+2(l%4)+{0,1}), (row l/4+8, same k). So S's chunks 2kk, 2kk+1 packed pairwise are P's k-step kk.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define QW_FA3_HD __host__ __device__ __forceinline__
#else
#define QW_FA3_HD inline
#endif

namespace qwc {

// Tile geometry. A CTA has one producer warpgroup and nc consumer warpgroups (nc = 2 at hd 128, 3 at hd 64, as FA3's
// 128 x 128 and 192 x 128 tiles); it owns 64 * nc packed query rows and walks keys kFa3Keys at a time.
constexpr int kFa3Keys = 128;
constexpr int kFa3Atom = 64;            // bf16 columns per 128-byte swizzled row (one TMA box width)
constexpr int kFa3RowBytes = 128;       // bytes of one swizzled row
constexpr int kFa3SwizzleAtom = 1024;   // 8 rows x 128 B: the alignment every tile base keeps
constexpr int kFa3ProducerRegs = 24;    // setmaxnreg.dec of the producer warpgroup

QW_FA3_HD constexpr int fa3_consumers(int d) { return d == 64 ? 3 : 2; }
QW_FA3_HD constexpr int fa3_rows(int nc) { return 64 * nc; }
QW_FA3_HD constexpr int fa3_threads(int nc) { return 128 * (nc + 1); }
// setmaxnreg.inc of the consumers: what the producer's release leaves, per consumer thread, rounded down to 8. The
// launch holds 65536 / threads registers per thread (168 for 384 threads, 128 for 512): 128*24 + 256*240 = 384*168,
// 128*24 + 384*160 <= 512*128.
QW_FA3_HD constexpr int fa3_consumer_regs(int nc) {
  return ((65536 / fa3_threads(nc) / 8 * 8 * fa3_threads(nc) - 128 * kFa3ProducerRegs) / (128 * nc)) / 8 * 8;
}
QW_FA3_HD constexpr int fa3_stages(int d) { return d == 128 ? 2 : 3; }
// Bytes of one tile of `rows` rows x d columns, stored as d/64 column blocks of rows x 128 B.
QW_FA3_HD constexpr uint32_t fa3_tile_bytes(int rows, int d) { return (uint32_t)rows * (uint32_t)d * 2u; }
QW_FA3_HD constexpr uint32_t fa3_block_bytes(int rows) { return (uint32_t)rows * kFa3RowBytes; }
// Shared memory map (offsets from a 1024-aligned base): Q, then K stages, then V stages, then the mbarriers.
// st = the ring's stages (fa3_stages(d) by default; the lab's variants try 3 at hd 128, which still fits 227 KB).
QW_FA3_HD constexpr uint32_t fa3_q_off() { return 0; }
QW_FA3_HD constexpr uint32_t fa3_k_off(int d, int nc, int stage) {  // the K ring starts after Q whatever st is
  return fa3_tile_bytes(fa3_rows(nc), d) + (uint32_t)stage * fa3_tile_bytes(kFa3Keys, d);
}
QW_FA3_HD constexpr uint32_t fa3_v_off(int d, int nc, int stage, int st = 0) {
  return fa3_k_off(d, nc, st > 0 ? st : fa3_stages(d)) + (uint32_t)stage * fa3_tile_bytes(kFa3Keys, d);
}
QW_FA3_HD constexpr uint32_t fa3_bar_off(int d, int nc, int st = 0) {
  return fa3_v_off(d, nc, st > 0 ? st : fa3_stages(d), st);
}
// q_full, k_full[S], v_full[S], empty[S] (split release: k_empty[S] there, then v_empty[S]): 8 bytes each; then the
// watchdog's abort word (fa3_sm90.cuh); +1024 for aligning the dynamic base by hand.
QW_FA3_HD constexpr uint32_t fa3_abort_off(int d, int nc, int st = 0, bool split = false) {
  return fa3_bar_off(d, nc, st) + 8u * (1u + (split ? 4u : 3u) * (uint32_t)(st > 0 ? st : fa3_stages(d)));
}
QW_FA3_HD constexpr uint32_t fa3_smem_bytes(int d, int nc, int st = 0, bool split = false) {
  return fa3_abort_off(d, nc, st, split) + 8u + 1024u;
}

// The 128-byte swizzle on a byte address (absolute, or relative to a 1024-aligned base).
QW_FA3_HD uint32_t fa3_swizzle128(uint32_t addr) { return addr ^ ((addr >> 3) & 0x70u); }

// Where TMA (box inner width 64 bf16, SWIZZLE_128B) puts element (row r, column c) of a tile of `rows` rows whose
// column block c/64 was loaded as its own box at base + (c/64) * rows * 128: the box is dense, dim 0 fastest.
QW_FA3_HD uint32_t fa3_tma_addr(uint32_t base, int rows, int r, int c) {
  const uint32_t lin = base + (uint32_t)(c / kFa3Atom) * fa3_block_bytes(rows) + (uint32_t)r * kFa3RowBytes +
                       (uint32_t)(c % kFa3Atom) * 2u;
  return fa3_swizzle128(lin);
}

// Matrix descriptor fields (bytes; the encoding drops the 4 low bits).
QW_FA3_HD uint64_t fa3_desc(uint32_t start, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((start & 0x3FFFFu) >> 4) | ((uint64_t)((lbo & 0x3FFFFu) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFFu) >> 4) << 32) | (1ull << 62);
}
// K-major operand (Q as A, K as B) at k16 step kk of a tile of `rows` rows: column block kk/4, 32 B per step inside it.
// `row0` selects a warpgroup's 64-row slice of Q (a multiple of 8, so the start stays on an 8-row group).
QW_FA3_HD uint64_t fa3_desc_kmajor(uint32_t base, int rows, int row0, int kk) {
  const uint32_t start = base + (uint32_t)(kk / 4) * fa3_block_bytes(rows) + (uint32_t)row0 * kFa3RowBytes +
                         (uint32_t)(kk % 4) * 32u;
  return fa3_desc(start, 16u, 8u * kFa3RowBytes);
}
// MN-major operand (V as B, N = head dim) at k16 step kk (keys 16kk..16kk+15) of a tile of `rows` keys.
QW_FA3_HD uint64_t fa3_desc_mnmajor(uint32_t base, int rows, int kk) {
  return fa3_desc(base + (uint32_t)kk * 16u * kFa3RowBytes, fa3_block_bytes(rows), 8u * kFa3RowBytes);
}

// Accumulator fragment (m64nNk16, f32): row and column of register `reg` of lane `lane` in warp `w` of a warpgroup.
QW_FA3_HD int fa3_acc_row(int w, int lane, int reg) { return 16 * w + (lane >> 2) + 8 * ((reg >> 1) & 1); }
QW_FA3_HD int fa3_acc_col(int lane, int reg) { return 8 * (reg >> 2) + 2 * (lane & 3) + (reg & 1); }
// A operand from registers (bf16, m64k16): register `reg` (0..3), half `h` (0 = low bf16) of lane `lane`, warp `w`.
QW_FA3_HD int fa3_afrag_row(int w, int lane, int reg) { return 16 * w + (lane >> 2) + 8 * (reg & 1); }
QW_FA3_HD int fa3_afrag_k(int lane, int reg, int h) { return 8 * (reg >> 1) + 2 * (lane & 3) + h; }
// The accumulator register of S that P's A register `reg` (half h) of k-step kk is made from (same thread).
QW_FA3_HD int fa3_p_from_s(int kk, int reg, int h) { return 4 * (2 * kk + (reg >> 1)) + 2 * (reg & 1) + h; }

// GQA packing: a CTA of kv head kvh serves the G query heads of its group together. Packed row i of the tile is query
// position t0 + i / G of head kvh * G + i % G; a tile holds fa3_pos_per_tile(G, nc) positions (the last rows % G idle).
// Q is read by a 4-D TMA map (d, G, nKV, n) whose box (64, G, 1, P) lands exactly in this order.
QW_FA3_HD int fa3_pos_per_tile(int g, int nc) { return fa3_rows(nc) / g; }
QW_FA3_HD int fa3_row_pos(int i, int g) { return i / g; }
QW_FA3_HD int fa3_row_head(int i, int g) { return i % g; }

// Keys a CTA must visit: every key up to its last valid row's position (causal), chunked prefill included
// (query t sits at cache position pos0 + t and sees keys 0..pos0+t).
QW_FA3_HD int fa3_kv_end(int pos0, int n, int t0, int p) { return pos0 + (n < t0 + p ? n : t0 + p); }
// The key tiles of a CTA whose rows see keys [lo, hi) each, lo and hi non-decreasing in the row's position (causal:
// [0, p + 1); a DCA part: dca::part_keys), given the first and the last row's ranges: tiles jb .. jb + n_tiles - 1
// (none when no row has a key); a tile needs the mask unless it lies inside every row's range, [lo_max, hi_min).
struct Fa3CtaKeys {
  int jb, n_tiles, lo_max, hi_min;
};
QW_FA3_HD Fa3CtaKeys fa3_cta_keys(int lo_first, int hi_first, int lo_last, int hi_last) {
  Fa3CtaKeys r;
  r.jb = lo_first / kFa3Keys;
  r.n_tiles = hi_last > lo_first ? (hi_last + kFa3Keys - 1) / kFa3Keys - r.jb : 0;
  r.lo_max = lo_last;
  r.hi_min = hi_first;
  return r;
}
QW_FA3_HD bool fa3_tile_masked(const Fa3CtaKeys &r, int k0) { return k0 < r.lo_max || k0 + kFa3Keys > r.hi_min; }

// TMA map shapes (cuTensorMapEncodeTiled: dims and box innermost first, strides in bytes of dims 1..rank-1).
struct Fa3MapShape {
  int rank = 0;
  int eb = 2;  // bytes per element: 2 (bf16), 1 (the INT8 Q and K~ of sage-int8)
  uint64_t dims[4] = {0, 0, 0, 0};
  uint64_t strides[3] = {0, 0, 0};
  uint32_t box[4] = {0, 0, 0, 0};
};
// Q of one sequence, [n][nH][d] (eb bytes per element), as (d, G, nKV, n): the box (128 / eb, G, 1, P) of kv head kvh
// at position t0 is the packed tile (row t*G + g), one 128-byte row per packed row and box. Rows past n are zero-filled.
inline Fa3MapShape fa3_q_map(int n, int n_heads, int n_kv, int d, int nc, int eb = 2) {
  const int g = n_heads / n_kv;
  Fa3MapShape m;
  m.rank = 4;
  m.eb = eb;
  m.dims[0] = (uint64_t)d; m.dims[1] = (uint64_t)g; m.dims[2] = (uint64_t)n_kv; m.dims[3] = (uint64_t)n;
  m.strides[0] = (uint64_t)d * eb; m.strides[1] = (uint64_t)g * d * eb; m.strides[2] = (uint64_t)n_heads * d * eb;
  m.box[0] = (uint32_t)(kFa3RowBytes / eb); m.box[1] = (uint32_t)g; m.box[2] = 1; m.box[3] = (uint32_t)fa3_pos_per_tile(g, nc);
  return m;
}
// K or V of one cache slot ([nKV][max_ctx][d] bf16 from the slot's base) as (d, kv_len, nKV): keys at or past kv_len
// (= pos0 + n) are zero-filled, so a partial last tile never reads another sequence's or an unwritten row (a NaN there
// would survive P = 0 in P.V).
// (eb = 1: sage-int8's K~ [nKV][ctx64][d] int8, max_ctx = ctx64.)
inline Fa3MapShape fa3_kv_map(int kv_len, int n_kv, int d, int max_ctx, int eb = 2) {
  Fa3MapShape m;
  m.rank = 3;
  m.eb = eb;
  m.dims[0] = (uint64_t)d; m.dims[1] = (uint64_t)kv_len; m.dims[2] = (uint64_t)n_kv;
  m.strides[0] = (uint64_t)d * eb; m.strides[1] = (uint64_t)max_ctx * d * eb;
  m.box[0] = (uint32_t)(kFa3RowBytes / eb); m.box[1] = kFa3Keys; m.box[2] = 1;
  return m;
}
// sage-fp8's e4m3 V~ transposed, [nKV][d][ctx64] bytes, as (ctx64, d, nKV): the box (128 keys, d, 1) of key tile j is
// d channel rows of 128 key bytes, the K-major B operand of O += P'.V~' (keys past ctx64 zero-filled).
inline Fa3MapShape fa3_vt_map(int ctx64, int n_kv, int d) {
  Fa3MapShape m;
  m.rank = 3;
  m.eb = 1;
  m.dims[0] = (uint64_t)ctx64; m.dims[1] = (uint64_t)d; m.dims[2] = (uint64_t)n_kv;
  m.strides[0] = (uint64_t)ctx64; m.strides[1] = (uint64_t)d * ctx64;
  m.box[0] = kFa3Keys; m.box[1] = (uint32_t)d; m.box[2] = 1;
  return m;
}
// Element offset (in elements of m.eb bytes) of box element e = (e0, e1, e2, e3) loaded at coordinates c; -1 when out of bounds (TMA
// writes zero there). Used by the CPU test to play TMA against the packed-row formulas.
inline int64_t fa3_map_elem(const Fa3MapShape &m, const int c[4], const int e[4]) {
  int64_t off = 0;
  for (int k = 0; k < m.rank; ++k) {
    const int64_t x = (int64_t)c[k] + e[k];
    if (x < 0 || x >= (int64_t)m.dims[k]) return -1;
    off += k == 0 ? x : x * (int64_t)(m.strides[k - 1] / (uint64_t)m.eb);
  }
  return off;
}

}  // namespace qwc
