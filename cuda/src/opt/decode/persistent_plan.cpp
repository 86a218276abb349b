// persistent_plan.cpp — builds the task list of decode = persistent (persistent_plan.hpp) and says what the arm
// refuses. Host code in both libraries: the CUDA step uploads the list, the CPU test emulates it.
#include "persistent_plan.hpp"

#include <algorithm>

namespace qw {
namespace persist {

int32_t tile_rows(int64_t rows, int32_t blocks, int32_t align) {
  int64_t r = (rows + blocks - 1) / std::max(1, blocks);
  r = (r + align - 1) / align * align;
  return (int32_t)std::max<int64_t>(r, align);
}

int32_t qkv_tile_rows(const Dims &d, int32_t blocks) {
  const int64_t total = (int64_t)(d.n_heads + 2 * d.n_kv) * d.head_dim;
  int32_t r = d.head_dim;  // halve while the halves still divide head_dim, hold a RoPE pair and fit one wave
  while (r % 4 == 0 && (total + r / 2 - 1) / (r / 2) <= blocks) r /= 2;
  return r;
}

int32_t pick_splits(int32_t n_kv, int32_t blocks, int32_t max_ctx) {
  // about one attention task per block for one sequence; no more splits than kMinChunk-key chunks of the context
  int32_t s = std::max(1, blocks / std::max(1, n_kv));
  s = std::min(s, std::max(1, (max_ctx + kMinChunk - 1) / kMinChunk));
  return std::min(s, 64);
}

Plan build_plan(const Dims &d, int32_t blocks) {
  Plan p;
  p.d = d;
  p.blocks = blocks;
  p.c.n_kv = d.n_kv;
  p.c.batch = d.batch;
  p.c.layers = d.layers;
  const Counters &c = p.c;
  p.final_value.assign((size_t)c.count(), 0);
  p.rows_qkv = qkv_tile_rows(d, blocks);
  p.rows_o = tile_rows(d.hidden, blocks, 1);
  p.rows_gu = tile_rows(2 * (int64_t)d.inter, blocks, 2);
  p.rows_down = tile_rows(d.hidden, blocks, 1);
  p.rows_lm = tile_rows(d.vocab, blocks, 1);
  const int32_t G = d.group(), BK = d.batch * d.n_kv;
  p.tiles_per_group = (G + 2) * d.head_dim / p.rows_qkv;
  auto add = [&](Task t) {
    p.tasks.push_back(t);
    p.final_value[(size_t)t.signal] += 1;
  };
  // GEMV tiles of `rows` rows, `per` rows each, all waiting on (wait, target), signalling sig
  auto tiles = [&](int32_t op, int32_t l, int64_t rows, int32_t per, int32_t wait, int32_t target, int32_t sig) {
    int32_t n = 0;
    for (int64_t r = 0; r < rows; r += per, ++n) {
      Task t;
      t.op = op; t.layer = l; t.a = (int32_t)r; t.b = (int32_t)std::min<int64_t>(rows, r + per);
      t.wait = wait; t.target = target; t.signal = sig;
      add(t);
    }
    return n;
  };
  for (int32_t b = 0; b < d.batch; ++b) {
    Task t;
    t.op = T_EMBED; t.a = b; t.signal = c.embed();
    add(t);
  }
  int32_t prev_wait = c.embed(), prev_target = d.batch;
  for (int32_t l = 0; l < d.layers; ++l) {
    // every group's q|k|v tiles, then the attention splits group by group: the tiles are one wave (qkv_tile_rows), and
    // group g's attention waits for group g's tiles only, so it starts while other groups' tiles finish. (Tiles of
    // group g + 1 listed after group g's splits would land, round robin, on blocks whose first task is one of those
    // splits: a qkv -> attention -> qkv -> attention chain on the critical path.)
    for (int32_t g = 0; g < d.n_kv; ++g)
      for (int32_t j = 0; j < p.tiles_per_group; ++j) {
        Task t;
        t.op = T_QKV; t.layer = l; t.group = g;
        t.a = (int32_t)qkv_group_row(d, g, (int64_t)j * p.rows_qkv);
        t.b = t.a + p.rows_qkv;
        t.wait = prev_wait; t.target = prev_target; t.signal = c.qkv(l, g);
        add(t);
      }
    // the splits of (b, g) signal the layer's combine counter once between them (the last active one to arrive
    // combines), so the counter's final value is BK, not a count of tasks; their arrival counter ends at 0
    for (int32_t g = 0; g < d.n_kv; ++g)
      for (int32_t b = 0; b < d.batch; ++b)
        for (int32_t s = 0; s < d.n_split; ++s) {
          Task t;
          t.op = T_ATTN; t.layer = l; t.a = b * d.n_kv + g; t.b = s;
          t.wait = c.qkv(l, g); t.target = p.tiles_per_group; t.signal = c.combine(l);
          p.tasks.push_back(t);
        }
    p.final_value[(size_t)c.combine(l)] = BK;
    const int32_t no = tiles(T_OPROJ, l, d.hidden, p.rows_o, c.combine(l), BK, c.oproj(l));
    const int32_t ngu = tiles(T_GATEUP, l, 2 * (int64_t)d.inter, p.rows_gu, c.oproj(l), no, c.gate_up(l));
    const int32_t nd = tiles(T_DOWN, l, d.hidden, p.rows_down, c.gate_up(l), ngu, c.down(l));
    prev_wait = c.down(l);
    prev_target = nd;
  }
  tiles(T_LMHEAD, -1, d.vocab, p.rows_lm, prev_wait, prev_target, c.lm_head());
  p.final_value[(size_t)c.exit()] = blocks;  // every block arrives once at the exit (then the last one resets)
  return p;
}

std::string smem_refusal(const Dims &d, int64_t optin) {
  const int64_t need = smem_total_bound(d);
  if (optin <= 0 || need <= optin) return "";
  auto kib = [](int64_t b) { return std::to_string((b + 1023) / 1024); };
  return "at batch " + std::to_string(d.batch) + " a block needs " + kib(need) + " KiB of shared memory (" +
         kib(smem_static_bound(d.head_dim)) + " static + " + kib(smem_dynamic_bytes(d)) +
         " staged activations) and this GPU allows " + kib(optin) + " KiB per block: decode fewer sequences per step";
}

std::string persistent_refusal(const PersistRequest &r) {
  const Dims &d = r.d;
  if (d.batch < 1 || d.batch > kMaxBatch)
    return "it runs batches of 1.." + std::to_string(kMaxBatch) + " sequences (this step has " +
           std::to_string(d.batch) + ")";
  if (!r.all_bf16) return "it reads bf16 weights only (load the model with weights = bf16)";
  // weights = bf16 converts the projections only: the embedding stays as loaded, and so does the lm_head unless
  // weights_layers "output" asks (a q8 / q4 output refuses here even at weights = bf16)
  if (!r.bf16_embed)
    return "it reads a bf16 token embedding and lm_head only (the weights option leaves the embedding as loaded: "
           "load a bf16 checkpoint, and keep weights_layers \"output\" as-loaded or bf16)";
  if (r.marlin) return "it has its own GEMV (set gemv = simple)";
  if (!r.fused_qkv_pairs || !r.fused_gate_up)
    return "it needs the fused pair-interleaved q|k|v and gate|up matrices of a bf16 model";
  if (!r.has_out_norm) return "an EAGLE head (no final norm) decodes through the graph path";
  if (!r.kv_bf16) return "it reads a bf16 KV cache (set kvCache = bf16)";
  if (!r.gqa_native) return "it reads the kv heads in place (set gqa = native)";
  if (!r.dca_off) return "Dual Chunk Attention is not part of it (set dca = off)";
  if (r.tree) return "tree (speculative) steps are prefill steps of the graph path";
  if (r.hooks) return "hook captures need the op boundaries of the graph path (clear the captures)";
  if (r.profiling)
    return "it is one kernel: profiling modes kernels and counters need decode = graph (events mode records its "
           "dependency levels from the kernel's own stamps)";
  if (!r.default_fusions)
    return "its tasks are the fused ops (set ffn = fused-norm-gemv-swiglu and norm = fused-residual-norm)";
  if (d.q_dim() != d.hidden) return "it needs n_heads * head_dim == hidden (o_proj square)";
  if (d.head_dim != 64 && d.head_dim != 128) return "it supports head_dim 64 or 128";
  if (d.group() > 8 || d.n_heads % d.n_kv != 0) return "it supports 1..8 query heads per kv head";
  if (d.hidden % 8 != 0 || d.inter % 8 != 0) return "hidden and intermediate sizes must be multiples of 8";
  return smem_refusal(d, r.smem_optin);
}

}  // namespace persist
}  // namespace qw
