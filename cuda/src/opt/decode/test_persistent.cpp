// test_persistent.cpp — the schedule of decode = persistent (persistent_plan.hpp) on the CPU, as the kernel
// (persistent_kernels.cu) runs it, through the grid emulation of persistent_emu.hpp:
//  - every wait targets exactly the number of signals its counter receives (so no wait ends early or never);
//  - every counter a task waits on is signalled only by earlier tasks (the deadlock-freedom argument);
//  - for every grid of 1..132 blocks (H200: 132 SMs) and random interleavings: no deadlock, no race (every read sees
//    the program-order-latest write, ordered before it by the counters; every write ordered after earlier accesses),
//    every GEMV tile's weights prefetched before its wait, and the logits of three decode steps equal the plain
//    op-by-op reference (fp32, split-KV attention vs one softmax: within 2e-5 relative), bitwise the same for every
//    grid and interleaving;
//  - batch invariance: a sequence decoded alone gives the bits it gets in a batch of three;
//  - the refusals name what is unsupported.
#include <climits>
#include <cstdio>

#include "persistent_emu.hpp"
#include "persistent_trace.hpp"
#include "testlib.hpp"

using namespace qw::persist;

namespace {

Dims small_dims(int32_t batch) {
  Dims d;
  d.batch = batch; d.hidden = 64; d.inter = 96; d.n_heads = 4; d.n_kv = 2; d.head_dim = 16; d.vocab = 80;
  d.layers = 2; d.n_split = 3;
  return d;
}

struct Run {
  std::vector<std::vector<float>> logits;  // per step [B][V]
  int32_t races = 0, deadlocks = 0, misses = 0, bad_counters = 0;
  std::string first_error;
};

// Three decode steps of `seqs` (cache rows before pos0 prefilled with the same random values in both caches).
Run run_steps(const EmuModel &m, const Dims &d, int32_t blocks, uint64_t seed, const std::vector<int32_t> &seqs,
              std::vector<std::vector<float>> *ref_out, const std::vector<int32_t> &pos0 = {5, 37, 0, 20}) {
  const Plan plan = build_plan(d, blocks);
  Run r;
  const size_t kv_elems = size_t(d.layers) * d.batch * d.kv_dim() * m.max_ctx;
  std::vector<float> k(kv_elems), v(kv_elems);
  // a sequence's cache rows come from its own id, whatever slot and batch it runs in (batch invariance)
  const size_t per_slot = size_t(d.kv_dim()) * m.max_ctx;
  for (int32_t l = 0; l < d.layers; ++l)
    for (int32_t b = 0; b < d.batch; ++b) {
      Rng rng(77 + 10 * uint64_t(seqs[size_t(b)]) + 1000 * uint64_t(l));
      const size_t at = (size_t(l) * d.batch + size_t(d.batch - 1 - b)) * per_slot;
      for (size_t i = 0; i < per_slot; ++i) { k[at + i] = rng.normal(); v[at + i] = rng.normal(); }
    }
  std::vector<float> rk = k, rv = v;
  for (int32_t step = 0; step < 3; ++step) {
    EmuStep s;
    for (int32_t b = 0; b < d.batch; ++b) {
      const int32_t q = seqs[size_t(b)];
      s.tokens.push_back((q * 31 + step * 7) % d.vocab);
      s.pos.push_back(pos0[size_t(q)] + step);
      s.slot.push_back(d.batch - 1 - b);  // slots reversed: the slot map is exercised
    }
    Grid g(plan, m, s, k, v);
    const EmuResult e = emulate(g, seed * 1000 + uint64_t(step));
    if (e.deadlock) { ++r.deadlocks; return r; }
    r.misses += e.prefetch_misses;
    for (size_t c = 0; c < e.counters.size(); ++c)
      if (e.counters[c] != plan.final_value[c]) ++r.bad_counters;
    if (!g.errors.empty()) {
      r.races += int32_t(g.errors.size());
      if (r.first_error.empty()) r.first_error = g.errors[0];
    }
    r.logits.push_back(g.mem[B_LOGITS]);
    if (ref_out) ref_out->push_back(reference_step(m, rk, rv, s));
  }
  return r;
}

void test_plan_structure() {
  for (int32_t blocks : {1, 7, 66, 132})
    for (int32_t batch : {1, 3}) {
      const Plan p = build_plan(small_dims(batch), blocks);
      int32_t bad_target = 0, forward_dep = 0;
      std::vector<int32_t> first_signal(size_t(p.c.count()), -1), last_signal(size_t(p.c.count()), -1);
      for (size_t i = 0; i < p.tasks.size(); ++i) {
        const int32_t s = p.tasks[i].signal;
        if (first_signal[size_t(s)] < 0) first_signal[size_t(s)] = int32_t(i);
        last_signal[size_t(s)] = int32_t(i);
      }
      for (size_t i = 0; i < p.tasks.size(); ++i) {
        const Task &t = p.tasks[i];
        if (t.wait < 0) continue;
        if (t.target != p.final_value[size_t(t.wait)]) ++bad_target;
        if (last_signal[size_t(t.wait)] >= int32_t(i)) ++forward_dep;
      }
      CHECK(bad_target == 0, "blocks %d batch %d: %d waits do not target their counter's signal count", blocks, batch,
            bad_target);
      CHECK(forward_dep == 0, "blocks %d batch %d: %d tasks wait on a counter a later task signals", blocks, batch,
            forward_dep);
      CHECK(p.rows_qkv >= 2 && p.d.head_dim % p.rows_qkv == 0, "qkv tile rows %d", p.rows_qkv);
      CHECK(p.rows_gu % 2 == 0, "gate_up tile rows %d must keep (gate, up) pairs together", p.rows_gu);
      // every layer lists all its q|k|v tiles before its first attention split (one wave of tiles, then attention)
      int32_t late_tiles = 0;
      for (int32_t l = 0; l < p.d.layers; ++l) {
        int32_t last_qkv = -1, first_attn = INT32_MAX;
        for (size_t i = 0; i < p.tasks.size(); ++i) {
          if (p.tasks[i].layer != l) continue;
          if (p.tasks[i].op == T_QKV) last_qkv = int32_t(i);
          if (p.tasks[i].op == T_ATTN) first_attn = std::min(first_attn, int32_t(i));
        }
        if (last_qkv > first_attn) ++late_tiles;
      }
      CHECK(late_tiles == 0, "blocks %d batch %d: %d layers list q|k|v tiles after an attention split", blocks, batch,
            late_tiles);
    }
}

// The trace summary (persistent_trace.hpp): on a constructed trace with known times, and on the emulated steps'
// stamps (a logical clock over random interleavings): the levels tile the step, every task with stamps is counted,
// empty splits are not, and a stamp that goes backwards is refused.
void test_trace_summary() {
  const Dims d = small_dims(1);
  const Plan p = build_plan(d, 4);
  const size_t n = p.tasks.size();
  // constructed: task i waits 10 ns, runs 20 ns, one after another; level ends follow the plan's order
  std::vector<uint64_t> t(3 * n);
  uint64_t now = 1000;
  int32_t attn = 0;
  for (size_t i = 0; i < n; ++i) {
    if (p.tasks[i].op == T_ATTN && p.tasks[i].b == d.n_split - 1) { ++attn; continue; }  // as an empty split: 0s
    t[3 * i] = now; t[3 * i + 1] = now + 10; t[3 * i + 2] = now + 30;
    now += 30;
  }
  TraceSummary s = summarize_trace(p, t);
  CHECK(s.ok, "constructed trace refused");
  double levels = 0, runs = 0, waits = 0;
  int32_t tasks = 0;
  for (int op = 0; op < T_N; ++op) { levels += s.level_ns[op]; runs += s.run_ns[op]; waits += s.wait_ns[op]; tasks += s.tasks[op]; }
  CHECK(tasks == int32_t(n) - attn, "%d tasks counted, want %d", tasks, int32_t(n) - attn);
  CHECK(levels == s.step_ns && s.step_ns == 30.0 * tasks, "levels %.0f, step %.0f, want %d", levels, s.step_ns, 30 * tasks);
  CHECK(runs == 20.0 * tasks && waits == 10.0 * tasks, "runs %.0f waits %.0f", runs, waits);
  CHECK(s.resolution_ns == 10.0, "timer step %.0f, want 10 (the smallest stamp difference)", s.resolution_ns);
  CHECK(s.levels[T_QKV] == d.layers && s.levels[T_DOWN] == d.layers && s.levels[T_LMHEAD] == 1, "levels %d %d %d",
        s.levels[T_QKV], s.levels[T_DOWN], s.levels[T_LMHEAD]);
  std::vector<uint64_t> bad = t;
  bad[3 * 2 + 2] = bad[3 * 2 + 1] - 1;  // an end before its start
  CHECK(!summarize_trace(p, bad).ok, "a backwards stamp was accepted");
  // emulated: the stamps of random interleavings on 1..40 blocks
  const EmuModel m = make_emu_model(d, 48, 5);
  int32_t bad_sum = 0;
  for (int32_t blocks : {1, 3, 17, 40}) {
    const Plan pb = build_plan(d, blocks);
    const size_t kv = size_t(d.layers) * d.batch * d.kv_dim() * m.max_ctx;
    std::vector<float> k(kv, 0.5f), v(kv, 0.25f);
    EmuStep st;
    st.tokens = {3}; st.pos = {37}; st.slot = {0};
    Grid g(pb, m, st, k, v);
    const EmuResult e = emulate(g, 11 + uint64_t(blocks));
    const TraceSummary es = summarize_trace(pb, e.trace);
    double lsum = 0;
    int32_t counted = 0, active = 0;
    for (int op = 0; op < T_N; ++op) { lsum += es.level_ns[op]; counted += es.tasks[op]; }
    for (const Task &tk : pb.tasks) active += !(tk.op == T_ATTN && split_empty(38, d.n_split, tk.b));
    if (!es.ok || lsum != es.step_ns || counted != active) ++bad_sum;
  }
  CHECK(bad_sum == 0, "%d emulated traces did not tile the step or miscounted tasks", bad_sum);
}

// q|k|v tiles: the smallest power-of-two divisor of head_dim (>= 2) whose tiles fit one wave, else head_dim.
void test_qkv_tiles() {
  struct Shape { const char *name; int32_t nH, nKV, D, rows132; };
  const Shape shapes[] = {{"tiny", 4, 1, 64, 4}, {"0.5B", 14, 2, 64, 16}, {"1.5B", 12, 2, 128, 16}, {"7B", 28, 4, 128, 64},
                          {"small", 4, 2, 16, 2}};
  for (const Shape &sh : shapes)
    for (int32_t blocks : {1, 7, 66, 100, 132}) {
      Dims d;
      d.n_heads = sh.nH; d.n_kv = sh.nKV; d.head_dim = sh.D;
      const int64_t total = int64_t(sh.nH + 2 * sh.nKV) * sh.D;
      const int32_t r = qkv_tile_rows(d, blocks);
      CHECK(r >= 2 && sh.D % r == 0 && (r & (r - 1)) == 0, "%s blocks %d: %d rows", sh.name, blocks, r);
      CHECK(total / r <= blocks || r == sh.D, "%s blocks %d: %lld tiles of %d rows, a second wave", sh.name, blocks,
            (long long)(total / r), r);
      CHECK(r == 2 || total / (r / 2) > blocks, "%s blocks %d: %d rows, but %d would fit one wave", sh.name, blocks, r,
            r / 2);
      if (blocks == 132) CHECK(r == sh.rows132, "%s on 132 blocks: %d rows, want %d", sh.name, r, sh.rows132);
    }
}

void test_every_grid() {
  const Dims d = small_dims(2);
  const EmuModel m = make_emu_model(d, 48, 5);
  std::vector<std::vector<float>> ref;
  const Run base = run_steps(m, d, 1, 1, {0, 1}, &ref);
  double max_rel = 0;
  for (size_t st = 0; st < ref.size() && st < base.logits.size(); ++st) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref[st].size(); ++i) {
      num = std::max(num, double(std::fabs(base.logits[st][i] - ref[st][i])));
      den = std::max(den, double(std::fabs(ref[st][i])));
    }
    max_rel = std::max(max_rel, num / den);
  }
  CHECK(base.logits.size() == 3, "1 block: %zu steps ran", base.logits.size());
  CHECK(max_rel < 2e-5, "emulated persistent step vs reference: max rel %.3g", max_rel);
  std::printf("  emulated step vs op-by-op reference: max rel %.3g\n", max_rel);
  int32_t worst_races = 0, deadlocks = 0, misses = 0, bad = 0, differ = 0;
  std::string err;
  for (int32_t blocks = 1; blocks <= 132; ++blocks)
    for (uint64_t seed = 1; seed <= (blocks <= 8 || blocks % 16 == 0 ? 3u : 1u); ++seed) {
      const Run r = run_steps(m, d, blocks, seed + 100 * uint64_t(blocks), {0, 1}, nullptr);
      deadlocks += r.deadlocks;
      worst_races += r.races;
      misses += r.misses;
      bad += r.bad_counters;
      if (err.empty() && !r.first_error.empty()) err = "blocks " + std::to_string(blocks) + ": " + r.first_error;
      for (size_t st = 0; st < r.logits.size(); ++st)
        if (std::memcmp(r.logits[st].data(), base.logits[st].data(), r.logits[st].size() * 4) != 0) ++differ;
    }
  CHECK(deadlocks == 0, "%d deadlocks over 1..132 blocks", deadlocks);
  CHECK(worst_races == 0, "%d races; first: %s", worst_races, err.c_str());
  CHECK(misses == 0, "%d GEMV tasks waited before their weights were prefetched", misses);
  CHECK(bad == 0, "%d counters ended off their expected values", bad);
  CHECK(differ == 0, "%d steps gave other logits bits than the 1-block grid", differ);
}

