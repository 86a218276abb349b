// norm.cpp — RMSNorm as in HF Qwen2RMSNorm computed in fp32: y = w * (x * rsqrt(mean(x^2) + eps)).
// The sum of squares is accumulated in double: H is at most a few thousand, so this costs nothing and
// keeps the result within one rounding of the exact value (the fp64 reference and HF fp32 both sit there).
#include <cmath>

#include "cpu.hpp"

namespace qw {
namespace cpu {

void rmsnorm_row(float *out, const float *x, const float *w, int64_t H, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < H; ++i) ss += double(x[i]) * double(x[i]);
  const float var = float(ss / double(H));
  const float r = 1.0f / std::sqrt(var + eps);
  for (int64_t i = 0; i < H; ++i) out[i] = w[i] * (x[i] * r);
}

void rmsnorm(float *out, const float *x, const float *w, int64_t T, int64_t H, float eps, Pool &pool) {
  // One row is ~1 us of work: only long prefills are worth splitting.
  parallel_range(pool, T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) rmsnorm_row(out + t * H, x + t * H, w, H, eps);
  });
}

}  // namespace cpu
}  // namespace qw
