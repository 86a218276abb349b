// backend_cpu.cpp — the CPU implementation of the backend.hpp seam: tensor storage, model assembly,
// sessions. The math lives in the op files (matmul, norm, rope, attention, elementwise, forward).
#include <fstream>

#include "cpu.hpp"
#include "json.hpp"
#include "tp_cpu.hpp"

namespace qw {

const char *const kBackendName = "cpu";

namespace cpu {

const NativeTensor *Model::find(const std::string &name) const {
  for (const auto &t : tensors)
    if (t->name == name) return t.get();
  return nullptr;
}

namespace {

Weight weight(const Model &m, const std::string &name) {
  const NativeTensor *t = m.find(name);
  if (!t) throw Error(QW_ERR_NOT_FOUND, name + ": missing at finalize");
  Weight w;
  w.t = t;
  for (float o : t->offset)
    if (o != 0.0f) {  // -0.0f == 0.0f: formats without a min have no offset term
      w.has_offset = true;
      break;
    }
  return w;
}

const float *vec(const Model &m, const std::string &name) {
  const NativeTensor *t = m.find(name);
  if (!t) throw Error(QW_ERR_NOT_FOUND, name + ": missing at finalize");
  return reinterpret_cast<const float *>(t->data.data());
}

}  // namespace

void link_model(Model &m) {
  const Config &c = m.cfg;
  m.embed = weight(m, "token_embd.weight");
  m.output = c.tie_embeddings ? m.embed : weight(m, "output.weight");
  m.out_norm = c.eagle_head ? nullptr : vec(m, "output_norm.weight");
  if (c.eagle_head) {
    m.eagle_fc = weight(m, "eagle.fc.weight");
    m.eagle_fc_bias = vec(m, "eagle.fc.bias");
  }
  m.layers.resize(size_t(c.num_layers));
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    Layer &ly = m.layers[size_t(l)];
    ly.attn_norm = c.eagle_head ? nullptr : vec(m, b + "attn_norm.weight");
    ly.ffn_norm = vec(m, b + "ffn_norm.weight");
    ly.bq = vec(m, b + "attn_q.bias");
    ly.bk = vec(m, b + "attn_k.bias");
    ly.bv = vec(m, b + "attn_v.bias");
    ly.q = weight(m, b + "attn_q.weight");
    ly.k = weight(m, b + "attn_k.weight");
    ly.v = weight(m, b + "attn_v.weight");
    ly.o = weight(m, b + "attn_output.weight");
    ly.gate = weight(m, b + "ffn_gate.weight");
    ly.up = weight(m, b + "ffn_up.weight");
    ly.down = weight(m, b + "ffn_down.weight");
  }
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 10, "model name") == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown CPU";
}

namespace {

class CpuModel final : public BackendModel {
 public:
  CpuModel(const Config &c, int threads) {
    m_.cfg = c;
    m_.threads = threads;
  }
  void add_tensor(NativeTensor &&t) override { m_.tensors.push_back(std::make_unique<NativeTensor>(std::move(t))); }
  void finalize() override { link_model(m_); }
  std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context, int32_t max_prefill) override {
    return std::make_unique<Session>(m_, max_batch, max_context, max_prefill);
  }

 private:
  Model m_;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads) {}
  const char *name() const override { return "cpu"; }
  std::string info_json() const override {
    JsonWriter w;
    w.begin_object();
    w.key("backend").value("cpu");
    w.key("name").value(cpu_name());
    w.key("threads").value(int32_t(threads_));
    w.key("cores").value(int32_t(available_cores()));
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    w.key("simd").value("avx2+fma+f16c");
#else
    w.key("simd").value("scalar");
#endif
    w.end_object();
    return w.str();
  }
  std::unique_ptr<BackendModel> new_model(const Config &cfg) override {
    if (cfg.tp > 1) return tp_emulation_model(cfg, threads_);  // opt/parallel/tp_cpu.hpp
    return std::make_unique<CpuModel>(cfg, threads_);
  }

 private:
  int threads_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> create_backend(const std::string &options_json) {
  Json o = parse_json_object(options_json.c_str(), "engine options");
  int64_t threads = 0;
  json_int(o, "threads", 0, 1024, "engine options", &threads);
  if (threads == 0) threads = cpu::available_cores();
  return std::make_unique<cpu::CpuBackend>(int(threads));
}

}  // namespace qw
