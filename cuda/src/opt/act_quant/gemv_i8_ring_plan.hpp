// gemv_i8_ring_plan.hpp — where the int8 arm's ring variant (gemv_i8_ring.cuh, QW_GEMV_I8_RING=1) can run and how its
// shared memory is laid out. Host-only arithmetic (no CUDA), checked by test_i8_ring.cpp.
//
// The ring variant is the loop variant (a block stages the activations once, then walks row tiles) with each row
// tile's weights, scales and offsets brought into a shared-memory stage by the TMA unit (cp.async.bulk, sm_90) instead
// of register loads: a tile is `rows_per_tile` consecutive rows, so its bytes are three contiguous ranges (the rows'
// codes, their group scales, their offsets). Why: Nsight Compute on the exact W4 GEMV (tenth run) found it waiting on
// memory at 24 % achieved occupancy (121 registers, 16 warps per SM): too few bytes in flight per SM for HBM's
// latency. The register-path int8 arm has the same shape (7B gate_up W4 b1 at 58-66 % of the copy rate). With the ring
// each SM has `stages` whole tiles in flight (e.g. 3 x 63 KB for 7B gate_up W4 g128), held by no register, and the
// first of them are issued before the kernel waits on the previous one (PDL: weights never depend on it).
//
// Stage layout: [codes: rows_per_tile x row_bytes][scales: rows_per_tile x gpr fp32][offsets: the same, unless the
// matrix has one offset for all groups]; each part a multiple of 16 bytes (the bulk copy's unit), so each starts on 16.
// A partial last tile copies its own rows only (the byte counts stay multiples of 16 since row_bytes and gpr * 4 are).
// Dynamic shared memory: [the staged activations: act_bytes][pad to 128][stages x stage_bytes][stages mbarriers (8 B)]
// [stages arrival counters (4 B)].
#pragma once
#include <cstdint>

namespace qw::i8ring {

constexpr int kMaxStages = 4;  // 4 x 36+ KB already covers HBM's latency at an SM's share of the copy rate

struct Plan {
  int stages = 0;           // 0: the ring cannot run this call (why says so)
  int64_t row_bytes = 0;    // one row's codes
  int64_t gpr = 0;          // groups per row
  int64_t w_bytes = 0;      // a full tile's codes
  int64_t so_bytes = 0;     // a full tile's scales (and as many for the offsets where they are loaded)
  int64_t stage_bytes = 0;  // codes + scales (+ offsets)
  int64_t ring_off = 0;     // the first stage, from the dynamic base
  int64_t smem = 0;         // dynamic shared memory of a block
  const char *why = "";
};

inline int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// rows x cols codes (W4: 2 a byte; W8: 1), groups of `group` columns; rows_per_tile = the kernel's R x (warps / ks);
// act_bytes = the block's staged activations (i8_smem); smem_max = the opt-in shared memory per block (static
// shared memory of the kernel already taken off).
inline Plan plan(int64_t rows, int64_t cols, int group, bool w4, bool offsets_loaded, bool two_level, int rows_per_tile,
                 int64_t act_bytes, int64_t smem_max) {
  Plan p;
  if (two_level) return p.why = "two-level scales (QW_TWO_LEVEL=1) are not staged", p;
  if (rows <= 0 || cols <= 0 || group <= 0 || cols % group || rows_per_tile <= 0) return p.why = "bad shape", p;
  p.row_bytes = w4 ? cols / 2 : cols;
  p.gpr = cols / group;
  if ((w4 && cols % 2) || p.row_bytes % 16) return p.why = "a row's codes are not a multiple of 16 bytes", p;
  if ((p.gpr * 4) % 16) return p.why = "a row's group scales are not a multiple of 16 bytes", p;
  p.w_bytes = (int64_t)rows_per_tile * p.row_bytes;
  p.so_bytes = (int64_t)rows_per_tile * p.gpr * 4;
  p.stage_bytes = p.w_bytes + p.so_bytes * (offsets_loaded ? 2 : 1);
  p.ring_off = align_up(act_bytes, 128);
  const int64_t room = smem_max - p.ring_off;
  int64_t n = room > 0 ? room / (p.stage_bytes + 12) : 0;  // + an mbarrier and a counter per stage
  if (n > kMaxStages) n = kMaxStages;
  if (n < 2) return p.why = "fewer than two tiles fit the shared memory", p;
  p.stages = (int)n;
  p.smem = p.ring_off + n * p.stage_bytes + n * 12;
  return p;
}

}  // namespace qw::i8ring
