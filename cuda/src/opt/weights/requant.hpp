// requant.hpp — the `weights` toggle (QWEN-005): requantization of the projection weights at load time.
//
// The choice is a MODEL option, not a session toggle: a model is loaded once and its sessions share the
// weights, so it is given to qw_model_create in the config JSON (next to the HF config keys):
//   "weights": "as-loaded" | "bf16" | "q8" | "q4"                  (default "as-loaded")
//   "weights_layers": {"0": "bf16", "27": "as-loaded", ...}        (per-layer overrides, optional)
//   "weights_layers": {"output": "q8", ...}                         (the output matrix, lm_head; opt-in)
// Sessions report the layers' formats as the per-layer toggle `weights`; setting it to anything else fails with
// QW_ERR_STATE (reload the model with the other option: the workbench does that). The output's format is not a
// layer's, so the toggle does not show it: qw_model_info_json reports it as "weights_output".
//
// What is requantized: the 7 projection matrices of a layer (attn_q/k/v, attn_output, ffn_gate/up/down), and
// output.weight (the lm_head) only when weights_layers names "output": "weights" alone never touches it, so a
// model keeps today's lm_head unless asked (llama.cpp's q4 files keep it at 6-8 bits; the choice is the
// researcher's). A model with tie_word_embeddings has no output.weight: its lm_head is token_embd.weight, and
// requantizing it would change the embeddings too, so a non-as-loaded "output" is refused at qw_model_create
// (QW_ERR_INVALID_ARGUMENT). Embeddings, norms and biases always stay as loaded. Every source type is
// dequantized exactly first (convert.hpp), then:
//   bf16: round to nearest even (NativeType::BF16).
//   q8:   NativeType::W8, group 128 along cols, symmetric: s = up16(max|w| / 127), q = rnd(w / s) in
//         [-127, 127], offset = -0 (no offset term).
//   q4:   NativeType::W4, group 128, asymmetric min/max (GPTQ/AWQ storage, no calibration):
//         lo = min(min w, 0), hi = max(max w, 0), s = up16((hi - lo) / 15), z = clamp(rnd(-lo / s), 0, 15),
//         q = clamp(rnd(w / s) + z, 0, 15), offset = -(s * z).
// up16(x) rounds x (a double) UP to 16 significant bits, so that s * q (|q| < 2^8) and s * z are exact in
// fp32: w = s * q + offset then equals s * (q - z) exactly, whether a backend multiplies then adds (CPU) or
// uses an fma (CUDA), and |w - w_hat| <= s / 2 for every element (rounding up keeps every code in range).
// rnd(x) = sign(x) * floor(|x| + 0.5), evaluated in double (engine/formats/requant.ts repeats it bit for bit).
// A tensor whose cols are not a multiple of 128 cannot take q8/q4: the load fails with QW_ERR_SHAPE naming
// the tensor and what to do (keep that layer, or the output, as-loaded or bf16 through weights_layers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend.hpp"

namespace qw {

enum class WeightFormat : int32_t { AsLoaded = 0, BF16 = 1, Q8 = 2, Q4 = 3 };
constexpr int32_t kRequantGroup = 128;

const char *weight_format_name(WeightFormat f);

// The per-layer weight formats of a model, and the output matrix's.
struct WeightPlan {
  std::vector<WeightFormat> layer;  // size num_layers
  WeightFormat output = WeightFormat::AsLoaded;  // output.weight (lm_head): weights_layers "output" only
  // The session toggle's value(s): one name when every layer agrees, else one per layer.
  std::vector<std::string> toggle_values() const;
};

// Reads "weights" and "weights_layers" from the model config JSON. Throws QW_ERR_INVALID_ARGUMENT with a
// message naming the key, the bad value and the accepted ones (bad format, bad key, wrong JSON type), and when
// a model whose lm_head is its embedding (tied_embeddings) is asked for another output format.
WeightPlan parse_weight_plan(const char *config_json, int32_t num_layers, bool tied_embeddings);

// When `name` is one of the 7 projections of layer l, or output.weight, and the plan asks for a format other
// than as-loaded, replaces t by its requantized form. Anything else is left alone.
void apply_weight_plan(const WeightPlan &plan, const std::string &name, NativeTensor &t);

// The requantizers (also used by the tests). Input: any native matrix; it is dequantized exactly first.
NativeTensor requant_bf16(const NativeTensor &src);
NativeTensor requant_q8(const NativeTensor &src, int32_t group = kRequantGroup);
NativeTensor requant_q4(const NativeTensor &src, int32_t group = kRequantGroup);

// x rounded up to 16 significant bits (x >= 0), and sign(x) * floor(|x| + 0.5): exposed for the tests.
double round_up_sig16(double x);
double round_half_away(double x);

}  // namespace qw
