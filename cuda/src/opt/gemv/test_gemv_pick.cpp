// test_gemv_pick.cpp — the tensor-core decode GEMV's block shape (gemv_pick.hpp) on the shapes it serves.
#include <cstdio>

#include "gemv_pick.hpp"

static int g_fail = 0;
#define CHECK(c, ...)                  \
  do {                                 \
    if (!(c)) {                        \
      std::printf("FAIL: " __VA_ARGS__); \
      std::printf("\n");               \
      ++g_fail;                        \
    }                                  \
  } while (0)

int main() {
  using qw::gemv_mma_pick;
  // balance: 144 blocks on 132 SMs is 144 / 264; an exact multiple is 1
  CHECK(qw::gemv_mma_balance(144, 132) > 0.545 && qw::gemv_mma_balance(144, 132) < 0.546, "balance 144 / 132");
  CHECK(qw::gemv_mma_balance(264, 132) == 1.0 && qw::gemv_mma_balance(0, 132) == 0.0, "balance edges");
  // 7B on 132 SMs: gate_up (37888 rows) MT 1 ks 4 = 1184 blocks (0.997) instead of MT 2 ks 2 = 296 (0.75); qkv
  // (4608) MT 1 ks 8 = 288 blocks (0.73) instead of ks 4 = 144 (0.55); o / down (3584) 224 blocks (0.85)
  const auto g = gemv_mma_pick(37888, 132), q = gemv_mma_pick(4608, 132), o = gemv_mma_pick(3584, 132);
  CHECK(g.mt == 2 && g.ks == 8 && g.balance > 0.99, "7B gate_up: mt %d ks %d balance %.3f", g.mt, g.ks, g.balance);
  CHECK(q.mt == 1 && q.ks == 8 && q.balance > 0.72, "7B qkv: mt %d ks %d balance %.3f", q.mt, q.ks, q.balance);
  CHECK(o.mt == 1 && o.ks == 8 && o.balance > 0.84, "7B o / down: mt %d ks %d balance %.3f", o.mt, o.ks, o.balance);
  // the lm_heads: 7B (152064 rows) MT 2 ks 2 = 1188 blocks = 9 per SM exactly
  const auto l = gemv_mma_pick(152064, 132);
  CHECK(l.mt == 2 && l.ks == 2 && l.balance == 1.0, "7B lm_head: mt %d ks %d balance %.3f", l.mt, l.ks, l.balance);
  // too few rows for one block per SM even at MT 1, ks 8 (16 rows a block): the CUDA-core kernel serves them
  CHECK(gemv_mma_pick(2096, 132).mt == 0 && gemv_mma_pick(2097, 132).mt == 1, "the one-block-per-SM bound (132 blocks of 16 rows)");
  CHECK(gemv_mma_pick(0, 132).mt == 0 && gemv_mma_pick(4096, 0).mt == 0, "empty inputs");
  // every pick has >= 1 block per SM and no other shape beats its balance by more than 2 %
  for (int64_t rows = 2112; rows <= 160000; rows += 997) {
    const auto p = gemv_mma_pick(rows, 132);
    const int64_t rpb = (int64_t)(8 / p.ks) * 16 * p.mt, blocks = (rows + rpb - 1) / rpb;
    CHECK(p.mt > 0 && blocks >= 132, "rows %lld: mt %d ks %d", (long long)rows, p.mt, p.ks);
    for (int mt : {1, 2})
      for (int ks = 1; ks <= 8; ks *= 2) {
        const int64_t r2 = (int64_t)(8 / ks) * 16 * mt, b2 = (rows + r2 - 1) / r2;
        if (b2 >= 132) CHECK(qw::gemv_mma_balance(b2, 132) <= p.balance * 1.02 + 1e-12, "rows %lld: mt %d ks %d beats the pick", (long long)rows, mt, ks);
      }
  }
  // the K split across blocks of small matrices (0.5B on 132 SMs, 32-column chunks): o_proj 896 x 896 (28 chunks: P <=
  // 3) 56 tiles x 3 = 168 blocks; down 896 x 4864 (152 chunks) 56 x 4 = 224 (0.85 of 264 slots); qkv 1152 x 896 72 x 2
  // = 144 (P 3 = 216 is 0.82 against 0.55)
  const auto so = qw::gemv_mma_split(896, 28, 132), sd = qw::gemv_mma_split(896, 152, 132), sq = qw::gemv_mma_split(1152, 28, 132);
  CHECK(so.parts == 3, "0.5B o_proj split: P %d", so.parts);
  CHECK(sd.parts == 4 && sd.balance > 0.84, "0.5B down split: P %d balance %.3f", sd.parts, sd.balance);
  CHECK(sq.parts == 3 && sq.balance > 0.81, "0.5B qkv split: P %d balance %.3f", sq.parts, sq.balance);
  CHECK(qw::gemv_mma_split(896, 15, 132).parts == 0, "under 16 chunks no P gives every warp a chunk");
  CHECK(qw::gemv_mma_split(64, 1000, 132).parts == 0, "4 tiles x 8 parts = 32 blocks < 132 SMs");
  CHECK(qw::gemv_mma_split(0, 28, 132).parts == 0 && qw::gemv_mma_split(896, 28, 0).parts == 0, "split: empty inputs");
  for (int64_t rows = 16; rows <= 2112; rows += 16)
    for (int64_t chunks : {16, 28, 48, 152, 600}) {
      const auto sp = qw::gemv_mma_split(rows, chunks, 132);
      if (sp.parts == 0) continue;
      const int64_t blocks = (rows + 15) / 16 * sp.parts;
      CHECK(blocks >= 132 && sp.parts * 8 <= chunks && sp.parts <= 8, "rows %lld chunks %lld: P %d", (long long)rows, (long long)chunks, sp.parts);
    }
  std::printf(g_fail ? "test_gemv_pick: %d failure(s)\n" : "test_gemv_pick: ok\n", g_fail);
  return g_fail ? 1 : 0;
}
