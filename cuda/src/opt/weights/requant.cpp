// requant.cpp — requantization of projection weights (and, when asked, the output matrix) at load (see
// requant.hpp for the formats and why the products are exact). Compiled with the front's flags
// (-ffp-contract=off): every operation here is one IEEE operation, so engine/formats/requant.ts reproduces the
// codes and scales bit for bit.
#include "requant.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <thread>

#include "convert.hpp"
#include "half.hpp"
#include "json.hpp"

namespace qw {

namespace {

const char *const kFormatNames[] = {"as-loaded", "bf16", "q8", "q4"};
const char *const kProjections[] = {"attn_q.weight",  "attn_k.weight",  "attn_v.weight", "attn_output.weight",
                                    "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
// The weights_layers key of the output matrix, and that matrix's tensor name.
const char *const kOutputKey = "output";
const char *const kOutputTensor = "output.weight";

std::string format_list() { return "as-loaded, bf16, q8, q4"; }

WeightFormat parse_format(const Json &v, const std::string &where) {
  if (v.kind == Json::String)
    for (int i = 0; i < 4; ++i)
      if (v.str == kFormatNames[i]) return WeightFormat(i);
  const std::string given = v.kind == Json::String ? "\"" + v.str + "\"" : std::string("a non-string value");
  throw Error(QW_ERR_INVALID_ARGUMENT, "model config: " + where + " = " + given +
                                           " is not a weight format (accepted: " + format_list() + ")");
}

// Layer index of "blk.N.<projection>", or -1 when the name is not one of the 7 projections.
int32_t projection_layer(const std::string &name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4) return -1;
  const std::string rest = name.substr(dot + 1);
  bool proj = false;
  for (const char *p : kProjections) proj = proj || rest == p;
  if (!proj) return -1;
  int32_t l = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9' || l > 100000) return -1;
    l = l * 10 + (name[i] - '0');
  }
  return l;
}

// fn(r0, r1) over contiguous row ranges, on up to hardware_concurrency threads (at most 32, at least 256 K elements
// a thread). Why: requantizing a 7B checkpoint took ~125 s on one thread of the GPU machine's 16 cores, at every load
// (each range is independent and written by one thread: the result does not depend on the thread count).
template <class F>
void parallel_rows(const NativeTensor &src, F &&fn) {
  const int64_t hw = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  const int64_t by_size = std::max<int64_t>(1, src.rows * src.cols / (int64_t(1) << 18));
  const int64_t nt = std::min({hw, int64_t(32), by_size, std::max<int64_t>(1, src.rows)});
  if (nt <= 1) {
    fn(int64_t(0), src.rows);
    return;
  }
  std::vector<std::thread> th;
  th.reserve(size_t(nt - 1));
  const int64_t per = (src.rows + nt - 1) / nt;
  for (int64_t t = 1; t < nt; ++t) {
    const int64_t r0 = std::min(src.rows, t * per), r1 = std::min(src.rows, r0 + per);
    if (r0 < r1) th.emplace_back([&fn, r0, r1] { fn(r0, r1); });
  }
  fn(int64_t(0), std::min(src.rows, per));
  for (auto &t : th) t.join();
}

std::vector<float> dequant_all(const NativeTensor &src) {
  std::vector<float> w(size_t(src.rows * src.cols));
  parallel_rows(src, [&](int64_t r0, int64_t r1) { dequant_rows(w.data() + r0 * src.cols, src, r0, r1 - r0); });
  return w;
}

void check_group(const NativeTensor &src, int32_t group, const char *fmt) {
  if (group <= 0 || group % 32 != 0)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(fmt) + ": group must be a positive multiple of 32");
  // The remedy names the key that chose the format: a layer's, or "output" for the lm_head.
  const std::string keep = src.name == kOutputTensor ? "keep the output as-loaded or bf16 (weights_layers \"output\")"
                                                     : "keep this layer as-loaded or bf16 (weights_layers)";
  if (src.cols % group != 0)
    throw Error(QW_ERR_SHAPE, src.name + ": weights = " + fmt + " needs ne0 (input features, " + std::to_string(src.cols) +
                                  ") to be a multiple of the group size " + std::to_string(group) + "; " + keep);
}

