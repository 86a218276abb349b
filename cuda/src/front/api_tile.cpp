// api_tile.cpp — the entry points of toggle "tile" (qwen.h, ABI 7): measuring the candidates of every GEMV / GEMM
// shape of a session's model, and setting the table tile = auto reads (src/opt/tile/tile.hpp).
#include "api.hpp"
#include "json.hpp"

using namespace qw;

QW_API int32_t qw_session_tile_tune(qw_session *s, const char *request_json, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(s, "session");
    const char *what = "tile tune request";
    const qw::Json o = qw::parse_json_object(request_json, what);
    qw::json_only_keys(o, {"reps", "warmup", "repMs", "gemmTokens", "gemv", "gemm", "only", "dryRun", "candidates"}, what);
    qw::TileTuneRequest r;
    int64_t i = 0;
    if (qw::json_int(o, "reps", 3, 50, what, &i)) r.reps = int32_t(i);
    if (qw::json_int(o, "warmup", 0, 10, what, &i)) r.warmup = int32_t(i);
    if (qw::json_int(o, "gemmTokens", 8 /* the GEMM kernels start at 8 tokens */, 4096, what, &i)) r.gemm_tokens = int32_t(i);
    double d = 0;
    if (qw::json_num(o, "repMs", what, &d)) {
      if (!(d >= 0.05 && d <= 1000)) fail(QW_ERR_INVALID_ARGUMENT, "tile tune request: repMs must be in [0.05, 1000]");
      r.rep_ms = d;
    }
    qw::json_bool(o, "gemv", what, &r.gemv);
    qw::json_bool(o, "gemm", what, &r.gemm);
    qw::json_bool(o, "dryRun", what, &r.dry_run);
    if (const qw::Json *c = o.get("candidates")) {
      if (c->kind != qw::Json::Array) fail(QW_ERR_INVALID_ARGUMENT, "tile tune request: candidates must be an array of names");
      for (const auto &n : c->arr) {
        if (n.kind != qw::Json::String) fail(QW_ERR_INVALID_ARGUMENT, "tile tune request: candidates must be an array of names");
        r.names.push_back(n.str);
      }
    }
    if (const qw::Json *only = o.get("only")) {
      if (only->kind != qw::Json::String) fail(QW_ERR_INVALID_ARGUMENT, "tile tune request: only must be a shape key string");
      r.only = only->str;
    }
    copy_out(s->bs->tile_tune_json(r), out, cap, out_len);
  });
}

QW_API int32_t qw_session_tile_set(qw_session *s, const char *table_json) {
  return guard([&] {
    need(s, "session");
    const char *what = "tile table";
    const qw::Json o = qw::parse_json_object(table_json, what);
    qw::TileTable t;
    for (const auto &[key, v] : o.obj) {
      if (v.kind != qw::Json::String)
        fail(QW_ERR_INVALID_ARGUMENT, "tile table: the value of \"" + key + "\" must be a candidate name (a string)");
      t[key] = v.str;
    }
    s->bs->set_tile_table(t);
  });
}
