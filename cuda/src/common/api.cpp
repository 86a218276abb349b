// api.cpp — every entry point of qwen.h: argument checks, session state, buffers, and the exception
// boundary. Backends (cpu/, cuda/) only store tensors and run forward steps (backend.hpp).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "catalog.hpp"
#include "convert.hpp"
#include "cost.hpp"
#include "hooks.hpp"
#include "json.hpp"
#include "registry.hpp"
#include "requant.hpp"
#include "sampling.hpp"
#include "tensors.hpp"

#ifndef QW_COMPILER
#define QW_COMPILER "unknown"
#endif
#ifndef QW_FLAGS
#define QW_FLAGS ""
#endif

using qw::Error;

namespace {

thread_local std::string g_last_error;

// Runs f and converts every exception into a status; nothing escapes into the C caller.
template <class F>
int32_t guard(F &&f) {
  try {
    f();
    return QW_OK;
  } catch (const Error &e) {
    g_last_error = e.what();
    return e.status == QW_OK ? QW_ERR_INTERNAL : e.status;
  } catch (const std::bad_alloc &) {
    g_last_error = "out of memory (host allocation failed)";
    return QW_ERR_OUT_OF_MEMORY;
  } catch (const std::length_error &e) {
    g_last_error = std::string("out of memory (allocation too large: ") + e.what() + ")";
    return QW_ERR_OUT_OF_MEMORY;
  } catch (const std::exception &e) {
    g_last_error = std::string("internal error: ") + e.what();
    return QW_ERR_INTERNAL;
  } catch (...) {
    g_last_error = "internal error: unknown exception";
    return QW_ERR_INTERNAL;
  }
}

[[noreturn]] void fail(int32_t status, const std::string &msg) { throw Error(status, msg); }

void need(const void *p, const char *what) {
  if (!p) fail(QW_ERR_INVALID_ARGUMENT, std::string(what) + " is NULL");
}

// The "copy into caller buffer" protocol of qwen.h.
void copy_out(const std::string &s, char *out, uint64_t cap, uint64_t *out_len) {
  if (cap > 0 && !out) fail(QW_ERR_INVALID_ARGUMENT, "out is NULL but cap > 0");
  if (out_len) *out_len = s.size();
  if (cap == 0) return;
  const uint64_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  std::memcpy(out, s.data(), size_t(n));
  out[n] = '\0';
}

// Kernel variant names, interned for the library's life (ids are stable, pointers never move).
struct KernelNames {
  std::mutex mu;
  std::deque<std::string> names;
  std::unordered_map<std::string, int32_t> ids;
  int32_t id(const char *name) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    names.emplace_back(name);
    const int32_t id = int32_t(names.size() - 1);
    ids.emplace(names.back(), id);
    return id;
  }
  const char *name(int32_t id) {
    std::lock_guard<std::mutex> lock(mu);
    if (id < 0 || size_t(id) >= names.size()) return "";
    return names[size_t(id)].c_str();
  }
};
KernelNames &kernel_names() {
  static KernelNames *k = new KernelNames();  // never destroyed: names stay valid during static teardown
  return *k;
}

constexpr size_t kRecordCap = size_t(4) << 20;  // 4M records (256 MiB) before the oldest are dropped

}  // namespace

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
  bool finalized = false;
  std::mutex mu;  // load_tensor may be called from several loader threads
  std::atomic<int32_t> live_sessions{0};
};

struct qw_session final : qw::Sink {
  qw_model *model = nullptr;
  std::unique_ptr<qw::BackendSession> bs;
  int32_t max_batch = 1, max_context = 0, max_prefill = 0;
  std::vector<int32_t> len;                  // tokens in the KV cache, per sequence
  std::vector<qw::SamplingParams> sampling;  // per sequence
  std::vector<std::vector<std::string>> toggles;  // per toggle_defs() entry: one value per layer (or one)
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

  std::vector<float> logits_buf;
  int32_t logits_rows = 0;

  int32_t layers() const { return model->cfg.num_layers; }
  int32_t slot(qw::Hook h, int32_t layer) const {
    const int64_t i = int64_t(h) * (layers() + 1) + layer + 1;
    return (i >= 0 && size_t(i) < hook_slot.size()) ? hook_slot[size_t(i)] : -1;
  }

