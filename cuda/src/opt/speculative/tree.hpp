// tree.hpp — the tree of a verification step (speculative = eagle; EAGLE-2's draft tree): parents -> RoPE
// positions and the keys each row attends to (backend.hpp Step::tree_*). Shared by both libraries (the front
// builds the step; the CPU attention reads it).
#pragma once

#include <cstdint>
#include <string>

#include "backend.hpp"

namespace qw {

// Fills st.tree_base / tree_pos / tree_keys for the rows [first, first + n) of a tree of first + n nodes in
// topological order: parents[i] is the index of node i's parent (< i), or -1 for a root, which hangs off the
// committed prefix. Node i sits at KV position tree_base + i and has RoPE position tree_base + depth(i) (a root
// has depth 0), so the nodes of a root-to-node path get the positions the same tokens would have in a plain
// sequence. Throws Error(QW_ERR_INVALID_ARGUMENT) naming the first bad parent.
void tree_step(Step &st, const int32_t *parents, int32_t first, int32_t n, int32_t tree_base);

// A chain verification step as a decode step (qw_session_decode_chain): rows i < n of sequence `seq` at positions
// len + i, one row per Step entry (n_new 1), so each row is a decode row whose keys are 0..len + i (causal: the rows
// before it in the chain wrote theirs in the same step). Fills st.seq / n_new / pos0 / tokens; phase decode.
void chain_step(Step &st, int32_t seq, int32_t len, const int32_t *tokens, int32_t n);
// Why the session's toggles cannot run a chain step ("" when they can): the decode rows of one slot must write and
// read the plain cache, so a quantized cache (its per-stream rings and groups), dca, decode = persistent and
// parallel != tp1 are refused; the caller falls back to a prefill of the chain.
std::string chain_step_refusal(const StepToggles &t, int32_t n_layers);

// Checks the keep list of qw_session_kv_compact: n >= 1, keep ascending and unique, keep[i] >= 0,
// base + keep[n - 1] < len. Throws Error(QW_ERR_INVALID_ARGUMENT) saying what is wrong.
void check_compact(int32_t base, const int32_t *keep, int32_t n, int32_t len);

}  // namespace qw
