// common.cuh — small device helpers shared by the CUDA kernels of libqwen_cuda (and the kernel lab).
// Header-only, no kernels. Nothing here depends on the front (common/); kernels see plain pointers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace qwc {

// A CUDA failure: the launchers throw this (the backend converts it into qw::Error with QW_ERR_DEVICE).
struct CudaError : std::runtime_error {
  explicit CudaError(const std::string &m) : std::runtime_error(m) {}
};

inline void cuda_check(cudaError_t e, const char *stmt, const char *file, int line) {
  if (e != cudaSuccess) {
    int dev = -1;
    cudaGetDevice(&dev);
    char buf[512];
    snprintf(buf, sizeof buf, "CUDA error %s (%s) in `%s` at %s:%d (device %d)", cudaGetErrorName(e),
             cudaGetErrorString(e), stmt, file, line, dev);
    throw CudaError(buf);
  }
}
#define QWC_CHECK(stmt) ::qwc::cuda_check((stmt), #stmt, __FILE__, __LINE__)

// A kernel A/B switch that is on unless the environment says 0 (read at every call, so a lab may flip it): unset,
// empty or "1" is on, "0" off; anything else throws CudaError naming both values and what each selects.
inline bool env_switch_on(const char *name, const char *off_means, const char *on_means) {
  const char *e = std::getenv(name);
  if (!e || !*e || (e[0] == '1' && !e[1])) return true;
  if (e[0] == '0' && !e[1]) return false;
  throw CudaError(std::string(name) + "=" + e + ": use 0 (" + off_means + ") or 1 (" + on_means + ", the default)");
}
// Its twin for a switch that is off unless the environment says 1 (a variant under measurement): unset, empty or "0"
// is off, "1" on; anything else throws CudaError naming both values.
inline bool env_opt_in(const char *name, const char *off_means, const char *on_means) {
  const char *e = std::getenv(name);
  if (!e || !*e || (e[0] == '0' && !e[1])) return false;
  if (e[0] == '1' && !e[1]) return true;
  throw CudaError(std::string(name) + "=" + e + ": use 0 (" + off_means + ", the default) or 1 (" + on_means + ")");
}
// A count from the environment (callers keep it in a static: read once per process): unset or empty gives dflt;
// anything but an integer in [0, max] throws CudaError "NAME=value: what".
inline int32_t env_count(const char *name, int32_t dflt, long max, const char *what) {
  const char *e = std::getenv(name);
  if (!e || !*e) return dflt;
  char *end = nullptr;
  const long x = std::strtol(e, &end, 10);
  if (*end || x < 0 || x > max) throw CudaError(std::string(name) + "=" + e + ": " + what);
  return (int32_t)x;
}
// A choice among a few counts (callers keep it in a static): unset or empty gives dflt; anything else must be one of
// `allowed`, else CudaError "NAME=value: what".
inline int32_t env_one_of(const char *name, int32_t dflt, std::initializer_list<int32_t> allowed, const char *what) {
  long max = 0;
  for (int32_t v : allowed) max = v > max ? v : max;
  const int32_t x = env_count(name, dflt, max, what);
  if (x == dflt) return x;
  for (int32_t v : allowed)
    if (x == v) return x;
  throw CudaError(std::string(name) + "=" + std::getenv(name) + ": " + what);
}
// After a launch: catches bad configurations (not asynchronous faults).
#define QWC_LAUNCH_CHECK(what) ::qwc::cuda_check(cudaPeekAtLastError(), what, __FILE__, __LINE__)

// Engine-native weight types (same numbers as qw::NativeType in backend.hpp).
enum WType : int32_t { WT_F32 = 0, WT_F16 = 1, WT_BF16 = 2, WT_W8 = 3, WT_W4 = 4 };

