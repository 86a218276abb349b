// gemv_i8_ring.cuh — the int8 arm's ring variant (QW_GEMV_I8_RING=1, opt-in until measured; sm_90): the loop variant
// (gemv_i8.cuh gemv_i8_loop_kernel) with each row tile's codes, scales and offsets bulk-copied into a shared-memory
// stage by the TMA unit instead of loaded into registers (gemv_i8_ring_plan.hpp says why and the layout). Included by
// gemv_i8.cuh after the loop kernel.
//
// Protocol (one block; a unit = one of its tiles over one K chunk (gemv_i8_ring_plan.hpp), its units u = tile j x nk +
// chunk q in walk order; stage s = u % stages holds units u with that remainder, fill number u / stages):
//  1. thread 0 initializes the stages' mbarriers (one arrival: the issuer's expect_tx) and counters, then warp 0
//     issues the first min(stages, units) units BEFORE the prologue's PDL wait (weights never depend on the previous
//     kernel).
//  2. every warp waits on unit u's barrier with parity (u / stages) & 1, reads its rounds of that K chunk from the stage
//     (the same 16-byte chunks, scales and offsets, into the same registers, in the same order as the loop variant's
//     global loads), and once done with the stage arrives: lane 0 adds 1 to the stage's counter after __syncwarp and a
//     CTA fence.
//  3. the warp whose arrival completes a group of kWarps (count % kWarps == kWarps - 1) issues unit u + stages into the
//     stage (a CTA fence and fence.proxy.async before: the generic-proxy reads, then the async-proxy write), its lanes
//     one row each where a unit is not one contiguous range. A warp can arrive for fill f + 1 of a stage only after
//     waiting on it, which needs fill f's kWarps arrivals: the counts come in clean groups and a barrier is never two
//     phases ahead of a waiter (try_wait.parity is unambiguous).
// Invariant (the lab's row "ring = loop, bits"): a lane reads the same values as on the register path, in the same
// order (a K chunk is a multiple of the lane walk's period: each lane's chunks of a row ascend across units), into the
// same i8_use and finish_rows: the same bits as the loop variant and as gemv_i8_kernel's K tiles.
#pragma once
#include "gemv_i8_ring_plan.hpp"
#include "mbarrier.cuh"

namespace qwc {
namespace i8detail {

using RingGeo = qw::i8ring::Geo;

// Unit (tile, K chunk q) into stage s, by one warp (every lane calls it): lane 0 posts the expect_tx of all its bytes,
// then the copies (gemv_i8_ring_plan.hpp unit_of / src_* / dst_*): three contiguous ranges where the chunk is the whole
// row (lane 0), else a row's codes, scales and offsets per lane (rows lane, lane + 32, ...).
__device__ __forceinline__ void i8_ring_issue(const GemvArgs &a, const RingGeo &g, unsigned char *ring0, uint64_t *full,
                                              int64_t tile, int64_t q, int s, int lane) {
  using namespace qw::i8ring;
  const Unit u = unit_of(g, tile, q);
  unsigned char *st = ring0 + (int64_t)s * g.stage_bytes;
  const uint8_t *codes = reinterpret_cast<const uint8_t *>(a.w.data);
  if (lane == 0) bulk::mbar_expect_tx(full + s, u.total);
  __syncwarp();
  // after the __syncwarp that orders this lane after the refill decision (itself after every warp's reads of the
  // stage): those generic-proxy reads, then this lane's async-proxy writes
  bulk::fence_proxy_async();
  const auto copy_rows = [&](int64_t r, uint32_t n) {  // rows [r, r + n) of the unit, each part in one copy
    bulk::copy_g2s(st + dst_codes(g, r), codes + src_codes(g, u, r), n * u.cb, full + s);
    bulk::copy_g2s(st + dst_scales(g, r), a.w.scale + src_group(g, u, r), n * u.sb, full + s);
    if (g.offsets_loaded) bulk::copy_g2s(st + dst_offsets(g, r), a.w.offset + src_group(g, u, r), n * u.sb, full + s);
  };
  if (g.nk == 1) {  // whole rows: the unit's rows are contiguous in the matrix and in the stage
    if (lane == 0) copy_rows(0, (uint32_t)u.nr);
  } else {
    for (int64_t r = lane; r < u.nr; r += 32) copy_rows(r, 1);
  }
}

template <int WT, int NB, int R, int U, bool KS, bool PRE>
__global__ void __launch_bounds__(kThreads) gemv_i8_ring_kernel(const GemvArgs a, const int ks_arg, const RingGeo g) {
  constexpr int E = i8_per<WT>();
  const int ks = KS ? ks_arg : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];  // (the ring starts at ring_off: 128 from this base)
  const int64_t rows = a.w.rows, cols = a.w.cols;
  const int kt = (int)cols, nct = i8_nct<WT>(kt), nchunks = (int)(cols / E);
  float *d_s = reinterpret_cast<float *>(smem_raw);          // [NB][nct]: the whole K's activations, staged once
  float *xs_s = d_s + NB * nct;                               // [NB][nct]
  int8_t *q_s = reinterpret_cast<int8_t *>(xs_s + NB * nct);  // [NB][kt]
  unsigned char *ring0 = smem_raw + g.ring_off;               // [stages][stage_bytes]
  uint64_t *full = reinterpret_cast<uint64_t *>(ring0 + (int64_t)g.stages * g.stage_bytes);  // [stages]
  int32_t *arrived = reinterpret_cast<int32_t *>(full + g.stages);                           // [stages]
  __shared__ float rstd_s[16];
  __shared__ float red_s[kWarps][KS ? R * NB : 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t rpt = g.rpt;  // rows per tile (groups * R): the tile's rows are consecutive
  const int64_t ntiles = (rows + rpt - 1) / rpt;
  const int64_t mine = ntiles > blockIdx.x ? (ntiles - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;  // tiles of this block
  const int64_t units = mine * g.nk;
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;
  const int kcc = (int)(g.kc / E);  // chunks per K chunk (a multiple of cstride)
  const bool uni = a.w.off_uniform != 0;
  const auto unit_tile = [&](int64_t u) { return blockIdx.x + (u / g.nk) * gridDim.x; };

  if (warp == 0) {
#if QW_BULK_ARCH
    if (lane == 0) {
      for (int s = 0; s < g.stages; ++s) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bulk::smem_u32(full + s)) : "memory");
        arrived[s] = 0;
      }
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
#endif
    __syncwarp();
    for (int64_t u = 0; u < units && u < g.stages; ++u) i8_ring_issue(a, g, ring0, full, unit_tile(u), u % g.nk, (int)u, lane);
  }
  __syncthreads();  // the barriers initialized before any thread waits on them
  gemv_prologue<NB>(a, rstd_s);
  if constexpr (PRE) stage_pre<NB, WT>(a, q_s, d_s, xs_s, 0, kt, nct, true);
  else stage_i8<NB, WT>(a, q_s, d_s, xs_s, rstd_s, 0, kt, nct, true);