void test_batch_invariance() {
  const Dims d3 = small_dims(3), d1 = small_dims(1);
  const EmuModel m = make_emu_model(d3, 48, 9);
  const Run all = run_steps(m, d3, 40, 3, {2, 1, 3}, nullptr);  // sequence 1 in the middle of a batch of three
  const Run one = run_steps(m, d1, 40, 4, {1}, nullptr);
  CHECK(all.logits.size() == 3 && one.logits.size() == 3, "steps ran: %zu, %zu", all.logits.size(), one.logits.size());
  for (size_t st = 0; st < std::min(all.logits.size(), one.logits.size()); ++st)
    CHECK(std::memcmp(&all.logits[st][size_t(d3.vocab)], one.logits[st].data(), size_t(d3.vocab) * 4) == 0,
          "step %zu: sequence 1 alone differs from sequence 1 in a batch of three", st);
}

double max_rel_of(const std::vector<std::vector<float>> &got, const std::vector<std::vector<float>> &ref) {
  double max_rel = 0;
  for (size_t st = 0; st < ref.size() && st < got.size(); ++st) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref[st].size(); ++i) {
      num = std::max(num, double(std::fabs(got[st][i] - ref[st][i])));
      den = std::max(den, double(std::fabs(ref[st][i])));
    }
    max_rel = std::max(max_rel, num / den);
  }
  return max_rel;
}

