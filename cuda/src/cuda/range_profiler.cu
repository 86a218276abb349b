// range_profiler.cu — see range_profiler.cuh. Host code only. The call sequence (CUPTI's range profiler, CUDA
// 12.6+): initialize the profiler; ask whether the device supports it; chip name and counter availability; a host
// object for that chip, the metrics added one by one (so one the chip lacks is named, not fatal), the config
// image; enable on the context, size the counter data for max_ranges ranges; then per op: initialize the counter
// data, set the config (auto range, kernel replay), start, launch, stop, decode, evaluate each range.
#include "range_profiler.cuh"

#include <cuda.h>
#include <cuda_runtime.h>
#include <cupti.h>
#include <cupti_profiler_host.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_target.h>

#include <cmath>
#include <limits>
#include <mutex>

#include "common.cuh"
#include "cupti.cuh"

namespace qwc {
namespace {

struct Api {
  decltype(&cuptiGetResultString) result_string;
  decltype(&cuptiProfilerInitialize) initialize;
  decltype(&cuptiProfilerDeviceSupported) supported;
  decltype(&cuptiDeviceGetChipName) chip_name;
  decltype(&cuptiProfilerGetCounterAvailability) availability;
  decltype(&cuptiProfilerHostInitialize) host_init;
  decltype(&cuptiProfilerHostDeinitialize) host_deinit;
  decltype(&cuptiProfilerHostConfigAddMetrics) add_metrics;
  decltype(&cuptiProfilerHostGetConfigImageSize) config_size;
  decltype(&cuptiProfilerHostGetConfigImage) config_image;
  decltype(&cuptiProfilerHostEvaluateToGpuValues) evaluate;
  decltype(&cuptiRangeProfilerEnable) enable;
  decltype(&cuptiRangeProfilerDisable) disable;
  decltype(&cuptiRangeProfilerGetCounterDataSize) data_size;
  decltype(&cuptiRangeProfilerCounterDataImageInitialize) data_init;
  decltype(&cuptiRangeProfilerSetConfig) set_config;
  decltype(&cuptiRangeProfilerStart) start;
  decltype(&cuptiRangeProfilerStop) stop;
  decltype(&cuptiRangeProfilerDecodeData) decode;
  decltype(&cuptiRangeProfilerGetCounterDataInfo) data_info;
};

template <typename F>
bool sym(const char *name, F &f, std::string *why) {
  f = reinterpret_cast<F>(cupti_symbol(name, why));
  return f != nullptr;
}

// Resolves every symbol once (from cupti.cu's handle) and initializes the profiler interface once per process.
const Api &api() {
  static Api a{};
  static std::string why;
  static bool ok = [] {
    const bool found =
        sym("cuptiGetResultString", a.result_string, &why) && sym("cuptiProfilerInitialize", a.initialize, &why) &&
        sym("cuptiProfilerDeviceSupported", a.supported, &why) && sym("cuptiDeviceGetChipName", a.chip_name, &why) &&
        sym("cuptiProfilerGetCounterAvailability", a.availability, &why) &&
        sym("cuptiProfilerHostInitialize", a.host_init, &why) &&
        sym("cuptiProfilerHostDeinitialize", a.host_deinit, &why) &&
        sym("cuptiProfilerHostConfigAddMetrics", a.add_metrics, &why) &&
        sym("cuptiProfilerHostGetConfigImageSize", a.config_size, &why) &&
        sym("cuptiProfilerHostGetConfigImage", a.config_image, &why) &&
        sym("cuptiProfilerHostEvaluateToGpuValues", a.evaluate, &why) &&
        sym("cuptiRangeProfilerEnable", a.enable, &why) && sym("cuptiRangeProfilerDisable", a.disable, &why) &&
        sym("cuptiRangeProfilerGetCounterDataSize", a.data_size, &why) &&
        sym("cuptiRangeProfilerCounterDataImageInitialize", a.data_init, &why) &&
        sym("cuptiRangeProfilerSetConfig", a.set_config, &why) && sym("cuptiRangeProfilerStart", a.start, &why) &&
        sym("cuptiRangeProfilerStop", a.stop, &why) && sym("cuptiRangeProfilerDecodeData", a.decode, &why) &&
        sym("cuptiRangeProfilerGetCounterDataInfo", a.data_info, &why);
    if (!found) return false;
    CUpti_Profiler_Initialize_Params p{CUpti_Profiler_Initialize_Params_STRUCT_SIZE};
    if (a.initialize(&p) != CUPTI_SUCCESS) {
      why = "cuptiProfilerInitialize failed";
      return false;
    }
    return true;
  }();
  if (!ok) throw CudaError("profiling mode 'counters' needs CUPTI's range profiler: " + why);
  return a;
}

std::string text(CUptiResult r) {
  const char *s = nullptr;
  if (api().result_string(r, &s) == CUPTI_SUCCESS && s) return s;
  return "CUPTI error " + std::to_string(int(r));
}

void check(CUptiResult r, const char *what) {
  if (r == CUPTI_SUCCESS) return;
  std::string hint;
  if (r == CUPTI_ERROR_INSUFFICIENT_PRIVILEGES)
    hint = " (GPU performance counters are restricted to admin users: load the driver with "
           "NVreg_RestrictProfilingToAdminUsers=0 or run as root)";
  throw CudaError(std::string("CUPTI range profiler, ") + what + ": " + text(r) + hint);
}

// The driver's cuCtxGetCurrent / cuDeviceGet through the runtime (the library links no libcuda).
template <typename F>
F driver_fn(const char *name) {
  void *p = nullptr;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess || !p)
    throw CudaError(std::string("profiling mode 'counters': the driver lacks ") + name);
  return reinterpret_cast<F>(p);
}

const char *level(CUpti_Profiler_Support_Level l) {
  return l == CUPTI_PROFILER_CONFIGURATION_SUPPORTED ? "supported"
         : l == CUPTI_PROFILER_CONFIGURATION_DISABLED ? "disabled" : "unsupported";
}

}  // namespace