// The scale as stored: 16 significant bits, at least FLT_MIN when positive (so it stays a normal float).
float stored_scale(double s) {
  if (!(s > 0.0)) return 0.0f;
  const double r = round_up_sig16(s);
  return r < double(FLT_MIN) ? FLT_MIN : float(r);
}

NativeTensor grouped_like(const NativeTensor &src, NativeType type, int32_t group) {
  NativeTensor t;
  t.name = src.name;
  t.ggml_type = src.ggml_type;
  t.type = type;
  t.rows = src.rows;
  t.cols = src.cols;
  t.group = group;
  const size_t n = size_t(src.rows * src.cols), groups = size_t(src.rows * (src.cols / group));
  t.data.assign(type == NativeType::W8 ? n : n / 2, 0);
  t.scale.assign(groups, 0.0f);
  t.offset.assign(groups, -0.0f);
  return t;
}

// Calls fn(group index, first element, values) for every group of `group` columns of the exactly dequantized
// source, row by row (group index = row * groups per row + group).
template <class F>
void for_each_group(const NativeTensor &src, int32_t group, const char *fmt, F &&fn) {
  check_group(src, group, fmt);
  const std::vector<float> w = dequant_all(src);
  const int64_t gpr = src.cols / group;
  parallel_rows(src, [&](int64_t r0, int64_t r1) {  // fn writes its group's scale, offset and codes only
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < gpr; ++g) {
        const size_t e0 = size_t(r * src.cols + g * group);
        fn(size_t(r * gpr + g), e0, w.data() + e0);
      }
  });
}

}  // namespace

const char *weight_format_name(WeightFormat f) {
  const int32_t i = int32_t(f);
  return i >= 0 && i < 4 ? kFormatNames[i] : "?";
}

std::vector<std::string> WeightPlan::toggle_values() const {
  std::vector<std::string> v;
  for (WeightFormat f : layer) v.emplace_back(weight_format_name(f));
  bool same = true;
  for (const auto &x : v) same = same && x == v[0];
  if (same && !v.empty()) v.resize(1);
  if (v.empty()) v.emplace_back(weight_format_name(WeightFormat::AsLoaded));
  return v;
}

double round_up_sig16(double x) {
  if (!(x > 0.0) || !std::isfinite(x)) return x;
  int e = 0;
  const double m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  return std::ldexp(std::ceil(m * 65536.0), e - 16);
}

double round_half_away(double x) {
  const double r = std::floor(std::fabs(x) + 0.5);
  return x < 0 ? -r : r;
}

namespace {

// weights_layers' "output" on a model whose lm_head is token_embd.weight: refused, since the one matrix serves
// both and requantizing it would change the embeddings too (a different experiment from the lm_head's).
void refuse_tied_output(WeightFormat f) {
  throw Error(QW_ERR_INVALID_ARGUMENT,
              std::string("model config: weights_layers[\"output\"] = \"") + weight_format_name(f) +
                  "\" cannot apply: this model ties its lm_head to the token embedding (tie_word_embeddings = true, "
                  "no output.weight), so requantizing the lm_head would change the embeddings too; drop the "
                  "\"output\" key (or give \"as-loaded\")");
}

// The index of a layer key ("0".."N-1", no leading zeros), or -1 when k is not one.
long layer_key(const std::string &k, int32_t num_layers) {
  bool digits = !k.empty() && k.size() <= 6;
  for (char ch : k) digits = digits && ch >= '0' && ch <= '9';
  const long l = digits ? std::stol(k) : -1;
  return !digits || (k.size() > 1 && k[0] == '0') || l >= num_layers ? -1 : l;
}

}  // namespace

