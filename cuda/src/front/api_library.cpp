// api_library.cpp — library-wide entry points of qwen.h (version, errors, build info, names and the catalog),
// and the shared helpers of api.hpp.
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include "api.hpp"
#include "catalog.hpp"
#include "cost.hpp"
#include "json.hpp"
#include "registry.hpp"

#ifndef QW_COMPILER
#define QW_COMPILER "unknown"
#endif
#ifndef QW_FLAGS
#define QW_FLAGS ""
#endif

namespace qw {

namespace {
thread_local std::string g_last_error;

struct KernelNames {
  std::mutex mu;
  std::deque<std::string> names;
  std::unordered_map<std::string, int32_t> ids;
};
KernelNames &kernel_names() {
  static KernelNames *k = new KernelNames();  // never destroyed: names stay valid during static teardown
  return *k;
}
}  // namespace

void set_last_error(const std::string &msg) { g_last_error = msg; }

void fail(int32_t status, const std::string &msg) { throw Error(status, msg); }

void need(const void *p, const char *what) {
  if (!p) fail(QW_ERR_INVALID_ARGUMENT, std::string(what) + " is NULL");
}

void copy_out(const std::string &s, char *out, uint64_t cap, uint64_t *out_len) {
  if (cap > 0 && !out) fail(QW_ERR_INVALID_ARGUMENT, "out is NULL but cap > 0");
  if (out_len) *out_len = s.size();
  if (cap == 0) return;
  const uint64_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  std::memcpy(out, s.data(), size_t(n));
  out[n] = '\0';
}

int32_t kernel_name_id(const char *name) {
  KernelNames &k = kernel_names();
  std::lock_guard<std::mutex> lock(k.mu);
  auto it = k.ids.find(name);
  if (it != k.ids.end()) return it->second;
  k.names.emplace_back(name);
  const int32_t id = int32_t(k.names.size() - 1);
  k.ids.emplace(k.names.back(), id);
  return id;
}

const char *kernel_name_of(int32_t id) {
  KernelNames &k = kernel_names();
  std::lock_guard<std::mutex> lock(k.mu);
  if (id < 0 || size_t(id) >= k.names.size()) return "";
  return k.names[size_t(id)].c_str();
}

}  // namespace qw

using qw::copy_out;
using qw::fail;
using qw::guard;
using qw::need;

extern "C" {

QW_API int32_t qw_abi_version(void) { return QW_ABI_VERSION; }

QW_API const char *qw_last_error(void) { return qw::g_last_error.c_str(); }

QW_API const char *qw_build_info(void) {
  static const std::string info = [] {
    qw::JsonWriter w;
    w.begin_object();
    w.key("backend").value(qw::kBackendName);
    w.key("abi").value(int32_t(QW_ABI_VERSION));
    w.key("compiler").value(QW_COMPILER);
    w.key("flags").value(QW_FLAGS);
    w.key("built").value(__DATE__ " " __TIME__);
    w.end_object();
    return w.str();
  }();
  return info.c_str();
}

QW_API int32_t qw_toggle_registry_json(char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] { copy_out(qw::toggle_registry_json(), out, cap, out_len); });
}

QW_API int32_t qw_catalog_json(char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] { copy_out(qw::catalog_json(), out, cap, out_len); });
}

QW_API const char *qw_op_name(int32_t op) { return qw::op_name(op); }

QW_API int64_t qw_clock_ns(void) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

QW_API const char *qw_profiling_mode_name(int32_t mode) { return qw::profiling_mode_name(mode); }

QW_API const char *qw_kernel_name(int32_t kernel) { return qw::kernel_name_of(kernel); }

}  // extern "C"
