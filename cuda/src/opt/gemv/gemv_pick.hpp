// gemv_pick.hpp — the block shape of the tensor-core decode GEMV (src/cuda/gemv_mma.cu), from the matrix shape and
// the SM count alone (batch invariance: the K split sets the summation order). Host-only and plain C++, so the CPU
// tests (test_gemv_pick.cpp) check it.
//
// The kernel is bound by memory, and an SM that runs more blocks than another finishes later: with B blocks over S
// SMs (dynamic scheduling: every SM gets floor or ceil of B / S) the time follows ceil(B / S) while the bytes follow
// B / S, so the balance is (B / S) / ceil(B / S). The first rule ("the largest row tile with >= 2 blocks per SM")
// ignored it: 7B qkv 144 blocks on 132 SMs (0.55), gate_up 296 (0.75), while gate_up at MT 1, ks 4 gives 1184
// blocks (0.997). Each warp owns 16 MT rows and every ks-th chunk of K; a block holds 8 warps = 8 / ks row groups.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace qw {

struct GemvMmaPick {
  int mt = 0, ks = 0;  // 0: no shape fills the SMs (the CUDA-core kernel serves the matrix)
  double balance = 0;
};

inline double gemv_mma_balance(int64_t blocks, int64_t sms) {
  const int64_t per = (blocks + sms - 1) / sms;
  return per > 0 ? (double)blocks / (double)(sms * per) : 0.0;
}

// The best balance over MT in {2, 1} and ks in {1, 2, 4, 8} with at least one block per SM; a shape within
// 2 % of the best with the larger MT, then the smaller ks, wins (fewer blocks: less staging, fewer partial sums).
inline GemvMmaPick gemv_mma_pick(int64_t rows, int64_t sms) {
  GemvMmaPick best;
  if (rows <= 0 || sms <= 0) return best;
  for (int mt = 2; mt >= 1; --mt)
    for (int ks = 1; ks <= 8; ks *= 2) {
      const int64_t rows_per_block = (int64_t)(8 / ks) * 16 * mt;
      const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
      if (blocks < sms) continue;
      const double b = gemv_mma_balance(blocks, sms);
      if (best.mt == 0 || b > best.balance * 1.02) best = {mt, ks, b};
    }
  return best;
}

// Matrices too small for one block per SM (gemv_mma_pick gives mt 0: 0.5B qkv / o / down, 1152 / 896 / 896 rows,
// 56-72 tiles of 16 rows) split K across blocks as well: P parts of a 16-row tile each sum a contiguous range of the
// K chunks (8 warps per block, every 8th chunk of the range per warp) and the last part to finish adds the P partial
// sums in part order (gemv_mma.cu, QW_GEMV_MMA_SPLIT). P from the shape alone (batch invariance): the best balance of
// tiles x P blocks over the 2 blocks an SM holds (launch bounds 256, 2), at least one block per SM, every warp at
// least one chunk per part (P <= chunks / 8), P <= 8; within 2 %, the smaller P (fewer partial sums). 0: no P works.
struct GemvMmaSplit {
  int parts = 0;
  double balance = 0;
};
inline GemvMmaSplit gemv_mma_split(int64_t rows, int64_t chunks, int64_t sms) {
  GemvMmaSplit best;
  if (rows <= 0 || chunks <= 0 || sms <= 0) return best;
  const int64_t tiles = (rows + 15) / 16;
  for (int p = 2; p <= 8 && (int64_t)p * 8 <= chunks; ++p) {
    const int64_t blocks = tiles * p;
    if (blocks < sms) continue;
    const double b = gemv_mma_balance(blocks, 2 * sms);
    if (best.parts == 0 || b > best.balance * 1.02) best = {p, b};
  }
  return best;
}

}  // namespace qw
