// l2bw.cu — L2 read-bandwidth microbenchmark (see l2bw.cuh). The buffer is re-read `passes` times by a grid of
// 4 blocks per SM; each pass starts every block at a different offset (a rotation), so the blocks of one SM do
// not read the same lines at the same moment and the L2 slices are loaded evenly.
#include "l2bw.cuh"

#include <cstdint>

namespace qwc {
namespace {
__global__ void __launch_bounds__(512) l2_read_kernel(const uint4 *__restrict__ buf, size_t n, int passes, unsigned *sink) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned acc = 0;
  for (int p = 0; p < passes; ++p) {
    const size_t start = (tid + size_t(p) * 7919 * blockDim.x) % n;
    size_t i = start;
    for (size_t k = tid; k < n; k += stride) {  // n / stride loads per thread, i wraps around the buffer
      const uint4 v = __ldcg(buf + i);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
      i += stride;
      if (i >= n) i -= n;
    }
  }
  if (acc == 0x9E3779B9u) sink[0] = acc;  // data-dependent store: the loads must happen
}
}  // namespace

cudaError_t launch_l2_read(const void *buf, size_t bytes, int passes, unsigned *sink, cudaStream_t s) {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const size_t n = bytes / sizeof(uint4);
  l2_read_kernel<<<4 * sms, 512, 0, s>>>(static_cast<const uint4 *>(buf), n, passes, sink);
  return cudaPeekAtLastError();
}
}  // namespace qwc
