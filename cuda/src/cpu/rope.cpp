// rope.cpp — rotary position embedding, NeoX pairing (element i rotates with i + d/2), as HF Qwen2:
//   inv_freq[i] = 1 / theta^(2i/d)   (fp32, as torch computes arange(0,d,2).float()/d then base ** that)
//   angle = float(pos) * inv_freq[i] (fp32), cos/sin of the fp32 angle
//   x'[i] = x[i] cos - x[i+d/2] sin;   x'[i+d/2] = x[i+d/2] cos + x[i] sin
#include <cmath>

#include "cpu.hpp"

namespace qw {
namespace cpu {

RopeTable rope_table(int32_t max_pos, int32_t head_dim, float theta) {
  RopeTable t;
  t.half = head_dim / 2;
  std::vector<float> inv(size_t(t.half));
  for (int32_t i = 0; i < t.half; ++i) {
    const float e = float(2 * i) / float(head_dim);
    inv[size_t(i)] = 1.0f / float(std::pow(double(theta), double(e)));
  }
  t.cos.resize(size_t(max_pos) * size_t(t.half));
  t.sin.resize(size_t(max_pos) * size_t(t.half));
  for (int32_t p = 0; p < max_pos; ++p)
    for (int32_t i = 0; i < t.half; ++i) {
      const float a = float(p) * inv[size_t(i)];
      t.cos[size_t(p) * size_t(t.half) + size_t(i)] = float(std::cos(double(a)));
      t.sin[size_t(p) * size_t(t.half) + size_t(i)] = float(std::sin(double(a)));
    }
  return t;
}

void rope_apply(float *x, int64_t T, int64_t row_stride, int32_t n_heads, int32_t head_dim, const int32_t *pos,
                const RopeTable &tab) {
  const int32_t h2 = head_dim / 2;
  for (int64_t t = 0; t < T; ++t) {
    const float *c = tab.cos.data() + size_t(pos[t]) * size_t(h2);
    const float *s = tab.sin.data() + size_t(pos[t]) * size_t(h2);
    for (int32_t h = 0; h < n_heads; ++h) {
      float *a = x + t * row_stride + int64_t(h) * head_dim, *b = a + h2;
      for (int32_t i = 0; i < h2; ++i) {  // vectorizes (independent lanes)
        const float x0 = a[i], x1 = b[i];
        a[i] = x0 * c[i] - x1 * s[i];
        b[i] = x1 * c[i] + x0 * s[i];
      }
    }
  }
}

}  // namespace cpu
}  // namespace qw