  uint4 wv[R][U];
  float sc[R][U], of[R][U];
  for (int64_t j = 0; j < mine; ++j) {
    const int64_t tile = blockIdx.x + j * gridDim.x;
    const int64_t t0 = tile * rpt, row0 = t0 + (int64_t)rgroup * R;
    float acc[R][NB];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
    for (int64_t q = 0; q < g.nk; ++q) {
      const int64_t u = j * g.nk + q;
      const int s = (int)(u % g.stages);
      const unsigned char *st = ring0 + (int64_t)s * g.stage_bytes;
      const float *sc_s = reinterpret_cast<const float *>(st + g.w_bytes);
      const float *of_s = reinterpret_cast<const float *>(st + g.w_bytes + g.so_bytes);
      const int cq0 = (int)q * kcc, cq1 = min(nchunks, cq0 + kcc);  // this unit's chunks [cq0, cq1)
      bulk::mbar_wait(full + s, (uint32_t)((u / g.stages) & 1));
      for (int c0 = cq0 + cbase; c0 < cq1; c0 += cstride * U) {
#pragma unroll
        for (int uu = 0; uu < U; ++uu) {  // the loop variant's load(row0, c0), from the stage
          const int c = c0 + cstride * uu;
          if (c >= cq1) continue;
          const int64_t kk = (int64_t)E * (c - cq0);  // column within the K chunk
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int64_t lr = min(row0 + r, rows - 1) - t0;  // the row in the stage (clamped rows as the loop variant)
            wv[r][uu] = *reinterpret_cast<const uint4 *>(st + qw::i8ring::at_codes(g, lr, kk, WT == WT_W4));
            const int64_t gi = qw::i8ring::at_group(g, lr, kk);
            sc[r][uu] = sc_s[gi];
            of[r][uu] = uni ? a.w.off_value : of_s[gi];
          }
        }
#pragma unroll
        for (int uu = 0; uu < U; ++uu)
          if (c0 + cstride * uu < cq1) i8_use<WT, NB, R, U>(acc, wv, sc, of, uu, c0 + cstride * uu, q_s, d_s, xs_s, kt, nct, lane);
      }
      // done with the stage: arrive; the warp completing the group refills it with unit u + stages
      __syncwarp();
      int refill = 0;
      if (lane == 0) {
        __threadfence_block();
        refill = atomicAdd(arrived + s, 1) % kWarps == kWarps - 1 && u + g.stages < units;
        if (refill) __threadfence_block();
      }
      refill = __shfl_sync(0xffffffffu, refill, 0);
      if (refill) {  // (i8_ring_issue fences the proxies after its __syncwarp)
        const int64_t un = u + g.stages;
        i8_ring_issue(a, g, ring0, full, unit_tile(un), un % g.nk, s, lane);
      }
      __syncwarp();
    }
    if (KS && ks > 1) __syncthreads();  // red_s: the previous tile's readers are done (block-uniform)
    finish_rows<R, NB, KS>(a, acc, row0, ks, kpart, red_s);
  }
}

// The ring's plan for `kern` (a gemv_i8_ring_kernel instance) at K split ks: its static shared memory taken off the
// opt-in per block.
template <int WT, int NB, int R, class Kernel>
qw::i8ring::Plan ring_plan_for(Kernel kern, const GemvArgs &a, int ks) {
  cudaFuncAttributes fa{};
  QWC_CHECK(cudaFuncGetAttributes(&fa, kern));
  if (fa.binaryVersion < 90) {  // the loaded code is not sm_90's (e.g. compute_80 PTX JIT-compiled): its body traps
    qw::i8ring::Plan p;
    p.why = "the kernel's loaded code is not sm_90";
    return p;
  }
  return qw::i8ring::plan(a.w.rows, a.w.cols, a.w.group, WT == WT_W4, !a.w.off_uniform, a.w.tl_codes != nullptr,
                          (kWarps / ks) * R, (int64_t)i8_per<WT>() * 32 * ks, (int64_t)i8_smem<WT>(NB, (int)a.w.cols),
                          smem_optin_bytes() - (int64_t)fa.sharedSizeBytes);
}

// The device can run the ring (sm_90+: bulk copies, mbarrier transaction counts). Once per device.
inline bool ring_device() {
  static int major[64] = {};
  int dev = 0;
  QWC_CHECK(cudaGetDevice(&dev));
  int &m = major[dev & 63];
  if (m == 0) QWC_CHECK(cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev));
  return m >= 9;
}

}  // namespace i8detail
}  // namespace qwc