// A device weight matrix [rows, cols] row-major in one of the native layouts.
//  W8: int8 codes [rows*cols]; W4: bytes [rows*cols/2], low nibble = even column;
//  scale/offset: fp32 [rows, cols/group], w = scale * q + offset.
//  tl_codes / tl_dm (optional, opt/gemv/two_level.hpp): the same scales and offsets in two levels, a 16-bit code a
//  group and an fp32 (D, M) pair per 256 columns, where the matrix has that form (K-quants); the W4 / W8 decode GEMVs
//  (gemv_q16, the int8 arm) read them instead (group_so: the same fp32 products, so the same bits), every other
//  reader the fp32 arrays (load_chunk's kernels too: the branch made gemv_vec spill, ptxas 2026-12-07).
struct WMat {
  const void *data = nullptr;
  const float *scale = nullptr;
  const float *offset = nullptr;
  int64_t rows = 0, cols = 0;
  int32_t group = 0;
  int32_t type = WT_BF16;
  const uint16_t *tl_codes = nullptr;  // [rows * cols / group]: low byte int8 scale code, high byte uint8 min code
  const float2 *tl_dm = nullptr;       // [rows * cols / 256]: (D, M)
  int32_t tl_shift = 0;                // log2(groups per 256 columns)
  // every group's offset the same bits (symmetric W8: q8, Q8_0, Q6_K without two levels): the decode GEMVs take
  // off_value instead of loading the offsets (4 of a group's 8 bytes of scales); the array stays for other readers
  int32_t off_uniform = 0;
  float off_value = 0.f;
};
// Scale and offset of group g (row * cols / group + column / group) of a W8 / W4 matrix. The two-level form is a
// uniform branch (per matrix); its products are the converter's (two_level.hpp): the same bits as the fp32 arrays.
__device__ __forceinline__ void group_so(const WMat &w, int64_t g, float &s, float &o) {
  if (w.tl_codes) {
    const uint32_t c = __ldg(w.tl_codes + g);
    const float2 dm = __ldg(w.tl_dm + (g >> w.tl_shift));
    // __fmul_rn: never contracted into a consumer's add (an fma would skip this product's rounding)
    s = __fmul_rn(dm.x, (float)(int8_t)(c & 0xffu));
    o = -__fmul_rn(dm.y, (float)(c >> 8));
  } else {
    s = __ldg(w.scale + g);
    o = w.off_uniform ? w.off_value : __ldg(w.offset + g);
  }
}
// Rows [r0, r0 + n) of w as a matrix of its own (its data and, for W8 / W4, its scale groups). For the row chunks of
// quantized prefill (prefill.cu gemm_chunked) and the lab's copy of that path.
inline WMat wmat_rows(const WMat &w, int64_t r0, int64_t n) {
  const int64_t row_bytes = w.type == WT_F32 ? w.cols * 4 : w.type == WT_F16 || w.type == WT_BF16 ? w.cols * 2
                            : w.type == WT_W8 ? w.cols : w.cols / 2;
  const int64_t gpr = w.group ? w.cols / w.group : 0;
  WMat sub = w;
  sub.rows = n;
  sub.data = (const uint8_t *)w.data + r0 * row_bytes;
  if (gpr) { sub.scale = w.scale + r0 * gpr; sub.offset = w.offset + r0 * gpr; }
  if (w.tl_codes) { sub.tl_codes = w.tl_codes + r0 * gpr; sub.tl_dm = w.tl_dm + r0 * (w.cols / 256); }
  return sub;
}

__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ float bf16r(float x) { return __bfloat162float(__float2bfloat16(x)); }

__device__ __forceinline__ uint4 ld_stream16(const void *p) {
  // Weights are read once per step: do not allocate them in L1.
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}
__device__ __forceinline__ uint2 ld_stream8(const void *p) {
  uint2 r;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
  return r;
}
__device__ __forceinline__ uint32_t ld_stream4(const void *p) {
  uint32_t r;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(r) : "l"(p));
  return r;
}

// Raw 8-element chunk of a weight row (what one lane loads at once), per type.
template <int WT> struct Chunk;
template <> struct Chunk<WT_BF16> { uint4 v; };
template <> struct Chunk<WT_F16> { uint4 v; };
template <> struct Chunk<WT_F32> { uint4 a, b; };
template <> struct Chunk<WT_W8> { uint2 v; float s, o; };
template <> struct Chunk<WT_W4> { uint32_t v; float s, o; };

// Loads the 8 weights at (row, col..col+7); col % 8 == 0 and cols % 8 == 0 are required.
template <int WT>
__device__ __forceinline__ Chunk<WT> load_chunk(const WMat &w, int64_t row, int64_t col) {
  Chunk<WT> c;
  if constexpr (WT == WT_BF16 || WT == WT_F16) {
    c.v = ld_stream16(reinterpret_cast<const uint16_t *>(w.data) + row * w.cols + col);
  } else if constexpr (WT == WT_F32) {
    const float *p = reinterpret_cast<const float *>(w.data) + row * w.cols + col;
    c.a = ld_stream16(p);
    c.b = ld_stream16(p + 4);
  } else if constexpr (WT == WT_W8) {
    c.v = ld_stream8(reinterpret_cast<const int8_t *>(w.data) + row * w.cols + col);
    int64_t g = row * (w.cols / w.group) + col / w.group;
    c.s = __ldg(w.scale + g);
    c.o = __ldg(w.offset + g);
  } else {
    c.v = ld_stream4(reinterpret_cast<const uint8_t *>(w.data) + (row * w.cols + col) / 2);
    int64_t g = row * (w.cols / w.group) + col / w.group;
    c.s = __ldg(w.scale + g);
    c.o = __ldg(w.offset + g);
  }
  return c;
}

