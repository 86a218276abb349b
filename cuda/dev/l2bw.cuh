// l2bw.cuh — the GPU's L2 read bandwidth, for the L2 roof of the roofline (qwlab calib -> notebooks/calibrate.ts).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace qwc {
// Reads a `bytes`-sized device buffer (a multiple of 16, sized by the caller to fit L2) `passes` times with
// 16-byte ld.global.cg loads (cached in L2, not in L1), every SM's blocks over the whole buffer, and folds the
// data into one word of `sink` (so nothing is optimised away). Returns the launch error, if any.
cudaError_t launch_l2_read(const void *buf, size_t bytes, int passes, unsigned *sink, cudaStream_t s);
}  // namespace qwc