  // Sink
  int32_t kernel_id(const char *name) override { return kernel_names().id(name); }
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
  }
};

namespace {

const std::string &backend_name(qw_session *s) {
  static const std::string n = qw::kBackendName;
  (void)s;
  return n;
}

void check_seq(qw_session *s, int32_t seq, bool allow_all) {
  if (allow_all && seq == -1) return;
  if (seq < 0 || seq >= s->max_batch)
    fail(QW_ERR_NOT_FOUND, "sequence id " + std::to_string(seq) + " is out of range [0, " +
                               std::to_string(s->max_batch) + ")" + (allow_all ? " (or -1 for all)" : ""));
}

void check_tokens(qw_session *s, const int32_t *tokens, int32_t n) {
  const int32_t V = s->model->cfg.vocab_size;
  for (int32_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      fail(QW_ERR_INVALID_ARGUMENT, "token " + std::to_string(i) + " = " + std::to_string(tokens[i]) +
                                        " is outside [0, vocab_size = " + std::to_string(V) + ")");
}

void reset_seq(qw_session *s, int32_t seq) {
  s->bs->reset(seq);
  s->len[size_t(seq)] = 0;
}

qw::StepToggles step_toggles(qw_session *s) {
  qw::StepToggles t;
  const auto &defs = qw::toggle_defs();
  t.layer.resize(size_t(s->layers()));
  for (size_t i = 0; i < defs.size(); ++i) {
    const std::string id = defs[i].id;
    const auto &v = s->toggles[i];
    if (id == "gqa") {
      for (int32_t l = 0; l < s->layers(); ++l) t.layer[size_t(l)].gqa_broadcast = v[v.size() == 1 ? 0 : size_t(l)] == "broadcast";
    } else if (id == "actQuant") {
      for (int32_t l = 0; l < s->layers(); ++l) t.layer[size_t(l)].act_int8 = v[v.size() == 1 ? 0 : size_t(l)] == "int8";
    } else if (id == "graphs") {
      t.graphs = v[0] == "on";
    }
  }
  return t;
}

// Runs a step and updates the session state only when the backend succeeded.
void run_step(qw_session *s, qw::Step &st, int32_t *out_tokens) {
  st.step_index = s->step_counter;
  st.logits_mode = s->logits_mode;
  st.profiling_mode = s->profiling;
  st.profiling = s->profiling != QW_PROFILING_OFF;
  st.toggles = step_toggles(s);
  st.row_offset.resize(st.seq.size());
  st.temperature.resize(st.seq.size());
  st.top_p.resize(st.seq.size());
  st.top_k.resize(st.seq.size());
  st.seed.resize(st.seq.size());
  int32_t row = 0;
  for (size_t i = 0; i < st.seq.size(); ++i) {
    st.row_offset[i] = row;
    row += st.n_new[i];
    const qw::SamplingParams &p = s->sampling[size_t(st.seq[i])];
    st.temperature[i] = p.temperature;
    st.top_p[i] = p.top_p;
    st.top_k[i] = p.top_k;
    st.seed[i] = p.seed;
  }
  for (auto &c : s->captures) c.filled = false;
  s->logits_rows = 0;
  s->logits_buf.clear();
  s->filled.clear();
  std::vector<int32_t> out(st.seq.size(), 0);
  s->bs->forward(st, *s, out.data());
  ++s->step_counter;
  for (size_t i = 0; i < st.seq.size(); ++i) {
    s->len[size_t(st.seq[i])] += st.n_new[i];
    out_tokens[i] = out[i];
  }
  for (size_t i = 0; i < s->captures.size(); ++i)
    if (s->captures[i].filled) s->filled.push_back(int32_t(i));
}

}  // namespace

extern "C" {

QW_API int32_t qw_abi_version(void) { return QW_ABI_VERSION; }

QW_API const char *qw_last_error(void) { return g_last_error.c_str(); }

QW_API const char *qw_build_info(void) {
  static const std::string info = [] {
    qw::JsonWriter w;
    w.begin_object();
    w.key("backend").value(qw::kBackendName);
    w.key("abi").value(int32_t(QW_ABI_VERSION));
    w.key("compiler").value(QW_COMPILER);
    w.key("flags").value(QW_FLAGS);
    w.key("built").value(__DATE__ " " __TIME__);
    w.end_object();
    return w.str();
  }();
  return info.c_str();
}

QW_API int32_t qw_toggle_registry_json(char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] { copy_out(qw::toggle_registry_json(), out, cap, out_len); });
}

