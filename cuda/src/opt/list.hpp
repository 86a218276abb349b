// list.hpp — every optimization, one line each, in registry order (docs/ARCHITECTURE.md §Adding an optimization).
//
//   X(field, Type, Scope)
//     field  the typed field backends read: step.toggles.layer[l].<field> (PerLayer) or step.toggles.<field> (Global)
//     Type   its value enum, `enum class Type : uint8_t` in opt/<family>/<family>.hpp, one enumerator per value
//     Scope  PerLayer (a value per layer) or Global (one value for the session)
// Everything else about an optimization (its id string, values, default, needs-reset, which values each backend
// implements, description, spec, kernels and tests) lives in its folder; its entry is QW_OPTIMIZATION(field).
#pragma once

#define QW_OPTIMIZATIONS(X)                  \
  X(attention, Attention, PerLayer)          \
  X(gqa, Gqa, PerLayer)                      \
  X(ffn, Ffn, PerLayer)                      \
  X(norm, Norm, PerLayer)                    \
  X(weights, Weights, PerLayer)              \
  X(gemv, Gemv, Global)                      \
  X(kv_cache, KvCache, Global)               \
  X(graphs, Graphs, Global)                  \
  X(speculative, Speculative, Global)        \
  X(dca, Dca, PerLayer)                      \
  X(sparse_prefill, SparsePrefill, PerLayer) \
  X(act_quant, ActQuant, PerLayer)           \
  X(tile, Tile, Global)                      \
  X(parallel, Parallel, Global)              \
  X(decode, Decode, Global)
