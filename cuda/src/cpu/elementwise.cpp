// elementwise.cpp — residual add and SwiGLU's silu(gate) * up, fp32.
#include <cmath>

#include "cpu.hpp"

namespace qw {
namespace cpu {

void residual_add(float *x, const float *y, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void swiglu(float *out, const float *gate, const float *up, int64_t n, int threads) {
  // silu(g) = g * sigmoid(g) = g / (1 + exp(-g)); exp(-g) overflowing to inf gives -0/+0, the right limit.
#pragma omp parallel for schedule(static) num_threads(threads) if (n >= (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace cpu
}  // namespace qw
