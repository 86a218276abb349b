// eagle_cpu.cpp — EAGLE head input and accepted-path KV compaction on the CPU (eagle_cpu.hpp).
#include "eagle_cpu.hpp"

#include "attention.hpp"
#include "dca.hpp"

#include <cstring>
#include <string>

namespace qw {
namespace cpu {

void eagle_input(float *x, const float *features, const Weight &fc, const float *fc_bias, int64_t R, int64_t H,
                 std::vector<float> &cat, Pool &pool) {
  if (cat.size() < size_t(R * 2 * H)) cat.resize(size_t(R * 2 * H));
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(&cat[size_t(r * 2 * H)], x + r * H, size_t(H) * 4);
    std::memcpy(&cat[size_t(r * 2 * H + H)], features + r * H, size_t(H) * 4);
  }
  const MatJob job{fc, fc_bias, x, H};
  matmul(&job, 1, cat.data(), R, 2 * H, pool);
}

void eagle_kv_compact(KvStore &kv, int32_t seq, int32_t base, const int32_t *keep, int32_t n) {
  if (kv.quant)
    throw Error(QW_ERR_UNSUPPORTED, "KV compaction (speculative = eagle) needs an f32 or bf16 KV cache (toggle "
                                    "kvCache); the quantized caches keep per-block scales and rings");
  const size_t d = size_t(kv.head_dim);
  for (int32_t l = 0; l < kv.layers; ++l)
    for (int32_t h = 0; h < kv.kv_heads; ++h)
      for (int32_t i = 0; i < n; ++i) {
        if (keep[i] == i) continue;
        const size_t dst = size_t(kv.offset(l, seq, h, base + i)), src = size_t(kv.offset(l, seq, h, base + keep[i]));
        if (kv.bf16) {
          std::memcpy(&kv.kb[dst], &kv.kb[src], d * 2);
          std::memcpy(&kv.vb[dst], &kv.vb[src], d * 2);
        } else {
          std::memcpy(&kv.kf[dst], &kv.kf[src], d * 4);
          std::memcpy(&kv.vf[dst], &kv.vf[src], d * 4);
        }
      }
}

void eagle_check_tree_step(const Step &st, const KvStore &kv, int32_t num_layers) {
  const char *why = nullptr;
  if (kv.quant) why = "a quantized KV cache (kvCache q8 / kivi)";
  for (int32_t l = 0; l < num_layers && !why; ++l) {
    if (st.toggles.at(l).dca == Dca::On) why = "dca = on";
    else if (st.toggles.at(l).attention != Attention::FlashBf16) why = "a Sage attention arm";
  }
  if (why)
    throw Error(QW_ERR_UNSUPPORTED, std::string("tree verification (speculative = eagle) does not run with ") + why +
                                        ": set it back to its default for speculative decoding");
}

}  // namespace cpu
}  // namespace qw