// The engine's failing configuration on the first GPU run (test/gpu/persistent.test.ts, embedded model): the shapes of
// models/tiny-qwen2-brown (H 256, 4 / 1 heads, d 64, I 768, V 8256, 4 layers), three sequences of different lengths
// (the golden prompts: 15, 5, 18 tokens) in one step on the H100's 132 blocks, the session's split count for a 512-key
// cache; and the lab's next case (0.5B shapes on 2 layers, batch 4, vocabulary cut to 512 to keep the emulation
// short) with four different lengths. The schedule must hold there too: no race, no deadlock, logits = the op-by-op
// reference, and each sequence's bits in the batch = its bits alone.
void test_engine_shapes() {
  struct Case { const char *name; Dims d; int32_t max_ctx; std::vector<int32_t> pos0; };
  Dims tiny;
  tiny.hidden = 256; tiny.inter = 768; tiny.n_heads = 4; tiny.n_kv = 1; tiny.head_dim = 64; tiny.vocab = 8256;
  tiny.layers = 4;
  Dims half;
  half.hidden = 896; half.inter = 4864; half.n_heads = 14; half.n_kv = 2; half.head_dim = 64; half.vocab = 512;
  half.layers = 2;
  const Case cases[] = {{"tiny-qwen2-brown B3", tiny, 512, {15, 5, 18}}, {"0.5B-2L B4", half, 308, {299, 120, 33, 256}}};
  for (const Case &c : cases) {
    const int32_t B = int32_t(c.pos0.size()), blocks = 132;
    Dims d = c.d;
    d.batch = B;
    d.n_split = pick_splits(d.n_kv, blocks, c.max_ctx);
    const EmuModel m = make_emu_model(d, c.max_ctx, 21);
    std::vector<int32_t> seqs(static_cast<size_t>(B));
    for (int32_t b = 0; b < B; ++b) seqs[size_t(b)] = b;
    std::vector<std::vector<float>> ref;
    const Run all = run_steps(m, d, blocks, 7, seqs, &ref, c.pos0);
    CHECK(all.deadlocks == 0 && all.races == 0 && all.bad_counters == 0 && all.misses == 0,
          "%s: %d deadlocks, %d races (%s), %d counters off, %d prefetch misses", c.name, all.deadlocks, all.races,
          all.first_error.c_str(), all.bad_counters, all.misses);
    const double rel = max_rel_of(all.logits, ref);
    CHECK(all.logits.size() == 3 && rel < 2e-5, "%s: %zu steps, max rel vs the op-by-op reference %.3g", c.name,
          all.logits.size(), rel);
    std::printf("  %s (%d blocks, %d splits, qkv tiles of %d rows): max rel vs reference %.3g\n", c.name, blocks,
                d.n_split, build_plan(d, blocks).rows_qkv, rel);
    // the last sequence alone: same bits as in the batch (its cache rows come from its id, whatever its slot)
    Dims d1 = d;
    d1.batch = 1;
    const Run lone = run_steps(m, d1, blocks, 8, {B - 1}, nullptr, c.pos0);
    for (size_t st = 0; st < std::min(all.logits.size(), lone.logits.size()); ++st)
      CHECK(std::memcmp(&all.logits[st][size_t(B - 1) * size_t(d.vocab)], lone.logits[st].data(),
                        size_t(d.vocab) * 4) == 0,
            "%s step %zu: the last sequence alone differs from the same sequence in the batch", c.name, st);
  }
}

