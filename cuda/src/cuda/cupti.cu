// cupti.cu — run-time loaded CUPTI activity tracing (see cupti.cuh). Host code only.
//
// The CUPTI headers ship with the CUDA toolkit; we use them for types and record layouts only and call every
// function through pointers from dlopen, so a machine without libcupti still loads libqwen_cuda.so.
#include "cupti.cuh"

#include <cupti.h>
#include <cxxabi.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

#include "common.cuh"

namespace qwc {
namespace {

struct Api {
  decltype(&cuptiGetVersion) get_version;
  decltype(&cuptiGetResultString) result_string;
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks;
  decltype(&cuptiActivityEnable) enable;
  decltype(&cuptiActivityDisable) disable;
  decltype(&cuptiActivityFlushAll) flush_all;
  decltype(&cuptiActivityGetNextRecord) next_record;
  decltype(&cuptiActivityPushExternalCorrelationId) push;
  decltype(&cuptiActivityPopExternalCorrelationId) pop;
  decltype(&cuptiGetTimestamp) timestamp;
  decltype(&cuptiGetGraphNodeId) node_id;
  decltype(&cuptiSubscribe) subscribe;
  decltype(&cuptiEnableCallback) enable_callback;
  decltype(&cuptiActivitySetAttribute) set_attribute;  // optional (diagnostic QW_CUPTI_ATTR only)
};

// Every kind we need, and why: kernels and copies are the rows; API records carry the external ids (CUPTI
// emits an external-correlation record ahead of each API record made while an id is pushed).
struct KindName {
  CUpti_ActivityKind kind;
  const char *name;
};
constexpr KindName kKinds[] = {{CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "kernel"},
                               {CUPTI_ACTIVITY_KIND_MEMCPY, "memcpy"},
                               {CUPTI_ACTIVITY_KIND_MEMSET, "memset"},
                               {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, "ext"},
                               {CUPTI_ACTIVITY_KIND_RUNTIME, "runtime"},
                               {CUPTI_ACTIVITY_KIND_DRIVER, "driver"}};
// QW_CUPTI_KINDS=kernel,memcpy,... enables only those kinds: a diagnostic, to measure what each costs (without
// ext/runtime/driver, kernels lose their step and are reported unattributed). Default: all of them.
bool kind_wanted(const char *name) {
  const char *env = std::getenv("QW_CUPTI_KINDS");
  if (!env || !*env) return true;
  const std::string list = std::string(",") + env + ",";
  return list.find(std::string(",") + name + ",") != std::string::npos;
}
constexpr size_t kBufferBytes = size_t(8) << 20;

// QW_CUPTI_ATTR=pinned=1,devbuf_mib=64,prealloc=4,pool=8 (a diagnostic, like QW_CUPTI_KINDS): CUPTI's activity
// buffer attributes, set once when libcupti is loaded, to measure whether where and how CUPTI buffers kernel
// records explains kernels mode's per-replay gap on launch-bound models (README, "Profiling modes"). Unknown
// keys or bad values are an error naming the accepted keys; nothing is set by default.
struct AttrKey {
  const char *key;
  CUpti_ActivityAttribute attr;
  bool is_byte;    // uint8_t value (else size_t)
  size_t scale;    // value multiplier (MiB -> bytes)
};
constexpr AttrKey kAttrKeys[] = {{"pinned", CUPTI_ACTIVITY_ATTR_MEM_ALLOCATION_TYPE_HOST_PINNED, true, 1},
                                 {"devbuf_mib", CUPTI_ACTIVITY_ATTR_DEVICE_BUFFER_SIZE, false, size_t(1) << 20},
                                 {"prealloc", CUPTI_ACTIVITY_ATTR_DEVICE_BUFFER_PRE_ALLOCATE_VALUE, false, 1},
                                 {"pool", CUPTI_ACTIVITY_ATTR_DEVICE_BUFFER_POOL_LIMIT, false, 1}};

struct State {
  Api api{};
  void *lib = nullptr;  // libcupti's dlopen handle
  bool loaded = false;
  std::string why = "not loaded";
  bool node_ids = false;  // resource callbacks subscribed
  int users = 0;          // acquire / release count
  int counters = 0;       // range profiler claims (counters mode): never together with users > 0
  std::mutex mu;          // guards everything below (the buffer callback runs on CUPTI's thread)
  std::deque<TraceActivity> acts;
  std::unordered_map<uint32_t, uint64_t> ext;  // correlation id -> external id
  std::unordered_map<uint64_t, uint64_t> node_tags;
  // capture tagging (one capturing thread at a time: sessions run their steps one at a time)
  std::atomic<bool> tagging{false};
  std::atomic<uint64_t> tag{kNoTag};
  std::vector<uint64_t> *kernel_tags = nullptr;
};

State &st() {
  static State *s = new State();  // never destroyed: CUPTI may call back during process teardown
  return *s;
}

std::string result_text(CUptiResult r) {
  const char *s = nullptr;
  if (st().api.result_string && st().api.result_string(r, &s) == CUPTI_SUCCESS && s) return s;
  return "CUPTI error " + std::to_string(int(r));
}

void check(CUptiResult r, const char *what) {
  if (r != CUPTI_SUCCESS) throw CudaError(std::string("CUPTI ") + what + ": " + result_text(r));
}

// "void qwc::gemv_kernel<4, true>(qwc::GemvArgs)" -> "gemv_kernel": the row label stays short; the full
// template is the same for every call of an op.
std::string short_name(const char *mangled) {
  if (!mangled) return "?";
  int status = 0;
  char *dem = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = (status == 0 && dem) ? dem : mangled;
  std::free(dem);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  size_t cut = s.find_first_of("(<");
  if (cut != std::string::npos) s.resize(cut);
  const size_t sp = s.rfind(' ');
  if (sp != std::string::npos) s = s.substr(sp + 1);
  const size_t ns = s.rfind("::");
  if (ns != std::string::npos) s = s.substr(ns + 2);
  return s.empty() ? std::string(mangled) : s;
}

const char *copy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    default: return "memcpy";
  }
}

