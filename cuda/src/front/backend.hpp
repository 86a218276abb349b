// backend.hpp — the seam between the C ABI front (front/api_*.cpp, shared by both libraries) and a backend
// (docs/ARCHITECTURE.md §Layers).
//
// The front owns everything that must behave identically on CPU and CUDA: status codes and qw_last_error,
// JSON options and config validation, tensor-name/shape validation, the exact GGUF -> native conversion,
// the toggle registry and per-layer toggle state, op-record and capture buffers, logits buffers, and
// argument checks (token ids, context overflow, sampling parameters). A backend only stores native tensors
// and runs forward steps. Backends signal failure by throwing qw::Error; the guard of api.hpp catches at the boundary.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "aligned_vector.hpp"
#include "counters.hpp"
#include "qwen.h"
#include "sparse_prefill.hpp"
#include "tile.hpp"
#include "toggles.hpp"

namespace qw {

// A failure with a status code; message says what was wrong and, where it helps, what to do.
struct Error : std::runtime_error {
  int32_t status;
  Error(int32_t s, const std::string &msg) : std::runtime_error(msg), status(s) {}
};

struct Config {
  int32_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position = 0;
  float rope_theta = 1e6f, rms_eps = 1e-6f;
  bool tie_embeddings = false;
  // Dual Chunk Attention defaults (toggle "dca"): dual_chunk_attention_config.chunk_size / local_size when the
  // config has them, else chunk = the trained length (original_max_position_embeddings, else
  // max_position_embeddings) and local = chunk / 8. A session may override both (qw_session_create options).
  int32_t dca_chunk = 0, dca_local = 0;
  // An EAGLE draft head (config key "eagle_head", opt/speculative/eagle.hpp): one decoder layer whose input is
  // fc([embed(token), feature]), layer 0 without its input norm, and no final norm before the lm_head.
  bool eagle_head = false;
  // Tensor-parallel ranks (model option "parallel", opt/parallel/tp_plan.hpp): 1 = one device, the whole model.
  int32_t tp = 1;
  int32_t q_dim() const { return num_heads * head_dim; }
  int32_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Engine-native weight layouts. All conversions from GGUF types are exact (see convert.hpp).
enum class NativeType : int32_t {
  F32 = 0,   // float
  F16 = 1,   // IEEE half (kept as half: converting to bf16 would round)
  BF16 = 2,  // bfloat16
  W8 = 3,    // int8 codes, per-group fp32 scale and offset: w = scale * q + offset
  W4 = 4,    // uint4 codes packed two per byte (low nibble = even column), per-group scale and offset
};
const char *native_type_name(NativeType t);

// A weight matrix [rows = output features (ggml ne1), cols = input features (ggml ne0)] row-major,
// or a vector (rows = 1) for norms and biases. Vectors are always F32.
struct NativeTensor {
  std::string name;
  int32_t ggml_type = 0;  // the type it was handed over as
  NativeType type = NativeType::F32;
  int64_t rows = 0, cols = 0;
  int32_t group = 0;              // W8/W4: elements per group along cols (16 or 32); else 0
  aligned_vector<uint8_t> data;   // F32/F16/BF16: rows*cols elements; W8: rows*cols int8; W4: rows*cols/2 bytes
  std::vector<float> scale;       // W8/W4: rows * (cols / group)
  std::vector<float> offset;      // W8/W4: rows * (cols / group)
  uint64_t native_bytes() const { return data.size() + 4 * (scale.size() + offset.size()); }
};

// Hook points (docs/ARCHITECTURE.md §Hooks). Names are produced by hook_name().
enum Hook : int32_t {
  HOOK_RESID_PRE = 0, HOOK_Q, HOOK_K, HOOK_V, HOOK_Z, HOOK_ATTN_OUT, HOOK_RESID_MID,
  HOOK_MLP_PRE, HOOK_MLP_POST, HOOK_RESID_POST, HOOK_LOGITS,
  HOOK_FINAL_NORM,  // global "ln_final.hook_normalized": the rows the lm_head reads (EAGLE's features)
  HOOK_COUNT
};

// What the front asks of one forward step. Rows are laid out sequence by sequence: sequence i contributes
// n_new[i] rows starting at row_offset[i]; its tokens occupy KV positions [pos0[i], pos0[i] + n_new[i]).
struct Step {
  int32_t phase = QW_PHASE_PREFILL;
  int64_t step_index = 0;
  std::vector<int32_t> seq;         // session sequence slot of each sequence in the step
  std::vector<int32_t> n_new;       // new tokens per sequence (decode: 1)
  std::vector<int32_t> pos0;        // KV length before the step, per sequence
  std::vector<int32_t> row_offset;  // first row of each sequence in `tokens`
  std::vector<int32_t> tokens;      // all new tokens, total rows
  // sampling per sequence (temperature <= 0: greedy); draws use sample_uniform(seed, position)
  std::vector<float> temperature, top_p;
  std::vector<int32_t> top_k;
  std::vector<uint64_t> seed;
  int32_t logits_mode = 0;          // 0 none, 1 last row per sequence, 2 all rows (prefill)
  bool profiling = false;           // any mode but QW_PROFILING_OFF
  int32_t profiling_mode = QW_PROFILING_OFF;
  StepToggles toggles;             // typed, parsed when set (toggles.hpp)
  // Dual Chunk Attention parameters of the session (toggle "dca", opt/dca/dca_positions.hpp), used at the layers
  // where st.toggles.at(l).dca == Dca::On: 0 <= dca_local < dca_chunk (qw_session_create checks).
  int32_t dca_chunk = 0, dca_local = 0;
  // Budgets of sparse prefill (toggle "sparsePrefill", opt/sparse_prefill/sparse_prefill.hpp), checked by
  // qw_session_create: all >= 0, local >= 1.
  SparseBudget sparse;
  // EAGLE head input (Config::eagle_head): [rows, hidden_size] features, row-aligned with `tokens`; else null.
  const float *features = nullptr;
  // A tree step (qw_session_prefill_tree, opt/speculative/tree.hpp): one sequence whose rows are tree nodes.
  // Row j has RoPE position tree_pos[j] and attends to KV positions [0, tree_base) and tree_base + a for every
  // a in tree_keys[j] (its ancestors and itself, ascending); its K/V are written at pos0 + j as usual.
  // tree_base < 0: an ordinary causal step.
  int32_t tree_base = -1;
  std::vector<int32_t> tree_pos;
  std::vector<std::vector<int32_t>> tree_keys;
};

// Logits a backend keeps where it computed them (the GPU) until they are read: copying rows x vocab floats to the host
// costs more than a whole verify pass of a few rows (7B: 0.6 MB a row), and greedy verification needs only each row's
// argmax. Valid until the session's next step; the front calls it from the API thread.
class LogitsReader {
 public:
  virtual ~LogitsReader() = default;
  // Copies the rows as fp32 [rows, vocab] to host.
  virtual void fetch(float *host) = 0;
  // Each row's argmax (ties: the lower id; NaN never wins; -1 for a row of NaN only), or false where not offered.
  virtual bool argmax(int32_t *ids) = 0;
};

// Where a backend reports what it measured and copies what was asked of it. Implemented by the front.
class Sink {
 public:
  virtual ~Sink() = default;
  // Interns a kernel variant name, returns its id for op records (thread-safe, stable for the library's life).
  virtual int32_t kernel_id(const char *name) = 0;
  virtual void record(const qw_op_record &r) = 0;
  // Whether hook `h` at `layer` (-1 for HOOK_LOGITS) is being captured this step.
  virtual bool wants(Hook h, int32_t layer) const = 0;
  // Copies a host fp32 [rows, cols] tensor as the capture of (h, layer).
  virtual void capture(Hook h, int32_t layer, const float *host, int32_t rows, int32_t cols) = 0;
  // Logits rows (fp32, [rows, vocab]) as selected by Step::logits_mode.
  virtual void logits(const float *host, int32_t rows, int32_t vocab) = 0;
  // The same rows left with the backend: the front reads them through `r` when asked (see LogitsReader).
  virtual void logits_deferred(LogitsReader &r, int32_t rows, int32_t vocab) = 0;
};

// What a session's KV cache holds (qw_session_info_json).
struct KvInfo {
  std::string type;              // the kvCache value
  double bytes_per_token = 0;    // K and V of one token of one sequence, all layers (quantized steady state)
  uint64_t bytes = 0;            // allocated for the whole session (every slot, max_context, scales, rings)
  int32_t residual_tokens = 0;   // kivi: most recent tokens kept in bf16 (at least)
  int32_t max_rollback = -1;     // tokens below its longest length a sequence can always be cut to exactly (-1: any)
};

class BackendSession {
 public:
  virtual ~BackendSession() = default;
  // (Re)allocates what depends on the needsReset toggles (the KV cache for kvCache): called once the session
  // exists and whenever one of them changes; the front then clears every sequence. Throws to refuse (the front
  // keeps the old values). Only values the backend implements reach it.
  virtual void configure(const StepToggles &toggles) = 0;
  virtual KvInfo kv_info() const = 0;
  // What sparse prefill measured (qw_session_info_json); nullptr where the backend does not implement it.
  virtual const SparseStats *sparse_stats() const { return nullptr; }
  // Runs one forward step, writes each sequence's sampled token into out_tokens[i] (size = seq.size()).
  // The front has already validated tokens, lengths and capacities.
  virtual void forward(const Step &step, Sink &sink, int32_t *out_tokens) = 0;
  // qw_session_decode_steps: n_steps decode steps of first's sequences (one row each), step j > 0 fed on the
  // backend with step j - 1's sampled tokens; out_tokens[j * B + i]. Step j is `first` with pos0 + j and
  // step_index + j. The front calls it only with logits_mode 0, no capture and profiling off or kernels. Returns
  // false, having run nothing, where the backend has no faster way than one forward per step: the front loops.
  virtual bool forward_steps(const Step &first, int32_t n_steps, Sink &sink, int32_t *out_tokens) {
    (void)first; (void)n_steps; (void)sink; (void)out_tokens;
    return false;
  }
  // Forget sequence `seq` (the front tracks lengths; a backend may keep nothing per sequence).
  // Invariant qw_session_truncate relies on: KV rows are addressed by position and rows at positions >= the
  // front's length are written before they are read; a backend that keeps per-sequence state must reset it here
  // and give the front a way to truncate it.
  virtual void reset(int32_t seq) = 0;
  // Called before the front switches to profiling `mode` (a qw_profiling_mode); throws Error(QW_ERR_UNSUPPORTED)
  // for a mode this backend cannot run here, leaving the session as it was. Counters mode needs CUPTI's range
  // profiler: only the CUDA session implements it.
  virtual void set_profiling(int32_t mode) {
    if (mode == QW_PROFILING_COUNTERS)
      throw Error(QW_ERR_UNSUPPORTED,
                  "profiling mode 'counters' needs the CUDA backend and CUPTI (hardware counters per op); on this "
                  "backend use 'events' or 'kernels'");
  }
  // Counters mode's readout (qw_session_read_counters): the JSON of the pending ops and their count in *n;
  // counters_take(n) forgets the first n of them once they were delivered.
  virtual std::string counters_json(size_t *n) const {
    *n = 0;
    return CounterLog().json();
  }
  virtual void counters_take(size_t n) { (void)n; }
  // Emits records the backend assembles after the fact (CUDA kernels mode: CUPTI activity buffers). The front
  // calls it before it counts or reads records, never during a step.
  virtual void drain_records(Sink &sink) { (void)sink; }
  // Toggle "tile" (opt/tile/tile.hpp): the backend's candidates, fixed names, device and table size as JSON ("null"
  // where tile tuning is not implemented); the measurement of every GEMV / GEMM shape of the model; the table that
  // tile = auto uses (checked: an unknown key kind or candidate name throws, leaving the old table).
  virtual std::string tile_info_json() const { return "null"; }
  virtual std::string tile_tune_json(const TileTuneRequest &r) {
    (void)r;
    throw Error(QW_ERR_UNSUPPORTED, "tile tuning is not implemented on this backend or model (tile = fixed only)");
  }
  virtual void set_tile_table(const TileTable &t) {
    (void)t;
    throw Error(QW_ERR_UNSUPPORTED, "tile tables are not implemented on this backend or model (tile = fixed only)");
  }
  // Whether forward() honours Step::tree_base / tree_pos / tree_keys (tree verification, speculative = eagle).
  virtual bool supports_tree() const { return false; }
  // Moves the K/V rows of sequence `seq` at positions base + keep[i] to base + i (keep ascending, keep[i] >= i):
  // the accepted path of a verified tree becomes contiguous. Throws Error(QW_ERR_UNSUPPORTED) where not implemented.
  virtual void kv_compact(int32_t seq, int32_t base, const int32_t *keep, int32_t n) {
    (void)seq, (void)base, (void)keep, (void)n;
    throw Error(QW_ERR_UNSUPPORTED, "KV compaction (speculative = eagle) is not implemented on this backend");
  }
};

class BackendModel {
 public:
  virtual ~BackendModel() = default;
  virtual void add_tensor(NativeTensor &&t) = 0;  // called once per tensor, after conversion and checks
  virtual void finalize() = 0;                    // every required tensor is present
  virtual std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context,
                                                      int32_t max_prefill) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char *name() const = 0;  // "cpu" | "cuda"
  virtual std::string info_json() const = 0;
  virtual std::unique_ptr<BackendModel> new_model(const Config &cfg) = 0;
};

// Each library defines exactly one of these (cpu/backend_cpu.cpp, cuda/backend_cuda.cu).
std::unique_ptr<Backend> create_backend(const std::string &options_json);
extern const char *const kBackendName;  // "cpu" | "cuda"

// Shared helpers used by both backends.
// The uniform number in [0, 1) for sampling the token at `position` of a sequence seeded with `seed`.
float sample_uniform(uint64_t seed, int64_t position);

}  // namespace qw
