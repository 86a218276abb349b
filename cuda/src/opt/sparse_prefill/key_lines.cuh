// key_lines.cuh — vertical-slash's selection as the mma.sync flash prefill kernel reads it (sparsePrefill =
// vertical-slash, its mma attend; src/cuda/attention_prefill.cu, prefill_attn_mma_kernel<D, ..., VS = true>): the
// same kernel, whose key-tile loop walks a query block's contiguous tiles, then its gather tiles (vs_tiles.hpp says
// which and why). COMPILE-CHECKED ONLY: the lab (cuda/dev/lab/sparse.cu) and test/gpu/sparse.test.ts check it on the
// first GPU call.
//
// Per CTA (query block qb0 + x, head h), in dynamic shared memory after the K/V ring (vs_smem_bytes):
//   keys [2][64] int32   the gather tile's keys per K/V buffer (-1 past the columns' end)
//   bits [2][8] uint32   a contiguous tile's diagonal words (kVsDiagWords) and column words (kVsColWords) per buffer
//   cnt  [4] int32       the contiguous tile count (written by warp 0 in vs_setup)
//   kbits [ceil(nkb / 32)] uint32   the query block's contiguous key blocks, as bits
//   list [nkb] uint16    the same, ascending
// nkb = the step's key blocks (keys 0 .. pos0 + rows - 1).
#pragma once

#include <cstdint>

#include "vs_tiles.hpp"

