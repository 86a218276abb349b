// persistent_trace.hpp — what a traced step of decode = persistent spent its time on (host code: the lab prints it,
// test_persistent checks it on constructed traces). The kernel writes three %globaltimer stamps per task when
// PersistArgs::trace is set (persistent.cuh): before its wait, when it starts, when its outputs are written; empty
// attention splits stay 0. One kernel has no op boundaries, so the step is cut into dependency levels instead: a
// layer's q|k|v tiles, its attention (splits and combines), o_proj, gate|up and down, then the lm_head, each waiting
// for the one before. A level's time is from the previous level's last end to its own last end: the levels tile the
// step from the first stamp to the last, and their sum per op over the layers says which op the step waits on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "persistent_plan.hpp"

namespace qw {
namespace persist {

struct TraceSummary {
  double step_ns = 0;           // first wait stamp to last end stamp
  double level_ns[T_N] = {};    // per op: the summed time of its levels (they tile the step)
  double wait_ns[T_N] = {};     // per op: summed over its tasks, wait stamp to start stamp
  double run_ns[T_N] = {};      // per op: summed over its tasks, start stamp to end stamp
  int32_t tasks[T_N] = {};      // per op: tasks with stamps (empty attention splits have none)
  int32_t levels[T_N] = {};     // per op: levels (layers) it appeared in
  double resolution_ns = 0;     // the smallest positive difference between two stamps: the timer's granularity
                                // (%globaltimer may tick in microseconds on some GPUs), an upper bound of it
  bool ok = false;              // false: no task has stamps, or a stamp goes backwards
};

// A dependency level: a layer's tasks of one op (layer -1: the lm_head; the embedding rows are layer 0's first
// level), from the previous level's end (the first level: the step's first stamp) to its own last end stamp.
struct TraceLevel {
  int32_t layer, op;
  uint64_t start_ns, end_ns;
};

// The levels of a traced step in plan order, tiling [first stamp, last level's end]; empty when a stamp goes backwards
// or no task has stamps. t: [tasks][3] as the kernel wrote it (nt values; zeros for tasks without stamps), read in
// place (the session's pinned copy). Per-op task sums go to s when given.
inline std::vector<TraceLevel> trace_levels(const Plan &p, const uint64_t *t, size_t nt, TraceSummary *s = nullptr) {
  std::vector<TraceLevel> lv;
  const size_t n = p.tasks.size();
  if (nt < 3 * n) return lv;
  uint64_t first = UINT64_MAX;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t w = t[3 * i], b = t[3 * i + 1], e = t[3 * i + 2];
    if (w == 0 && b == 0 && e == 0) continue;  // an empty split
    if (!(w <= b && b <= e) || w == 0) return {};
    const Task &k = p.tasks[i];
    first = std::min(first, w);
    if (s) {
      s->wait_ns[k.op] += double(b - w);
      s->run_ns[k.op] += double(e - b);
      ++s->tasks[k.op];
    }
    // a layer's ops are listed in dependency order, so a level's tasks are consecutive in the plan
    if (lv.empty() || lv.back().layer != k.layer || lv.back().op != k.op) lv.push_back({k.layer, k.op, 0, e});
    else lv.back().end_ns = std::max(lv.back().end_ns, e);
  }
  // a level ends no earlier than the one before it (its tasks wait for it)
  uint64_t prev = first;
  for (TraceLevel &l : lv) {
    l.start_ns = prev;
    l.end_ns = std::max(l.end_ns, prev);
    prev = l.end_ns;
  }
  return lv;
}

inline TraceSummary summarize_trace(const Plan &p, const std::vector<uint64_t> &t) {
  TraceSummary s;
  const std::vector<TraceLevel> lv = trace_levels(p, t.data(), t.size(), &s);
  if (lv.empty()) return TraceSummary{};
  for (const TraceLevel &l : lv) {
    s.level_ns[l.op] += double(l.end_ns - l.start_ns);
    ++s.levels[l.op];
  }
  s.step_ns = double(lv.back().end_ns - lv.front().start_ns);
  std::vector<uint64_t> all;
  for (uint64_t x : t)
    if (x) all.push_back(x);
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i] > all[i - 1] && (s.resolution_ns == 0 || double(all[i] - all[i - 1]) < s.resolution_ns))
      s.resolution_ns = double(all[i] - all[i - 1]);
  s.ok = true;
  return s;
}

inline const char *op_name(int32_t op) {
  static const char *names[T_N] = {"embed", "qkv", "attention", "o_proj", "gate_up", "down", "lm_head"};
  return op >= 0 && op < T_N ? names[op] : "?";
}

}  // namespace persist
}  // namespace qw