QW_API int32_t qw_catalog_json(char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] { copy_out(qw::catalog_json(), out, cap, out_len); });
}

QW_API const char *qw_op_name(int32_t op) { return qw::op_name(op); }

QW_API int64_t qw_clock_ns(void) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

QW_API const char *qw_profiling_mode_name(int32_t mode) { return qw::profiling_mode_name(mode); }

QW_API const char *qw_kernel_name(int32_t kernel) { return kernel_names().name(kernel); }

/* ------------------------------------------------------------------------------------------------ */
/* Engine                                                                                           */

QW_API int32_t qw_engine_create(const char *options_json, qw_engine **out_engine) {
  return guard([&] {
    need(out_engine, "out_engine");
    *out_engine = nullptr;
    qw::Json o = qw::parse_json_object(options_json, "engine options");
    qw::json_only_keys(o, {"threads", "device"}, "engine options");
    int64_t v;
    qw::json_int(o, "threads", 0, 1024, "engine options", &v);
    qw::json_int(o, "device", 0, 1024, "engine options", &v);
    auto e = std::make_unique<qw_engine>();
    e->backend = qw::create_backend(options_json ? options_json : "{}");
    if (!e->backend) fail(QW_ERR_INTERNAL, "backend creation returned nothing");
    *out_engine = e.release();
  });
}

QW_API int32_t qw_engine_destroy(qw_engine *engine) {
  return guard([&] {
    need(engine, "engine");
    if (engine->live_models.load() > 0)
      fail(QW_ERR_STATE, "engine has " + std::to_string(engine->live_models.load()) +
                             " live model(s): destroy them first");
    delete engine;
  });
}

QW_API int32_t qw_engine_info_json(qw_engine *engine, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(engine, "engine");
    copy_out(engine->backend->info_json(), out, cap, out_len);
  });
}

/* ------------------------------------------------------------------------------------------------ */
/* Model                                                                                            */

QW_API int32_t qw_model_create(qw_engine *engine, const char *config_json, qw_model **out_model) {
  return guard([&] {
    need(engine, "engine");
    need(out_model, "out_model");
    *out_model = nullptr;
    need(config_json, "config_json");
    auto m = std::make_unique<qw_model>();
    m->engine = engine;
    m->cfg = qw::parse_config(config_json);
    m->specs = qw::tensor_specs(m->cfg);
    m->wplan = qw::parse_weight_plan(config_json, m->cfg.num_layers);
    m->loaded.assign(m->specs.size(), false);
    m->bm = engine->backend->new_model(m->cfg);
    if (!m->bm) fail(QW_ERR_INTERNAL, "backend returned no model");
    engine->live_models++;
    *out_model = m.release();
  });
}