// Converts a chunk to 8 floats.
template <int WT>
__device__ __forceinline__ void unpack_chunk(const Chunk<WT> &c, float f[8]) {
  if constexpr (WT == WT_BF16) {
    f[0] = bf16_lo(c.v.x); f[1] = bf16_hi(c.v.x); f[2] = bf16_lo(c.v.y); f[3] = bf16_hi(c.v.y);
    f[4] = bf16_lo(c.v.z); f[5] = bf16_hi(c.v.z); f[6] = bf16_lo(c.v.w); f[7] = bf16_hi(c.v.w);
  } else if constexpr (WT == WT_F16) {
    const uint32_t u[4] = {c.v.x, c.v.y, c.v.z, c.v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h = *reinterpret_cast<const __half2 *>(&u[i]);
      float2 t = __half22float2(h);
      f[2 * i] = t.x; f[2 * i + 1] = t.y;
    }
  } else if constexpr (WT == WT_F32) {
    f[0] = __uint_as_float(c.a.x); f[1] = __uint_as_float(c.a.y); f[2] = __uint_as_float(c.a.z);
    f[3] = __uint_as_float(c.a.w); f[4] = __uint_as_float(c.b.x); f[5] = __uint_as_float(c.b.y);
    f[6] = __uint_as_float(c.b.z); f[7] = __uint_as_float(c.b.w);
  } else if constexpr (WT == WT_W8) {
#pragma unroll
    for (int i = 0; i < 4; ++i) f[i] = fmaf(c.s, (float)(int8_t)((c.v.x >> (8 * i)) & 0xff), c.o);
#pragma unroll
    for (int i = 0; i < 4; ++i) f[4 + i] = fmaf(c.s, (float)(int8_t)((c.v.y >> (8 * i)) & 0xff), c.o);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = fmaf(c.s, (float)((c.v >> (4 * i)) & 0xf), c.o);
  }
}

// One weight element (slow path for tails and gathers).
__device__ __forceinline__ float load_weight(const WMat &w, int64_t row, int64_t col) {
  const int64_t i = row * w.cols + col;
  switch (w.type) {
    case WT_F32: return reinterpret_cast<const float *>(w.data)[i];
    case WT_F16: return __half2float(reinterpret_cast<const __half *>(w.data)[i]);
    case WT_BF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(w.data)[i]);
    case WT_W8: {
      int64_t g = row * (w.cols / w.group) + col / w.group;
      return fmaf(w.scale[g], (float)reinterpret_cast<const int8_t *>(w.data)[i], w.offset[g]);
    }
    default: {
      int64_t g = row * (w.cols / w.group) + col / w.group;
      uint8_t b = reinterpret_cast<const uint8_t *>(w.data)[i >> 1];
      float q = (float)((i & 1) ? (b >> 4) : (b & 0xf));
      return fmaf(w.scale[g], q, w.offset[g]);
    }
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Inclusive prefix sum over the warp's lanes (all 32 active).
__device__ __forceinline__ int warp_scan_incl(int v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += y;
  }
  return v;
}

inline int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

// ---- Programmatic dependent launch (Hopper) --------------------------------------------------------------
// Every kernel of libqwen calls pdl_wait() before its first global write or read of data produced by an
// earlier kernel (only immutable weights may be read before it), then pdl_trigger(). Kernels are launched
// through qwc::launch(), which sets the programmatic-stream-serialization attribute when PDL is enabled
// (QW_PDL=0 turns it off): the next kernel's blocks then start while this one drains, prefetch their weights,
// and wait in pdl_wait() until this grid has completed and its memory is visible. Without the attribute
// (or on sm_80) both calls are no-ops.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Opts a kernel in to `smem` bytes of dynamic shared memory (cudaFuncSetAttribute) on the current device, once per
// device and size: the attribute is per device, so each rank of a tensor-parallel group (parallel = tpN, one device
// per rank) needs its own call. One instance per call site (a function-local static); ranks on different devices
// touch different slots.
struct SmemOptIn {
  size_t opted[64] = {};
  template <typename K>
  void operator()(K kernel, size_t smem) {
    int dev = 0;
    QWC_CHECK(cudaGetDevice(&dev));
    size_t &o = opted[dev & 63];
    if (smem <= o) return;
    QWC_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    o = smem;
  }
};

// The current device's shared memory per block with the opt-in (cudaDevAttrMaxSharedMemoryPerBlockOptin), bytes:
// what a kernel may ask for with SmemOptIn. Queried once per device (launchers call it on every launch).
inline int64_t smem_optin_bytes() {
  static int bytes[64] = {};
  int dev = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  int &b = bytes[dev & 63];
  if (b == 0) QWC_CHECK(cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return b;
}

bool pdl_enabled();
void set_pdl(bool on);

template <typename... KArgs, typename... Args>
inline void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args &&...args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), "cudaLaunchKernelEx", __FILE__, __LINE__);
}

}  // namespace qwc