struct RangeProfiler::Impl {
  CUcontext ctx = nullptr;
  CUpti_Profiler_Host_Object *host = nullptr;
  CUpti_RangeProfiler_Object *obj = nullptr;
  std::vector<uint8_t> config, data;
  std::vector<const char *> names;       // collected metric names, in table order
  std::vector<qw::CounterId> ids;        // their CounterId
  size_t max_ranges = 0;
  bool running = false;
  bool claimed = false;
};

RangeProfiler::RangeProfiler(int device, size_t max_ranges) : p_(new Impl) {
  const Api &a = api();
  std::string why;
  if (!cupti_claim_counters(&why)) throw CudaError("profiling mode 'counters': " + why);
  Impl &p = *p_;
  p.claimed = true;
  p.max_ranges = max_ranges;
  try {
    QWC_CHECK(cudaSetDevice(device));
    QWC_CHECK(cudaFree(nullptr));  // the primary context exists
    using CtxGet = CUresult (*)(CUcontext *);
    using DevGet = CUresult (*)(CUdevice *, int);
    if (driver_fn<CtxGet>("cuCtxGetCurrent")(&p.ctx) != CUDA_SUCCESS || !p.ctx)
      throw CudaError("profiling mode 'counters': no current CUDA context");
    CUdevice dev = 0;
    if (driver_fn<DevGet>("cuDeviceGet")(&dev, device) != CUDA_SUCCESS)
      throw CudaError("profiling mode 'counters': cuDeviceGet failed");

    CUpti_Profiler_DeviceSupported_Params sup{CUpti_Profiler_DeviceSupported_Params_STRUCT_SIZE};
    sup.cuDevice = dev;
    sup.api = CUPTI_PROFILER_RANGE_PROFILING;
    check(a.supported(&sup), "device support query");
    if (sup.isSupported != CUPTI_PROFILER_CONFIGURATION_SUPPORTED)
      throw CudaError(std::string("profiling mode 'counters': this GPU / configuration does not support the range "
                                  "profiler (architecture ") + level(sup.architecture) + ", vGPU " + level(sup.vGpu) +
                      ", confidential compute " + level(sup.confidentialCompute) + ", SLI " + level(sup.sli) +
                      ", WSL " + level(sup.wsl) + ")");

    CUpti_Device_GetChipName_Params chip{CUpti_Device_GetChipName_Params_STRUCT_SIZE};
    chip.deviceIndex = size_t(device);
    check(a.chip_name(&chip), "chip name");
    CUpti_Profiler_GetCounterAvailability_Params av{CUpti_Profiler_GetCounterAvailability_Params_STRUCT_SIZE};
    av.ctx = p.ctx;
    check(a.availability(&av), "counter availability size");
    std::vector<uint8_t> avail(av.counterAvailabilityImageSize);
    av.pCounterAvailabilityImage = avail.data();
    check(a.availability(&av), "counter availability");

    CUpti_Profiler_Host_Initialize_Params hi{CUpti_Profiler_Host_Initialize_Params_STRUCT_SIZE};
    hi.profilerType = CUPTI_PROFILER_TYPE_RANGE_PROFILER;
    hi.pChipName = chip.pChipName;
    hi.pCounterAvailabilityImage = avail.data();
    check(a.host_init(&hi), "host initialize");
    p.host = hi.pHostObject;

    // One metric at a time: a name this chip does not know is reported, the others still collected.
    for (const qw::CounterMetric &m : qw::kCounterMetrics) {
      const char *name = m.metric;
      CUpti_Profiler_Host_ConfigAddMetrics_Params add{CUpti_Profiler_Host_ConfigAddMetrics_Params_STRUCT_SIZE};
      add.pHostObject = p.host;
      add.ppMetricNames = &name;
      add.numMetrics = 1;
      const CUptiResult r = a.add_metrics(&add);
      if (r == CUPTI_SUCCESS) {
        collected_[size_t(m.id)] = true;
        p.names.push_back(name);
        p.ids.push_back(m.id);
      } else {
        unavailable_.push_back(std::string("metric ") + name + " not available on this GPU (" + chip.pChipName +
                               "): " + text(r));
      }
    }
    if (p.names.empty()) throw CudaError("profiling mode 'counters': no metric of the table is available on " +
                                         std::string(chip.pChipName));
    CUpti_Profiler_Host_GetConfigImageSize_Params cs{CUpti_Profiler_Host_GetConfigImageSize_Params_STRUCT_SIZE};
    cs.pHostObject = p.host;
    check(a.config_size(&cs), "config image size");
    p.config.resize(cs.configImageSize);
    CUpti_Profiler_Host_GetConfigImage_Params ci{CUpti_Profiler_Host_GetConfigImage_Params_STRUCT_SIZE};
    ci.pHostObject = p.host;
    ci.configImageSize = p.config.size();
    ci.pConfigImage = p.config.data();
    check(a.config_image(&ci), "config image");

    CUpti_RangeProfiler_Enable_Params en{CUpti_RangeProfiler_Enable_Params_STRUCT_SIZE};
    en.ctx = p.ctx;
    check(a.enable(&en), "enable");
    p.obj = en.pRangeProfilerObject;
    CUpti_RangeProfiler_GetCounterDataSize_Params ds{CUpti_RangeProfiler_GetCounterDataSize_Params_STRUCT_SIZE};
    ds.pRangeProfilerObject = p.obj;
    ds.pMetricNames = p.names.data();
    ds.numMetrics = p.names.size();
    ds.maxNumOfRanges = max_ranges;
    ds.maxNumRangeTreeNodes = uint32_t(max_ranges);
    check(a.data_size(&ds), "counter data size");
    p.data.resize(ds.counterDataSize);
  } catch (...) {
    release();  // what was set up so far
    throw;
  }
}

