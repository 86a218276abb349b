// tile_cuda.cu — candidates, keys and the table of toggle "tile" on CUDA (tile_cuda.cuh). Host code only.
#include "tile_cuda.cuh"

#include "backend.hpp"
#include "common.cuh"

namespace qwc {

namespace {
thread_local const CudaTileTable *g_active = nullptr;

const char *wtype_tag(int32_t t) {
  switch (t) {
    case WT_BF16: return "bf16";
    case WT_F16: return "f16";
    case WT_F32: return "f32";
    case WT_W8: return "w8";
    case WT_W4: return "w4";
  }
  return "w?";
}
}  // namespace

const std::vector<CudaTileCandidate> &cuda_tile_candidates(bool gemv) {
  static const std::vector<CudaTileCandidate> gv = [] {
    std::vector<CudaTileCandidate> v{{"fixed", {}, {}}};
    for (int r : {2, 4})
      for (int ks : {1, 2, 4, 8}) v.push_back({"r" + std::to_string(r) + ".ks" + std::to_string(ks), {r, ks}, {}});
    return v;
  }();
  static const std::vector<CudaTileCandidate> gm{{"fixed", {}, {GEMM_TILE_FIXED}},
                                                  {"mma64", {}, {GEMM_TILE_MMA64}},
                                                  {"mma128", {}, {GEMM_TILE_MMA128}}};
  return gemv ? gv : gm;
}

std::string cuda_gemv_key(const WMat &w) {
  std::string t = wtype_tag(w.type);
  if (w.type == WT_W8 || w.type == WT_W4) t += "g" + std::to_string(w.group);
  return "gemv." + t + ":" + std::to_string(w.rows) + "x" + std::to_string(w.cols);
}

std::string cuda_gemm_key(int64_t n, int64_t k) { return "gemm.bf16:" + std::to_string(n) + "x" + std::to_string(k); }

void CudaTileTable::set(const qw::TileTable &t) {
  std::map<std::string, GemvTile> gv;
  std::map<std::string, GemmTile> gm;
  for (const auto &[key, name] : t) {
    const bool is_gemv = key.compare(0, 5, "gemv.") == 0;
    if (!is_gemv && key.compare(0, 5, "gemm.") != 0)
      throw qw::Error(QW_ERR_INVALID_ARGUMENT, "tile table: shape key \"" + key + "\" does not start with gemv. or gemm.");
    const CudaTileCandidate *c = nullptr;
    for (const auto &x : cuda_tile_candidates(is_gemv))
      if (x.name == name) c = &x;
    if (!c) {
      std::string known;
      for (const auto &x : cuda_tile_candidates(is_gemv)) known += (known.empty() ? "" : ", ") + x.name;
      throw qw::Error(QW_ERR_INVALID_ARGUMENT, "tile table: \"" + name + "\" (for " + key +
                                                   ") is not a CUDA candidate; known: " + known);
    }
    if (is_gemv) gv[key] = c->gemv;
    else gm[key] = c->gemm;
  }
  gemv_ = std::move(gv);
  gemm_ = std::move(gm);
}

GemvTile CudaTileTable::gemv(const WMat &w) const {
  if (gemv_.empty()) return {};
  const auto it = gemv_.find(cuda_gemv_key(w));
  return it == gemv_.end() ? GemvTile{} : it->second;
}

GemmTile CudaTileTable::gemm(int64_t n, int64_t k) const {
  if (gemm_.empty()) return {};
  const auto it = gemm_.find(cuda_gemm_key(n, k));
  return it == gemm_.end() ? GemmTile{} : it->second;
}

CudaTileScope::CudaTileScope(const CudaTileTable *t) : prev_(g_active) { g_active = t; }
CudaTileScope::~CudaTileScope() { g_active = prev_; }

GemvTile gemv_tile_active(const WMat &w) { return g_active ? g_active->gemv(w) : GemvTile{}; }
GemmTile gemm_tile_active(int64_t n, int64_t k) { return g_active ? g_active->gemm(n, k) : GemmTile{}; }

}  // namespace qwc