namespace qwc {

struct KeyLines {
  const int32_t *lists = nullptr;  // device: per head its columns, then its diagonals, ascending; null: not vertical-slash
  const int32_t *offs = nullptr;   // device [2 nH + 1]: head h's columns at [offs[2h], offs[2h+1]), diagonals to offs[2h+2]
  const uint32_t *cbits = nullptr, *dbits = nullptr;  // device [nH][words]: column c / diagonal o selected
  int32_t words = 0;               // per head: ceil(N / 32), N = pos0 + rows
  int32_t qb0 = 0, nqb = 0;        // the step's first query block (pos0 / 64) and its query block count
};

constexpr int kVsMaxKeyBlocks = 32768;  // list entries are uint16; 2M keys (past it the SIMT attend runs)

// Bytes of the VS state for a step of nkb key blocks (16-byte multiple).
inline size_t vs_smem_bytes(int nkb) {
  const size_t fixed = 2 * 64 * 4 + 2 * 8 * 4 + 4 * 4;  // keys, bits, cnt: 592 B
  return (fixed + size_t((nkb + 31) / 32) * 4 + size_t(nkb) * 2 + 15) / 16 * 16;
}

#if defined(__CUDACC__)
#include "common.cuh"

struct VsWalk {
  int32_t *keys;
  uint32_t *bits, *kbits;
  uint16_t *list;
  const int32_t *cols;  // the head's columns
  int ncol;             // its columns <= qhi (the gather tiles cover them)
  int n_contig;         // contiguous tiles; gather tiles follow: ceil(ncol / 64)
  __device__ int n_tiles() const { return n_contig + (ncol + 63) / 64; }
};

// Every thread of the CTA (ends with a barrier): the contiguous key blocks of query block qb (rows qlo .. qhi) of
// head h into kbits and list. smem: the VS region (vs_smem_bytes(nkb)).
__device__ __forceinline__ VsWalk vs_setup(const KeyLines &L, int h, int qb, int qlo, int qhi, int nkb,
                                           unsigned char *smem) {
  VsWalk w;
  w.keys = reinterpret_cast<int32_t *>(smem);
  w.bits = reinterpret_cast<uint32_t *>(w.keys + 2 * 64);
  int32_t *cnt = reinterpret_cast<int32_t *>(w.bits + 2 * 8);
  w.kbits = reinterpret_cast<uint32_t *>(cnt + 4);
  w.list = reinterpret_cast<uint16_t *>(w.kbits + (nkb + 31) / 32);
  const int nw = (qb + 1 + 31) / 32;  // the words of key blocks 0 .. qb
  for (int i = threadIdx.x; i < nw; i += blockDim.x) w.kbits[i] = 0u;
  __syncthreads();
  const int32_t *diags = L.lists + L.offs[2 * h + 1];
  const int nd = qw::sparse::count_le(diags, L.offs[2 * h + 2] - L.offs[2 * h + 1], qhi);
  for (int j = threadIdx.x; j < nd; j += blockDim.x) {
    int32_t lo, hi;
    if (qw::sparse::vs_diag_blocks(diags[j], qlo, qhi, lo, hi))
      for (int kb = lo; kb <= hi; ++kb) atomicOr(&w.kbits[kb >> 5], 1u << (kb & 31));
  }
  __syncthreads();
  if (threadIdx.x < 32) {  // warp 0: the set bits in ascending order (words in order, bits in order within one)
    const int lane = threadIdx.x;
    int base = 0;
    for (int w0 = 0; w0 < nw; w0 += 32) {
      uint32_t x = w0 + lane < nw ? w.kbits[w0 + lane] : 0u;
      const int c = __popc(x), incl = warp_scan_incl(c);
      int pos = base + incl - c;
      while (x) {
        w.list[pos++] = uint16_t((w0 + lane) * 32 + __ffs(x) - 1);
        x &= x - 1;
      }
      base += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) cnt[0] = base;
  }
  __syncthreads();
  w.n_contig = cnt[0];
  w.cols = L.lists + L.offs[2 * h];
  w.ncol = qw::sparse::count_le(w.cols, L.offs[2 * h + 1] - L.offs[2 * h], qhi);
  return w;
}

// First key of tile t (contiguous), -1 for a gather tile.
__device__ __forceinline__ int vs_key_start(const VsWalk &w, int t) {
  return t < w.n_contig ? int(w.list[t]) * qw::sparse::kVsTile : -1;
}
// Key of row r of gather tile t (t >= n_contig), -1 past the columns.
__device__ __forceinline__ int vs_gather_key(const VsWalk &w, int t, int r) {
  const int j = (t - w.n_contig) * qw::sparse::kVsTile + r;
  return j < w.ncol ? w.cols[j] : -1;
}
// Stages tile t's mask data into buffer buf (read after the barrier that precedes its use): a contiguous tile's
// diagonal and column words, a gather tile's keys. q0: the query block's first position.
__device__ __forceinline__ void vs_stage(const VsWalk &w, const KeyLines &L, int h, int q0, int t, int buf) {
  using namespace qw::sparse;
  if (t < w.n_contig) {
    const int k0 = vs_key_start(w, t), i = threadIdx.x;
    if (i < kVsDiagWords)
      w.bits[buf * 8 + i] = vs_word(L.dbits + (int64_t)h * L.words, L.words, vs_diag_word0(q0, k0) + i);
    else if (i < kVsDiagWords + kVsColWords)
      w.bits[buf * 8 + i] = vs_word(L.cbits + (int64_t)h * L.words, L.words, k0 / 32 + i - kVsDiagWords);
  } else {
    for (int r = threadIdx.x; r < kVsTile; r += blockDim.x) w.keys[buf * kVsTile + r] = vs_gather_key(w, t, r);
  }
}
// (row qp, tile column c) of tile t in buffer buf counts.
__device__ __forceinline__ bool vs_visible(const VsWalk &w, int t, int buf, int q0, int qp, int c) {
  using namespace qw::sparse;
  if (t < w.n_contig) {
    const int k0 = vs_key_start(w, t);
    const uint32_t *b = w.bits + buf * 8;
    return vs_contig_visible(qp, k0 + c, q0, k0, b, b + kVsDiagWords);
  }
  return vs_gather_visible(qp, w.keys[buf * kVsTile + c], w.kbits);
}
#endif

}  // namespace qwc
