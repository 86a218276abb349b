// api_session.cpp — session entry points of qwen.h: options, sequences, sampling parameters, prefill and decode
// steps (argument checks, then one backend forward), and the logits readout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "api.hpp"
#include "attention.hpp"
#include "json.hpp"
#include "kvcache.hpp"
#include "registry.hpp"
#include "weights.hpp"

namespace qw {

void check_seq(qw_session *s, int32_t seq, bool allow_all) {
  if (allow_all && seq == -1) return;
  if (seq < 0 || seq >= s->max_batch)
    fail(QW_ERR_NOT_FOUND, "sequence id " + std::to_string(seq) + " is out of range [0, " +
                               std::to_string(s->max_batch) + ")" + (allow_all ? " (or -1 for all)" : ""));
}

void reset_seq(qw_session *s, int32_t seq) {
  s->bs->reset(seq);
  s->len[size_t(seq)] = 0;
  s->peak[size_t(seq)] = 0;
}

void check_tokens(qw_session *s, const int32_t *tokens, int32_t n) {
  const int32_t V = s->model->cfg.vocab_size;
  for (int32_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      fail(QW_ERR_INVALID_ARGUMENT, "token " + std::to_string(i) + " = " + std::to_string(tokens[i]) +
                                        " is outside [0, vocab_size = " + std::to_string(V) + ")");
}

}  // namespace qw

const float *qw_session::host_logits() {
  if (deferred) {
    logits_buf.resize(size_t(logits_rows) * size_t(model->cfg.vocab_size));
    deferred->fetch(logits_buf.data());
    deferred = nullptr;
  }
  return logits_buf.data();
}

bool qw_session::device_argmax(int32_t *ids) { return deferred && logits_rows > 0 && deferred->argmax(ids); }

namespace qw {

// The session's part of a step (index, logits mode, profiling, toggles, DCA / sparse parameters, row offsets, sampling)
// and the last step's outputs cleared.
static void prepare_step(qw_session *s, Step &st) {
  st.step_index = s->step_counter;
  st.logits_mode = s->logits_mode;
  st.profiling_mode = s->profiling;
  st.profiling = s->profiling != QW_PROFILING_OFF;
  st.toggles = s->toggles;  // typed when set: no parsing per step
  qw::attention_check_step(st.toggles);  // a Sage arm that something else would replace is an error, not a swap
  st.dca_chunk = s->dca_chunk;
  st.dca_local = s->dca_local;
  st.sparse = s->sparse;
  st.row_offset.resize(st.seq.size());
  st.temperature.resize(st.seq.size());
  st.top_p.resize(st.seq.size());
  st.top_k.resize(st.seq.size());
  st.seed.resize(st.seq.size());
  int32_t row = 0;
  for (size_t i = 0; i < st.seq.size(); ++i) {
    st.row_offset[i] = row;
    row += st.n_new[i];
    const SamplingParams &p = s->sampling[size_t(st.seq[i])];
    st.temperature[i] = p.temperature;
    st.top_p[i] = p.top_p;
    st.top_k[i] = p.top_k;
    st.seed[i] = p.seed;
  }
  for (auto &c : s->captures) c.filled = false;
  s->logits_rows = 0;
  s->logits_buf.clear();
  s->deferred = nullptr;  // the backend's rows of the previous step are about to be overwritten
  s->filled.clear();
}

// Each sequence of `st` grew by n_steps steps of n_new[i] rows.
static void advance(qw_session *s, const Step &st, int32_t n_steps) {
  s->step_counter += n_steps;
  for (size_t i = 0; i < st.seq.size(); ++i) {
    const size_t q = size_t(st.seq[i]);
    s->len[q] += st.n_new[i] * n_steps;
    s->peak[q] = std::max(s->peak[q], s->len[q]);
  }
}

// Runs a step and updates the session state only when the backend succeeded.
void run_step(qw_session *s, Step &st, int32_t *out_tokens) {
  prepare_step(s, st);
  std::vector<int32_t> out(st.seq.size(), 0);
  s->bs->forward(st, *s, out.data());
  advance(s, st, 1);
  std::copy(out.begin(), out.end(), out_tokens);
  for (size_t i = 0; i < s->captures.size(); ++i)
    if (s->captures[i].filled) s->filled.push_back(int32_t(i));
}


// "sparsePrefill": the budgets and, per layer and head, what the latest prompt's prefill measured (sparse_prefill.hpp).
void write_sparse_info(JsonWriter &w, const SparseBudget &b, const SparseStats *st) {
  w.key("sparsePrefill").begin_object();
  w.key("vertical").value(b.vertical);
  w.key("slash").value(b.slash);
  w.key("local").value(b.local);
  w.key("sink").value(b.sink);
  w.key("blocks").value(b.blocks);
  w.key("lastQ").value(kSparseLastQ);
  w.key("blockSize").value(kSparseBlock);
  w.key("stats").value(b.stats);
  w.key("steps").value(st ? st->steps : 0);
  w.key("layers").begin_array();
  if (st && st->steps > 0)
    for (int32_t l = 0; l < st->layers; ++l) {
      w.begin_object();
      w.key("layer").value(l);
      w.key("heads").begin_array();
      for (int32_t h = 0; h < st->heads; ++h) {
        const SparseHeadStats &x = st->head[size_t(l) * size_t(st->heads) + size_t(h)];
        w.begin_object();
        w.key("rows").value(x.rows);
        w.key("density").value(x.dense_keys > 0 ? x.keys / x.dense_keys : 1.0);
        if (x.stat_rows > 0) {
          w.key("recall").value(x.recall / x.stat_rows);
          w.key("relL2").value(x.ref2 > 0 ? std::sqrt(x.err2 / x.ref2) : 0.0);
          w.key("cosine").value(x.ref2 > 0 && x.out2 > 0 ? x.dot / std::sqrt(x.ref2 * x.out2) : 1.0);
        }
        w.end_object();
      }
      w.end_array();
      w.end_object();
    }
  w.end_array();
  w.end_object();
}

}  // namespace qw

using qw::copy_out;
using qw::fail;
using qw::guard;
using qw::need;
using qw::check_seq;
using qw::reset_seq;
using qw::check_tokens;
using qw::run_step;

extern "C" {

QW_API int32_t qw_session_create(qw_model *model, const char *options_json, qw_session **out_session) {
  return guard([&] {
    need(model, "model");
    need(out_session, "out_session");
    *out_session = nullptr;
    if (!model->finalized) fail(QW_ERR_STATE, "the model is not finalized: call qw_model_finalize first");
    const char *what = "session options";
    qw::Json o = qw::parse_json_object(options_json, what);
    qw::json_only_keys(o, {"max_batch", "max_context", "max_prefill", "dca_chunk_size", "dca_local_size", "sparse_vertical",
                           "sparse_slash", "sparse_blocks", "sparse_local", "sparse_sink", "sparse_stats"}, what);
    auto s = std::make_unique<qw_session>();
    s->model = model;
    int64_t v;
    s->max_batch = qw::json_int(o, "max_batch", 1, 4096, what, &v) ? int32_t(v) : 1;
    const int32_t def_ctx = model->cfg.max_position < 4096 ? model->cfg.max_position : 4096;
    // 1M tokens: the longest context Qwen2.5 supports (Qwen2.5-1M); per-session tables scale with it.
    s->max_context = qw::json_int(o, "max_context", 1, int64_t(1) << 20, what, &v) ? int32_t(v) : def_ctx;
    s->max_prefill = qw::json_int(o, "max_prefill", 1, s->max_context, what, &v) ? int32_t(v) : s->max_context;
    // DCA parameters: the model config's defaults (backend.hpp Config), overridable per session.
    s->dca_chunk = qw::json_int(o, "dca_chunk_size", 1, int64_t(1) << 30, what, &v) ? int32_t(v) : model->cfg.dca_chunk;
    s->dca_local = qw::json_int(o, "dca_local_size", 0, int64_t(1) << 30, what, &v) ? int32_t(v)
                   : (o.get("dca_chunk_size") ? s->dca_chunk / 8 : model->cfg.dca_local);
    if (s->dca_local >= s->dca_chunk)
      fail(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": dca_local_size (" + std::to_string(s->dca_local) +
                                        ") must be smaller than dca_chunk_size (" + std::to_string(s->dca_chunk) + ")");
    // Sparse prefill budgets (opt/sparse_prefill/sparse_prefill.hpp SparseBudget): json_int names a bad value.
    const int64_t big = int64_t(1) << 30;
    if (qw::json_int(o, "sparse_vertical", 0, big, what, &v)) s->sparse.vertical = int32_t(v);
    if (qw::json_int(o, "sparse_slash", 0, big, what, &v)) s->sparse.slash = int32_t(v);
    if (qw::json_int(o, "sparse_sink", 0, big, what, &v)) s->sparse.sink = int32_t(v);
    if (qw::json_int(o, "sparse_blocks", 0, big, what, &v)) s->sparse.blocks = int32_t(v);
    // local >= 1: diagonal 0 (each query's own key) is always visited, so no query row is left without keys.
    if (qw::json_int(o, "sparse_local", 1, big, what, &v)) s->sparse.local = int32_t(v);
    bool b = false;
    if (qw::json_bool(o, "sparse_stats", what, &b)) s->sparse.stats = b;
    // recall and output error need a dense reference run inside the sparse op: only the CPU kernels have one
    if (s->sparse.stats && std::string(qw::kBackendName) != "cpu")
      fail(QW_ERR_UNSUPPORTED, std::string("sparse_stats (recall and output error against dense attention) is measured "
                                           "by the cpu backend only; open the model on the cpu backend, or leave "
                                           "sparse_stats off (the ") + qw::kBackendName +
                                   " session still counts block-sparse's keys visited)");
    s->len.assign(size_t(s->max_batch), 0);
    s->peak.assign(size_t(s->max_batch), 0);
    s->sampling.assign(size_t(s->max_batch), qw::SamplingParams{});
    s->toggles.layer.resize(size_t(model->cfg.num_layers));
    for (const auto &d : qw::toggle_defs()) s->toggles.set_index(d.opt, -1, d.initial(qw::kBackendName));
    // `weights` is a model option: the session reports the format each layer was loaded in (WeightFormat
    // enumerator i is value i of the registry entry, as Weights is).
    static_assert(int(qw::Weights::Q4) == int(qw::WeightFormat::Q4) && int(qw::Weights::Q8) == int(qw::WeightFormat::Q8) &&
                  int(qw::Weights::Bf16) == int(qw::WeightFormat::BF16), "WeightFormat follows the registry's order");
    for (int32_t l = 0; l < model->cfg.num_layers; ++l)
      s->toggles.set_index(qw::OptId::weights, l, uint8_t(model->wplan.layer[size_t(l)]));
    s->toggles.set_index(qw::OptId::parallel, -1, uint8_t(model->parallel));  // a model option too
    s->hook_slot.assign(size_t(qw::HOOK_COUNT) * size_t(model->cfg.num_layers + 1), -1);
    s->bs = model->bm->new_session(s->max_batch, s->max_context, s->max_prefill);
    if (!s->bs) fail(QW_ERR_INTERNAL, "backend returned no session");
    s->bs->configure(s->toggles);
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

QW_API int32_t qw_session_info_json(qw_session *s, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(s, "session");
    const qw::KvInfo kv = s->bs->kv_info();
    qw::JsonWriter w;
    w.begin_object();
    w.key("maxBatch").value(s->max_batch);
    w.key("maxContext").value(s->max_context);
    w.key("maxPrefill").value(s->max_prefill);
    w.key("kvCache").value(kv.type);
    w.key("kvBytesPerToken").value(kv.bytes_per_token);
    w.key("kvBytes").value(uint64_t(kv.bytes));
    w.key("kvResidualTokens").value(kv.residual_tokens);
    w.key("kvMaxRollback").value(kv.max_rollback);
    write_sparse_info(w, s->sparse, s->bs->sparse_stats());
    w.key("tile").raw(s->bs->tile_info_json());
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

// Rollback (speculative decoding): both backends keep the KV cache by position and nothing else per sequence
// (their reset() is empty; sampling draws hash (seed, position)), so shortening a sequence is setting its
// length: rows at positions >= new_len are overwritten by the next step before anything reads them. The one
// exception is a format with a window of full-precision rows in a ring (kivi): a cut is exact only down to
// kv_cache_min_truncate(peak) (opt/kvcache/kvcache.hpp); below it the rows that would become full precision
// again are gone, so the cut is refused rather than done inexactly.
QW_API int32_t qw_session_truncate(qw_session *s, int32_t seq, int32_t new_len) {
  return guard([&] {
    need(s, "session");
    check_seq(s, seq, false);
    const int32_t len = s->len[size_t(seq)], peak = s->peak[size_t(seq)];
    if (new_len < 0 || new_len > len)
      fail(QW_ERR_INVALID_ARGUMENT, "new_len = " + std::to_string(new_len) + " is outside [0, " + std::to_string(len) +
                                        "]: sequence " + std::to_string(seq) + " holds " + std::to_string(len) +
                                        " tokens and can only be shortened");
    const qw::KvCache kv = s->toggles.kv_cache;
    const int32_t floor = qw::kv_cache_min_truncate(kv, peak);
    if (new_len > 0 && new_len < floor)
      fail(QW_ERR_UNSUPPORTED,
           "kvCache = " + qw::value_name(kv) + " keeps full-precision rows of only the last " +
               std::to_string(qw::kvq::kKiviRing) + " positions written: sequence " + std::to_string(seq) +
               " (reached " + std::to_string(peak) + " tokens) can be truncated exactly to " + std::to_string(floor) +
               " tokens or more, not to " + std::to_string(new_len) + " (a cut of up to " +
               std::to_string(qw::kv_cache_max_rollback(kv)) +
               " tokens below the longest length is always exact: kvMaxRollback). To go back further, truncate to 0 "
               "(reset) and prefill the tokens to keep again, or use kvCache = q8, bf16 or f32");
    if (new_len == 0) reset_seq(s, seq);
    else s->len[size_t(seq)] = new_len;
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
    qw::refuse_eagle_head(s, "qw_session_prefill");
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

// The checks of a decode call for n sequences that each grow by n_steps tokens, and its first step.
static qw::Step decode_step(qw_session *s, const char *call, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                            int32_t n_steps) {
  need(s, "session");
  if (n < 1 || n > s->max_batch)
    fail(QW_ERR_INVALID_ARGUMENT, "n = " + std::to_string(n) + " must be in [1, max_batch = " +
                                      std::to_string(s->max_batch) + "]");
  need(seq_ids, "seq_ids");
  need(tokens, "tokens");
  qw::refuse_eagle_head(s, call);
  std::vector<bool> seen(size_t(s->max_batch), false);
  for (int32_t i = 0; i < n; ++i) {
    check_seq(s, seq_ids[i], false);
    if (seen[size_t(seq_ids[i])]) fail(QW_ERR_INVALID_ARGUMENT, "sequence id " + std::to_string(seq_ids[i]) + " appears twice");
    seen[size_t(seq_ids[i])] = true;
  }
  check_tokens(s, tokens, n);
  for (int32_t i = 0; i < n; ++i)
    if (s->len[size_t(seq_ids[i])] + n_steps > s->max_context)
      fail(QW_ERR_CONTEXT_OVERFLOW, "sequence " + std::to_string(seq_ids[i]) + " holds " +
                                        std::to_string(s->len[size_t(seq_ids[i])]) + " tokens: " +
                                        std::to_string(n_steps) + " more would exceed max_context = " +
                                        std::to_string(s->max_context));
  qw::Step st;
  st.phase = QW_PHASE_DECODE;
  st.seq.assign(seq_ids, seq_ids + n);
  st.n_new.assign(size_t(n), 1);
  for (int32_t i = 0; i < n; ++i) st.pos0.push_back(s->len[size_t(seq_ids[i])]);
  st.tokens.assign(tokens, tokens + n);
  return st;
}

QW_API int32_t qw_session_decode(qw_session *s, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                                 int32_t *out_tokens) {
  return guard([&] {
    qw::Step st = decode_step(s, "qw_session_decode", n, seq_ids, tokens, 1);
    need(out_tokens, "out_tokens");
    qw::run_step(s, st, out_tokens);
  });
}

// The backend runs the steps back to back where it can (forward_steps: the tokens stay on the device); else, or
// when the caller wants what only a step-by-step run gives (logits rows, captures, per-op event records), one step
// at a time fed with the previous outputs. Either way a failure leaves the steps before it applied.
QW_API int32_t qw_session_decode_steps(qw_session *s, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                                       int32_t n_steps, int32_t *out_tokens) {
  return guard([&] {
    if (n_steps < 1 || n_steps > qw::kMaxDecodeSteps)
      fail(QW_ERR_INVALID_ARGUMENT, "n_steps = " + std::to_string(n_steps) + " must be in [1, " +
                                        std::to_string(qw::kMaxDecodeSteps) + "]");
    qw::Step st = decode_step(s, "qw_session_decode_steps", n, seq_ids, tokens, n_steps);
    need(out_tokens, "out_tokens");
    const bool queued = n_steps > 1 && s->logits_mode == 0 && s->captures.empty() &&
                        (s->profiling == QW_PROFILING_OFF || s->profiling == QW_PROFILING_KERNELS);
    if (queued) {
      qw::Step first = st;
      qw::prepare_step(s, first);
      if (s->bs->forward_steps(first, n_steps, *s, out_tokens)) {
        qw::advance(s, first, n_steps);
        return;
      }
    }
    for (int32_t j = 0; j < n_steps; ++j) {
      if (j > 0) {
        for (int32_t i = 0; i < n; ++i) st.pos0[size_t(i)] = s->len[size_t(seq_ids[i])];
        st.tokens.assign(out_tokens + size_t(j - 1) * size_t(n), out_tokens + size_t(j) * size_t(n));
      }
      qw::run_step(s, st, out_tokens + size_t(j) * size_t(n));
    }
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
    std::memcpy(out, s->host_logits(), size_t(want) * sizeof(float));
  });
}

}  // extern "C"
