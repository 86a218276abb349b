// test_i8_ring.cpp — the int8 arm's ring plan (gemv_i8_ring_plan.hpp): where the ring can run, its stage layout and
// shared-memory size on the Qwen shapes, and the refusals (each with its reason). The kernel itself runs on the GPU
// only (lab `qwlab gemv-i8`, rows "ring" and "ring = loop, bits").
#include <cstring>

#include "gemv_i8_ring_plan.hpp"
#include "testlib.hpp"

using namespace qw::i8ring;

int main() {
  constexpr int64_t kOptin = 227 * 1024 - 1024;  // an H100 / H200 block's opt-in, the kernel's static part taken off
  // 7B gate_up, W4 g128, b1, R4 x 8 warps = 32 rows a tile: 57344 B of codes + 3584 of scales + 3584 of offsets
  {
    const Plan p = plan(37888, 3584, 128, true, true, false, 32, 1024, 3584 + 2 * 112 * 4, kOptin);
    CHECK(p.stages == 3, "7B gate_up W4 g128: 3 stages (got %d: %s)", p.stages, p.why);
    CHECK(p.row_bytes == 1792 && p.gpr == 28 && p.w_bytes == 57344 && p.so_bytes == 3584, "7B gate_up sizes");
    CHECK(p.stage_bytes == 57344 + 2 * 3584, "stage = codes + scales + offsets");
    CHECK(p.ring_off % 128 == 0 && p.ring_off >= 3584 + 2 * 112 * 4, "ring after the activations, 128-aligned");
    CHECK(p.smem == p.ring_off + 3 * p.stage_bytes + 3 * 12 && p.smem <= kOptin, "smem %lld", (long long)p.smem);
  }
  // Q4_K (W4 g32): four times the scales, 2 stages
  {
    const Plan p = plan(37888, 3584, 32, true, true, false, 32, 1024, 3584 + 2 * 112 * 4, kOptin);
    CHECK(p.stages == 2 && p.stage_bytes == 57344 + 2 * 14336, "7B gate_up W4 g32: 2 stages of 86 KB (got %d)", p.stages);
  }
  // symmetric W8 (one offset for the matrix): no offsets staged; 7B's 114 KB of codes a 32-row tile do not fit twice,
  // so K chunks of 2048 columns (a multiple of the lane period 512 and of 4 groups), 2 a row (the last 1536)
  {
    const Plan p = plan(37888, 3584, 32, false, false, false, 32, 512, 3584 + 2 * 224 * 4, kOptin);
    CHECK(p.stages == 3 && p.kc == 2048 && p.nk == 2, "7B gate_up W8 R4: 3 stages of K 2048 (got %d, kc %lld: %s)",
          p.stages, (long long)p.kc, p.why);
    CHECK(p.kc_bytes == 2048 && p.kcg == 64 && p.stage_bytes == 32 * 2048 + 32 * 64 * 4, "W8 K-chunk stage sizes");
    const Plan q = plan(37888, 3584, 32, false, false, false, 16, 512, 3584 + 2 * 224 * 4, kOptin);
    CHECK(q.stages == 3 && q.kc == 3584 && q.stage_bytes == 16 * 3584 + 16 * 112 * 4, "7B gate_up W8 R2: whole rows (%d)", q.stages);
  }
  // 7B down (K 18944, W4 g128, R4 x 4 row groups at ks 2 = 16 rows, lane period 2048): K chunks of 6144, 4 a row
  {
    const int64_t act = 18944 + 2 * 592 * 4;
    const Plan p = plan(3584, 18944, 128, true, true, false, 16, 2048, act, kOptin);
    CHECK(p.kc == 6144 && p.nk == 4 && p.stages == 3, "7B down: kc %lld nk %lld stages %d (%s)", (long long)p.kc,
          (long long)p.nk, p.stages, p.why);
    CHECK(p.kc % 2048 == 0 && (p.kcg * 4) % 16 == 0 && p.kc_bytes % 16 == 0, "down chunks: lane period, 16-byte parts");
    CHECK(p.smem <= kOptin && p.ring_off % 128 == 0, "down smem %lld", (long long)p.smem);
  }
  // 1.5B gate_up (K 1536, W4 g128: 768-byte rows, 12 groups) reaches the stage cap; 0.5B's K 896 in groups of 128 has
  // 7 groups a row (28 bytes of scales): not a whole number of 16-byte units, so the ring leaves it to the loop variant
  {
    const Plan p = plan(17920, 1536, 128, true, true, false, 32, 1024, 1536 + 2 * 48 * 4, kOptin);
    CHECK(p.stages == kMaxStages, "1.5B gate_up: %d stages (%s)", p.stages, p.why);
    const Plan q = plan(9728, 896, 128, true, true, false, 32, 1024, 896 + 2 * 28 * 4, kOptin);
    CHECK(q.stages == 0 && std::strstr(q.why, "scales"), "0.5B gate_up g128 refused (%s)", q.why);
  }
  // refusals, each saying why
  CHECK(plan(4096, 3584, 128, true, true, true, 32, 1024, 4096, kOptin).stages == 0 &&
            std::strstr(plan(4096, 3584, 128, true, true, true, 32, 1024, 4096, kOptin).why, "two-level"),
        "two-level scales refused");
  CHECK(std::strstr(plan(64, 1040, 16, true, true, false, 32, 1024, 4096, kOptin).why, "codes"),
        "K 1040 W4: 520-byte rows refused");
  CHECK(std::strstr(plan(64, 2080, 32, true, true, false, 32, 1024, 4096, kOptin).why, "scales"),
        "K 2080 g32: 65 groups a row refused");
  CHECK(plan(64, 2048, 256, true, true, false, 32, 1024, 4096, kOptin).stages > 0, "K 2048 g256: 8 groups a row (32 bytes) runs");
  CHECK(std::strstr(plan(64, 1536, 256, true, true, false, 32, 1024, 4096, kOptin).why, "scales"),
        "K 1536 g256: 6 groups a row (24 bytes) refused");
  CHECK(plan(64, 3584, 100, true, true, false, 32, 1024, 4096, kOptin).stages == 0, "a group that does not divide K");
  {  // with 60 KB the ring falls back to K chunks: 3 stages of 1024 columns
    const Plan p = plan(64, 3584, 128, true, true, false, 32, 1024, 4096, 60000);
    CHECK(p.stages == 3 && p.kc == 1024 && p.nk == 4, "60 KB: K chunks (stages %d kc %lld)", p.stages, (long long)p.kc);
  }
  CHECK(plan(64, 3584, 128, true, true, false, 32, 1024, 4096, 30000).stages == 0, "too little shared memory (one 18 KB K chunk fits once)");
  CHECK(std::strstr(plan(64, 3584, 128, true, true, false, 32, 1024, 4096, 30000).why, "two stages"), "the reason names the stages");
  return finish("test_i8_ring");
}
