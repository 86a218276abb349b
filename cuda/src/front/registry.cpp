// registry.cpp — the toggle table, assembled from the optimizations' entries (opt/<family>/<family>.cpp) in
// opt/list.hpp order. Values with an empty backend list are specified but not implemented yet; the UI shows them
// disabled and qw_session_set_toggle answers QW_ERR_UNSUPPORTED for them.
#include "registry.hpp"

#include <stdexcept>

#include "cost.hpp"
#include "json.hpp"

namespace qw {

void opt_def_error(const char *id, const char *what) {
  throw std::logic_error(std::string("registry entry of toggle \"") + id + "\": " + what);
}

int32_t ToggleDef::find_value(const std::string &v) const {
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i] == v) return int32_t(i);
  return -1;
}

const std::vector<uint8_t> &ToggleDef::implemented(const std::string &backend) const {
  return backend == "cuda" ? cuda : cpu;
}

bool ToggleDef::implements(const std::string &backend, uint8_t v) const {
  for (uint8_t i : implemented(backend))
    if (i == v) return true;
  return false;
}

uint8_t ToggleDef::initial(const std::string &backend) const {
  const auto &impl = implemented(backend);
  if (implements(backend, def) || impl.empty()) return def;
  return impl.front();
}

namespace {
ToggleDef finish(ToggleDef d, OptId opt, Scope scope) {
  if (d.values.empty()) opt_def_error(d.id, "no values");
  for (const auto &c : d.cost)
    for (const auto &op : c.ops) {
      bool known = false;
      for (int32_t i = 0; i < QW_OP_COUNT; ++i) known = known || op == op_name(i);
      if (!known) opt_def_error(d.id, ("cost names \"" + op + "\", which is not an op of the library").c_str());
    }
  d.opt = opt;
  d.per_layer = scope == Scope::PerLayer;
  return d;
}
}  // namespace

const std::vector<ToggleDef> &toggle_defs() {
  static const std::vector<ToggleDef> defs = [] {
    std::vector<ToggleDef> v;
#define QW_X(field, Type, scope) v.push_back(finish(optimization_##field().def(), OptId::field, Scope::scope));
    QW_OPTIMIZATIONS(QW_X)
#undef QW_X
    for (size_t i = 0; i < v.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (std::string(v[i].id) == v[j].id) opt_def_error(v[i].id, "two optimizations have this id");
    return v;
  }();
  return defs;
}

const ToggleDef &toggle_def(OptId id) { return toggle_defs()[size_t(id)]; }

const ToggleDef *find_toggle(const std::string &id) {
  for (const auto &t : toggle_defs())
    if (id == t.id) return &t;
  return nullptr;
}

std::string toggle_registry_json() {
  JsonWriter w;
  w.begin_array();
  for (const auto &t : toggle_defs()) {
    w.begin_object();
    w.key("id").value(t.id);
    w.key("name").value(t.name ? t.name : t.id);
    w.key("type").value("enum");
    w.key("values").begin_array();
    for (const auto &v : t.values) w.value(v);
    w.end_array();
    w.key("default").value(t.values[t.def]);
    w.key("perLayer").value(t.per_layer);
    w.key("needsReset").value(t.needs_reset);
    w.key("backends").begin_object();
    for (const char *b : {"cpu", "cuda"}) {
      w.key(b).begin_array();
      for (uint8_t i : t.implemented(b)) w.value(t.values[i]);
      w.end_array();
    }
    w.end_object();
    w.key("spec").value(t.spec);
    w.key("description").value(t.description);
    w.key("cost").begin_array();
    for (const auto &c : t.cost) {
      w.begin_object();
      w.key("ops").begin_array();
      for (const auto &op : c.ops) w.value(op);
      w.end_array();
      w.key("how").value(c.how);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  return w.str();
}

}  // namespace qw
