// api.hpp — what the files of the C ABI front share (docs/ARCHITECTURE.md §The C ABI contract): the exception
// boundary, argument checks, the caller-buffer protocol, and the state behind the opaque handles of qwen.h.
// The entry points are split by concern: api_library.cpp (library-wide names and JSON), api_model.cpp (engine and
// model), api_session.cpp (sessions, steps, logits), api_toggles.cpp, api_records.cpp (profiling and captures).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "backend.hpp"
#include "hooks.hpp"
#include "parallel.hpp"
#include "requant.hpp"
#include "sampling.hpp"
#include "tensors.hpp"

namespace qw {

void set_last_error(const std::string &msg);  // the thread-local message of qw_last_error

// Runs f and converts every exception into a status; nothing escapes into the C caller.
template <class F>
int32_t guard(F &&f) {
  try {
    f();
    return QW_OK;
  } catch (const Error &e) {
    set_last_error(e.what());
    return e.status == QW_OK ? QW_ERR_INTERNAL : e.status;
  } catch (const std::bad_alloc &) {
    set_last_error("out of memory (host allocation failed)");
    return QW_ERR_OUT_OF_MEMORY;
  } catch (const std::length_error &e) {
    set_last_error(std::string("out of memory (allocation too large: ") + e.what() + ")");
    return QW_ERR_OUT_OF_MEMORY;
  } catch (const std::exception &e) {
    set_last_error(std::string("internal error: ") + e.what());
    return QW_ERR_INTERNAL;
  } catch (...) {
    set_last_error("internal error: unknown exception");
    return QW_ERR_INTERNAL;
  }
}

[[noreturn]] void fail(int32_t status, const std::string &msg);
void need(const void *p, const char *what);  // fails with QW_ERR_INVALID_ARGUMENT when p is NULL
// The "copy into caller buffer" protocol of qwen.h.
void copy_out(const std::string &s, char *out, uint64_t cap, uint64_t *out_len);
// Kernel variant names, interned for the library's life (ids stable, pointers never move; thread-safe).
int32_t kernel_name_id(const char *name);
const char *kernel_name_of(int32_t id);  // "" for an unknown id

}  // namespace qw

struct qw_engine {
  std::unique_ptr<qw::Backend> backend;
  std::atomic<int32_t> live_models{0};
};

struct qw_model {
  qw_engine *engine = nullptr;
  qw::Config cfg;
  std::vector<qw::TensorSpec> specs;
  std::vector<bool> loaded;
  struct Info {
    std::string name;
    int32_t ggml_type;
    std::string native;
    int64_t ne0, ne1;
    int32_t n_dims;
    uint64_t bytes;
  };
  std::vector<Info> infos;
  uint64_t weight_bytes = 0;
  std::unique_ptr<qw::BackendModel> bm;
  qw::WeightPlan wplan;  // the `weights` model option (opt/weights/requant.hpp)
  qw::Parallel parallel{};  // the `parallel` model option (opt/parallel/tp_plan.hpp); cfg.tp = its rank count
  bool finalized = false;
  std::mutex mu;  // load_tensor may be called from several loader threads
  std::atomic<int32_t> live_sessions{0};
};

struct qw_session final : qw::Sink {
  static constexpr size_t kRecordCap = size_t(4) << 20;  // 4M records (256 MiB) before the oldest are dropped

  qw_model *model = nullptr;
  std::unique_ptr<qw::BackendSession> bs;
  int32_t max_batch = 1, max_context = 0, max_prefill = 0;
  int32_t dca_chunk = 0, dca_local = 0;      // Dual Chunk Attention parameters (toggle "dca"), fixed per session
  qw::SparseBudget sparse;                   // sparse prefill budgets (toggle "sparsePrefill"), fixed per session
  std::vector<int32_t> len;                  // tokens in the KV cache, per sequence
  std::vector<int32_t> peak;                 // the longest len since its last reset (truncate's limit, kvcache.hpp)
  std::vector<qw::SamplingParams> sampling;  // per sequence
  qw::StepToggles toggles;                   // typed values, parsed once when set (api_toggles.cpp)
  int32_t logits_mode = 0;
  int32_t profiling = QW_PROFILING_OFF;  // qw_profiling_mode
  int64_t step_counter = 0;

  std::mutex rec_mu;
  std::deque<qw_op_record> records;
  int64_t dropped = 0;

  struct Capture {
    std::string name;
    int32_t rows = 0, cols = 0;
    std::vector<float> data;
    bool filled = false;
  };
  std::vector<qw::HookRef> hooks;
  std::vector<int32_t> hook_slot;  // [(hook) * (L + 1) + layer + 1] -> index in captures, or -1
  std::vector<Capture> captures;
  std::vector<int32_t> filled;     // indices of captures filled by the last step, in request order

  // The last step's logits rows: in logits_buf, or still with the backend (deferred, read on first use; api_session.cpp).
  std::vector<float> logits_buf;
  int32_t logits_rows = 0;
  qw::LogitsReader *deferred = nullptr;
  // The host rows (fetched from the backend the first time they are asked for after a step).
  const float *host_logits();
  // Each row's argmax into ids[logits_rows] without copying the rows where the backend offers it; false otherwise.
  bool device_argmax(int32_t *ids);

  int32_t layers() const { return model->cfg.num_layers; }
  int32_t slot(qw::Hook h, int32_t layer) const {
    const int64_t i = int64_t(h) * (layers() + 1) + layer + 1;
    return (i >= 0 && size_t(i) < hook_slot.size()) ? hook_slot[size_t(i)] : -1;
  }

  // Sink
  int32_t kernel_id(const char *name) override { return qw::kernel_name_id(name); }
  void record(const qw_op_record &r) override {
    std::lock_guard<std::mutex> lock(rec_mu);
    if (records.size() >= kRecordCap) {
      records.pop_front();
      ++dropped;
    }
    records.push_back(r);
  }
  bool wants(qw::Hook h, int32_t layer) const override { return slot(h, layer) >= 0; }
  void capture(qw::Hook h, int32_t layer, const float *host, int32_t rows, int32_t cols) override {
    const int32_t s = slot(h, layer);
    if (s < 0) return;
    Capture &c = captures[size_t(s)];
    c.rows = rows;
    c.cols = cols;
    c.data.assign(host, host + size_t(rows) * size_t(cols));
    c.filled = true;
  }
  void logits(const float *host, int32_t rows, int32_t vocab) override {
    logits_buf.assign(host, host + size_t(rows) * size_t(vocab));
    logits_rows = rows;
    deferred = nullptr;
  }
  void logits_deferred(qw::LogitsReader &r, int32_t rows, int32_t) override {
    logits_buf.clear();
    logits_rows = rows;
    deferred = &r;
  }
};

namespace qw {

// The most steps one qw_session_decode_steps call runs (the backend queues them all before it synchronizes).
constexpr int32_t kMaxDecodeSteps = 4096;

// Clears one sequence (backend and length).
void reset_seq(qw_session *s, int32_t seq);
// Argument checks and the one step runner of the session entry points (api_session.cpp, api_speculative.cpp).
void check_seq(qw_session *s, int32_t seq, bool allow_all);
void check_tokens(qw_session *s, const int32_t *tokens, int32_t n);
// Runs a step and updates the session state only when the backend succeeded.
void run_step(qw_session *s, Step &st, int32_t *out_tokens);
// An EAGLE head's rows need features: its steps go through qw_session_prefill_tree (api_speculative.cpp).
void refuse_eagle_head(qw_session *s, const char *call);

}  // namespace qw