QW_API int32_t qw_model_load_tensor(qw_model *model, const char *name, int32_t ggml_type, int32_t n_dims,
                                    int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, const void *data,
                                    uint64_t nbytes) {
  return guard([&] {
    need(model, "model");
    need(name, "name");
    std::lock_guard<std::mutex> lock(model->mu);
    if (model->finalized) fail(QW_ERR_STATE, std::string(name) + ": the model is finalized; no more tensors");
    const qw::TensorSpec &spec = qw::find_spec(model->specs, model->cfg, name);
    const size_t idx = size_t(&spec - model->specs.data());
    if (model->loaded[idx]) fail(QW_ERR_INVALID_ARGUMENT, spec.name + ": already loaded (duplicate tensor)");
    const int64_t ne[4] = {ne0, ne1, ne2, ne3};
    qw::check_shape(spec, n_dims, ne);
    if (!qw::ggml_type_info(ggml_type))
      fail(QW_ERR_SHAPE, spec.name + ": unsupported ggml type " + std::to_string(ggml_type) +
                             " (accepted: f32 0, f16 1, q4_0 2, q5_0 6, q8_0 8, q4_k 12, q5_k 13, q6_k 14, bf16 30)");
    const uint64_t want = qw::ggml_nbytes(spec.name, ggml_type, spec.ne1, spec.ne0);
    if (nbytes != want)
      fail(QW_ERR_SHAPE, spec.name + ": " + std::to_string(nbytes) + " bytes given, " + qw::ggml_type_name(ggml_type) +
                             " [" + std::to_string(spec.ne0) + ", " + std::to_string(spec.ne1) + "] needs " +
                             std::to_string(want));
    need(data, "data");
    qw::NativeTensor t = qw::convert_tensor(spec.name, ggml_type, spec.ne1, spec.ne0, data, spec.vector);
    qw::apply_weight_plan(model->wplan, spec.name, t);
    qw_model::Info info{spec.name, ggml_type, qw::native_type_name(t.type), spec.ne0, spec.ne1,
                        spec.vector ? 1 : 2, t.native_bytes()};
    model->bm->add_tensor(std::move(t));
    model->loaded[idx] = true;
    model->weight_bytes += info.bytes;
    model->infos.push_back(std::move(info));
  });
}

QW_API int32_t qw_model_finalize(qw_model *model) {
  return guard([&] {
    need(model, "model");
    std::lock_guard<std::mutex> lock(model->mu);
    if (model->finalized) fail(QW_ERR_STATE, "the model is already finalized");
    std::string missing;
    int n_missing = 0;
    for (size_t i = 0; i < model->specs.size(); ++i)
      if (!model->loaded[i]) {
        if (n_missing < 8) missing += (n_missing ? ", " : "") + model->specs[i].name;
        ++n_missing;
      }
    if (n_missing)
      fail(QW_ERR_NOT_FOUND, std::to_string(n_missing) + " required tensor(s) missing: " + missing +
                                 (n_missing > 8 ? ", ..." : ""));
    model->bm->finalize();
    model->finalized = true;
  });
}

QW_API int32_t qw_model_info_json(qw_model *model, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(model, "model");
    std::lock_guard<std::mutex> lock(model->mu);
    qw::JsonWriter w;
    w.begin_object();
    w.key("weight_bytes").value(model->weight_bytes);
    w.key("finalized").value(model->finalized);
    w.key("weights").begin_array();
    for (const auto &v : model->wplan.toggle_values()) w.value(v);
    w.end_array();
    w.key("tensors").begin_array();
    for (const auto &t : model->infos) {
      w.begin_object();
      w.key("name").value(t.name);
      w.key("ggml_type").value(qw::ggml_type_name(t.ggml_type));
      w.key("native").value(t.native);
      w.key("ne").begin_array();
      w.value(t.ne0);
      if (t.n_dims == 2) w.value(t.ne1);
      w.end_array();
      w.key("bytes").value(t.bytes);
      w.end_object();
    }
    w.end_array();
    w.key("config").raw(qw::config_json(model->cfg));
    w.end_object();
    copy_out(w.str(), out, cap, out_len);
  });
}

QW_API int32_t qw_model_destroy(qw_model *model) {
  return guard([&] {
    need(model, "model");
    if (model->live_sessions.load() > 0)
      fail(QW_ERR_STATE, "model has " + std::to_string(model->live_sessions.load()) +
                             " live session(s): destroy them first");
    model->engine->live_models--;
    delete model;
  });
}

/* ------------------------------------------------------------------------------------------------ */
/* Session                                                                                          */

