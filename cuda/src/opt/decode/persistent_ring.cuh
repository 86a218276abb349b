// persistent_ring.cuh — QW_PERSIST_RING=1 (default off; PersistArgs::ring_stages): the GEMV tasks of the persistent
// decode kernel (persistent_kernels.cu, its only includer) read their weights from a ring of shared-memory stages that
// the TMA unit fills with 1D bulk copies, instead of register loads from global memory. sm_90 only: compiled out of
// the sm_80 build (QW_RING_ARCH), and the host runs the ring kernel only where persistent_ring_stages allows it.
// Compile-checked only so far: `qwlab persistent` (row "ring = register path, bits", "persistent step (ring)").
//
// Why: the eleventh run's trace has the GEMV tasks streaming at 1-2 TB/s (0.5B lm_head 15 GB/s per SM against a copy
// roofline of ~23): a warp holds one row pair's 4 rounds of 2 x 16-byte loads per lane, so the bytes in flight per SM
// are few, and the first of them leave only after the task's counter wait. With the ring, up to 4 x 36 KiB per SM are
// in flight with no registers held, and the first stages are issued BEFORE the wait (weights never depend on it).
//
// Layout (persistent_plan.hpp ring_offset / smem_dynamic_bytes): n stages of kRingStageBytes at ring_offset(d) (128-byte
// aligned from a 16-byte aligned dynamic base: the bulk copy's destination needs 16), then n mbarriers ("full": one
// arrival, the issuer's expect_tx, plus the copy's bytes per phase) and n arrival counters.
// Protocol, per GEMV task with ring_chunks(d, t, n).chunks > 0 (chunk c = whole row pairs [c P, c P + P) of the task,
// one contiguous byte range, into stage c % n):
//  1. thread 0 issues chunks 0 .. min(n, chunks) - 1 before it spins on the task's input counter. The ring is free
//     then: its last readers (the previous ring task's warps) passed that task's closing __syncthreads, which thread 0
//     passed too; every fill of that task completed before it (each chunk has a pair whose warp waited on it).
//  2. a warp reads pair pr after waiting on the full barrier of chunk pr / P with that chunk's parity.
//  3. a chunk c with c + n < chunks is refilled with chunk c + n once all kBlockWarps warps are past it: a warp
//     arrives at counter[c % n] (lane 0, shared atomic, after __syncwarp and a CTA fence: its lanes' reads of the
//     stage are done) when it moves on from chunk c, and the last of the 8 (count % 8 == 7) issues the refill after a
//     CTA fence and fence.proxy.async (the generic-proxy reads ordered before the async-proxy write). A warp that has
//     no pair in chunk c still waits for chunk c's fill before it arrives: so its arrival for chunk c + n can never be
//     counted among chunk c's (the fill of c + n is issued only after the 8th arrival for c), the counts come in
//     clean groups of 8, and no stage is overwritten while a slow warp still reads it.
//  4. phases: every thread keeps the same `phase` bits (ring_parity / ring_phase_after, checked by the CPU test):
//     fills of a stage complete in issue order and a warp never waits two phases behind (the next fill of a stage
//     is issued only after every warp arrived past the current one), so try_wait.parity is unambiguous. Tasks off the
//     ring (attention, embed, empty splits that `continue`, 7B down) leave the bits alone; the kernel is relaunched
//     every step and re-initializes the barriers (phase 0) and counters at its start.
// Invariant (the lab's "ring = register path, bits"): the ring changes where the weights come from, never the sums.
// gemv_tile runs the same per-lane k order, the same K split S (from the WHOLE task's pair count), the same warp_sum
// and part order and the same epilogue calls with either weight source; the pair -> warp map is unchanged as well.
#pragma once
#include "mbarrier.cuh"
#include "persistent.cuh"

#define QW_RING_ARCH QW_BULK_ARCH