void CUPTIAPI on_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = static_cast<uint8_t *>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

// The fields every timed record shares (kernel, memcpy and memset layouts name them alike).
template <typename R>
TraceActivity timed(TraceActivity::Kind kind, const CUpti_Activity *rec, std::string name) {
  const auto *r = reinterpret_cast<const R *>(rec);
  TraceActivity a;
  a.kind = kind;
  a.start = r->start;
  a.end = r->end;
  a.correlation = r->correlationId;
  a.graph_node = r->graphNodeId;
  a.name = std::move(name);
  return a;
}

void take_record(State &s, const CUpti_Activity *rec) {
  switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: {
      const char *name = reinterpret_cast<const CUpti_ActivityKernel10 *>(rec)->name;
      s.acts.push_back(timed<CUpti_ActivityKernel10>(TraceActivity::KERNEL, rec, short_name(name)));
      return;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const uint8_t kind = reinterpret_cast<const CUpti_ActivityMemcpy6 *>(rec)->copyKind;
      s.acts.push_back(timed<CUpti_ActivityMemcpy6>(TraceActivity::MEMCPY, rec, copy_name(kind)));
      return;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET:
      s.acts.push_back(timed<CUpti_ActivityMemset4>(TraceActivity::MEMSET, rec, "memset"));
      return;
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
      const auto *e = reinterpret_cast<const CUpti_ActivityExternalCorrelation *>(rec);
      if (e->externalKind == CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0) s.ext[e->correlationId] = e->externalId;
      return;
    }
    default:
      return;  // API records: their only use was to carry the external ids
  }
}

void CUPTIAPI on_buffer_completed(CUcontext, uint32_t, uint8_t *buffer, size_t, size_t valid) {
  State &s = st();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    CUpti_Activity *rec = nullptr;
    while (s.api.next_record(buffer, valid, &rec) == CUPTI_SUCCESS) take_record(s, rec);
  }
  std::free(buffer);
}

void CUPTIAPI on_resource(void *, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *cbdata) {
  State &s = st();
  if (domain != CUPTI_CB_DOMAIN_RESOURCE) return;
  const auto *rd = static_cast<const CUpti_ResourceData *>(cbdata);
  const auto *gd = static_cast<const CUpti_GraphData *>(rd->resourceDescriptor);
  if (!gd || !gd->node) return;
  uint64_t id = 0;
  if (s.api.node_id(gd->node, &id) != CUPTI_SUCCESS) return;
  if (cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED) {
    if (!s.tagging.load()) return;
    const uint64_t t = s.tag.load();
    if (t == kNoTag) return;
    std::lock_guard<std::mutex> lk(s.mu);
    s.node_tags[id] = t;
    if (s.kernel_tags && gd->nodeType == CU_GRAPH_NODE_TYPE_KERNEL) s.kernel_tags->push_back(t);
  } else if (cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED && gd->originalNode) {
    uint64_t orig = 0;
    if (s.api.node_id(gd->originalNode, &orig) != CUPTI_SUCCESS) return;
    std::lock_guard<std::mutex> lk(s.mu);
    auto it = s.node_tags.find(orig);
    if (it != s.node_tags.end()) s.node_tags[id] = it->second;
  }
}