QW_API int32_t qw_session_create(qw_model *model, const char *options_json, qw_session **out_session) {
  return guard([&] {
    need(model, "model");
    need(out_session, "out_session");
    *out_session = nullptr;
    if (!model->finalized) fail(QW_ERR_STATE, "the model is not finalized: call qw_model_finalize first");
    const char *what = "session options";
    qw::Json o = qw::parse_json_object(options_json, what);
    qw::json_only_keys(o, {"max_batch", "max_context", "max_prefill"}, what);
    auto s = std::make_unique<qw_session>();
    s->model = model;
    int64_t v;
    s->max_batch = qw::json_int(o, "max_batch", 1, 4096, what, &v) ? int32_t(v) : 1;
    const int32_t def_ctx = model->cfg.max_position < 4096 ? model->cfg.max_position : 4096;
    // 1M tokens: the longest context Qwen2.5 supports (Qwen2.5-1M); per-session tables scale with it.
    s->max_context = qw::json_int(o, "max_context", 1, int64_t(1) << 20, what, &v) ? int32_t(v) : def_ctx;
    s->max_prefill = qw::json_int(o, "max_prefill", 1, s->max_context, what, &v) ? int32_t(v) : s->max_context;
    s->len.assign(size_t(s->max_batch), 0);
    s->sampling.assign(size_t(s->max_batch), qw::SamplingParams{});
    for (const auto &d : qw::toggle_defs())
      s->toggles.push_back(std::string(d.id) == "weights" ? model->wplan.toggle_values()
                                                          : std::vector<std::string>{qw::initial_value(d, qw::kBackendName)});
    s->hook_slot.assign(size_t(qw::HOOK_COUNT) * size_t(model->cfg.num_layers + 1), -1);
    s->bs = model->bm->new_session(s->max_batch, s->max_context, s->max_prefill);
    if (!s->bs) fail(QW_ERR_INTERNAL, "backend returned no session");
    const qw::ToggleDef *kv = qw::find_toggle("kvCache");
    s->bs->configure_kv(qw::initial_value(*kv, qw::kBackendName));
    model->live_sessions++;
    *out_session = s.release();
  });
}

QW_API int32_t qw_session_destroy(qw_session *session) {
  return guard([&] {
    need(session, "session");
    session->model->live_sessions--;
    delete session;
  });
}

QW_API int32_t qw_session_set_toggle(qw_session *s, const char *id, const char *value, int32_t layer) {
  return guard([&] {
    need(s, "session");
    need(id, "id");
    need(value, "value");
    // Ids and values are printable: a control character (the TS side also refuses NUL, which C cannot see)
    // is named by position, never echoed raw into the error message.
    for (const char *str : {id, value}) {
      for (size_t i = 0; str[i]; ++i) {
        const unsigned char ch = static_cast<unsigned char>(str[i]);
        if (ch < 0x20 || ch == 0x7f)
          fail(QW_ERR_INVALID_ARGUMENT, std::string("toggle ") + (str == id ? "id" : "value") +
                                            " contains a control character (byte " + std::to_string(ch) +
                                            " at position " + std::to_string(i) + ")");
      }
    }
    const qw::ToggleDef *d = qw::find_toggle(id);
    if (!d) fail(QW_ERR_NOT_FOUND, std::string("unknown toggle \"") + id + "\"");
    bool known = false;
    for (const auto &v : d->values) known = known || v == value;
    if (!known) {
      std::string list;
      for (const auto &v : d->values) list += (list.empty() ? "" : ", ") + v;
      fail(QW_ERR_INVALID_ARGUMENT, std::string("toggle ") + id + ": \"" + value + "\" is not a value (values: " + list + ")");
    }
    bool impl = false;
    for (const auto &v : qw::implemented(*d, backend_name(s))) impl = impl || v == value;
    if (!impl) {
      // "not implemented yet" (no backend has the value) differs from "not on this backend" (the other one has it)
      bool elsewhere = false;
      for (const char *b : {"cpu", "cuda"})
        for (const auto &v : qw::implemented(*d, b)) elsewhere = elsewhere || v == value;
      fail(QW_ERR_UNSUPPORTED, std::string("toggle ") + id + " = " + value +
                                   (elsewhere ? std::string(" is not on the ") + qw::kBackendName +
                                                    " backend (another backend implements it)"
                                              : std::string(" is not implemented yet (specified, no backend has it)")));
    }
    if (layer != -1) {
      if (!d->per_layer) fail(QW_ERR_INVALID_ARGUMENT, std::string("toggle ") + id + " is not per-layer: use layer = -1");
      if (layer < 0 || layer >= s->layers())
        fail(QW_ERR_INVALID_ARGUMENT, "layer " + std::to_string(layer) + " is out of range [0, " +
                                          std::to_string(s->layers()) + ") (or -1 for all)");
    }
    const size_t ti = size_t(d - qw::toggle_defs().data());
    std::vector<std::string> next = s->toggles[ti];
    if (layer == -1) {
      next.assign(1, value);
    } else {
      if (next.size() == 1) next.assign(size_t(s->layers()), next[0]);
      next[size_t(layer)] = value;
      bool same = true;
      for (const auto &v : next) same = same && v == next[0];
      if (same) next.resize(1);
    }
    const bool changed = next != s->toggles[ti];
    if (changed && std::string(id) == "weights")  // a model option: sessions share the loaded weights
      fail(QW_ERR_STATE, std::string("toggle weights is chosen when the model loads (this model: ") +
                             s->toggles[ti][0] + (s->toggles[ti].size() > 1 ? ", per layer" : "") +
                             "): reopen the model with the option weights = " + value +
                             " (model config key \"weights\", per layer \"weights_layers\"; engine: openModel(source, "
                             "{weights}); CLI: --weights)");
    if (changed && d->needs_reset) {
      if (std::string(id) == "kvCache") s->bs->configure_kv(value);  // may throw: the old value stays
      for (int32_t q = 0; q < s->max_batch; ++q) reset_seq(s, q);
    }
    s->toggles[ti] = std::move(next);
  });
}

