// api_model.cpp — engine and model entry points of qwen.h: options, config and tensor validation, the exact
// conversion to native layouts (convert.hpp), then hand-over to the backend.
#include <string>

#include "api.hpp"
#include "convert.hpp"
#include "json.hpp"
#include "registry.hpp"
#include "tp_plan.hpp"

using qw::copy_out;
using qw::fail;
using qw::guard;
using qw::need;

extern "C" {

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
    m->wplan = qw::parse_weight_plan(config_json, m->cfg.num_layers, m->cfg.tie_embeddings);
    m->parallel = qw::parse_parallel(config_json);
    if (!qw::toggle_def(qw::OptId::parallel).implements(qw::kBackendName, uint8_t(m->parallel)))
      fail(QW_ERR_UNSUPPORTED, "model option parallel = " + qw::value_name(m->parallel) + " is not on the " +
                                   qw::kBackendName + " backend yet (README, \"Tensor parallelism\"): load it with tp1" +
                                   " or on the CPU backend, whose emulation of the ranks is the reference");
    m->cfg.tp = qw::tp_ranks(m->parallel);
    qw::tp_plan(m->cfg, m->cfg.tp);  // refuses a model the ranks cannot split, saying which count and why
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
    w.key("parallel").value(qw::value_name(model->parallel));
    w.key("weights").begin_array();
    for (const auto &v : model->wplan.toggle_values()) w.value(v);
    w.end_array();
    w.key("weights_output").value(qw::weight_format_name(model->wplan.output));  // not a layer: not in the toggle
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

}  // extern "C"