// Shared memory per block (persistent_plan.hpp smem_*), the cause of the first GPU run's stop: the sizes of the real
// models at batch 1..8 against the H100 / H200 opt-in limit (227 KiB) and a 99 KiB part (sm_86 / sm_89).
// Splits hold >= kMinChunk (256) keys, so the small model's 48-position cache has one active split per sequence: here a
// 600-position cache with sequences of 1, 256, 257 and 530+ keys (one, one, two and three active splits: the
// arrival counter, the last arriver's combine and the lone split writing z itself) on several grids, against the
// op-by-op reference, with no race, deadlock or counter left off.
void test_long_splits() {
  Dims d = small_dims(4);
  d.n_split = 3;
  const EmuModel m = make_emu_model(d, 600, 9);
  for (int32_t blocks : {1, 5, 40}) {
    std::vector<std::vector<float>> ref;
    const Run r = run_steps(m, d, blocks, 31 + uint64_t(blocks), {0, 1, 2, 3}, &ref, {0, 255, 256, 530});
    CHECK(r.deadlocks == 0 && r.races == 0 && r.bad_counters == 0 && r.misses == 0,
          "long splits, %d blocks: %d deadlocks, %d races (%s), %d counters off, %d prefetch misses", blocks, r.deadlocks,
          r.races, r.first_error.c_str(), r.bad_counters, r.misses);
    const double rel = max_rel_of(r.logits, ref);
    CHECK(r.logits.size() == 3 && rel < 2e-5, "long splits, %d blocks: %zu steps, max rel vs reference %.3g", blocks,
          r.logits.size(), rel);
  }
  CHECK(split_count(1, 3) == 1 && split_count(256, 3) == 1 && split_count(257, 3) == 2 && split_count(531, 3) == 3,
        "split counts %d %d %d %d", split_count(1, 3), split_count(256, 3), split_count(257, 3), split_count(531, 3));
}