QW_API int32_t qw_session_toggles_json(qw_session *s, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(s, "session");
    qw::JsonWriter w;
    w.begin_object();
    const auto &defs = qw::toggle_defs();
    for (size_t i = 0; i < defs.size(); ++i) {
      w.key(defs[i].id);
      const auto &v = s->toggles[i];
      if (v.size() == 1) {
        w.value(v[0]);
      } else {
        w.begin_array();
        for (const auto &x : v) w.value(x);
        w.end_array();
      }
    }
    w.end_object();
    copy_out(w.str(), out, cap, out_len);
  });
}

QW_API int32_t qw_session_reset(qw_session *s, int32_t seq) {
  return guard([&] {
    need(s, "session");
    check_seq(s, seq, true);
    if (seq == -1) {
      for (int32_t q = 0; q < s->max_batch; ++q) reset_seq(s, q);
    } else {
      reset_seq(s, seq);
    }
  });
}

QW_API int32_t qw_session_seq_len(qw_session *s, int32_t seq, int32_t *out_len) {
  return guard([&] {
    need(s, "session");
    need(out_len, "out_len");
    check_seq(s, seq, false);
    *out_len = s->len[size_t(seq)];
  });
}

QW_API int32_t qw_session_set_sampling(qw_session *s, int32_t seq, float temperature, int32_t top_k, float top_p,
                                       uint64_t seed) {
  return guard([&] {
    need(s, "session");
    check_seq(s, seq, true);
    if (!std::isfinite(temperature) || temperature > 100.0f)
      fail(QW_ERR_INVALID_ARGUMENT, "temperature must be finite and <= 100 (<= 0 means greedy)");
    if (!std::isfinite(top_p) || !(top_p > 0.0f) || top_p > 1.0f)
      fail(QW_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1] (1 = off)");
    const qw::SamplingParams p{temperature, top_k, top_p, seed};
    if (seq == -1) {
      for (auto &x : s->sampling) x = p;
    } else {
      s->sampling[size_t(seq)] = p;
    }
  });
}

