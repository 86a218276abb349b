// tensors.hpp — the tensors a Qwen2 config needs (GGUF names, ggml shapes) and their validation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend.hpp"

namespace qw {

struct TensorSpec {
  std::string name;
  int64_t ne0 = 0, ne1 = 1;  // ggml order: ne0 = input (contiguous) dimension
  bool vector = false;       // 1-D (norm weight or bias): stored F32
  bool required = true;
};

// Parses and validates an HF Qwen2Config JSON (see qwen.h qw_model_create). Throws QW_ERR_INVALID_ARGUMENT.
Config parse_config(const char *config_json);
std::string config_json(const Config &c);

// Every tensor the config uses, in load order. output.weight is listed only when not tied.
std::vector<TensorSpec> tensor_specs(const Config &c);

// Finds `name` in specs; throws QW_ERR_NOT_FOUND with a message when it is unknown (mentions tied output).
const TensorSpec &find_spec(const std::vector<TensorSpec> &specs, const Config &c, const std::string &name);

// Checks n_dims / ne against the spec; throws QW_ERR_SHAPE naming the tensor, the expected and given shape.
void check_shape(const TensorSpec &s, int32_t n_dims, const int64_t ne[4]);

}  // namespace qw