RangeProfiler::~RangeProfiler() { release(); }

void RangeProfiler::release() noexcept {
  if (!p_) return;
  Impl &p = *p_;
  const Api *a = nullptr;
  try {
    a = &api();
  } catch (...) {
  }
  if (a && p.running) {
    CUpti_RangeProfiler_Stop_Params sp{CUpti_RangeProfiler_Stop_Params_STRUCT_SIZE};
    sp.pRangeProfilerObject = p.obj;
    a->stop(&sp);
    p.running = false;
  }
  if (a && p.obj) {
    CUpti_RangeProfiler_Disable_Params d{CUpti_RangeProfiler_Disable_Params_STRUCT_SIZE};
    d.pRangeProfilerObject = p.obj;
    a->disable(&d);
    p.obj = nullptr;
  }
  if (a && p.host) {
    CUpti_Profiler_Host_Deinitialize_Params d{CUpti_Profiler_Host_Deinitialize_Params_STRUCT_SIZE};
    d.pHostObject = p.host;
    a->host_deinit(&d);
    p.host = nullptr;
  }
  if (p.claimed) cupti_release_counters();
  p.claimed = false;
}

void RangeProfiler::begin() {
  const Api &a = api();
  Impl &p = *p_;
  CUpti_RangeProfiler_CounterDataImage_Initialize_Params di{
      CUpti_RangeProfiler_CounterDataImage_Initialize_Params_STRUCT_SIZE};
  di.pRangeProfilerObject = p.obj;
  di.counterDataSize = p.data.size();
  di.pCounterData = p.data.data();
  check(a.data_init(&di), "counter data initialize");
  CUpti_RangeProfiler_SetConfig_Params sc{CUpti_RangeProfiler_SetConfig_Params_STRUCT_SIZE};
  sc.pRangeProfilerObject = p.obj;
  sc.configSize = p.config.size();
  sc.pConfig = p.config.data();
  sc.counterDataImageSize = p.data.size();
  sc.pCounterDataImage = p.data.data();
  sc.range = CUPTI_AutoRange;         // every kernel is a range
  sc.replayMode = CUPTI_KernelReplay; // CUPTI replays each kernel once per pass (saving / restoring its memory)
  sc.maxRangesPerPass = p.max_ranges;
  sc.numNestingLevels = 1;
  sc.minNestingLevel = 1;
  sc.passIndex = 0;
  sc.targetNestingLevel = 1;
  check(a.set_config(&sc), "set config");
  CUpti_RangeProfiler_Start_Params st{CUpti_RangeProfiler_Start_Params_STRUCT_SIZE};
  st.pRangeProfilerObject = p.obj;
  check(a.start(&st), "start");
  p.running = true;
}

