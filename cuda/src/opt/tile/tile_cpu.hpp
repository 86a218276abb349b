// tile_cpu.hpp — the CPU side of toggle "tile" (tile.hpp): the blocking parameters the CPU matmul really has,
// the candidate set the tuner measures, and the table a session's calls look their configuration up in.
//
// Parameters (each one is read by matmul.cpp / matmul_avx512.cpp / gemm_avx512.cpp; the fixed values are the
// hand-picked ones the kernels had before tuning):
//   rb       GEMV (T == 1): rows computed together by one micro-kernel = row streams per work item (1, 2, 4, 8)
//   chunk    minimum rows of a work item taken from the shared counter (4 items per thread, at least this)
//   threads  pool threads the call may use (0 = all of the session's pool)
//   kc       GEMM (T >= kDequantMinT, AVX-512): columns per K block of gemm_f32_avx512
//   l2k      GEMM (AVX-512): KiB of weight rows dequantized per block (the block the tokens pass over in L2)
// Exactness: a row's dot product is one accumulator chain whatever rb, chunk or threads are, so GEMV candidates
// and GEMM candidates that differ only there give the same bits as fixed; kc moves the K-block boundaries of the
// GEMM, i.e. the summation order, so a GEMM with another kc differs from fixed by rounding only
// (|a - b| <= 2 gamma_K sum_k |w_k x_k|, gamma_K = K u / (1 - K u), u = 2^-24; test_tile.cpp checks both).
// Not tuned (always fixed): calls of 2..7 tokens (batched decode), the int8-activation arm (toggle actQuant).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tile.hpp"

namespace qw {
namespace cpu {

struct MatJob;
class Pool;
struct Model;

struct CpuTile {
  int32_t rb = 4;
  int64_t chunk = 64;
  int32_t threads = 0;
  int64_t kc = 1024;
  int64_t l2k = 512;
};

enum class TileKind : uint8_t { Gemv, Gemm, None };
TileKind tile_kind(int64_t T);  // Gemv for T == 1, Gemm for T >= kDequantMinT, else None (not tuned)

// Candidates of a kind on this CPU (pool of `threads`), fixed first; names like "rb4.c64.tall".
struct TileCandidate {
  std::string name;
  CpuTile cfg;
};
std::vector<TileCandidate> tile_candidates(TileKind k, int threads);
std::string tile_name(TileKind k, const CpuTile &c);  // the candidate name of a configuration

// The shape key of a call: "<gemv|gemm>.<type>:<rows of job 0>+<rows of job 1>...x<cols>", e.g.
// "gemv.bf16:896+128+128x896"; "" when the call is not tuned (TileKind::None, or the int8-activation arm runs).
std::string tile_key(const MatJob *jobs, int n_jobs, int64_t T);

// A session's table (shape key -> configuration) with a cache by (first weight, jobs, kind) so that a step's
// lookups allocate nothing after the first.
class CpuTileTable {
 public:
  // Checks every name against tile_candidates(kind of the key); throws Error(QW_ERR_INVALID_ARGUMENT) naming the
  // first unknown key or candidate, leaving the table unchanged.
  void set(const TileTable &t, int threads);
  size_t size() const { return by_key_.size(); }
  const CpuTile &lookup(const MatJob *jobs, int n_jobs, int64_t T);

 private:
  std::map<std::string, CpuTile> by_key_;
  std::map<std::tuple<const void *, int, int>, CpuTile> cache_;
};

// The table a step's matmul calls use: set for the duration of a step on the thread that runs it (forward.cpp)
// when tile = auto; none (fixed everywhere) otherwise.
class TileScope {
 public:
  explicit TileScope(CpuTileTable *t);
  ~TileScope();
  TileScope(const TileScope &) = delete;
  TileScope &operator=(const TileScope &) = delete;

 private:
  CpuTileTable *prev_;
};
// The configuration of a call: the active table's entry for its key, else the fixed one.
const CpuTile &tile_for(const MatJob *jobs, int n_jobs, int64_t T);
const CpuTile &tile_fixed();

// JSON for qw_session_info_json "tile": candidates per kind, the fixed names, the device and the table size.
std::string tile_info_json(int threads, size_t entries);
// Measures every GEMV / GEMM shape of the model (tile.hpp TileTuneRequest) on this session's pool; JSON answer
// documented at qw_session_tile_tune (qwen.h).
std::string tile_tune_json(const Model &m, Pool &pool, const TileTuneRequest &r);

}  // namespace cpu
}  // namespace qw
