// api_toggles.cpp — qw_session_set_toggle and qw_session_toggles_json (docs/ARCHITECTURE.md §How a toggle flows).
// A value is validated and parsed here, once, into the session's typed StepToggles; steps copy those fields.
#include <string>

#include "api.hpp"
#include "json.hpp"
#include "registry.hpp"

using qw::copy_out;
using qw::fail;
using qw::guard;
using qw::need;

extern "C" {

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
    const int32_t vi = d->find_value(value);
    if (vi < 0) {
      std::string list;
      for (const auto &v : d->values) list += (list.empty() ? "" : ", ") + v;
      fail(QW_ERR_INVALID_ARGUMENT, std::string("toggle ") + id + ": \"" + value + "\" is not a value (values: " + list + ")");
    }
    const uint8_t v = uint8_t(vi);
    if (!d->implements(qw::kBackendName, v)) {
      // "not implemented yet" (no backend has the value) differs from "not on this backend" (the other one has it)
      const bool elsewhere = d->implements("cpu", v) || d->implements("cuda", v);
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
    qw::StepToggles next = s->toggles;
    next.set_index(d->opt, layer, v);
    bool changed = false;
    for (int32_t l = 0; l < s->layers(); ++l) changed = changed || next.index(d->opt, l) != s->toggles.index(d->opt, l);
    if (changed && d->opt == qw::OptId::weights) {  // a model option: sessions share the loaded weights
      bool mixed = false;
      for (int32_t l = 1; l < s->layers(); ++l) mixed = mixed || s->toggles.index(d->opt, l) != s->toggles.index(d->opt, 0);
      fail(QW_ERR_STATE, std::string("toggle weights is chosen when the model loads (this model: ") +
                             d->values[s->toggles.index(d->opt, 0)] + (mixed ? ", per layer" : "") +
                             "): reopen the model with the option weights = " + value +
                             " (model config key \"weights\", per layer \"weights_layers\"; engine: openModel(source, "
                             "{weights}); CLI: --weights)");
    }
    if (changed && d->opt == qw::OptId::parallel)  // a model option: the weights are sharded over the ranks at load
      fail(QW_ERR_STATE, std::string("toggle parallel is chosen when the model loads (this model: ") +
                             d->values[s->toggles.index(d->opt, 0)] + "): reopen the model with the option parallel = " +
                             value + " (model config key \"parallel\"; engine: openModel(source, {parallel}))");
    if (changed && d->needs_reset) {
      s->bs->configure(next);  // may throw: the old values stay
      for (int32_t q = 0; q < s->max_batch; ++q) qw::reset_seq(s, q);
    }
    s->toggles = std::move(next);
  });
}

QW_API int32_t qw_session_toggles_json(qw_session *s, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(s, "session");
    qw::JsonWriter w;
    w.begin_object();
    for (const auto &d : qw::toggle_defs()) {
      w.key(d.id);
      const uint8_t first = s->toggles.index(d.opt, 0);
      bool same = true;
      for (int32_t l = 1; l < s->layers() && d.per_layer; ++l) same = same && s->toggles.index(d.opt, l) == first;
      if (same) {
        w.value(d.values[first]);
      } else {
        w.begin_array();
        for (int32_t l = 0; l < s->layers(); ++l) w.value(d.values[s->toggles.index(d.opt, l)]);
        w.end_array();
      }
    }
    w.end_object();
    copy_out(w.str(), out, cap, out_len);
  });
}

}  // extern "C"