QW_API int32_t qw_session_prefill(qw_session *s, int32_t seq, const int32_t *tokens, int32_t n_tokens,
                                  int32_t *out_token) {
  return guard([&] {
    need(s, "session");
    check_seq(s, seq, false);
    need(out_token, "out_token");
    if (n_tokens < 1) fail(QW_ERR_INVALID_ARGUMENT, "n_tokens must be >= 1");
    need(tokens, "tokens");
    if (n_tokens > s->max_prefill)
      fail(QW_ERR_INVALID_ARGUMENT, "n_tokens = " + std::to_string(n_tokens) + " exceeds max_prefill = " +
                                        std::to_string(s->max_prefill) + " (prefill in chunks)");
    check_tokens(s, tokens, n_tokens);
    const int64_t after = int64_t(s->len[size_t(seq)]) + n_tokens;
    if (after > s->max_context)
      fail(QW_ERR_CONTEXT_OVERFLOW, "sequence " + std::to_string(seq) + " holds " + std::to_string(s->len[size_t(seq)]) +
                                        " tokens; " + std::to_string(n_tokens) + " more exceed max_context = " +
                                        std::to_string(s->max_context));
    qw::Step st;
    st.phase = QW_PHASE_PREFILL;
    st.seq = {seq};
    st.n_new = {n_tokens};
    st.pos0 = {s->len[size_t(seq)]};
    st.tokens.assign(tokens, tokens + n_tokens);
    run_step(s, st, out_token);
  });
}

QW_API int32_t qw_session_decode(qw_session *s, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                                 int32_t *out_tokens) {
  return guard([&] {
    need(s, "session");
    if (n < 1 || n > s->max_batch)
      fail(QW_ERR_INVALID_ARGUMENT, "n = " + std::to_string(n) + " must be in [1, max_batch = " +
                                        std::to_string(s->max_batch) + "]");
    need(seq_ids, "seq_ids");
    need(tokens, "tokens");
    need(out_tokens, "out_tokens");
    std::vector<bool> seen(size_t(s->max_batch), false);
    for (int32_t i = 0; i < n; ++i) {
      check_seq(s, seq_ids[i], false);
      if (seen[size_t(seq_ids[i])]) fail(QW_ERR_INVALID_ARGUMENT, "sequence id " + std::to_string(seq_ids[i]) + " appears twice");
      seen[size_t(seq_ids[i])] = true;
    }
    check_tokens(s, tokens, n);
    for (int32_t i = 0; i < n; ++i)
      if (s->len[size_t(seq_ids[i])] + 1 > s->max_context)
        fail(QW_ERR_CONTEXT_OVERFLOW, "sequence " + std::to_string(seq_ids[i]) + " is full (max_context = " +
                                          std::to_string(s->max_context) + ")");
    qw::Step st;
    st.phase = QW_PHASE_DECODE;
    st.seq.assign(seq_ids, seq_ids + n);
    st.n_new.assign(size_t(n), 1);
    for (int32_t i = 0; i < n; ++i) st.pos0.push_back(s->len[size_t(seq_ids[i])]);
    st.tokens.assign(tokens, tokens + n);
    run_step(s, st, out_tokens);
  });
}

QW_API int32_t qw_session_set_logits_mode(qw_session *s, int32_t mode) {
  return guard([&] {
    need(s, "session");
    if (mode < 0 || mode > 2) fail(QW_ERR_INVALID_ARGUMENT, "logits mode must be 0, 1 or 2");
    s->logits_mode = mode;
  });
}

QW_API int32_t qw_session_logits_shape(qw_session *s, int32_t *out_rows, int32_t *out_vocab) {
  return guard([&] {
    need(s, "session");
    need(out_rows, "out_rows");
    need(out_vocab, "out_vocab");
    *out_rows = s->logits_rows;
    *out_vocab = s->model->cfg.vocab_size;
  });
}

QW_API int32_t qw_session_read_logits(qw_session *s, float *out, int64_t n_floats) {
  return guard([&] {
    need(s, "session");
    const int64_t want = int64_t(s->logits_rows) * s->model->cfg.vocab_size;
    if (want == 0) return;
    need(out, "out");
    if (n_floats < want)
      fail(QW_ERR_INVALID_ARGUMENT, "logits buffer holds " + std::to_string(n_floats) + " floats; " +
                                        std::to_string(want) + " needed (rows x vocab)");
    std::memcpy(out, s->logits_buf.data(), size_t(want) * sizeof(float));
  });
}

QW_API int32_t qw_session_set_profiling(qw_session *s, int32_t mode) {
  return guard([&] {
    need(s, "session");
    if (mode < 0 || mode >= QW_PROFILING_COUNT)
      fail(QW_ERR_INVALID_ARGUMENT, "profiling mode " + std::to_string(mode) +
                                        " is unknown: 0 = off, 1 = events, 2 = kernels (qw_profiling_mode)");
    if (mode == s->profiling) return;
    s->bs->set_profiling(mode);
    s->profiling = mode;
  });
}

