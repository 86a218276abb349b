// weights.cpp — the registry entry of toggle "weights": its values (in Weights enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "weights.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(weights) {
  return OptDef<Weights>("weights", "Weight format")
      .value(Weights::AsLoaded, "as-loaded")
      .value(Weights::Bf16, "bf16")
      .value(Weights::Q8, "q8")
      .value(Weights::Q4, "q4")
      .by_default(Weights::AsLoaded)
      .needs_reset()
      .cpu({Weights::AsLoaded, Weights::Bf16, Weights::Q8, Weights::Q4})
      .cuda({Weights::AsLoaded, Weights::Bf16, Weights::Q8, Weights::Q4})
      .spec("QWEN-005")
      .describe(
          "Weight format of the 7 projections per layer, chosen when the model loads (model option weights / "
          "weights_layers; changing it reloads the model): as-loaded keeps each tensor's own type (exact native "
          "layout); bf16 rounds; q8 = int8 symmetric, group 128; q4 = uint4 with scale and zero point, group 128 "
          "(min/max, no calibration). Embeddings stay as loaded; the lm_head too unless weights_layers names "
          "\"output\" (its own format, opt-in; refused where the lm_head is the tied embedding).")
      .cost({"qkv", "o_proj", "gate_up", "down"},
            "weight bytes per element of each projection = those of its native type (front/convert.cpp "
            "native_bytes_per_element, the same for a GGUF tensor loaded as-is): f32 4, bf16 / f16 2, q8 (W8) "
            "1 + 8/group, q4 (W4) 0.5 + 8/group (fp32 scale and offset per group of 128)");
}

}  // namespace qw
