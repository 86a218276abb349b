// tile_session.cu — toggle tile (src/opt/tile/) in a CUDA session: its qw_session_info_json "tile" and the tuner,
// qw_session_tile_tune (the same answer as the CPU's, tile_cpu.cpp, so engine/tuning.ts's choice rule reads both).
// The measurement of a shape is opt/tile/tile_tune_cuda.cu; this file lists the model's shapes (as the CUDA model
// holds its weights: q|k|v and gate|up fused where the types agree) and writes the JSON. Here because it needs the
// front's JSON writer, which the kernel lab, linking the opt kernels, does not have. The tuner is compile-checked
// only (test/gpu/tile.test.ts runs it).
//
// Not tuned: the weights gemv = marlin repacks (a marlin launch ignores the table), bf16 GEMVs that gemv = marlin or
// QW_GEMV_MMA=1 sends to the tensor-core kernel, the EAGLE head's fc. GEMVs are measured at batch 1 (the key has no batch: the
// choice applies to every decode batch size).
#include <algorithm>
#include <string>
#include <vector>

#include "json.hpp"
#include "session.cuh"
#include "tile_json.hpp"
#include "tile_tune_cuda.cuh"

namespace qw {
namespace cuda_backend {

namespace {

bool device_props(cudaDeviceProp &p) {
  int dev = 0;
  return cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&p, dev) == cudaSuccess;
}

void write_device(JsonWriter &w, const cudaDeviceProp &p) {
  w.key("device").begin_object().key("backend").value("cuda").key("name").value(p.name);
  w.key("cc").value("sm_" + std::to_string(p.major) + std::to_string(p.minor)).end_object();
}

void write_config(JsonWriter &w, const qwc::CudaTileCandidate &c, bool gemv) {
  w.begin_object();
  if (gemv) w.key("r").value(c.gemv.r).key("ks").value(c.gemv.ks);
  else w.key("kind").value(c.gemm.kind);
  w.end_object();
}

// One call shape of the model: the weight of the first layer that has it, and the layers it occurs in.
struct Shape {
  std::string key, op;
  bool gemv = true;
  const DevMat *d = nullptr;
  std::vector<int32_t> layers;
};

}  // namespace

std::string CudaSession::tile_info_json() const {
  cudaDeviceProp p{};
  if (!device_props(p)) return "null";
  JsonWriter w;
  w.begin_object();
  write_device(w, p);
  w.key("entries").value(uint64_t(tiles_.size()));
  w.key("candidates").begin_object();
  for (bool gv : {true, false}) {
    w.key(gv ? "gemv" : "gemm").begin_array();
    for (const auto &c : qwc::cuda_tile_candidates(gv)) {
      w.begin_object().key("name").value(c.name).key("config");
      write_config(w, c, gv);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
  w.key("fixed").begin_object().key("gemv").value("fixed").key("gemm").value("fixed").end_object();
  w.end_object();
  return w.str();
}

std::string CudaSession::tile_tune_json(const TileTuneRequest &r) {
  cudaDeviceProp prop{};
  if (!device_props(prop)) throw Error(QW_ERR_DEVICE, "tile tune: cudaGetDeviceProperties failed");
  std::vector<Shape> shapes;
  auto add = [&](const char *op, int32_t layer, bool gemv, const DevMat &d) {
    if (!d.present()) return;
    const std::string key = gemv ? qwc::cuda_gemv_key(d.m) : qwc::cuda_gemm_key(d.m.rows, d.m.cols);
    for (auto &s : shapes)
      if (s.key == key) {
        if (layer >= 0 && std::find(s.layers.begin(), s.layers.end(), layer) == s.layers.end()) s.layers.push_back(layer);
        return;
      }
    shapes.push_back({key, op, gemv, &d, layer >= 0 ? std::vector<int32_t>{layer} : std::vector<int32_t>{}});
  };
  for (bool gemv : {true, false}) {
    if ((gemv && !r.gemv) || (!gemv && !r.gemm)) continue;
    for (int32_t l = 0; l < int32_t(m_.layers.size()); ++l) {
      const Layer &L = m_.layers[size_t(l)];
      if (L.fused_qkv()) add("qkv", l, gemv, L.qkv);
      else { add("q", l, gemv, L.q); add("k", l, gemv, L.k); add("v", l, gemv, L.v); }
      add("o_proj", l, gemv, L.o);
      if (L.fused_gu()) add("gate_up", l, gemv, L.gate_up);
      else { add("gate", l, gemv, L.gate); add("up", l, gemv, L.up); }
      add("down", l, gemv, L.down);
    }
    // the lm_head is a GEMV in both phases on CUDA (layers.cu lm_head: chunks of <= 16 rows)
    if (gemv && m_.lm_head) add("lm_head", -1, true, m_.lm_head == &m_.embed.m ? m_.embed : m_.lm_head_own);
  }
  if (!r.only.empty()) {
    shapes.erase(std::remove_if(shapes.begin(), shapes.end(), [&](const Shape &s) { return s.key != r.only; }), shapes.end());
    if (shapes.empty()) throw Error(QW_ERR_NOT_FOUND, "tile tune: the model has no shape \"" + r.only + "\"");
  }

  JsonWriter w;
  w.begin_object();
  write_device(w, prop);
  w.key("request").begin_object();
  w.key("reps").value(r.reps).key("warmup").value(r.warmup).key("repMs").value(r.rep_ms);
  w.key("gemmTokens").value(r.gemm_tokens);
  w.end_object();
  w.key("shapes").begin_array();
  for (const Shape &s : shapes) {
    const char *kind = s.gemv ? "gemv" : "gemm";
    if (r.dry_run) {
      w.begin_object().key("key").value(s.key).key("op").value(s.op).key("kind").value(kind).key("cols").value(s.d->m.cols);
      w.key("rows").begin_array().value(s.d->m.rows).end_array().key("layers").begin_array();
      for (int32_t l : s.layers) w.value(l);
      w.end_array().end_object();
      continue;
    }
    // fixed (first) and the named candidates, in the library's order; a name the library lacks is refused
    const auto &all = qwc::cuda_tile_candidates(s.gemv);
    for (const std::string &n : r.names)
      if (std::none_of(all.begin(), all.end(), [&](const qwc::CudaTileCandidate &c) { return c.name == n; }))
        throw Error(QW_ERR_INVALID_ARGUMENT, "tile tune: \"" + n + "\" is not a " + kind + " candidate of the CUDA backend");
    std::vector<const qwc::CudaTileCandidate *> cands;
    for (size_t i = 0; i < all.size(); ++i)
      if (i == 0 || r.names.empty() || std::find(r.names.begin(), r.names.end(), all[i].name) != r.names.end())
        cands.push_back(&all[i]);
    qwc::TuneWeight tw;
    tw.m = s.d->m;
    tw.data_bytes = s.d->data.bytes;
    tw.scale_bytes = s.d->scale.bytes;
    tw.offset_bytes = s.d->offset.bytes;
    qwc::TuneParams p;
    p.reps = r.reps;
    p.warmup = r.warmup;
    p.rep_ms = r.rep_ms;
    p.tokens = s.gemv ? 1 : r.gemm_tokens;
    p.l2_bytes = size_t(std::max(0, prop.l2CacheSize));
    const qwc::TunedShapeResult res = dev_guard([&] { return qwc::tune_cuda_shape(s.gemv, tw, cands, p, stream_); });
    w.begin_object();
    w.key("key").value(s.key).key("op").value(s.op).key("kind").value(kind);
    w.key("tokens").value(p.tokens).key("cols").value(s.d->m.cols);
    w.key("rows").begin_array().value(s.d->m.rows).end_array();
    w.key("layers").begin_array();
    for (int32_t l : s.layers) w.value(l);
    w.end_array();
    w.key("inner").value(res.inner);
    w.key("candidates").begin_array();
    for (const auto &c : res.cands)  // withinBound: the bound of a reordered fp32 sum (tile_tune_cuda.cuh)
      write_tuned_candidate(w, c.cand->name, [&](JsonWriter &j) { write_config(j, *c.cand, s.gemv); }, c.samples_ns,
                            c.max_abs, c.bitwise, c.within);
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str();
}

}  // namespace cuda_backend
}  // namespace qw
