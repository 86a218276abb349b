// tile.hpp — the values of toggle "tile" (Kernel tile sizes) as a type; its entry: tile.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
//
// What tile does (QWEN-010): every GEMV / GEMM call of a step has a shape key (tile_cpu.hpp / tile_cuda.cuh build
// it from the call's weights: kind, weight type, rows of every job, columns). A backend session holds a table
// shape key -> candidate name, set through qw_session_tile_set from a tuning file (profiles/tuning/<device>.json,
// engine/tuning.ts). tile = fixed runs every call with the backend's hand-picked configuration (the one before
// tuning existed); tile = auto runs each call with the table's candidate for its key, the fixed one where the
// table has none. Candidate names and what each one sets come from the backend (tile_info_json), never from the
// caller, and a name the backend does not know is refused when the table is set.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "toggles.hpp"

namespace qw {

enum class Tile : uint8_t { Auto, Fixed };

// shape key -> candidate name (both as the backend spells them).
using TileTable = std::map<std::string, std::string>;

// What qw_session_tile_tune measures (its request JSON, checked by the front).
struct TileTuneRequest {
  int32_t reps = 5;            // measured repetitions per candidate (>= 3), interleaved over the candidates
  int32_t warmup = 1;          // unmeasured runs per candidate first
  double rep_ms = 2.0;         // minimum duration of one repetition (the call is repeated inside it)
  int32_t gemm_tokens = 64;    // T of the GEMM (prefill) shapes
  bool gemv = true, gemm = true;
  std::string only;            // measure only the shape whose key this is ("" = every shape)
  bool dry_run = false;
  std::vector<std::string> names;  // measure fixed and only these candidates (empty = every candidate)        // list the shapes (keys, rows, layers) without measuring anything
};

}  // namespace qw
