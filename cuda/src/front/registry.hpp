// registry.hpp — the toggle registry (docs/ARCHITECTURE.md §How a toggle flows, §Adding an optimization): one
// table for both libraries, assembled from the entries of the optimizations listed in opt/list.hpp.
//
// An optimization's folder defines its entry with the typed builder, values in enumerator order:
//   QW_OPTIMIZATION(gqa) {
//     return OptDef<Gqa>("gqa", "Grouped-query attention")
//         .value(Gqa::Native, "native").value(Gqa::Broadcast, "broadcast").by_default(Gqa::Native)
//         .cpu({Gqa::Native, Gqa::Broadcast}).cuda({Gqa::Native, Gqa::Broadcast})
//         .spec("QWEN-002").describe("...").cost({"attention"}, "...");
//   }
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "toggles.hpp"

namespace qw {

struct ToggleDef {
  OptId opt{};
  const char *id = "";                // registry id ("gqa", "kvCache"): what the ABI, TypeScript and the page use
  const char *name = nullptr;         // human name shown with the id (UI, CLI errors); the JSON falls back to the id
  std::vector<std::string> values;    // every value of the spec, implemented or not; value i = enumerator i
  uint8_t def = 0;                    // index of the default value
  bool per_layer = false;             // the Scope of its line in opt/list.hpp
  bool needs_reset = false;           // changing it clears every sequence of the session
  std::vector<uint8_t> cpu, cuda;     // indices of the values libqwen_cpu / libqwen_cuda implement
  const char *spec = "";
  const char *description = "";
  // How the optimization's values change the cost model of ops (front/cost.hpp; qw_catalog_json "ops"): which
  // ops, and in words what changes. Op names are checked against the library's when the registry is assembled.
  struct CostNote {
    std::vector<std::string> ops;
    const char *how = "";
  };
  std::vector<CostNote> cost;

  int32_t find_value(const std::string &v) const;  // its index, or -1
  // Values implemented by the backend named `backend` ("cpu" | "cuda").
  const std::vector<uint8_t> &implemented(const std::string &backend) const;
  bool implements(const std::string &backend, uint8_t v) const;
  // The starting value in a session of `backend`: the default when that backend implements it, else its first
  // implemented value (e.g. graphs = "off" on the CPU, which has no graphs).
  uint8_t initial(const std::string &backend) const;
};

// The typed builder of a registry entry (see the top of this file). Misuse (a value out of enumerator order, a
// default or backend value that is not a value) throws std::logic_error when the registry is assembled.
template <class E>
class OptDef {
 public:
  OptDef(const char *id, const char *name) {
    d_.id = id;
    d_.name = name;
  }
  OptDef &value(E e, const char *v) {
    check(size_t(e) == d_.values.size(), "values must be listed in enumerator order");
    d_.values.push_back(v);
    return *this;
  }
  OptDef &by_default(E e) { return set(d_.def, e); }
  OptDef &needs_reset() {
    d_.needs_reset = true;
    return *this;
  }
  OptDef &cpu(std::initializer_list<E> v) { return impl(d_.cpu, v); }
  OptDef &cuda(std::initializer_list<E> v) { return impl(d_.cuda, v); }
  OptDef &spec(const char *s) {
    d_.spec = s;
    return *this;
  }
  OptDef &describe(const char *s) {
    d_.description = s;
    return *this;
  }
  // The ops whose analytic cost its values change, and how (the arithmetic lives in the optimization's folder
  // where it can, e.g. kv_cache_elem_bytes in opt/kvcache/kvcache.hpp; docs/ARCHITECTURE.md §Measurement).
  OptDef &cost(std::initializer_list<const char *> ops, const char *how) {
    d_.cost.push_back({std::vector<std::string>(ops.begin(), ops.end()), how});
    return *this;
  }
  const ToggleDef &def() const { return d_; }

 private:
  void check(bool ok, const char *what) const;
  OptDef &set(uint8_t &slot, E e) {
    check(size_t(e) < d_.values.size(), "a default or backend value must be one of the values");
    slot = uint8_t(e);
    return *this;
  }
  OptDef &impl(std::vector<uint8_t> &out, std::initializer_list<E> v) {
    for (E e : v) {
      uint8_t i = 0;
      set(i, e);
      out.push_back(i);
    }
    return *this;
  }
  ToggleDef d_;
};
void opt_def_error(const char *id, const char *what);  // throws std::logic_error
template <class E>
void OptDef<E>::check(bool ok, const char *what) const {
  if (!ok) opt_def_error(d_.id, what);
}

// The entry of optimization `field` (defined in its folder): QW_OPTIMIZATION(gqa) { return OptDef<Gqa>(...)...; }
#define QW_OPTIMIZATION(field) OptDef<OptType<OptId::field>::type> optimization_##field()
#define QW_X(field, Type, scope) QW_OPTIMIZATION(field);
QW_OPTIMIZATIONS(QW_X)
#undef QW_X

const std::vector<ToggleDef> &toggle_defs();  // in opt/list.hpp order
const ToggleDef &toggle_def(OptId id);
const ToggleDef *find_toggle(const std::string &id);  // nullptr if unknown
std::string toggle_registry_json();

// The registry string of a typed value, e.g. value_name(Gqa::Broadcast) = "broadcast" (for messages).
template <class E>
const std::string &value_name(E e) {
  return toggle_def(OptOf<E>::id).values[size_t(e)];
}

}  // namespace qw
