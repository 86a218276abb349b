// api_speculative.cpp — the entry points of qwen.h for speculative decoding: tree prefill (with head features) and KV
// compaction of the accepted path (EAGLE), and a draft's chain verified as one decode step (cuda/src/opt/speculative/).
#include <string>
#include <vector>

#include "api.hpp"
#include "topk.hpp"
#include "tree.hpp"

namespace qw {

void refuse_eagle_head(qw_session *s, const char *call) {
  if (s->model->cfg.eagle_head)
    fail(QW_ERR_INVALID_ARGUMENT, std::string(call) + ": this model is an EAGLE head (its input rows need the "
                                                      "target's features): use qw_session_prefill_tree with features");
}

}  // namespace qw

using qw::fail;
using qw::guard;
using qw::need;

extern "C" {

QW_API int32_t qw_session_prefill_tree(qw_session *s, int32_t seq, const int32_t *tokens, int32_t n_tokens,
                                       const int32_t *parents, int32_t first, const float *features,
                                       int32_t *out_token) {
  return guard([&] {
    need(s, "session");
    qw::check_seq(s, seq, false);
    need(out_token, "out_token");
    if (n_tokens < 1) fail(QW_ERR_INVALID_ARGUMENT, "n_tokens must be >= 1");
    need(tokens, "tokens");
    if (n_tokens > s->max_prefill)
      fail(QW_ERR_INVALID_ARGUMENT, "n_tokens = " + std::to_string(n_tokens) + " exceeds max_prefill = " +
                                        std::to_string(s->max_prefill) + " (feed the tree in chunks)");
    qw::check_tokens(s, tokens, n_tokens);
    const bool head = s->model->cfg.eagle_head;
    if (head && !features)
      fail(QW_ERR_INVALID_ARGUMENT, "features: an EAGLE head needs [n_tokens, hidden_size] feature rows");
    if (!head && features)
      fail(QW_ERR_INVALID_ARGUMENT, "features: only an EAGLE head model (config eagle_head) takes features; pass NULL");
    const int32_t len = s->len[size_t(seq)];
    if (first < 0 || first > len || (!parents && first != 0))
      fail(QW_ERR_INVALID_ARGUMENT, "first = " + std::to_string(first) + " must be in [0, " + std::to_string(len) +
                                        "] (the tree nodes already appended), and 0 without parents");
    if (int64_t(len) + n_tokens > s->max_context)
      fail(QW_ERR_CONTEXT_OVERFLOW, "sequence " + std::to_string(seq) + " holds " + std::to_string(len) + " tokens; " +
                                        std::to_string(n_tokens) + " more exceed max_context = " +
                                        std::to_string(s->max_context));
    if (parents && !s->bs->supports_tree())
      fail(QW_ERR_UNSUPPORTED, std::string("tree verification (speculative = eagle) is not implemented on the ") +
                                   qw::kBackendName + " backend");
    qw::Step st;
    st.phase = QW_PHASE_PREFILL;
    st.seq = {seq};
    st.n_new = {n_tokens};
    st.pos0 = {len};
    st.tokens.assign(tokens, tokens + n_tokens);
    st.features = features;
    if (parents) qw::tree_step(st, parents, first, n_tokens, len - first);
    qw::run_step(s, st, out_token);
  });
}

QW_API int32_t qw_session_decode_chain(qw_session *s, int32_t seq, int32_t n, const int32_t *tokens, int32_t *out_tokens) {
  return guard([&] {
    need(s, "session");
    qw::check_seq(s, seq, false);
    if (n < 1 || n > s->max_batch)
      fail(QW_ERR_INVALID_ARGUMENT, "n = " + std::to_string(n) + " must be in [1, max_batch = " + std::to_string(s->max_batch) +
                                        "]: a chain step is one decode row per token (verify longer chains with qw_session_prefill)");
    need(tokens, "tokens");
    need(out_tokens, "out_tokens");
    qw::refuse_eagle_head(s, "qw_session_decode_chain");
    qw::check_tokens(s, tokens, n);
    const int32_t len = s->len[size_t(seq)];
    if (int64_t(len) + n > s->max_context)
      fail(QW_ERR_CONTEXT_OVERFLOW, "sequence " + std::to_string(seq) + " holds " + std::to_string(len) + " tokens; " +
                                        std::to_string(n) + " more exceed max_context = " + std::to_string(s->max_context));
    const std::string why = qw::chain_step_refusal(s->toggles, s->model->cfg.num_layers);
    if (!why.empty())
      fail(QW_ERR_UNSUPPORTED, "qw_session_decode_chain: not with " + why + " (verify the chain with qw_session_prefill)");
    qw::Step st;
    qw::chain_step(st, seq, len, tokens, n);
    qw::run_step(s, st, out_tokens);
  });
}

QW_API int32_t qw_session_kv_compact(qw_session *s, int32_t seq, int32_t base, const int32_t *keep, int32_t n) {
  return guard([&] {
    need(s, "session");
    qw::check_seq(s, seq, false);
    need(keep, "keep");
    const int32_t len = s->len[size_t(seq)];
    qw::check_compact(base, keep, n, len);
    s->bs->kv_compact(seq, base, keep, n);
    s->len[size_t(seq)] = base + n;
  });
}

QW_API int32_t qw_session_read_topk(qw_session *s, int32_t k, int32_t *out_ids, double *out_logprobs, int64_t n) {
  return guard([&] {
    need(s, "session");
    const int32_t V = s->model->cfg.vocab_size, rows = s->logits_rows;
    if (k < 1 || k > V) fail(QW_ERR_INVALID_ARGUMENT, "k = " + std::to_string(k) + " must be in [1, vocab = " + std::to_string(V) + "]");
    if (rows == 0) return;
    need(out_ids, "out_ids");  // out_logprobs may be NULL: the ids only, no softmax pass (the greedy argmax)
    if (n < int64_t(rows) * k)
      fail(QW_ERR_INVALID_ARGUMENT, "top-k buffers hold " + std::to_string(n) + " entries; " +
                                        std::to_string(int64_t(rows) * k) + " needed (rows x k)");
    // the greedy argmax of rows the backend still holds: computed there, only the ids cross (same tie and NaN rule)
    if (k == 1 && !out_logprobs && s->device_argmax(out_ids)) return;
    const float *logits = s->host_logits();
    for (int32_t r = 0; r < rows; ++r)
      qw::row_topk(logits + size_t(r) * size_t(V), V, k, out_ids + size_t(r) * k,
                   out_logprobs ? out_logprobs + size_t(r) * k : nullptr);
  });
}

}  // extern "C"
