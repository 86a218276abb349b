// persistent_plan.hpp — the schedule of toggle decode = persistent (decode.cpp): the task list of one decode step,
// each task's input counter and the value it must reach, the counter it signals, the tile -> rows mapping, the
// split-KV chunking and the prefetch schedule. Plain C++ (host and device), so the CPU test (test_persistent.cpp,
// persistent_emu.hpp) runs the very schedule the kernel (persistent_kernels.cu) runs.
//
// Design (docs/ARCHITECTURE.md §Persistent decode):
//  - One block per SM (grid = blocks, all co-resident: a cooperative launch guarantees it). Block k runs tasks
//    k, k + blocks, k + 2 blocks, ... of the list, in list order. Static, so a block knows its next task and can
//    prefetch that task's weights before it waits (the point of the design: weights stream across op boundaries).
//  - Every task waits on ONE counter reaching ONE value, and signals one counter (+1) when its outputs are written.
//    Dependencies are transitive through that chain: o_proj waits for every combine, a combine for every split of
//    its (sequence, kv head), a split for its kv group's q|k|v tiles, those for the previous layer's down tiles.
//    That chain also orders every write-after-read on the shared scratch (q, z, x, h, partials): the CPU test checks
//    each conflicting pair of tasks against the chain, for random interleavings and every grid of 1..132 blocks.
//  - No deadlock: every counter a task waits on is signalled only by tasks earlier in the list. The earliest
//    unfinished task has all inputs done, and its block has done all its earlier tasks, so it runs: progress.
//    Needs all blocks resident (a block that never starts would stall the grid): hence cooperative launch.
//  - Finer than grid.sync: the only waits are on real inputs (per kv group for attention, per (sequence, kv head)
//    for a combine); grid.sync per op would also stall attention of group 0 behind the q|k|v tiles of group 1.
//  - Counters are zeroed by the last block to leave (the exit counter), so the next launch starts from zero with
//    no memset and the kernel replays inside a CUDA graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#define QW_HD __host__ __device__ __forceinline__
#else
#define QW_HD inline
#endif