template <typename F>
bool sym(void *lib, const char *name, F &f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

void *open_library() {
  std::vector<std::string> paths;
  if (const char *p = std::getenv("QW_CUPTI_PATH")) paths.push_back(p);
  paths.insert(paths.end(), {"libcupti.so.13", "libcupti.so"});
  const char *homes[] = {std::getenv("CUDA_HOME"), std::getenv("CUDA_PATH"), "/usr/local/cuda"};
  const char *subs[] = {"/lib64/libcupti.so", "/extras/CUPTI/lib64/libcupti.so", "/lib/libcupti.so"};
  for (const char *home : homes) {
    if (!home) continue;
    for (const char *sub : subs)
      paths.push_back(std::string(home) + sub);
  }
  for (const std::string &p : paths)
    if (void *lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL)) return lib;
  return nullptr;
}

// The process's one libcupti handle: the activity tracer (kernels mode) and the range profiler (counters mode,
// range_profiler.cu) both resolve their symbols from it.
void *library() {
  static void *lib = open_library();
  return lib;
}
const char *kNotFound =
    "libcupti was not found (tried QW_CUPTI_PATH, libcupti.so.13, libcupti.so and the CUDA toolkit's lib64/ and "
    "extras/CUPTI/lib64/): install CUPTI or set QW_CUPTI_PATH";

// Applies QW_CUPTI_ATTR (see kAttrKeys); false with s.why set when the variable is malformed or CUPTI refuses.
bool apply_attributes(State &s) {
  const char *env = std::getenv("QW_CUPTI_ATTR");
  if (!env || !*env) return true;
  sym(s.lib, "cuptiActivitySetAttribute", s.api.set_attribute);
  const std::string list = env;
  for (size_t at = 0; at <= list.size();) {
    const size_t end = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, end - at);
    at = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const AttrKey *k = nullptr;
    for (const AttrKey &c : kAttrKeys)
      if (eq != std::string::npos && item.compare(0, eq, c.key) == 0 && eq == std::strlen(c.key)) k = &c;
    char *stop = nullptr;
    const unsigned long long v = k ? std::strtoull(item.c_str() + eq + 1, &stop, 10) : 0;
    if (!k || !s.api.set_attribute || stop == item.c_str() + eq + 1 || *stop) {
      s.why = "QW_CUPTI_ATTR: cannot apply '" + item + "' (keys: pinned=0|1, devbuf_mib=N, prealloc=N, pool=N)";
      return false;
    }
    uint8_t b = uint8_t(v != 0);
    size_t z = size_t(v) * k->scale;
    size_t n = k->is_byte ? sizeof b : sizeof z;
    const CUptiResult r = s.api.set_attribute(k->attr, &n, k->is_byte ? static_cast<void *>(&b) : &z);
    if (r != CUPTI_SUCCESS) {
      s.why = "QW_CUPTI_ATTR '" + item + "': " + result_text(r);
      return false;
    }
  }
  return true;
}

void load(State &s) {
  void *lib = library();
  if (!lib) {
    s.why = std::string(kNotFound) + ", or use profiling mode 'events'";
    return;
  }
  s.lib = lib;
  Api &a = s.api;
  const bool ok = sym(lib, "cuptiGetVersion", a.get_version) && sym(lib, "cuptiGetResultString", a.result_string) &&
                  sym(lib, "cuptiActivityRegisterCallbacks", a.register_callbacks) &&
                  sym(lib, "cuptiActivityEnable", a.enable) && sym(lib, "cuptiActivityDisable", a.disable) &&
                  sym(lib, "cuptiActivityFlushAll", a.flush_all) &&
                  sym(lib, "cuptiActivityGetNextRecord", a.next_record) &&
                  sym(lib, "cuptiActivityPushExternalCorrelationId", a.push) &&
                  sym(lib, "cuptiActivityPopExternalCorrelationId", a.pop) &&
                  sym(lib, "cuptiGetTimestamp", a.timestamp) && sym(lib, "cuptiGetGraphNodeId", a.node_id) &&
                  sym(lib, "cuptiSubscribe", a.subscribe) && sym(lib, "cuptiEnableCallback", a.enable_callback);
  if (!ok) {
    s.why = "libcupti lacks an entry point we use (too old?): use profiling mode 'events'";
    return;
  }
  uint32_t version = 0;
  // Records are read with this build's struct layouts (CUpti_ActivityKernel10, ...): an older CUPTI would
  // hand us shorter records.
  if (a.get_version(&version) != CUPTI_SUCCESS || version < CUPTI_API_VERSION) {
    s.why = "libcupti API version " + std::to_string(version) + " is older than the " +
            std::to_string(CUPTI_API_VERSION) + " this library was built against: use profiling mode 'events'";
    return;
  }
  if (!apply_attributes(s)) return;
  const CUptiResult r = a.register_callbacks(on_buffer_requested, on_buffer_completed);
  if (r != CUPTI_SUCCESS) {
    s.why = "CUPTI activity callbacks: " + result_text(r) + " (is another profiler attached?)";
    return;
  }
  CUpti_SubscriberHandle sub = nullptr;
  if (a.subscribe(&sub, reinterpret_cast<CUpti_CallbackFunc>(on_resource), nullptr) == CUPTI_SUCCESS) {
    s.node_ids = a.enable_callback(1, sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED) ==
                     CUPTI_SUCCESS &&
                 a.enable_callback(1, sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED) ==
                     CUPTI_SUCCESS;
  }
  s.loaded = true;
  s.why.clear();
}

}  // namespace

