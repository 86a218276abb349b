// gqa_cpu.cpp — the CPU arms of toggle gqa (see gqa_cpu.hpp).
#include "gqa_cpu.hpp"

#include "half.hpp"

namespace qw {
namespace cpu {

void gqa_prepare(const KvStore &kv, const AttnArgs &a, GqaKv &g) {
  g.per_query_head = a.gqa == Gqa::Broadcast;
  if (!g.per_query_head) return;
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, group = nH / a.n_kv_heads;
  const size_t nS = st.seq.size();
  g.k.resize(nS);
  g.v.resize(nS);
  for (size_t s = 0; s < nS; ++s) {
    const int64_t len = st.pos0[s] + st.n_new[s];
    g.k[s].resize(size_t(nH * len * d));
    g.v[s].resize(size_t(nH * len * d));
    for (int32_t h = 0; h < nH; ++h)
      for (int64_t p = 0; p < len; ++p) {
        const int64_t src = kv.offset(a.layer, st.seq[s], h / group, int32_t(p));
        float *dk = &g.k[s][size_t((h * len + p) * d)], *dv = &g.v[s][size_t((h * len + p) * d)];
        for (int32_t i = 0; i < d; ++i) {
          dk[i] = kv.bf16 ? bf16_to_float(kv.kb[size_t(src + i)]) : kv.kf[size_t(src + i)];
          dv[i] = kv.bf16 ? bf16_to_float(kv.vb[size_t(src + i)]) : kv.vf[size_t(src + i)];
        }
      }
  }
}

const char *gqa_attention_kernel_name(Gqa mode, bool kv_bf16) {
  switch (mode) {
    case Gqa::Native: break;
    case Gqa::Broadcast: return kv_bf16 ? "cpu.attention.broadcast.kv_bf16" : "cpu.attention.broadcast.kv_f32";
  }
  return kv_bf16 ? "cpu.attention.native.kv_bf16" : "cpu.attention.native.kv_f32";
}

}  // namespace cpu
}  // namespace qw