QW_API int32_t qw_session_records_pending(qw_session *s, int64_t *out_n, int64_t *out_dropped) {
  return guard([&] {
    need(s, "session");
    s->bs->drain_records(*s);
    std::lock_guard<std::mutex> lock(s->rec_mu);
    if (out_n) *out_n = int64_t(s->records.size());
    if (out_dropped) *out_dropped = s->dropped;
  });
}

QW_API int32_t qw_session_read_records(qw_session *s, qw_op_record *out, int64_t max, int64_t *out_n) {
  return guard([&] {
    need(s, "session");
    need(out_n, "out_n");
    *out_n = 0;
    if (max < 0) fail(QW_ERR_INVALID_ARGUMENT, "max must be >= 0");
    if (max > 0) need(out, "out");
    s->bs->drain_records(*s);
    std::lock_guard<std::mutex> lock(s->rec_mu);
    const int64_t n = std::min<int64_t>(max, int64_t(s->records.size()));
    for (int64_t i = 0; i < n; ++i) out[i] = s->records[size_t(i)];
    s->records.erase(s->records.begin(), s->records.begin() + ptrdiff_t(n));
    *out_n = n;
  });
}

QW_API int32_t qw_session_set_capture(qw_session *s, const char *hooks) {
  return guard([&] {
    need(s, "session");
    std::vector<qw::HookRef> refs = qw::parse_hooks(hooks ? hooks : "", s->layers());
    const int32_t L = s->layers();
    std::vector<int32_t> slots(size_t(qw::HOOK_COUNT) * size_t(L + 1), -1);
    std::vector<qw_session::Capture> caps(refs.size());
    for (size_t i = 0; i < refs.size(); ++i) {
      slots[size_t(int64_t(refs[i].hook) * (L + 1) + refs[i].layer + 1)] = int32_t(i);
      caps[i].name = qw::hook_name(refs[i].hook, refs[i].layer);
    }
    s->hooks = std::move(refs);
    s->hook_slot = std::move(slots);
    s->captures = std::move(caps);
    s->filled.clear();
  });
}

QW_API int32_t qw_session_capture_count(qw_session *s, int32_t *out_n) {
  return guard([&] {
    need(s, "session");
    need(out_n, "out_n");
    *out_n = int32_t(s->filled.size());
  });
}

QW_API int32_t qw_session_capture_info(qw_session *s, int32_t index, char *name_out, uint64_t name_cap,
                                       int32_t *out_rows, int32_t *out_cols) {
  return guard([&] {
    need(s, "session");
    if (index < 0 || size_t(index) >= s->filled.size())
      fail(QW_ERR_NOT_FOUND, "capture index " + std::to_string(index) + " is out of range [0, " +
                                 std::to_string(s->filled.size()) + ")");
    const auto &c = s->captures[size_t(s->filled[size_t(index)])];
    copy_out(c.name, name_out, name_cap, nullptr);
    if (out_rows) *out_rows = c.rows;
    if (out_cols) *out_cols = c.cols;
  });
}

QW_API int32_t qw_session_read_capture(qw_session *s, int32_t index, float *out, int64_t n_floats) {
  return guard([&] {
    need(s, "session");
    if (index < 0 || size_t(index) >= s->filled.size())
      fail(QW_ERR_NOT_FOUND, "capture index " + std::to_string(index) + " is out of range [0, " +
                                 std::to_string(s->filled.size()) + ")");
    const auto &c = s->captures[size_t(s->filled[size_t(index)])];
    const int64_t want = int64_t(c.rows) * c.cols;
    if (want == 0) return;
    need(out, "out");
    if (n_floats < want)
      fail(QW_ERR_INVALID_ARGUMENT, "capture buffer holds " + std::to_string(n_floats) + " floats; " +
                                        std::to_string(want) + " needed");
    std::memcpy(out, c.data.data(), size_t(want) * sizeof(float));
  });
}

}  // extern "C"