bool trace_available(std::string *why) {
  static std::once_flag once;
  State &s = st();
  std::call_once(once, [&] { load(s); });
  if (!s.loaded && why) *why = s.why;
  return s.loaded;
}

void trace_acquire() {
  State &s = st();
  if (!trace_available(nullptr)) throw CudaError("CUPTI: " + s.why);
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.counters > 0)
    throw CudaError("CUPTI: a session is in profiling mode 'counters' (range profiler): the activity tracer and the "
                    "range profiler cannot run at once; switch that session's profiling off first");
  if (s.users++ > 0) return;
  for (const KindName &k : kKinds) {
    if (!kind_wanted(k.name)) continue;
    const CUptiResult r = s.api.enable(k.kind);
    if (r != CUPTI_SUCCESS) {
      for (const KindName &j : kKinds) s.api.disable(j.kind);
      s.users = 0;
      check(r, "enabling activity kinds");
    }
  }
}

void trace_release() {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.users == 0 || --s.users > 0) return;
  for (const KindName &k : kKinds) s.api.disable(k.kind);
}

uint64_t trace_now() {
  uint64_t t = 0;
  check(st().api.timestamp(&t), "timestamp");
  return t;
}

void trace_push(uint64_t id) { check(st().api.push(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, id), "push correlation"); }
void trace_pop() { check(st().api.pop(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, nullptr), "pop correlation"); }

void trace_tag_begin(std::vector<uint64_t> *kernel_tags) {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  s.kernel_tags = kernel_tags;
  s.tag.store(kNoTag);
  s.tagging.store(true);
}
void trace_tag(uint64_t tag) { st().tag.store(tag); }
void trace_tag_end() {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  s.tagging.store(false);
  s.tag.store(kNoTag);
  s.kernel_tags = nullptr;
}

uint64_t trace_node_tag(uint64_t node_id) {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  auto it = s.node_tags.find(node_id);
  return it == s.node_tags.end() ? kNoTag : it->second;
}

bool trace_node_ids_work() { return trace_available(nullptr) && st().node_ids; }

std::vector<TracedActivity> trace_collect(bool (*mine)(uint64_t, void *), void *ctx) {
  State &s = st();
  std::vector<TracedActivity> out;
  if (!s.loaded) return out;
  check(s.api.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "flush");
  std::lock_guard<std::mutex> lk(s.mu);
  std::deque<TraceActivity> keep;
  for (TraceActivity &a : s.acts) {
    auto it = s.ext.find(a.correlation);
    if (it == s.ext.end()) continue;  // launched with no id pushed: not a profiled step's (model upload, ...)
    if (mine(it->second, ctx)) out.push_back({std::move(a), it->second});
    else keep.push_back(std::move(a));
  }
  s.acts.swap(keep);
  // An external id outlives its activities only until they are collected; drop the map entries no pending
  // activity refers to, so the map does not grow with every step.
  std::unordered_map<uint32_t, uint64_t> live;
  for (const TraceActivity &a : s.acts) {
    auto it = s.ext.find(a.correlation);
    if (it != s.ext.end()) live.insert(*it);
  }
  s.ext.swap(live);
  return out;
}

void trace_forget(bool (*mine)(uint64_t, void *), void *ctx) {
  if (!st().loaded) return;
  trace_collect(mine, ctx);
}


void *cupti_symbol(const char *name, std::string *why) {
  void *lib = library();
  if (!lib) {
    if (why) *why = kNotFound;
    return nullptr;
  }
  void *f = dlsym(lib, name);
  if (!f && why) *why = std::string("libcupti lacks ") + name + " (older than CUDA 12.6's range profiler?)";
  return f;
}

bool cupti_claim_counters(std::string *why) {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.users > 0) {
    if (why)
      *why = "a session is in profiling mode 'kernels' (CUPTI activity tracing): the tracer and the range profiler "
             "cannot run at once; switch that session's profiling off first";
    return false;
  }
  ++s.counters;
  return true;
}

void cupti_release_counters() {
  State &s = st();
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.counters > 0) --s.counters;
}

}  // namespace qwc