void test_smem_sizing() {
  struct Shape { const char *name; int32_t H, I, nH, nKV; };
  const Shape shapes[] = {{"tiny", 256, 768, 4, 1}, {"0.5B", 896, 4864, 14, 2}, {"1.5B", 1536, 8960, 12, 2},
                          {"7B", 3584, 18944, 28, 4}};
  const int64_t h100 = 227 * 1024, small = 99 * 1024;
  for (const Shape &sh : shapes)
    for (int32_t B = 1; B <= kMaxBatch; ++B) {
      Dims d;
      d.batch = B; d.hidden = sh.H; d.inter = sh.I; d.n_heads = sh.nH; d.n_kv = sh.nKV; d.head_dim = sh.H / sh.nH;
      d.vocab = 151936; d.layers = 2;
      CHECK(smem_refusal(d, h100).empty(), "%s batch %d refused on a 227 KiB part: %s", sh.name, B,
            smem_refusal(d, h100).c_str());
      CHECK(smem_total_bound(d) <= 160 * 1024, "%s batch %d: %lld B per block", sh.name, B,
            (long long)smem_total_bound(d));
      if (B == 1 || B == 4 || B == kMaxBatch)
        std::printf("  smem %s batch %d: %lld B dynamic + %lld B static (bound)\n", sh.name, B,
                    (long long)smem_dynamic_bytes(d), (long long)smem_static_bound(d.head_dim));
    }
  // the first GPU run's stop: 0.5B batch 4 stages 38 KiB (under 48 KiB) but needs 58 KiB with the static part, so the
  // opt-in attribute is required although the dynamic part alone is below 48 KiB
  Dims d;
  d.batch = 4; d.hidden = 896; d.inter = 4864; d.n_heads = 14; d.n_kv = 2; d.head_dim = 64; d.vocab = 32768; d.layers = 2;
  CHECK(smem_dynamic_bytes(d) == 38912, "0.5B batch 4 dynamic %lld", (long long)smem_dynamic_bytes(d));
  CHECK(smem_dynamic_bytes(d) < 48 * 1024 && smem_total_bound(d) > 48 * 1024, "0.5B batch 4: %lld B in all",
        (long long)smem_total_bound(d));
  // 1.5B batch 1 (the lab's later case) too: 24 KiB dynamic + 38 KiB static
  d.hidden = 1536; d.inter = 8960; d.n_heads = 12; d.head_dim = 128; d.batch = 1;
  CHECK(smem_dynamic_bytes(d) == 24576 && smem_total_bound(d) > 48 * 1024, "1.5B batch 1: %lld + %lld",
        (long long)smem_dynamic_bytes(d), (long long)smem_static_bound(128));
  // a part with less shared memory: 7B stages h for batches up to 3 (111 KiB) and cannot fit batch 3 in 99 KiB
  d.hidden = 3584; d.inter = 18944; d.n_heads = 28; d.n_kv = 4; d.batch = 3;
  const std::string why = smem_refusal(d, small);
  CHECK(why.find("batch 3") != std::string::npos && why.find("KiB") != std::string::npos &&
            why.find("99 KiB") != std::string::npos,
        "7B batch 3 on 99 KiB: '%s'", why.c_str());
  d.batch = 1;
  CHECK(smem_refusal(d, small).empty(), "7B batch 1 on 99 KiB refused: %s", smem_refusal(d, small).c_str());
  d.batch = 4;  // past kStageCap h is read through L2: 56 KiB dynamic again
  CHECK(!stage_down_act(d) && smem_refusal(d, small).empty(), "7B batch 4 on 99 KiB: %s", smem_refusal(d, small).c_str());
  PersistRequest r;
  r.d = d;
  r.d.batch = 3;
  r.smem_optin = small;
  CHECK(persistent_refusal(r).find("shared memory") != std::string::npos, "refusal: '%s'", persistent_refusal(r).c_str());
}

