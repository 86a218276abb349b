// cublaslt.cu — run-time loaded cuBLASLt (see cublaslt.cuh). Host code only.
#include "cublaslt.cuh"

#include <dlfcn.h>
#include <library_types.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace qwc {
namespace {

// --- the part of cublasLt.h we need ----------------------------------------------------------------
typedef int lt_status;  // cublasStatus_t, 0 = success
typedef void *lt_handle;
typedef void *lt_desc;
typedef void *lt_layout;
typedef void *lt_pref;
struct lt_algo { uint64_t data[8]; };
struct lt_heur { lt_algo algo; size_t workspaceSize; lt_status state; float wavesCount; int reserved[4]; };
enum { COMPUTE_32F = 68 };
enum { DESC_TRANSA = 3, DESC_TRANSB = 4 };
enum { PREF_MAX_WORKSPACE_BYTES = 1 };
enum { OP_N = 0, OP_T = 1 };

struct Lt {
  lt_status (*create)(lt_handle *);
  lt_status (*desc_create)(lt_desc *, int, cudaDataType_t);
  lt_status (*desc_set)(lt_desc, int, const void *, size_t);
  lt_status (*desc_destroy)(lt_desc);
  lt_status (*layout_create)(lt_layout *, cudaDataType_t, uint64_t, uint64_t, int64_t);
  lt_status (*layout_destroy)(lt_layout);
  lt_status (*pref_create)(lt_pref *);
  lt_status (*pref_set)(lt_pref, int, const void *, size_t);
  lt_status (*pref_destroy)(lt_pref);
  lt_status (*heuristic)(lt_handle, lt_desc, lt_layout, lt_layout, lt_layout, lt_layout, lt_pref, int, lt_heur *,
                         int *);
  lt_status (*matmul)(lt_handle, lt_desc, const void *, const void *, lt_layout, const void *, lt_layout,
                      const void *, const void *, lt_layout, void *, lt_layout, const lt_algo *, void *, size_t,
                      cudaStream_t);
  lt_handle handle = nullptr;
  void *workspace = nullptr;
  size_t ws_bytes = 32u << 20;
  bool ok = false;
  std::string status = "not loaded";
};

std::once_flag g_once;
Lt g_lt;
// The handle and workspace above belong to the device that was current at load (g_lt_dev). Tensor parallelism
// (parallel = tpN) runs GEMMs on further devices from their own threads: each gets a handle and workspace of its
// own, made on first use there (a handle or workspace of another device fails or reads across the bus).
int g_lt_dev = -1;
std::mutex g_dev_mu;
std::map<int, std::pair<lt_handle, void *>> g_dev_lt;
std::mutex g_plan_mu;
struct Plan { lt_desc desc; lt_layout la, lb, lc; lt_algo algo; bool ok; };
std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>, Plan> g_plans;

template <typename F>
bool sym(void *lib, const char *name, F &f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

void load() {
  const char *env = getenv("QW_CUBLASLT");
  if (env && std::string(env) == "off") { g_lt.status = "disabled by QW_CUBLASLT=off"; return; }
  const char *names[] = {env, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
  void *lib = nullptr;
  const char *from = nullptr;
  for (const char *n : names) {
    if (!n || !*n) continue;
    lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
    if (lib) { from = n; break; }
  }
  if (!lib) { g_lt.status = "libcublasLt not found (set QW_CUBLASLT=/path/libcublasLt.so.13 or LD_LIBRARY_PATH)"; return; }
  bool ok = sym(lib, "cublasLtCreate", g_lt.create) && sym(lib, "cublasLtMatmulDescCreate", g_lt.desc_create) &&
            sym(lib, "cublasLtMatmulDescSetAttribute", g_lt.desc_set) &&
            sym(lib, "cublasLtMatmulDescDestroy", g_lt.desc_destroy) &&
            sym(lib, "cublasLtMatrixLayoutCreate", g_lt.layout_create) &&
            sym(lib, "cublasLtMatrixLayoutDestroy", g_lt.layout_destroy) &&
            sym(lib, "cublasLtMatmulPreferenceCreate", g_lt.pref_create) &&
            sym(lib, "cublasLtMatmulPreferenceSetAttribute", g_lt.pref_set) &&
            sym(lib, "cublasLtMatmulPreferenceDestroy", g_lt.pref_destroy) &&
            sym(lib, "cublasLtMatmulAlgoGetHeuristic", g_lt.heuristic) && sym(lib, "cublasLtMatmul", g_lt.matmul);
  if (!ok) { g_lt.status = std::string("libcublasLt loaded from ") + from + " but symbols are missing"; return; }
  if (g_lt.create(&g_lt.handle) != 0) { g_lt.status = "cublasLtCreate failed"; return; }
  if (cudaMalloc(&g_lt.workspace, g_lt.ws_bytes) != cudaSuccess) { cudaGetLastError(); g_lt.status = "workspace alloc failed"; return; }
  if (cudaGetDevice(&g_lt_dev) != cudaSuccess) { cudaGetLastError(); g_lt.status = "cudaGetDevice failed"; return; }
  g_lt.ok = true;
  g_lt.status = std::string("cuBLASLt from ") + from;
}

Plan make_plan(const GemmArgs &g) {
  Plan p{};
  const cudaDataType_t ct = g.out_kind == GEMM_OUT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  if (g_lt.desc_create(&p.desc, COMPUTE_32F, CUDA_R_32F) != 0) return p;
  const int ta = OP_T, tb = OP_N;
  g_lt.desc_set(p.desc, DESC_TRANSA, &ta, sizeof ta);
  g_lt.desc_set(p.desc, DESC_TRANSB, &tb, sizeof tb);
  // column-major view: D[N, M] = op(W)[N, K] * A^T[K, M]
  g_lt.layout_create(&p.la, CUDA_R_16BF, (uint64_t)g.k, (uint64_t)g.n, g.k);
  g_lt.layout_create(&p.lb, CUDA_R_16BF, (uint64_t)g.k, (uint64_t)g.m, g.lda);
  g_lt.layout_create(&p.lc, ct, (uint64_t)g.n, (uint64_t)g.m, g.ldc);
  lt_pref pref;
  g_lt.pref_create(&pref);
  g_lt.pref_set(pref, PREF_MAX_WORKSPACE_BYTES, &g_lt.ws_bytes, sizeof g_lt.ws_bytes);
  lt_heur h[1];
  int n = 0;
  lt_status st = g_lt.heuristic(g_lt.handle, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, h, &n);
  g_lt.pref_destroy(pref);
  if (st == 0 && n > 0) { p.algo = h[0].algo; p.ok = true; }
  return p;
}

}  // namespace

bool cublaslt_available() {
  std::call_once(g_once, load);
  return g_lt.ok;
}
const char *cublaslt_status() {
  std::call_once(g_once, load);
  return g_lt.status.c_str();
}

// The handle and workspace of the current device: load's at tp1 (one device), else that device's own.
static std::pair<lt_handle, void *> dev_lt() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) { cudaGetLastError(); throw CudaError("cublaslt: cudaGetDevice failed"); }
  if (dev == g_lt_dev) return {g_lt.handle, g_lt.workspace};
  std::lock_guard<std::mutex> lk(g_dev_mu);
  auto it = g_dev_lt.find(dev);
  if (it != g_dev_lt.end()) return it->second;
  std::pair<lt_handle, void *> d{nullptr, nullptr};
  if (g_lt.create(&d.first) != 0) throw CudaError("cublasLtCreate failed on device " + std::to_string(dev));
  if (cudaMalloc(&d.second, g_lt.ws_bytes) != cudaSuccess) {
    cudaGetLastError();
    throw CudaError("cuBLASLt workspace alloc failed on device " + std::to_string(dev));
  }
  return g_dev_lt.emplace(dev, d).first->second;
}

bool cublaslt_gemm(const GemmArgs &g, cudaStream_t s) {
  if (!cublaslt_available()) return false;
  const std::pair<lt_handle, void *> lt = dev_lt();
  Plan p;
  {
    std::lock_guard<std::mutex> lk(g_plan_mu);
    auto key = std::make_tuple(g.m, g.n, g.k, g.lda, g.ldc, (int64_t)0, (int)g.out_kind);
    auto it = g_plans.find(key);
    if (it == g_plans.end()) it = g_plans.emplace(key, make_plan(g)).first;
    p = it->second;
  }
  if (!p.ok) return false;
  const float alpha = 1.f, beta = g.out_kind == GEMM_OUT_ADD_F32 ? 1.f : 0.f;
  const lt_status st = g_lt.matmul(lt.first, p.desc, &alpha, g.w, p.la, g.a, p.lb, &beta, g.c, p.lc, g.c, p.lc,
                                   &p.algo, lt.second, g_lt.ws_bytes, s);
  if (st != 0) throw CudaError("cublasLtMatmul failed with status " + std::to_string(st));
  return true;
}

}  // namespace qwc
