// mbarrier.cuh — the sm_90 pieces the shared-memory weight rings share (opt/decode/persistent_ring.cuh,
// opt/act_quant/gemv_i8_ring.cuh): shared-memory addresses, mbarrier init / expect_tx / parity waits with a watchdog,
// 1D bulk copies global -> shared completed on an mbarrier, and the generic -> async proxy fence. The sm_80 build
// compiles them (QW_BULK_ARCH 0) but its hosts never launch a ring kernel: there the bodies trap rather than assemble.
#pragma once
#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define QW_BULK_ARCH 1
#else
#define QW_BULK_ARCH 0
#endif

namespace qwc {
namespace bulk {

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ bool mbar_try(uint64_t *bar, uint32_t parity) {
#if QW_BULK_ARCH
  uint32_t ok;
  asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
               : "=r"(ok)
               : "r"(smem_u32(bar)), "r"(parity)
               : "memory");
  return ok != 0;
#else
  __trap();
  return true;
#endif
}

// Watchdog: a fill takes microseconds; ~2^27 polls (seconds) mean a protocol bug (a phase never armed): trap (the launch
// fails with an error) rather than hang. Counted in polls, not wall-clock time, which keeps running while the context
// is preempted or slowed by compute-sanitizer.
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
  for (uint32_t polls = 0; !mbar_try(bar, parity);) {
    __nanosleep(32);
    if (++polls == (1u << 27)) __trap();
  }
}

// One arrival (the issuer's) that also expects `bytes` of transactions in the barrier's current phase.
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
#if QW_BULK_ARCH
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
#else
  (void)bar, (void)bytes;
  __trap();
#endif
}

// `bytes` (a multiple of 16, both ends 16-byte aligned) global -> shared, completed on `bar`.
__device__ __forceinline__ void copy_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
#if QW_BULK_ARCH
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
#else
  (void)dst, (void)src, (void)bytes, (void)bar;
  __trap();
#endif
}

// The executing thread's generic-proxy accesses of shared memory before its later async-proxy ones (a refill after
// the stage's readers are done).
__device__ __forceinline__ void fence_proxy_async() {
#if QW_BULK_ARCH
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

}  // namespace bulk
}  // namespace qwc