// The weight ring (QW_PERSIST_RING=1, persistent_ring.cuh), its sizing: every real shape at batch 1..8 gets >= 2
// stages within the 227 KiB of an sm_90 block; its chunks are whole row pairs in a stage, 16-byte multiples, cover the
// task's rows; a K-split tile has no more chunks than stages; which ops run on it (7B down cannot: 74 KiB a pair).
void test_ring_sizing() {
  struct Shape { const char *name; int32_t H, I, nH, nKV; };
  const Shape shapes[] = {{"tiny", 256, 768, 4, 1}, {"0.5B", 896, 4864, 14, 2}, {"1.5B", 1536, 8960, 12, 2},
                          {"7B", 3584, 18944, 28, 4}};
  static const char *names[T_N] = {"embed", "qkv", "attn", "o", "gate_up", "down", "lm_head"};
  for (const Shape &sh : shapes)
    for (int32_t B = 1; B <= kMaxBatch; ++B) {
      Dims d;
      d.batch = B; d.hidden = sh.H; d.inter = sh.I; d.n_heads = sh.nH; d.n_kv = sh.nKV; d.head_dim = sh.H / sh.nH;
      d.vocab = 151936; d.layers = 2; d.n_split = 8;
      const int32_t n = ring_stages(d);
      const int64_t total = smem_static_bound(d.head_dim) + smem_dynamic_bytes(d, n);
      CHECK(n >= 2 && total <= kRingOptin, "%s batch %d: %d ring stages, %lld B", sh.name, B, n, (long long)total);
      CHECK(ring_offset(d) % 128 == 0 && ring_offset(d) >= act_smem_bytes(d) &&
                smem_dynamic_bytes(d, n) >= ring_offset(d) + n * kRingStageBytes + 8 * n + 4 * n,
            "%s batch %d: ring layout", sh.name, B);
      const Plan p = build_plan(d, 132);
      int32_t on[T_N] = {}, off[T_N] = {};
      for (const Task &t : p.tasks) {
        const RingChunks rc = ring_chunks(d, t, n);
        if (!is_gemv(t.op)) { CHECK(rc.chunks == 0, "%s: a %s task on the ring", sh.name, names[t.op]); continue; }
        (rc.chunks > 0 ? on : off)[t.op] += 1;
        if (rc.chunks == 0) continue;
        const int64_t K = task_cols(d, t.op), pairs = (t.b - t.a + 1) / 2;
        CHECK(rc.pairs * 4 * K <= kRingStageBytes && (rc.pairs + 1) * 4 * K > kRingStageBytes,
              "%s %s: %d pairs of K %lld a stage", sh.name, names[t.op], rc.pairs, (long long)K);
        CHECK((int64_t)(rc.chunks - 1) * rc.pairs < pairs && (int64_t)rc.chunks * rc.pairs >= pairs,
              "%s %s: %d chunks for %lld pairs", sh.name, names[t.op], rc.chunks, (long long)pairs);
        CHECK(gemv_k_split((int32_t)pairs) == 1 || rc.chunks <= n, "%s %s: K-split tile of %d chunks", sh.name,
              names[t.op], rc.chunks);
        for (int32_t c = 0; c < rc.chunks; ++c) {  // ring_issue's byte count
          const int32_t row0 = t.a + 2 * c * rc.pairs, row1 = std::min(t.b, row0 + 2 * rc.pairs);
          CHECK(row1 > row0 && (row1 - row0) * K * 2 % 16 == 0 && (row1 - row0) * K * 2 <= kRingStageBytes,
                "%s %s chunk %d: rows [%d, %d)", sh.name, names[t.op], c, row0, row1);
        }
      }
      // every GEMV op of the real models on the ring but 7B's down (one row pair is 74 KiB) and, where a K-split down
      // tile has more chunks than stages, down
      CHECK(on[T_LMHEAD] > 0 && off[T_LMHEAD] == 0 && on[T_GATEUP] > 0 && off[T_GATEUP] == 0 && off[T_QKV] == 0 &&
                off[T_OPROJ] == 0,
            "%s batch %d: GEMV tasks off the ring", sh.name, B);
      if (std::string(sh.name) == "7B") CHECK(on[T_DOWN] == 0, "7B down on the ring");
      if (B == 1 || B == kMaxBatch)
        std::printf("  ring %s batch %d: %d stages, %lld B dynamic; down tasks on the ring %d of %d\n", sh.name, B, n,
                    (long long)smem_dynamic_bytes(d, n), on[T_DOWN], on[T_DOWN] + off[T_DOWN]);
    }
}

