// sage_cpu.cpp — the CPU backend's layer call of the Sage arms: per (sequence, kv head) prepare, then one task per
// (sequence, query head, query block) on the pool (the math: sage_ref_cpu.cpp).
#include "sage_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "cpu.hpp"
#include "half.hpp"

namespace qw {
namespace cpu {

const char *sage_kernel_name(bool fp8, bool kv_bf16) {
  if (fp8) return kv_bf16 ? "cpu.attention.sage-fp8.kv_bf16" : "cpu.attention.sage-fp8.kv_f32";
  return kv_bf16 ? "cpu.attention.sage-int8.kv_bf16" : "cpu.attention.sage-int8.kv_f32";
}

void attention_sage(const KvStore &kv, const AttnArgs &a, bool fp8) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const int64_t qd = int64_t(nH) * d;
  const size_t nS = st.seq.size();
  // 1. Per (sequence, kv head): widen the cache rows to fp32 (exact) and prepare smooth-K / INT8 K / V'.
  std::vector<SageKv> prep(nS * size_t(nKV));
  std::atomic<int64_t> next{0};
  const int64_t n_prep = int64_t(prep.size());
  a.pool->run(int(std::max<int64_t>(1, std::min<int64_t>(a.pool->size(), n_prep))), [&] {
    std::vector<float> K, V;
    for (int64_t t = next++; t < n_prep; t = next++) {
      const size_t s = size_t(t / nKV);
      const int32_t kh = int32_t(t % nKV), len = st.pos0[s] + st.n_new[s];
      K.resize(size_t(len) * d);
      V.resize(size_t(len) * d);
      const int64_t base = kv.offset(a.layer, st.seq[s], kh, 0);
      for (int64_t i = 0; i < int64_t(len) * d; ++i) {
        K[size_t(i)] = kv.bf16 ? bf16_to_float(kv.kb[size_t(base + i)]) : kv.kf[size_t(base + i)];
        V[size_t(i)] = kv.bf16 ? bf16_to_float(kv.vb[size_t(base + i)]) : kv.vf[size_t(base + i)];
      }
      sage_prepare_kv(fp8, K.data(), V.data(), len, d, prep[size_t(t)]);
    }
  });
  // 2. One task per (sequence, query head, query block): query head h reads kv head h / group.
  struct Task {
    int32_t s, h, r0, n;
  };
  std::vector<Task> tasks;
  for (size_t s = 0; s < nS; ++s)
    for (int32_t h = 0; h < nH; ++h)
      for (int32_t r0 = 0; r0 < st.n_new[s]; r0 += kSageQBlock)
        tasks.push_back({int32_t(s), h, r0, std::min(kSageQBlock, st.n_new[s] - r0)});
  next = 0;
  const int64_t nt = int64_t(tasks.size());
  a.pool->run(int(std::max<int64_t>(1, std::min<int64_t>(a.pool->size(), nt))), [&] {
    for (int64_t i = next++; i < nt; i = next++) {
      const Task &t = tasks[size_t(i)];
      const int64_t row = st.row_offset[size_t(t.s)] + t.r0;
      sage_attend(prep[size_t(t.s) * nKV + size_t(t.h / group)], a.q + row * qd + int64_t(t.h) * d, qd, t.n,
                  st.pos0[size_t(t.s)] + t.r0, a.z + row * qd + int64_t(t.h) * d, qd);
    }
  });
}

}  // namespace cpu
}  // namespace qw
