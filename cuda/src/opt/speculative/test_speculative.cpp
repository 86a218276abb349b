// test_speculative.cpp — the tree of a verification step (tree.cpp) and the accepted-path KV compaction on the
// CPU (eagle_cpu.cpp): positions and key lists of chains, branches and chunked trees; refusals of bad parents and
// keep lists; compaction of f32 and bf16 caches moves exactly the kept rows, every layer and KV head, and a
// quantized cache is refused.
#include <cstring>

#include "eagle_cpu.hpp"
#include "testlib.hpp"
#include "tree.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

int32_t status_of(void (*f)(const int32_t *, int32_t), const int32_t *a, int32_t n) {
  try {
    f(a, n);
  } catch (const Error &e) {
    return e.status;
  }
  return QW_OK;
}

}  // namespace

int main() {
  {  // a chain: positions base + i, keys 0..i
    const int32_t parents[4] = {-1, 0, 1, 2};
    Step st;
    tree_step(st, parents, 0, 4, 10);
    CHECK(st.tree_base == 10, "chain base");
    for (int32_t i = 0; i < 4; ++i) {
      CHECK(st.tree_pos[size_t(i)] == 10 + i, "chain pos %d", i);
      CHECK(st.tree_keys[size_t(i)].size() == size_t(i + 1) && st.tree_keys[size_t(i)].back() == i, "chain keys %d", i);
    }
  }
  {  // branches: 0 -> {1, 2}; 2 -> {3, 4}; fed from node 2 on (first = 2)
    const int32_t parents[5] = {-1, 0, 0, 2, 2};
    Step st;
    tree_step(st, parents, 2, 3, 7);
    CHECK(st.tree_pos.size() == 3 && st.tree_pos[0] == 8 && st.tree_pos[1] == 9 && st.tree_pos[2] == 9, "branch positions");
    CHECK((st.tree_keys[1] == std::vector<int32_t>{0, 2, 3}), "node 3 attends to 0, 2 and itself");
    CHECK((st.tree_keys[2] == std::vector<int32_t>{0, 2, 4}), "node 4 does not see its sibling 3");
  }
  {  // two roots (a forest hanging off the prefix)
    const int32_t parents[3] = {-1, -1, 1};
    Step st;
    tree_step(st, parents, 0, 3, 0);
    CHECK(st.tree_pos[1] == 0 && st.tree_pos[2] == 1 && (st.tree_keys[2] == std::vector<int32_t>{1, 2}), "forest");
  }
  for (const auto &bad : std::vector<std::vector<int32_t>>{{0}, {-1, 1}, {-1, 5}, {-2}}) {
    Step st;
    int32_t status = QW_OK;
    try {
      tree_step(st, bad.data(), 0, int32_t(bad.size()), 0);
    } catch (const Error &e) {
      status = e.status;
    }
    CHECK(status == QW_ERR_INVALID_ARGUMENT, "bad parents refused");
  }
  {
    auto chk = [](const int32_t *k, int32_t n) { check_compact(4, k, n, 10); };
    const int32_t ok[3] = {0, 2, 5}, desc[2] = {2, 1}, dup[2] = {1, 1}, far[2] = {0, 6}, neg[1] = {-1};
    CHECK(status_of(chk, ok, 3) == QW_OK, "keep ok");
    CHECK(status_of(chk, desc, 2) == QW_ERR_INVALID_ARGUMENT, "descending keep refused");
    CHECK(status_of(chk, dup, 2) == QW_ERR_INVALID_ARGUMENT, "duplicate keep refused");
    CHECK(status_of(chk, far, 2) == QW_ERR_INVALID_ARGUMENT, "keep past the length refused");
    CHECK(status_of(chk, neg, 1) == QW_ERR_INVALID_ARGUMENT, "negative keep refused");
    CHECK(status_of(chk, ok, 0) == QW_ERR_INVALID_ARGUMENT, "empty keep refused");
  }
  for (KvCache type : {KvCache::F32, KvCache::Bf16}) {  // compaction moves the kept rows, nothing else
    KvStore kv;
    kv.configure(type, 2, 2, 2, 16, 8);
    const size_t n = size_t(2) * 2 * 2 * 16 * 8;
    for (size_t i = 0; i < n; ++i) {
      if (kv.bf16) kv.kb[i] = uint16_t(i), kv.vb[i] = uint16_t(i + 7);
      else kv.kf[i] = float(i), kv.vf[i] = float(i + 7);
    }
    const int32_t keep[3] = {0, 2, 5};
    eagle_kv_compact(kv, 1, 3, keep, 3);
    bool good = true;
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t s = 0; s < 2; ++s)
        for (int32_t h = 0; h < 2; ++h)
          for (int32_t p = 0; p < 16; ++p) {
            int32_t from = p;
            if (s == 1 && p >= 3 && p < 6) from = 3 + keep[p - 3];
            const size_t at = size_t(kv.offset(l, s, h, p)), src = size_t(kv.offset(l, s, h, from));
            for (int32_t i = 0; i < 8; ++i) {
              const double k = kv.bf16 ? double(kv.kb[at + size_t(i)]) : double(kv.kf[at + size_t(i)]);
              const double v = kv.bf16 ? double(kv.vb[at + size_t(i)]) : double(kv.vf[at + size_t(i)]);
              const double wk = kv.bf16 ? double(uint16_t(src + size_t(i))) : double(src + size_t(i));
              const double wv = kv.bf16 ? double(uint16_t(src + size_t(i) + 7)) : double(src + size_t(i) + 7);
              good = good && k == wk && v == wv;
            }
          }
    CHECK(good, "compaction of a %s cache moves exactly the kept rows", kv.bf16 ? "bf16" : "f32");
  }
  {
    KvStore kv;
    kv.configure(KvCache::Q8, 1, 1, 1, 64, 64);
    int32_t status = QW_OK;
    const int32_t keep[1] = {0};
    try {
      eagle_kv_compact(kv, 0, 0, keep, 1);
    } catch (const Error &e) {
      status = e.status;
    }
    CHECK(status == QW_ERR_UNSUPPORTED, "a quantized KV cache is refused");
  }
  return finish("test_speculative");
}
