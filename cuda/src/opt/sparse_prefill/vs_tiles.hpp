// vs_tiles.hpp — vertical-slash on tensor cores (sparsePrefill = vertical-slash, its mma attend): how a query block's
// selected columns and diagonals become the 64-key tiles of the mma.sync flash prefill kernel, and which (row, key)
// of a tile counts. Host and device code: the CUDA kernel (src/cuda/attention_prefill.cu, VS; key_lines.cuh) and the
// CPU check of the layout (test_sparse_prefill.cpp, vs_tiles_cover) use literally these formulas.
//
// Query block qb holds positions q0 = 64 qb .. q0 + 63, of which the step's rows are qlo .. qhi. Head h selected
// the columns C and the diagonals D (ascending; C holds the sink, D the local window; a row i visits key j <= i iff
// j is in C or i - j is in D: the CPU's rule, sparse_prefill_cpu.cpp). The block visits
//   - contiguous tiles: each key block kb that a diagonal o of D (o <= qhi) reaches from a row of [qlo, qhi]:
//     kb in [max(qlo - o, 0) / 64, (qhi - o) / 64] (at most two per diagonal), ascending; there (row qp, key kp)
//     counts iff kp <= qp and (qp - kp in D or kp in C), both read from per-head bitmaps;
//   - gather tiles: C's entries <= qhi in runs of 64 (gather tile g: C[64 g .. 64 g + 63], the K/V rows loaded by
//     index); key kp counts for row qp iff kp <= qp and kp's key block is not a contiguous tile (there the first
//     rule counts it already).
// So every key a row selects counts exactly once, and nothing else does. With every diagonal selected the contiguous
// tiles are 0 .. qb with the causal mask, and every gather tile is fully masked (alpha = 1, p = 0: no change): z is
// the dense mma.sync kernel's bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define QW_VS_HD __host__ __device__ __forceinline__
#else
#define QW_VS_HD inline
#endif

