// key_blocks.cuh — the key-block lists of block-sparse prefill (sparsePrefill = block-sparse; its mma attend) as the
// mma.sync flash prefill kernel reads them (src/cuda/attention_prefill.cu, prefill_attn_mma_kernel<D, false, true>): the same
// kernel, whose key-tile loop walks a query block's selected key blocks instead of every causal key tile.
// Checked on an H100 (ninth run: cuda/dev/lab/sparse.cu, test/gpu/sparse.test.ts).
//
// Layout: the selection of block_sparse_kernels.cu (BlockSparseScratch): query head h, query block qb0 + b (64
// positions, aligned to position 0) visits key blocks lists[offs[h * nqb + b] .. offs[h * nqb + b + 1]), ascending,
// each <= qb0 + b. Key block = key tile: kSparseBlock == the kernel's kBK == 64 (static_assert in attention_prefill.cu).
#pragma once

#include <cstdint>

namespace qwc {

struct KeyBlocks {
  const int32_t *lists = nullptr;  // device; null: an ordinary (dense causal) prefill
  const int32_t *offs = nullptr;   // device [n_heads * nqb + 1]
  int32_t qb0 = 0, nqb = 0;        // the step's first query block (pos0 / 64) and its query block count
};

}  // namespace qwc
