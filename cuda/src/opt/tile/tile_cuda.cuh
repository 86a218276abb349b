// tile_cuda.cuh — the CUDA side of toggle "tile" (tile.hpp): the candidates of the decode GEMV (src/cuda/gemv.cu:
// rows per warp R and the in-block K split ks) and of the prefill GEMM (src/cuda/gemm.cu: cuBLASLt or our mma
// kernel with its 64x64 or 128x128 tile), the shape keys, and the table the launches look their candidate up in.
// WRITTEN WITHOUT A GPU, compile-checked only: the lab case `qwlab tile` (cuda/dev/lab/tile.cu) checks every
// candidate against the CPU reference and times it; not yet run.
//
// Fixed = the heuristics of gemv.cu / gemm.cu as they were (pick_ks, R = 4 on big matrices; cuBLASLt when loaded).
// Exactness: R never changes a row's sum; ks changes how a row's K chunks are split over warps and added (a fixed
// order per candidate: deterministic and batch-invariant, but another summation order than fixed); GEMM
// candidates are other kernels (other orders). So candidates differ from fixed by fp32 rounding only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tile.hpp"

namespace qwc {

struct WMat;

struct GemvTile {
  int r = 0;   // rows per warp: 2 or 4 (0: the heuristic)
  int ks = 0;  // warps per row group splitting K: 1, 2, 4, 8 (0: the heuristic)
};
// fixed: cuBLASLt when it loads, else our mma kernel with the tile by shape; mma64 / mma128: our kernel, that tile.
enum GemmTileKind : int { GEMM_TILE_FIXED = 0, GEMM_TILE_MMA64 = 1, GEMM_TILE_MMA128 = 2 };
struct GemmTile {
  int kind = GEMM_TILE_FIXED;
};

struct CudaTileCandidate {
  std::string name;
  GemvTile gemv;
  GemmTile gemm;
};
// Fixed first. GEMV: "fixed", "r2.ks1" .. "r4.ks8"; GEMM: "fixed", "mma64", "mma128".
const std::vector<CudaTileCandidate> &cuda_tile_candidates(bool gemv);

// "gemv.<type>:<rows>x<cols>" of a (fused) weight matrix, as the CUDA model holds it (q|k|v and gate|up are one
// matrix each on CUDA); "gemm.bf16:<n>x<k>" of a prefill GEMM (bf16 weights [n, k]).
std::string cuda_gemv_key(const WMat &w);
std::string cuda_gemm_key(int64_t n, int64_t k);

class CudaTileTable {
 public:
  // Throws qw::Error(QW_ERR_INVALID_ARGUMENT) naming the first unknown kind or candidate; keeps the old table.
  void set(const qw::TileTable &t);
  size_t size() const { return gemv_.size() + gemm_.size(); }
  GemvTile gemv(const WMat &w) const;
  GemmTile gemm(int64_t n, int64_t k) const;

 private:
  std::map<std::string, GemvTile> gemv_;
  std::map<std::string, GemmTile> gemm_;
};

// The table the launches of the current host thread use (set by the CUDA session around a step, and around the
// capture of a decode graph, when tile = auto); none = fixed.
class CudaTileScope {
 public:
  explicit CudaTileScope(const CudaTileTable *t);
  ~CudaTileScope();
  CudaTileScope(const CudaTileScope &) = delete;
  CudaTileScope &operator=(const CudaTileScope &) = delete;

 private:
  const CudaTileTable *prev_;
};
GemvTile gemv_tile_active(const WMat &w);
GemmTile gemm_tile_active(int64_t n, int64_t k);

}  // namespace qwc
