// test_gqa.cpp — the CPU side of toggle gqa (gqa_cpu.cpp): native prepares nothing; broadcast gives query head h
// an exact fp32 copy of kv head h / (nH / nKV) of its sequence, every position, for bf16 and f32 caches; the
// kernel names follow the arm. (The attention results of both arms are compared bitwise in tests/test_forward.)
#include "gqa_cpu.hpp"
#include "half.hpp"
#include "kvcache.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

int main() {
  Rng r(9);
  const int32_t L = 2, B = 3, nKV = 2, nH = 6, T = 7, d = 4;
  for (KvCache type : {KvCache::Bf16, KvCache::F32}) {
    KvStore kv;
    kv.configure(type, L, B, nKV, T, d);
    const int64_t n = int64_t(L) * B * nKV * T * d;
    for (int64_t i = 0; i < n; ++i) {
      const float x = r.normal();
      if (kv.bf16) {
        kv.kb[size_t(i)] = float_to_bf16(x);
        kv.vb[size_t(i)] = float_to_bf16(-x);
      } else {
        kv.kf[size_t(i)] = x;
        kv.vf[size_t(i)] = -x;
      }
    }
    Step st;
    st.seq = {2, 0};
    st.pos0 = {3, 0};
    st.n_new = {2, 5};
    AttnArgs a{&st, 1, nH, nKV, d, nullptr, nullptr, nullptr, nullptr, Gqa::Native, nullptr};
    GqaKv g;
    gqa_prepare(kv, a, g);
    CHECK(!g.per_query_head && g.k.empty() && g.v.empty(), "native: nothing materialized");
    a.gqa = Gqa::Broadcast;
    gqa_prepare(kv, a, g);
    CHECK(g.per_query_head && g.k.size() == 2 && g.v.size() == 2, "broadcast: one copy per sequence");
    int bad = 0;
    for (size_t s = 0; s < st.seq.size(); ++s) {
      const int64_t len = st.pos0[s] + st.n_new[s];
      CHECK(g.k[s].size() == size_t(nH * len * d), "copy size");
      for (int32_t h = 0; h < nH; ++h)
        for (int64_t p = 0; p < len; ++p)
          for (int32_t e = 0; e < d; ++e) {
            const int64_t src = kv.offset(1, st.seq[s], h / (nH / nKV), int32_t(p)) + e;
            const float k = kv.bf16 ? bf16_to_float(kv.kb[size_t(src)]) : kv.kf[size_t(src)];
            const float v = kv.bf16 ? bf16_to_float(kv.vb[size_t(src)]) : kv.vf[size_t(src)];
            const size_t at = size_t((h * len + p) * d + e);
            bad += g.k[s][at] != k || g.v[s][at] != v;
          }
    }
    CHECK(bad == 0, "broadcast copies equal the cache (%s): %d mismatches", kv.bf16 ? "bf16" : "f32", bad);
  }
  CHECK(std::string(gqa_attention_kernel_name(Gqa::Native, true)) == "cpu.attention.native.kv_bf16" &&
            std::string(gqa_attention_kernel_name(Gqa::Broadcast, false)) == "cpu.attention.broadcast.kv_f32",
        "kernel names");
  return finish("test_gqa");
}