namespace qwc {
namespace {

using bulk::fence_proxy_async;
using bulk::mbar_wait;
using bulk::smem_u32;

// The ring of one block: where it lives, its stage count and the phase bits (ring_parity). Empty when off.
struct Ring {
  unsigned char *stage0 = nullptr;  // stage s at stage0 + s * kRingStageBytes
  uint64_t *full = nullptr;         // [n] mbarriers
  int32_t *arrived = nullptr;       // [n] warps past the stage's chunks, cumulative (refilled chunks only)
  int32_t n = 0;
  uint32_t phase = 0;
};

// One task on the ring: its weights (row r0 of the matrix), K, its rows and chunking (ring_chunks).
struct RingTask {
  const __nv_bfloat16 *W;
  int64_t K;
  int32_t r0, r1, pairs_per_chunk, chunks;
};

// The PTX below is sm_90's: the sm_80 build (QW_RING_ARCH 0) compiles the ring kernel with the ring taken out
// (persistent_kernels.cu kRingOn), so these bodies are never reached there; they trap rather than assemble. The
// mbarrier wait (with its watchdog) is mbarrier.cuh's.

// Chunk c of task t into its stage: expect_tx of its bytes on the stage's barrier, then the bulk copy that completes
// them. Row bytes K * 2 are a multiple of 16 (persistent_refusal: hidden, inter % 8 == 0) and the matrices 256-byte
// aligned (cudaMalloc), so source, destination and size meet the copy's 16-byte rule. One thread.
__device__ __forceinline__ void ring_issue(const Ring &r, const RingTask &t, int32_t c) {
  const int32_t s = c % r.n;
  const int32_t row0 = t.r0 + 2 * c * t.pairs_per_chunk, row1 = min(t.r1, row0 + 2 * t.pairs_per_chunk);
  const uint32_t bytes = (uint32_t)((int64_t)(row1 - row0) * t.K * 2);
  const uint32_t bar = smem_u32(r.full + s);
#if QW_RING_ARCH
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_u32(r.stage0 + (int64_t)s * qw::persist::kRingStageBytes)),
               "l"(t.W + (int64_t)(row0 - t.r0) * t.K), "r"(bytes), "r"(bar)
               : "memory");
#else
  (void)bar, (void)bytes;
  __trap();
#endif
}

// Step 1 (thread 0, before the task's wait): the first min(n, chunks) chunks.
__device__ __forceinline__ void ring_start(const Ring &r, const RingTask &t) {
  fence_proxy_async();  // the previous task's generic-proxy reads of the ring, then async-proxy writes
  for (int32_t c = 0; c < t.chunks && c < r.n; ++c) ring_issue(r, t, c);
}

// Once per launch, before any task: barriers in phase 0 with one arrival each, counters 0, visible to the block and to
// the async proxy (fence.mbarrier_init: the TMA unit's complete_tx must find the initialized barrier).
__device__ __forceinline__ Ring ring_init(unsigned char *smem, const PersistArgs &a) {
  Ring r;
  r.n = a.ring_stages;
  r.stage0 = smem + qw::persist::ring_offset(a.d);
  r.full = reinterpret_cast<uint64_t *>(r.stage0 + (int64_t)r.n * qw::persist::kRingStageBytes);
  r.arrived = reinterpret_cast<int32_t *>(r.full + r.n);
  if (threadIdx.x == 0) {
#if QW_RING_ARCH
    for (int32_t s = 0; s < r.n; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(r.full + s)) : "memory");
      r.arrived[s] = 0;
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
  }
  __syncthreads();
  return r;
}

// gemv_tile's weight source on the ring (the other one, WeightsGlobal, is in persistent_kernels.cu). Per warp: `past`
// counts the chunks this warp has moved on from (step 3). Every call is warp-uniform (gemv_tile's pair loop is).
struct WeightsRing {
  Ring r;
  RingTask t;
  int32_t past = 0;
  // Step 2: pair pr's first row in its stage, readable (the warp first moves on from the chunks before pr's).
  __device__ __forceinline__ const __nv_bfloat16 *pair(int pr) {
    const int32_t c = pr / t.pairs_per_chunk;
    move_to(c);
    mbar_wait(r.full + c % r.n, qw::persist::ring_parity(r.phase, c, r.n));
    return reinterpret_cast<const __nv_bfloat16 *>(r.stage0 + (int64_t)(c % r.n) * qw::persist::kRingStageBytes) +
           (int64_t)(pr - c * t.pairs_per_chunk) * 2 * t.K;
  }
  // The warp has no pairs left: it moves on from every chunk (the refills of the chunks it never read still count it).
  __device__ __forceinline__ void finish() {
    if (t.chunks > r.n) move_to(t.chunks);
  }
  // Step 3 for chunks [past, c): only chunks with a refill (c + n < chunks) are counted. The wait is a no-op for
  // chunks this warp read; for the others it keeps the counts in groups of 8 (see the header).
  __device__ __forceinline__ void move_to(int32_t c) {
    for (; past < c; ++past) {
      if (past + r.n >= t.chunks) continue;
      const int32_t s = past % r.n;
      mbar_wait(r.full + s, qw::persist::ring_parity(r.phase, past, r.n));
      __syncwarp();
      if ((threadIdx.x & 31) == 0) {
        __threadfence_block();
        if (atomicAdd(r.arrived + s, 1) % qw::persist::kBlockWarps == qw::persist::kBlockWarps - 1) {
          __threadfence_block();
          fence_proxy_async();
          ring_issue(r, t, past + r.n);
        }
      }
      __syncwarp();
    }
  }
  // 16 bytes of a row pair in the stage (the same k a lane loads from global memory on the register path). Volatile:
  // kept after the barrier wait above (an asm volatile with a memory clobber).
  static __device__ __forceinline__ uint4 ld(const __nv_bfloat16 *p) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(smem_u32(p)));
    return v;
  }
};

}  // namespace
}  // namespace qwc
