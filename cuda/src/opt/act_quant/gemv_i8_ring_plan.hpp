// gemv_i8_ring_plan.hpp — where the int8 arm's ring variant (gemv_i8_ring.cuh, QW_GEMV_I8_RING=1) can run and how its
// shared memory is laid out: the plan (host) and the addresses both the kernel and test_i8_ring.cpp use (host and
// device), so the CPU test checks the very layout arithmetic the kernel runs (copies and reads emulated on the host).
//
// The ring variant is the loop variant (a block stages the activations once, then walks row tiles) with each row
// tile's weights, scales and offsets brought into shared-memory stages by the TMA unit (cp.async.bulk, sm_90) instead
// of register loads: a tile is `rows_per_tile` consecutive rows. Why: Nsight Compute on the exact W4 GEMV (tenth run) found it waiting on
// memory at 24 % achieved occupancy (121 registers, 16 warps per SM): too few bytes in flight per SM for HBM's
// latency. The register-path int8 arm has the same shape (7B gate_up W4 b1 at 58-66 % of the copy rate). With the ring
// each SM has `stages` whole tiles in flight (e.g. 3 x 63 KB for 7B gate_up W4 g128), held by no register, and the
// first of them are issued before the kernel waits on the previous one (PDL: weights never depend on it).
//
// A stage holds one unit: a tile's rows over one K chunk of kc columns (kc = K where two whole-row tiles fit: then the
// unit's codes, scales and offsets are three contiguous ranges; else a multiple of the lane walk's period, so that
// every lane's chunks of a row stay in ascending order across units, and one copy per row and part). The activations
// of the whole K are staged once per block (opt-in shared memory: 7B down's K 18944 fits, unlike the 46 KB tiles of
// the register-path kernels).
// Stage layout: [codes: rows_per_tile x kc_bytes][scales: rows_per_tile x kcg fp32][offsets: the same, unless the
// matrix has one offset for all groups]; each part a multiple of 16 bytes (the bulk copy's unit), so each starts on 16.
// A partial last tile or K chunk copies its own rows / columns only (the byte counts stay multiples of 16: row_bytes,
// kc_bytes and their scales are). Dynamic shared memory: [the staged activations: act_bytes][pad to 128][stages x
// stage_bytes][stages mbarriers (8 B)][stages arrival counters (4 B)].
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define QW_RING_HD __host__ __device__ __forceinline__
#else
#define QW_RING_HD inline
#endif

