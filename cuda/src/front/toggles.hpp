// toggles.hpp — the typed toggle values a step carries (docs/ARCHITECTURE.md §How a toggle flows).
//
// qw_session_set_toggle parses a toggle's string once into these fields; a step copies them and a backend
// compares enums (step.toggles.layer[l].gqa == Gqa::Broadcast, step.toggles.kv_cache == KvCache::F32). The
// fields are generated from opt/list.hpp, so an optimization added there gets its field here with no edit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "list.hpp"

namespace qw {

enum class Scope : uint8_t { PerLayer, Global };

// The value type of every optimization, declared opaque here: its enumerators are in opt/<family>/<family>.hpp,
// which a backend includes to compare against them. Enumerator i is value i of the optimization's registry entry.
#define QW_X(field, Type, scope) enum class Type : uint8_t;
QW_OPTIMIZATIONS(QW_X)
#undef QW_X

// An optimization's position in opt/list.hpp, which is also its position in the registry.
enum class OptId : int32_t {
#define QW_X(field, Type, scope) field,
  QW_OPTIMIZATIONS(QW_X)
#undef QW_X
};
#define QW_X(field, Type, scope) +1
constexpr int32_t kOptCount = 0 QW_OPTIMIZATIONS(QW_X);
#undef QW_X

// OptOf<Gqa>::id / ::scope, and OptType<OptId::gqa>::type = Gqa.
template <class E>
struct OptOf;
template <OptId id>
struct OptType;
#define QW_X(field, Type, scope_)                      \
  template <>                                          \
  struct OptOf<Type> {                                 \
    static constexpr OptId id = OptId::field;          \
    static constexpr Scope scope = Scope::scope_;      \
  };                                                   \
  template <>                                          \
  struct OptType<OptId::field> {                       \
    using type = Type;                                 \
  };
QW_OPTIMIZATIONS(QW_X)
#undef QW_X

#define QW_LAYER_FIELD_PerLayer(field, Type) Type field{};
#define QW_LAYER_FIELD_Global(field, Type)
#define QW_STEP_FIELD_PerLayer(field, Type)
#define QW_STEP_FIELD_Global(field, Type) Type field{};

// The PerLayer optimizations' values at one layer.
struct LayerToggles {
#define QW_X(field, Type, scope) QW_LAYER_FIELD_##scope(field, Type)
  QW_OPTIMIZATIONS(QW_X)
#undef QW_X
};

// Every optimization's value for one step. A value-initialized field is enumerator 0 (the first value); the
// front fills the session's values (defaults of the backend, then what was set).
struct StepToggles {
  std::vector<LayerToggles> layer;  // one per layer (empty in a Step built by hand: first values everywhere)
#define QW_X(field, Type, scope) QW_STEP_FIELD_##scope(field, Type)
  QW_OPTIMIZATIONS(QW_X)
#undef QW_X

  // The PerLayer values at layer l (first values when `layer` is empty).
  const LayerToggles &at(int32_t l) const {
    static const LayerToggles first{};
    return size_t(l) < layer.size() ? layer[size_t(l)] : first;
  }
  // For the front only (validation and JSON work on value indices): the value index of optimization `id` at
  // layer `l` (ignored for Global ones), and setting it at layer l or at every layer (l = -1).
  uint8_t index(OptId id, int32_t l) const;
  void set_index(OptId id, int32_t l, uint8_t v);
};

}  // namespace qw