// The ring's protocol (persistent_ring.cuh steps 1-4) emulated: 8 warps as micro-op lists (WeightsRing::pair /
// move_to / finish as the kernel calls them from gemv_tile), fills that complete at random times, random interleavings,
// over a sequence of tasks with 0, 1, n - 1, n, n + 1, 2n + 1, ... chunks, K-split tiles among them. The mbarrier is
// modelled by its completed phases k: try_wait.parity(p) passes iff (k & 1) != p. Checked: no deadlock; a read finds
// its own chunk in the stage (not the previous or the next fill); a fill is issued only into a stage with no fill in
// flight and no reads of its previous chunk left; no fill in flight when a task ends (the block barrier); the counts
// come in groups of 8; and the phase bits (ring_parity / ring_phase_after) equal the emulated barriers'.
void test_ring_protocol() {
  Rng rng(4242);
  int32_t errors = 0, tasks_run = 0;
  auto fail = [&](const char *what, int32_t task, int32_t c) {
    if (errors++ < 5) std::printf("  ring protocol: %s (task %d, chunk %d)\n", what, task, c);
  };
  const int32_t Ks[] = {896, 1536, 3584, 4864, 8960, 256};
  for (int32_t n = 2; n <= kRingStagesMax; ++n) {
    for (int32_t rep = 0; rep < 40; ++rep) {
      std::vector<int32_t> completed(size_t(n), 0), content(size_t(n), -1), inflight(size_t(n), -1), arrived(size_t(n), 0);
      uint32_t phase = 0;
      for (int32_t task = 0; task < 24; ++task) {
        // a GEMV task: K from the real shapes, a pair count that gives chunk counts around n
        Dims d;
        d.hidden = Ks[rng.next() % 6];
        Task t;
        t.op = T_QKV;
        const int32_t per = (int32_t)(kRingStageBytes / (4 * d.hidden));
        const int32_t want = (int32_t)(rng.next() % uint64_t(2 * n + 3));  // chunks 0 .. 2n + 2
        const int32_t pairs = std::max<int32_t>(1, want * per - (int32_t)(rng.next() % uint64_t(per)));
        t.a = 0; t.b = 2 * pairs - (int32_t)(rng.next() % 2);  // an odd row count: a last pair of one row
        if (rng.next() % 6 == 0) t.op = T_ATTN;  // off the ring: the phases stay
        const RingChunks rc = ring_chunks(d, t, n);
        const int32_t C = rc.chunks, S = gemv_k_split(pairs);
        if (C == 0) { CHECK(ring_phase_after(phase, 0, n) == phase, "off-ring task changed the phases"); continue; }
        ++tasks_run;
        // micro-ops per warp: {kind, chunk}; kind 0 wait, 1 arrive, 2 read
        std::vector<std::vector<std::pair<int32_t, int32_t>>> ops(kBlockWarps);
        std::vector<int32_t> reads_left(size_t(C), 0);
        for (int32_t w = 0; w < kBlockWarps; ++w) {
          int32_t past = 0;
          auto move_to = [&](int32_t c) {
            for (; past < c; ++past)
              if (past + n < C) { ops[size_t(w)].push_back({0, past}); ops[size_t(w)].push_back({1, past}); }
          };
          const int32_t groups = kBlockWarps / S, grp = w / S;
          for (int32_t pr = grp; pr < pairs; pr += groups) {
            const int32_t c = pr / rc.pairs;
            move_to(c);
            ops[size_t(w)].push_back({0, c});
            ops[size_t(w)].push_back({2, c});
            reads_left[size_t(c)] += 1;
          }
          if (C > n) move_to(C);
        }
        auto issue = [&](int32_t c) {
          const int32_t s = c % n;
          if (inflight[size_t(s)] >= 0) fail("fill into a stage with a fill in flight", task, c);
          if (c >= n && reads_left[size_t(c - n)] > 0) fail("fill over a chunk with reads left", task, c);
          inflight[size_t(s)] = c;
        };
        for (int32_t c = 0; c < C && c < n; ++c) issue(c);  // step 1
        std::vector<size_t> pc(kBlockWarps, 0);
        for (;;) {
          std::vector<int32_t> ready;  // warps whose next micro-op can run; kBlockWarps + s: stage s's fill lands
          bool left = false;
          for (int32_t w = 0; w < kBlockWarps; ++w) {
            if (pc[size_t(w)] == ops[size_t(w)].size()) continue;
            left = true;
            const auto op = ops[size_t(w)][pc[size_t(w)]];
            const int32_t s = op.second % n;
            if (op.first != 0 || (completed[size_t(s)] & 1) != (int32_t)ring_parity(phase, op.second, n)) ready.push_back(w);
          }
          for (int32_t s = 0; s < n; ++s)
            if (inflight[size_t(s)] >= 0) ready.push_back(kBlockWarps + s);
          if (!left) break;
          if (ready.empty()) { fail("deadlock", task, -1); break; }
          const int32_t pick = ready[rng.next() % ready.size()];
          if (pick >= kBlockWarps) {
            const int32_t s = pick - kBlockWarps;
            content[size_t(s)] = inflight[size_t(s)];
            inflight[size_t(s)] = -1;
            completed[size_t(s)] += 1;
            continue;
          }
          const auto op = ops[size_t(pick)][pc[size_t(pick)]++];
          const int32_t s = op.second % n;
          if (op.first == 0 && content[size_t(s)] != op.second) fail("a wait passed before its chunk landed", task, op.second);
          if (op.first == 2) {
            if (content[size_t(s)] != op.second) fail("read another chunk's weights", task, op.second);
            reads_left[size_t(op.second)] -= 1;
          }
          if (op.first == 1 && arrived[size_t(s)]++ % kBlockWarps == kBlockWarps - 1) issue(op.second + n);
        }
        for (int32_t s = 0; s < n; ++s) {
          if (inflight[size_t(s)] >= 0) fail("a fill in flight at the task's end", task, inflight[size_t(s)]);
          if (arrived[size_t(s)] % kBlockWarps != 0) fail("arrivals not in groups of 8", task, s);
        }
        phase = ring_phase_after(phase, C, n);
        for (int32_t s = 0; s < n; ++s)
          if ((int32_t)((phase >> s) & 1) != (completed[size_t(s)] & 1)) fail("phase bits off the barriers'", task, s);
      }
    }
  }
  CHECK(errors == 0, "ring protocol: %d errors", errors);
  CHECK(tasks_run > 1000, "ring protocol: only %d tasks on the ring", tasks_run);
}