WeightPlan parse_weight_plan(const char *config_json, int32_t num_layers, bool tied_embeddings) {
  const Json o = parse_json_object(config_json, "model config");
  WeightPlan p;
  WeightFormat all = WeightFormat::AsLoaded;
  if (const Json *w = o.get("weights")) all = parse_format(*w, "weights");
  p.layer.assign(size_t(num_layers), all);
  const Json *wl = o.get("weights_layers");
  if (!wl || wl->kind == Json::Null) return p;
  if (wl->kind != Json::Object)
    throw Error(QW_ERR_INVALID_ARGUMENT, "model config: weights_layers must be an object {\"<layer>\" or \"output\": "
                                         "\"<format>\"} (e.g. {\"0\": \"bf16\", \"output\": \"q8\"})");
  for (const auto &kv : wl->obj) {
    const std::string &k = kv.first;
    const std::string where = "weights_layers[\"" + k + "\"]";
    if (k == kOutputKey) {
      p.output = parse_format(kv.second, where);
      if (tied_embeddings && p.output != WeightFormat::AsLoaded) refuse_tied_output(p.output);
      continue;
    }
    const long l = layer_key(k, num_layers);
    if (l < 0)
      throw Error(QW_ERR_INVALID_ARGUMENT, "model config: weights_layers key \"" + k + "\" is not a layer of this model (0.." +
                                               std::to_string(num_layers - 1) + ") nor \"output\" (the lm_head)");
    p.layer[size_t(l)] = parse_format(kv.second, where);
  }
  return p;
}

NativeTensor requant_bf16(const NativeTensor &src) {
  const std::vector<float> w = dequant_all(src);
  NativeTensor t;
  t.name = src.name;
  t.ggml_type = src.ggml_type;
  t.type = NativeType::BF16;
  t.rows = src.rows;
  t.cols = src.cols;
  t.data.resize(w.size() * 2);
  parallel_rows(src, [&](int64_t r0, int64_t r1) {
    for (size_t i = size_t(r0 * src.cols); i < size_t(r1 * src.cols); ++i) {
      const uint16_t b = float_to_bf16(w[i]);
      std::memcpy(&t.data[2 * i], &b, 2);
    }
  });
  return t;
}

NativeTensor requant_q8(const NativeTensor &src, int32_t group) {
  NativeTensor t = grouped_like(src, NativeType::W8, group);
  for_each_group(src, group, "q8", [&](size_t gi, size_t e0, const float *x) {
    float amax = 0.0f;
    for (int32_t e = 0; e < group; ++e) amax = std::max(amax, std::fabs(x[e]));
    const float s = stored_scale(double(amax) / 127.0);
    t.scale[gi] = s;
    int8_t *q = reinterpret_cast<int8_t *>(t.data.data()) + e0;
    for (int32_t e = 0; e < group; ++e) {
      const double v = s > 0.0f ? round_half_away(double(x[e]) / double(s)) : 0.0;
      q[e] = int8_t(std::min(127.0, std::max(-127.0, v)));
    }
  });
  return t;
}

NativeTensor requant_q4(const NativeTensor &src, int32_t group) {
  NativeTensor t = grouped_like(src, NativeType::W4, group);
  for_each_group(src, group, "q4", [&](size_t gi, size_t e0, const float *x) {
    float lo = 0.0f, hi = 0.0f;
    for (int32_t e = 0; e < group; ++e) {
      lo = std::min(lo, x[e]);
      hi = std::max(hi, x[e]);
    }
    const float s = stored_scale((double(hi) - double(lo)) / 15.0);
    const double z = s > 0.0f ? std::min(15.0, std::max(0.0, round_half_away(-double(lo) / double(s)))) : 0.0;
    t.scale[gi] = s;
    t.offset[gi] = -(s * float(z));
    uint8_t *dst = t.data.data() + e0 / 2;  // group and cols are even
    for (int32_t e = 0; e < group; e += 2) {
      uint8_t nib[2];
      for (int k = 0; k < 2; ++k) {
        const double v = s > 0.0f ? round_half_away(double(x[e + k]) / double(s)) + z : 0.0;
        nib[k] = uint8_t(std::min(15.0, std::max(0.0, v)));
      }
      dst[e / 2] = uint8_t(nib[0] | (nib[1] << 4));  // low nibble = even column
    }
  });
  return t;
}

void apply_weight_plan(const WeightPlan &plan, const std::string &name, NativeTensor &t) {
  const int32_t l = projection_layer(name);
  WeightFormat f = WeightFormat::AsLoaded;
  if (name == kOutputTensor) f = plan.output;
  else if (l >= 0 && size_t(l) < plan.layer.size()) f = plan.layer[size_t(l)];
  switch (f) {
    case WeightFormat::AsLoaded: return;
    case WeightFormat::BF16: t = requant_bf16(t); return;
    case WeightFormat::Q8: t = requant_q8(t); return;
    case WeightFormat::Q4: t = requant_q4(t); return;
  }
}

}  // namespace qw
