// nccl.cu — run-time loaded NCCL (see nccl.cuh). Host code only.
#include "nccl.cuh"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "common.cuh"

namespace qwc {
namespace {

std::once_flag g_once;
Nccl g_nccl{};
bool g_ok = false;
std::string g_status = "not loaded";

template <typename F>
bool sym(void *lib, const char *name, F &f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

void load() {
  const char *env = getenv("QW_NCCL");
  const char *names[] = {env, "libnccl.so.2", "libnccl.so"};
  void *lib = nullptr;
  const char *from = nullptr;
  for (const char *n : names) {
    if (!n || !*n) continue;
    lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
    if (lib) { from = n; break; }
  }
  if (!lib) {
    g_status = "libnccl.so.2 not found (set QW_NCCL=/path/libnccl.so.2 or LD_LIBRARY_PATH; a PyTorch environment has "
               "it under site-packages/nvidia/nccl/lib)";
    return;
  }
  Nccl &n = g_nccl;
  const bool ok = sym(lib, "ncclGetVersion", n.GetVersion) && sym(lib, "ncclGetUniqueId", n.GetUniqueId) &&
                  sym(lib, "ncclCommInitAll", n.CommInitAll) && sym(lib, "ncclCommInitRank", n.CommInitRank) &&
                  sym(lib, "ncclCommDestroy", n.CommDestroy) && sym(lib, "ncclAllReduce", n.AllReduce) &&
                  sym(lib, "ncclAllGather", n.AllGather) && sym(lib, "ncclGroupStart", n.GroupStart) &&
                  sym(lib, "ncclGroupEnd", n.GroupEnd) && sym(lib, "ncclGetErrorString", n.GetErrorString);
  if (!ok) { g_status = std::string("NCCL loaded from ") + from + " but entry points are missing"; return; }
  int v = 0;
  if (n.GetVersion(&v) != NCCL_OK) { g_status = std::string("ncclGetVersion failed (") + from + ")"; return; }
  // bfloat16 (type 9) arrived in NCCL 2.10: version code 2 * 10000 + 10 * 100.
  if (v < 21000) { g_status = std::string("NCCL ") + std::to_string(v) + " from " + from + " is older than 2.10 (no bf16)"; return; }
  g_ok = true;
  g_status = std::string("NCCL ") + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
             std::to_string(v % 100) + " from " + from;
}

}  // namespace

bool nccl_available() {
  std::call_once(g_once, load);
  return g_ok;
}
const char *nccl_status() {
  std::call_once(g_once, load);
  return g_status.c_str();
}
const Nccl &nccl() {
  if (!nccl_available()) throw CudaError(std::string("NCCL: ") + nccl_status());
  return g_nccl;
}
void nccl_check(int r, const char *what) {
  if (r == NCCL_OK) return;
  const char *msg = g_ok && g_nccl.GetErrorString ? g_nccl.GetErrorString(r) : "?";
  throw CudaError(std::string(what) + ": NCCL error " + std::to_string(r) + " (" + msg + ")");
}

}  // namespace qwc