void test_refusals() {
  PersistRequest ok;
  ok.d.batch = 1; ok.d.hidden = 896; ok.d.inter = 4864; ok.d.n_heads = 14; ok.d.n_kv = 2; ok.d.head_dim = 64;
  ok.d.vocab = 151936; ok.d.layers = 24;
  CHECK(persistent_refusal(ok).empty(), "0.5B bf16 batch 1 refused: %s", persistent_refusal(ok).c_str());
  auto refuses = [&](PersistRequest r, const char *word) {
    const std::string why = persistent_refusal(r);
    CHECK(why.find(word) != std::string::npos, "want a refusal naming '%s', got '%s'", word, why.c_str());
  };
  PersistRequest r = ok; r.d.batch = kMaxBatch + 1; refuses(r, "batches");
  r = ok; r.all_bf16 = false; refuses(r, "bf16 weights");
  r = ok; r.bf16_embed = false; refuses(r, "weights_layers \"output\"");  // e.g. weights = bf16 with output = q8
  r = ok; r.kv_bf16 = false; refuses(r, "kvCache");
  r = ok; r.dca_off = false; refuses(r, "dca");
  r = ok; r.tree = true; refuses(r, "tree");
  r = ok; r.hooks = true; refuses(r, "hook");
  r = ok; r.profiling = true; refuses(r, "profiling");
  r = ok; r.gqa_native = false; refuses(r, "gqa");
  r = ok; r.marlin = true; refuses(r, "gemv");
  r = ok; r.default_fusions = false; refuses(r, "ffn");
  r = ok; r.d.head_dim = 96; refuses(r, "head_dim");
}

}  // namespace

int main() {
  test_plan_structure();
  test_qkv_tiles();
  test_trace_summary();
  test_every_grid();
  test_batch_invariance();
  test_engine_shapes();
  test_long_splits();
  test_smem_sizing();
  test_ring_sizing();
  test_ring_protocol();
  test_refusals();
  return finish("test_persistent");
}
