// toggles.cpp — index access to the typed toggle fields, generated from opt/list.hpp (see toggles.hpp).
#include "toggles.hpp"

namespace qw {

#define QW_GET_PerLayer(field) layer[size_t(l)].field
#define QW_GET_Global(field) field

uint8_t StepToggles::index(OptId id, int32_t l) const {
  switch (id) {
#define QW_X(field, Type, scope) \
  case OptId::field:             \
    return uint8_t(QW_GET_##scope(field));
    QW_OPTIMIZATIONS(QW_X)
#undef QW_X
  }
  return 0;
}

#define QW_SET_PerLayer(field, Type)      \
  if (l < 0) {                            \
    for (auto &x : layer) x.field = Type(v); \
  } else {                                \
    layer[size_t(l)].field = Type(v);     \
  }
#define QW_SET_Global(field, Type) field = Type(v);

void StepToggles::set_index(OptId id, int32_t l, uint8_t v) {
  switch (id) {
#define QW_X(field, Type, scope) \
  case OptId::field:             \
    QW_SET_##scope(field, Type) break;
    QW_OPTIMIZATIONS(QW_X)
#undef QW_X
  }
}

}  // namespace qw
