// dca_tiles.cuh — Dual Chunk Attention inside the tensor-core flash prefill kernel (src/cuda/attention_prefill.cu, its DCA
// instantiation; launch_prefill_attention_dca). The SIMT kernel of dca_kernels.cu gave one block per (row, head) and
// one thread per key: 7B prefill at 8k ran 1060 tok/s with dca on against 43.7k off (H100, sixth run).
//
// A CTA owns 64 query rows at positions first..last (chunks c_lo = first / s .. c_hi = last / s, s = chunk - local)
// and visits three key ranges, each with its query variant (dca_positions.hpp):
//   inter-chunk  [0, (c_hi - 1) s)                      with the inter queries   (part 2)
//   successive   [(c_lo - 1) s, min(c_hi s, last + 1))   with the successive ones (part 1)
//   intra-chunk  [c_lo s, last + 1)                     with the intra ones      (part 0)
// A (row, key) pair counts only in the range of its own part (dca::part), so ranges that overlap where the tile
// straddles a chunk boundary count nothing twice. The online softmax simply continues across the three ranges: one
// softmax over all keys with per-(query, key) scores, which is what the log-sum-exp merge of three partials
// computes (other rounding than the SIMT kernel's three partials).
// s >= 64 (a 64-key tile spans at most two chunks: a key's chunk is the tile's first key's or the next). The range
// arithmetic is in dca_positions.hpp (host and device), where test_dca.cpp checks that the tiles visit every causal
// (row, key) pair exactly once, in its own part.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>

#include "dca_positions.hpp"  // the ranges (dca::tile_ranges), shared with the CPU test of their coverage

namespace qwc {

struct DcaQueries {
  const __nv_bfloat16 *succ = nullptr, *inter = nullptr;  // [n, nH*d]; the intra queries are PrefillAttnArgs::q
  int32_t span = 0;                                        // s = chunk - local; 0: not a DCA step
};

constexpr int32_t kDcaMinSpan = 64;  // the tile kernel's bound on s (above)


}  // namespace qwc