namespace qw {
namespace sparse {

constexpr int32_t kVsTile = 64;      // keys per tile (the kernel's kBK; a key block of block-sparse)
constexpr int32_t kVsDiagWords = 4;  // a contiguous tile's diagonal bits: offsets q0 - k0 - 64 .. q0 - k0 + 63
constexpr int32_t kVsColWords = 2;   // its column bits: keys k0 .. k0 + 63

// Entries of the ascending list v[0 .. n) that are <= x.
QW_VS_HD int32_t count_le(const int32_t *v, int32_t n, int32_t x) {
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    const int32_t mid = (lo + hi) >> 1;
    if (v[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// The key blocks [kb_lo, kb_hi] diagonal o reaches from rows qlo .. qhi; false where it reaches none (o > qhi).
QW_VS_HD bool vs_diag_blocks(int32_t o, int32_t qlo, int32_t qhi, int32_t &kb_lo, int32_t &kb_hi) {
  if (qhi - o < 0) return false;
  kb_lo = (qlo - o > 0 ? qlo - o : 0) / kVsTile;
  kb_hi = (qhi - o) / kVsTile;
  return true;
}

// Word w of a bitmap of `words` words, 0 outside it (a tile's diagonal words start below 0 on the block diagonal).
QW_VS_HD uint32_t vs_word(const uint32_t *bits, int32_t words, int32_t w) { return w >= 0 && w < words ? bits[w] : 0u; }
QW_VS_HD bool vs_bit(const uint32_t *bits, int32_t i) { return (bits[i >> 5] >> (i & 31)) & 1u; }

// The first diagonal word a contiguous tile (query block start q0, key block start k0 <= q0; both multiples of 64)
// stages: offsets from q0 - k0 - 64 (a multiple of 32), kVsDiagWords words.
QW_VS_HD int32_t vs_diag_word0(int32_t q0, int32_t k0) { return (q0 - k0 - kVsTile) / 32; }

// (row qp, key kp) of a contiguous tile counts: dw = the tile's kVsDiagWords diagonal words, cw its kVsColWords
// column words (qp in q0 .. q0 + 63, kp in k0 .. k0 + 63, so the bit indices stay inside them).
QW_VS_HD bool vs_contig_visible(int32_t qp, int32_t kp, int32_t q0, int32_t k0, const uint32_t *dw, const uint32_t *cw) {
  return kp <= qp && (vs_bit(dw, qp - kp - (q0 - k0 - kVsTile)) || vs_bit(cw, kp - k0));
}

// Bit-reversal of a 64-bit word (the row mask below reads the diagonal bits backwards).
QW_VS_HD uint64_t vs_brev64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __brevll(x);
#else
  x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
  x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
  x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
  x = ((x >> 8) & 0x00FF00FF00FF00FFull) | ((x & 0x00FF00FF00FF00FFull) << 8);
  x = ((x >> 16) & 0x0000FFFF0000FFFFull) | ((x & 0x0000FFFF0000FFFFull) << 16);
  return (x >> 32) | (x << 32);
#endif
}

// Row qp's 64 keys of a contiguous tile as one word (bit c = key k0 + c counts): what vs_contig_visible says per
// element, computed once per (row, tile) instead of two bit lookups per element. With r = qp - q0, key c's diagonal
// bit is r + 64 - c of the tile's 128 diagonal bits (dw), i.e. bit 63 - c of the 64 bits from r + 1 up: a shift of
// the 128-bit word, reversed. Then the column word (cw) and the causal cut kp <= qp.
QW_VS_HD uint64_t vs_row_mask(int32_t qp, int32_t q0, int32_t k0, const uint32_t *dw, const uint32_t *cw) {
  const uint64_t lo = uint64_t(dw[0]) | (uint64_t(dw[1]) << 32), hi = uint64_t(dw[2]) | (uint64_t(dw[3]) << 32);
  const int32_t sh = qp - q0 + 1;  // 1 .. 64
  const uint64_t win = sh == 64 ? hi : (lo >> sh) | (hi << (64 - sh));
  uint64_t m = vs_brev64(win) | (uint64_t(cw[0]) | (uint64_t(cw[1]) << 32));
  const int32_t last = qp - k0;  // keys c <= last are causal
  if (last < 63) m &= last < 0 ? 0ull : (~0ull >> (63 - last));
  return m;
}

// (row qp, gathered key kp, -1 past C's end) counts: kbits = the query block's contiguous key blocks.
QW_VS_HD bool vs_gather_visible(int32_t qp, int32_t kp, const uint32_t *kbits) {
  return kp >= 0 && kp <= qp && !vs_bit(kbits, kp / kVsTile);
}

// Host: query block qb's contiguous key blocks (bits of kbits, qb / 32 + 1 words, zeroed here) for rows qlo .. qhi of
// a head with diagonals D[0 .. nd), as the kernel's vs_setup marks them; returns how many, and in n_gather its gather
// tiles (C[0 .. nc) entries <= qhi, 64 a tile). The CPU check walks them; the lab reports the tiles walked.
inline int32_t vs_block_tiles(std::vector<uint32_t> &kbits, const int32_t *C, int32_t nc, const int32_t *D, int32_t nd,
                              int32_t qb, int32_t qlo, int32_t qhi, int32_t &n_gather) {
  kbits.assign(size_t(qb) / 32 + 1, 0u);
  int32_t contig = 0;
  for (int32_t j = 0; j < count_le(D, nd, qhi); ++j) {
    int32_t lo, hi;
    if (!vs_diag_blocks(D[j], qlo, qhi, lo, hi)) continue;
    for (int32_t kb = lo; kb <= hi; ++kb) {
      contig += !vs_bit(kbits.data(), kb);
      kbits[size_t(kb) >> 5] |= 1u << (kb & 31);
    }
  }
  n_gather = (count_le(C, nc, qhi) + kVsTile - 1) / kVsTile;
  return contig;
}

// Host: the kernel's bitmaps from a selection (per head its columns, then its diagonals; offs [2 H + 1] as
// SparseScratch's): out = columns [H][words] | diagonals [H][words], words = ceil(N / 32).
inline void vs_bitmaps(std::vector<uint32_t> &out, const int32_t *lists, const int32_t *offs, int32_t H, int32_t words) {
  out.assign(size_t(2) * size_t(H) * size_t(words), 0u);
  for (int32_t h = 0; h < H; ++h)
    for (int32_t part = 0; part < 2; ++part) {
      uint32_t *bm = out.data() + (size_t(part) * size_t(H) + size_t(h)) * size_t(words);
      for (int32_t e = offs[2 * h + part]; e < offs[2 * h + part + 1]; ++e) bm[lists[e] >> 5] |= 1u << (lists[e] & 31);
    }
}

}  // namespace sparse
}  // namespace qw