namespace qw::i8ring {

constexpr int kMaxStages = 4;  // 4 x 36+ KB already covers HBM's latency at an SM's share of the copy rate

struct Plan {
  int stages = 0;           // 0: the ring cannot run this call (why says so)
  int64_t row_bytes = 0;    // one row's codes
  int64_t gpr = 0;          // groups per row
  int64_t kc = 0;           // columns per K chunk (a unit: a tile's rows over one K chunk)
  int64_t nk = 0;           // K chunks per row (the last may be shorter)
  int64_t kc_bytes = 0;     // one row's codes in a K chunk
  int64_t kcg = 0;          // groups in a K chunk
  int64_t w_bytes = 0;      // a full unit's codes
  int64_t so_bytes = 0;     // a full unit's scales (and as many for the offsets where they are loaded)
  int64_t stage_bytes = 0;  // codes + scales (+ offsets)
  int64_t ring_off = 0;     // the first stage, from the dynamic base
  int64_t smem = 0;         // dynamic shared memory of a block
  const char *why = "";
};

inline int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// rows x cols codes (W4: 2 a byte; W8: 1), groups of `group` columns; rows_per_tile = the kernel's R x (warps / ks);
// col_period = the lane walk's period in columns (codes per chunk x 32 x ks): a K chunk is a multiple of it;
// act_bytes = the block's staged activations of the whole K (i8_smem); smem_max = the opt-in shared memory per block
// (static shared memory of the kernel already taken off).
inline Plan plan(int64_t rows, int64_t cols, int group, bool w4, bool offsets_loaded, bool two_level, int rows_per_tile,
                 int64_t col_period, int64_t act_bytes, int64_t smem_max) {
  Plan p;
  if (two_level) return p.why = "two-level scales (QW_TWO_LEVEL=1) are not staged", p;
  if (rows <= 0 || cols <= 0 || group <= 0 || cols % group || rows_per_tile <= 0 || col_period <= 0)
    return p.why = "bad shape", p;
  p.row_bytes = w4 ? cols / 2 : cols;
  p.gpr = cols / group;
  if ((w4 && cols % 2) || p.row_bytes % 16) return p.why = "a row's codes are not a multiple of 16 bytes", p;
  if ((p.gpr * 4) % 16) return p.why = "a row's group scales are not a multiple of 16 bytes", p;
  p.ring_off = align_up(act_bytes, 128);
  const int64_t room = smem_max - p.ring_off, parts = offsets_loaded ? 2 : 1;
  const auto stage_of = [&](int64_t kc) {
    return (int64_t)rows_per_tile * ((w4 ? kc / 2 : kc) + parts * (kc / group) * 4);
  };
  p.kc = cols;
  if (room < 2 * (stage_of(cols) + 12)) {
    // K chunks: a multiple of the lane period and of 4 groups (16 bytes of scales), about a third of the room each
    int64_t unit = col_period;
    while (unit % (4 * (int64_t)group) || unit % 32) unit += col_period;
    const int64_t per_unit = stage_of(unit);
    p.kc = (room / 3 - 12) / per_unit * unit;
    if (p.kc < unit) p.kc = unit;
    if (p.kc >= cols) p.kc = cols;
  }
  p.nk = (cols + p.kc - 1) / p.kc;
  p.kc_bytes = w4 ? p.kc / 2 : p.kc;
  p.kcg = p.kc / group;
  p.w_bytes = (int64_t)rows_per_tile * p.kc_bytes;
  p.so_bytes = (int64_t)rows_per_tile * p.kcg * 4;
  p.stage_bytes = p.w_bytes + p.so_bytes * parts;
  int64_t n = room > 0 ? room / (p.stage_bytes + 12) : 0;  // + an mbarrier and a counter per stage
  if (n > kMaxStages) n = kMaxStages;
  if (n < 2) return p.stages = 0, p.why = "fewer than two stages fit the shared memory", p;
  p.stages = (int)n;
  p.smem = p.ring_off + n * p.stage_bytes + n * 12;
  return p;
}

// What the kernel needs of a plan (passed to it by value), with the call's shape.
struct Geo {
  int32_t stages = 0, offsets_loaded = 0;
  int64_t rows = 0, cols = 0, group = 0, rpt = 0;  // rpt: rows per tile
  int64_t row_bytes = 0, gpr = 0, kc = 0, nk = 0, kc_bytes = 0, kcg = 0, w_bytes = 0, so_bytes = 0, stage_bytes = 0;
  int64_t ring_off = 0;
};
inline Geo geo_of(const Plan &p, int64_t rows, int64_t cols, int group, int rows_per_tile, bool offsets_loaded) {
  Geo g;
  g.stages = p.stages, g.offsets_loaded = offsets_loaded ? 1 : 0;
  g.rows = rows, g.cols = cols, g.group = group, g.rpt = rows_per_tile;
  g.row_bytes = p.row_bytes, g.gpr = p.gpr, g.kc = p.kc, g.nk = p.nk, g.kc_bytes = p.kc_bytes, g.kcg = p.kcg;
  g.w_bytes = p.w_bytes, g.so_bytes = p.so_bytes, g.stage_bytes = p.stage_bytes, g.ring_off = p.ring_off;
  return g;
}

// A unit: rows [r0, r0 + nr) of tile `tile` over columns [c0, c0 + nc) of K chunk q (both clipped to the matrix); a
// row's part is cb bytes of codes and sb bytes of scales (as many of offsets where loaded); total = the unit's bytes
// (the expect_tx).
struct Unit {
  int64_t r0, nr, c0, nc;
  uint32_t cb, sb, total;
};
QW_RING_HD Unit unit_of(const Geo &g, int64_t tile, int64_t q) {
  Unit u;
  u.r0 = tile * g.rpt;
  u.nr = g.rows - u.r0 < g.rpt ? g.rows - u.r0 : g.rpt;
  u.c0 = q * g.kc;
  u.nc = g.cols - u.c0 < g.kc ? g.cols - u.c0 : g.kc;
  u.cb = (uint32_t)(g.row_bytes * u.nc / g.cols);
  u.sb = (uint32_t)(u.nc / g.group * 4);
  u.total = (uint32_t)u.nr * (u.cb + u.sb * (g.offsets_loaded ? 2u : 1u));
  return u;
}
// Row r of unit u: where its parts start in the matrix (codes: a byte offset; scales / offsets: a float index) and in
// the stage (byte offsets). Rows of a stage sit a full chunk apart (kc_bytes, kcg floats), so the whole-row unit
// (nk == 1) is one contiguous range per part.
QW_RING_HD int64_t src_codes(const Geo &g, const Unit &u, int64_t r) { return (u.r0 + r) * g.row_bytes + g.row_bytes * u.c0 / g.cols; }
QW_RING_HD int64_t src_group(const Geo &g, const Unit &u, int64_t r) { return (u.r0 + r) * g.gpr + u.c0 / g.group; }
QW_RING_HD int64_t dst_codes(const Geo &g, int64_t r) { return r * g.kc_bytes; }
QW_RING_HD int64_t dst_scales(const Geo &g, int64_t r) { return g.w_bytes + r * g.kcg * 4; }
QW_RING_HD int64_t dst_offsets(const Geo &g, int64_t r) { return g.w_bytes + g.so_bytes + r * g.kcg * 4; }
// The reader's side: the stage byte offset of row lr's codes at column kk of the K chunk (W4: 2 a byte), and the index
// of its group (floats, from the scales part; the offsets part the same).
QW_RING_HD int64_t at_codes(const Geo &g, int64_t lr, int64_t kk, bool w4) { return lr * g.kc_bytes + (w4 ? kk / 2 : kk); }
QW_RING_HD int64_t at_group(const Geo &g, int64_t lr, int64_t kk) { return lr * g.kcg + kk / g.group; }

}  // namespace qw::i8ring