namespace qw {
namespace persist {

constexpr int32_t kMaxBatch = 8;          // staged activations [B][H] bf16 live in shared memory (kernel)
// Keys per split at least: a 32-key tile for each of the kernel's 8 warps, as the graph path's split-KV kernel
// (attention.cu). With 32 (one warp's tile) a 128-key context made 4 splits of one busy warp each, every one paying
// the partials, a fence, the arrival atomic and the combine's loads (eleventh run: 17 us of run per split task at 0.5B
// B1); now it is one split of 4 busy warps that writes z itself.
constexpr int32_t kMinChunk = 256;
constexpr int64_t kPrefetchCap = 128 << 10;  // bytes of a task's weights prefetched into L2 ahead (see below)

enum TaskOp : int32_t { T_EMBED = 0, T_QKV, T_ATTN, T_OPROJ, T_GATEUP, T_DOWN, T_LMHEAD, T_N };

struct Dims {
  int32_t batch = 1, hidden = 0, inter = 0, n_heads = 0, n_kv = 0, head_dim = 0, vocab = 0, layers = 0;
  int32_t n_split = 1;  // attention splits per (sequence, kv head): a function of the model and grid only, never
                        // of the batch, so a sequence sums its keys in the same order alone or in a batch
  QW_HD int32_t group() const { return n_heads / n_kv; }
  QW_HD int32_t q_dim() const { return n_heads * head_dim; }
  QW_HD int32_t kv_dim() const { return n_kv * head_dim; }
};

// 32 bytes, read by the kernel from the device copy of Plan::tasks.
//   GEMV tasks (QKV, OPROJ, GATEUP, DOWN, LMHEAD): physical rows [a, b) of the op's matrix, every sequence.
//   QKV rows are pair-interleaved q|k|v rows (gemv.cuh GEMV_EPI_QKV_ROPE), all of one kv group's q, k or v block.
//   ATTN: a = seq * n_kv + kv head, b = split. EMBED: a = seq.
//   An ATTN task of an active split (split_count) writes its partials and arrives at the split counter of (seq, kv
//   head); the last of them to arrive combines every active split into z, zeroes the split counter and signals
//   `signal` (the layer's combine counter): one signal per (seq, kv head), whichever split it comes from. An ATTN task
//   of an empty split does nothing at all.
struct Task {
  int32_t op = 0, layer = 0, a = 0, b = 0;
  int32_t wait = -1, target = 0;  // counter to wait on (-1: none) and the value it must reach
  int32_t signal = 0;             // counter incremented once the task's outputs are written (ATTN: see above)
  int32_t group = 0;              // QKV: the kv group its rows belong to; else 0
};

// Counter layout: [embed] then per layer [qkv per group | split arrivals per (seq, kv head) | combine | o | gate_up |
// down], then [lm_head] [exit]. The split arrivals count active splits done; their last one zeroes it.
struct Counters {
  int32_t n_kv = 0, batch = 0, layers = 0;
  QW_HD int32_t per_layer() const { return n_kv + batch * n_kv + 4; }
  QW_HD int32_t embed() const { return 0; }
  QW_HD int32_t qkv(int32_t l, int32_t g) const { return 1 + l * per_layer() + g; }
  QW_HD int32_t split(int32_t l, int32_t bg) const { return 1 + l * per_layer() + n_kv + bg; }
  QW_HD int32_t combine(int32_t l) const { return 1 + l * per_layer() + n_kv + batch * n_kv; }
  QW_HD int32_t oproj(int32_t l) const { return combine(l) + 1; }
  QW_HD int32_t gate_up(int32_t l) const { return combine(l) + 2; }
  QW_HD int32_t down(int32_t l) const { return combine(l) + 3; }
  QW_HD int32_t lm_head() const { return 1 + layers * per_layer(); }
  QW_HD int32_t exit() const { return lm_head() + 1; }
  QW_HD int32_t count() const { return exit() + 1; }
};

// Keys of split s for a sequence of len keys: [t0, t1), empty when t0 >= len. chunk = ceil(len / n_split) rounded up
// to kMinChunk keys: a function of len and n_split only (batch invariance).
QW_HD int32_t split_chunk(int32_t len, int32_t n_split) {
  int32_t c = (len + n_split - 1) / n_split;
  c = (c + kMinChunk - 1) / kMinChunk * kMinChunk;
  return c < kMinChunk ? kMinChunk : c;
}
// Splits that hold keys (1..n_split for len >= 1): splits [0, split_count) are the active ones. An empty split's task
// does nothing (no wait, no write, no signal: the kernel and the emulation skip it), and the combine, run by the last
// active split to arrive, reads the active splits only: a short sequence's step costs what its keys cost.
QW_HD int32_t split_count(int32_t len, int32_t n_split) {
  const int32_t c = split_chunk(len, n_split), n = (len + c - 1) / c;
  return n < 1 ? 1 : (n > n_split ? n_split : n);
}
QW_HD bool split_empty(int32_t len, int32_t n_split, int32_t s) { return s >= split_count(len, n_split); }
QW_HD int32_t split_begin(int32_t len, int32_t n_split, int32_t s) { return s * split_chunk(len, n_split); }
QW_HD int32_t split_end(int32_t len, int32_t n_split, int32_t s) {
  const int32_t e = (s + 1) * split_chunk(len, n_split);
  return e < len ? e : len;
}

// The original row of physical row p of the pair-interleaved q|k|v matrix (the same map as qwc::qkv_rope_orig_row,
// which the model upload applies; the lab checks the two agree).
QW_HD int64_t qkv_orig_row(int64_t p, int32_t n_heads, int32_t n_kv, int32_t d) {
  const int64_t qk = (int64_t)(n_heads + n_kv) * d;
  if (p >= qk) return p;
  const int64_t head = p / d, w = p % d;
  return head * d + w / 2 + (w % 2) * (d / 2);
}

// Rows of kv group g's q|k|v in the physical q|k|v matrix: three runs (q heads g*G .. g*G+G-1, k head g, v head g).
// Local row j of the group, 0 <= j < (G + 2) d, maps to a physical row; a tile never crosses a run (tile rows divide d).
QW_HD int64_t qkv_group_row(const Dims &d, int32_t g, int64_t j) {
  const int64_t D = d.head_dim, G = d.group();
  if (j < G * D) return g * G * D + j;
  if (j < (G + 1) * D) return (int64_t)d.n_heads * D + g * D + (j - G * D);
  return (int64_t)(d.n_heads + d.n_kv) * D + g * D + (j - (G + 1) * D);
}

// Whether a down task stages h [B][I] in shared memory (else it reads h through L2 for every row pair of its tile).
// Capped so that it plus the kernel's static shared memory (<= 38 KiB) fits an sm_80 block (164 KiB) as well as sm_90.
constexpr int64_t kStageCap = 120 << 10;
QW_HD bool stage_down_act(const Dims &d) { return (int64_t)d.batch * d.inter * 2 <= kStageCap; }

// Shared memory of one block of the kernel (persistent_kernels.cu). Dynamic: the staged activations, kMaxBatch rows of
// max(H, nH d) bf16 (stage_tile writes every row, zeros past the batch), or down's h [B][I] when staged, whichever is
// larger. Static (an upper bound of what the kernel declares; `qwlab persistent` checks it against the compiled
// kernel): rstd_s [8] + red_s [8 warps][2][8] + norm_rstd's part_s [8][16] + attention's q_s [8][d], wm_s / wl_s
// [8][8] and wo_s [8 warps][8][d] fp32 = 1568 + 288 d bytes, plus kSmemSlack for alignment.
// Static + dynamic must fit the device's opt-in limit per block (cudaDevAttrMaxSharedMemoryPerBlockOptin: 227 KiB on
// H100 / H200, 163 KiB on A100, 99 KiB on sm_86 / sm_89); above 48 KiB in all the kernel needs the opt-in attribute,
// which it sets (the first GPU run died there: 0.5B at batch 4 needs 38 KiB dynamic + 20 KiB static).
// With the weight ring on (QW_PERSIST_RING=1, ring_stages below) the ring follows the activations in the dynamic part.
constexpr int64_t kSmemSlack = 1024;
QW_HD int64_t act_smem_bytes(const Dims &d) {
  const int64_t wide = d.hidden > d.q_dim() ? d.hidden : d.q_dim();
  const int64_t norm = (int64_t)kMaxBatch * wide * 2;
  const int64_t down = stage_down_act(d) ? (int64_t)d.batch * d.inter * 2 : 0;
  return norm > down ? norm : down;
}
constexpr int64_t smem_static_bound(int32_t head_dim) { return 1568 + 288 * (int64_t)head_dim + kSmemSlack; }

// The shared-memory weight ring of the GEMV tasks (QW_PERSIST_RING=1, sm_90 only; persistent_ring.cuh): `stages`
// stages of kRingStageBytes, 128-byte aligned after the staged activations, then kRingTail bytes of mbarriers and
// arrival counters. 36 KiB holds whole row pairs of every K but 7B's down (0.5B K 896: 10 pairs, 1.5B 1536: 6, 7B
// 3584: 2, 0.5B down 4864: 1, 1.5B down 8960: 1 of 35 KiB). The stages are as many as fit the 227 KiB opt-in of an
// sm_90 block beside the static bound and the activations (at most kRingStagesMax; batch 1..8: 0.5B 4 4 4 4 4 4 3 3,
// 1.5B 4 4 3 3 2 2 4 4, 7B 3 3 2 3 3 3 3 3: staged down activations take the room); fewer than 2 (no supported
// shape) turns the ring off: one stage would serialize copy and math.
constexpr int32_t kBlockWarps = 8;  // warps per block of the kernel (persistent_kernels.cu kWarps)
constexpr int64_t kRingStageBytes = 36 << 10;
constexpr int32_t kRingStagesMax = 4;
constexpr int64_t kRingOptin = 227 << 10;  // cudaDevAttrMaxSharedMemoryPerBlockOptin of H100 / H200
constexpr int64_t kRingTail = 64;          // kRingStagesMax x (8-byte mbarrier + 4-byte counter), rounded up
QW_HD int64_t ring_offset(const Dims &d) { return (act_smem_bytes(d) + 127) / 128 * 128; }
inline int32_t ring_stages(const Dims &d) {
  const int64_t room = kRingOptin - smem_static_bound(d.head_dim) - ring_offset(d) - kRingTail;
  const int64_t n = room / kRingStageBytes;
  return n < 2 ? 0 : (int32_t)(n < kRingStagesMax ? n : kRingStagesMax);
}
// Dynamic shared memory of a block: the activations, and with ring > 0 (the stages: ring_stages) the ring after them.
inline int64_t smem_dynamic_bytes(const Dims &d, int32_t ring = 0) {
  return ring > 0 ? ring_offset(d) + ring * kRingStageBytes + kRingTail : act_smem_bytes(d);
}
inline int64_t smem_total_bound(const Dims &d) { return smem_static_bound(d.head_dim) + smem_dynamic_bytes(d); }  // ring off
// "" when the kernel fits a block of `optin` bytes at d.batch, else why (KiB needed, KiB allowed, what to change).
std::string smem_refusal(const Dims &d, int64_t optin);

// The matrix a GEMV task reads (for the prefetch and the kernel's operand) and its columns.
QW_HD int64_t task_cols(const Dims &d, int32_t op) {
  return op == T_DOWN ? d.inter : d.hidden;  // o_proj: q_dim == hidden for Qwen2 (checked by persistent_refusal)
}
QW_HD bool is_gemv(int32_t op) { return op == T_QKV || op == T_OPROJ || op == T_GATEUP || op == T_DOWN || op == T_LMHEAD; }

// The prefetch schedule: before block k waits on its task i it has issued the L2 prefetch of task i (done at its
// previous task, or now if i is its first) and issues that of its next task i + blocks, so the weights of the task
// after the current one are in flight while the current one waits and computes. At most kPrefetchCap bytes per task
// (132 blocks x 2 tasks x 128 KiB = 33 MiB stays inside an H100/H200 L2 of 50 MiB; the rest of a large tile streams
// while the tile computes). Returns how many tasks to prefetch (0..2) into out[].
QW_HD int32_t prefetch_targets(int32_t i, int32_t blocks, int32_t n_tasks, int32_t block, int32_t out[2]) {
  int32_t n = 0;
  if (i == block) out[n++] = i;  // the block's first task
  if (i + blocks < n_tasks) out[n++] = i + blocks;
  return n;
}
QW_HD int64_t prefetch_bytes(const Dims &d, const Task &t) {
  if (!is_gemv(t.op)) return 0;
  const int64_t b = (int64_t)(t.b - t.a) * task_cols(d, t.op) * 2;
  return b < kPrefetchCap ? b : kPrefetchCap;
}

// The K split of a GEMV tile of `pairs` row pairs (persistent_kernels.cu gemv_tile): row pairs go to groups of S warps,
// S parts of K summed in part order; S > 1 only where the tile has fewer row pairs than kBlockWarps / 2.
QW_HD int32_t gemv_k_split(int32_t pairs) {
  int32_t S = 1;
  while (S < kBlockWarps && pairs * S * 2 <= kBlockWarps) S *= 2;
  return S;
}

// A GEMV task on the ring (persistent_ring.cuh): its rows [t.a, t.b) are one contiguous byte range of the matrix, cut
// into `chunks` chunks of `pairs` whole row pairs (the last one shorter: fewer pairs, or one row); chunk c goes to
// stage c % stages. chunks == 0: the task reads its weights with register loads (the default path) because a row
// pair does not fit a stage (7B down), the op is not a GEMV, the ring is off (stages 0), or a K-split tile (S > 1,
// which reads all its pairs in one round between two block barriers) has more chunks than stages.
struct RingChunks {
  int32_t pairs = 0, chunks = 0;
};
QW_HD RingChunks ring_chunks(const Dims &d, const Task &t, int32_t stages) {
  RingChunks r;
  if (stages < 1 || !is_gemv(t.op)) return r;
  const int32_t pair_bytes = 4 * (int32_t)task_cols(d, t.op);
  const int32_t per = (int32_t)kRingStageBytes / pair_bytes, pairs = (t.b - t.a + 1) / 2;
  if (per < 1 || pairs < 1) return r;
  const int32_t n = (pairs + per - 1) / per;
  if (gemv_k_split(pairs) > 1 && n > stages) return r;
  r.pairs = per;
  r.chunks = n;
  return r;
}
// The mbarrier phases of the ring. Stage s completes one phase per chunk it receives; bit s of `phase` is the parity
// of stage s's next phase to complete (0 at launch: mbarrier.init starts in phase 0). Chunk c of a task fills stage
// c % stages in that task's (c / stages)-th round, so its phase parity is bit s flipped c / stages times; after the
// task, bit s has flipped once per chunk of the stage. Host and device: the CPU test counts the phases against these.
QW_HD uint32_t ring_parity(uint32_t phase, int32_t c, int32_t stages) {
  return ((phase >> (c % stages)) ^ (uint32_t)(c / stages)) & 1u;
}
QW_HD uint32_t ring_phase_after(uint32_t phase, int32_t chunks, int32_t stages) {
  for (int32_t s = 0; s < stages; ++s) {
    const int32_t uses = chunks > s ? (chunks - 1 - s) / stages + 1 : 0;
    phase ^= (uint32_t)(uses & 1) << s;
  }
  return phase;
}

struct Plan {
  Dims d;
  int32_t blocks = 1;
  Counters c;
  std::vector<Task> tasks;
  std::vector<int32_t> final_value;  // every counter's value once every task signalled (before the exit reset)
  int32_t rows_qkv = 0, rows_o = 0, rows_gu = 0, rows_down = 0, rows_lm = 0;  // rows per tile, per op
  int32_t tiles_per_group = 0;  // QKV tiles of one kv group (the attention's wait target)
};

// Rows per tile of an op with `rows` rows over `blocks` blocks: about one tile per block (each task costs a wait and
// a signal, so fewer, larger tiles), a multiple of `align` (2: RoPE pairs / gate,up pairs stay in one tile).
int32_t tile_rows(int64_t rows, int32_t blocks, int32_t align);
// QKV rows per tile: a power-of-two divisor of head_dim (tiles never cross a q/k/v run, >= 2: RoPE pairs), the
// smallest whose tiles fit one wave (<= blocks tiles), else head_dim. Every tile costs a wait, the norm prologue and
// a signal, so a second wave for a few blocks (0.5B: 144 tiles of 8 rows on 132 blocks) costs a whole task time on
// the step's critical path, while larger tiles cost only their extra rows (16 instead of 8: ~14 KiB more per block).
int32_t qkv_tile_rows(const Dims &d, int32_t blocks);
// The attention splits of a model on `blocks` blocks (independent of the batch, see Dims::n_split).
int32_t pick_splits(int32_t n_kv, int32_t blocks, int32_t max_ctx);
Plan build_plan(const Dims &d, int32_t blocks);

// Why the persistent arm cannot run this configuration ("" when it can); the caller names the toggle in the error.
struct PersistRequest {
  Dims d;
  // bf16_embed: the token embedding and the lm_head are both bf16 (the lm_head may be requantized at load:
  // weights_layers "output")
  bool all_bf16 = true, fused_qkv_pairs = true, fused_gate_up = true, bf16_embed = true, has_out_norm = true;
  bool kv_bf16 = true, gqa_native = true, dca_off = true, tree = false, hooks = false,
       profiling = false, marlin = false, default_fusions = true;
  int64_t smem_optin = 0;  // the device's shared memory per block with the opt-in (bytes); 0: not checked
};
std::string persistent_refusal(const PersistRequest &r);

}  // namespace persist
}  // namespace qw