std::vector<qw::KernelCounters> RangeProfiler::end() {
  const Api &a = api();
  Impl &p = *p_;
  if (!p.running) return {};
  p.running = false;
  CUpti_RangeProfiler_Stop_Params sp{CUpti_RangeProfiler_Stop_Params_STRUCT_SIZE};
  sp.pRangeProfilerObject = p.obj;
  check(a.stop(&sp), "stop");
  CUpti_RangeProfiler_DecodeData_Params dd{CUpti_RangeProfiler_DecodeData_Params_STRUCT_SIZE};
  dd.pRangeProfilerObject = p.obj;
  check(a.decode(&dd), "decode");
  if (dd.numOfRangeDropped > 0)
    throw CudaError("profiling mode 'counters': " + std::to_string(dd.numOfRangeDropped) +
                    " kernel range(s) dropped (an op launched more than " + std::to_string(p.max_ranges) +
                    " kernels)");
  CUpti_RangeProfiler_GetCounterDataInfo_Params info{CUpti_RangeProfiler_GetCounterDataInfo_Params_STRUCT_SIZE};
  info.pCounterDataImage = p.data.data();
  info.counterDataImageSize = p.data.size();
  check(a.data_info(&info), "counter data info");
  std::vector<qw::KernelCounters> out(info.numTotalRanges);
  std::vector<double> values(p.names.size());
  for (size_t r = 0; r < out.size(); ++r) {
    out[r].fill(std::numeric_limits<double>::quiet_NaN());
    CUpti_Profiler_Host_EvaluateToGpuValues_Params ev{CUpti_Profiler_Host_EvaluateToGpuValues_Params_STRUCT_SIZE};
    ev.pHostObject = p.host;
    ev.pCounterDataImage = p.data.data();
    ev.counterDataImageSize = p.data.size();
    ev.rangeIndex = r;
    ev.ppMetricNames = p.names.data();
    ev.numMetrics = p.names.size();
    ev.pMetricValues = values.data();
    check(a.evaluate(&ev), "evaluate");
    for (size_t m = 0; m < values.size(); ++m) out[r][size_t(p.ids[m])] = values[m];
  }
  return out;
}

}  // namespace qwc
