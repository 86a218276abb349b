// test_i8_ring.cpp — the int8 arm's ring plan (gemv_i8_ring_plan.hpp): where the ring can run, its stage layout and
// shared-memory size on the Qwen shapes, the refusals (each with its reason), and the layout arithmetic the kernel
// runs (unit_of, src_* / dst_*, at_*) emulated on the host: every unit's copies (whole-row and per-row forms) then
// every value a lane reads from the stage, against the matrix. The kernel itself runs on the GPU only (lab `qwlab
// gemv-i8`, rows "… ring" and "ring = register path, bits").
#include <cstring>
#include <vector>

#include "gemv_i8_ring_plan.hpp"
#include "testlib.hpp"

using namespace qw::i8ring;

namespace {

// The host's copy of a unit into `stage` as the kernel issues it (whole rows: one copy per part; K chunks: a copy per
// row and part), with the bulk copy's rules checked: 16-byte sizes and addresses, inside the stage and the arrays.
bool emulate_issue(const Geo &g, const Unit &u, const std::vector<uint8_t> &codes, const std::vector<float> &sc,
                   const std::vector<float> &of, std::vector<uint8_t> &stage, bool per_row) {
  bool ok = true;
  uint32_t bytes = 0;
  const auto copy = [&](int64_t dst, const uint8_t *src_base, int64_t src, int64_t src_size, uint32_t n) {
    ok &= dst % 16 == 0 && src % 16 == 0 && n % 16 == 0 && dst + n <= g.stage_bytes && src + n <= src_size;
    if (ok) std::memcpy(stage.data() + dst, src_base + src, n);
    bytes += n;
  };
  const auto rows = [&](int64_t r, uint32_t n) {
    copy(dst_codes(g, r), codes.data(), src_codes(g, u, r), (int64_t)codes.size(), n * u.cb);
    copy(dst_scales(g, r), reinterpret_cast<const uint8_t *>(sc.data()), src_group(g, u, r) * 4, (int64_t)sc.size() * 4, n * u.sb);
    if (g.offsets_loaded)
      copy(dst_offsets(g, r), reinterpret_cast<const uint8_t *>(of.data()), src_group(g, u, r) * 4, (int64_t)of.size() * 4, n * u.sb);
  };
  if (!per_row) rows(0, (uint32_t)u.nr);
  else for (int64_t r = 0; r < u.nr; ++r) rows(r, 1);
  return ok && bytes == u.total;
}

// Every unit of a matrix copied and read back as the kernel's lanes read it (16 bytes of codes at each chunk of E
// codes, the chunk's group scale and offset); returns the mismatches (-1: a copy broke the bulk copy's rules).
int64_t emulate(int64_t rows, int64_t cols, int group, bool w4, bool offsets_loaded, int rpt, int64_t period,
                int64_t smem) {
  const int64_t act = (w4 ? 1 : 1) * cols + 2 * (cols / (w4 ? 32 : 16) + 1) * 4;
  const Plan p = plan(rows, cols, group, w4, offsets_loaded, false, rpt, period, act, smem);
  if (!p.stages) return -2;
  const Geo g = geo_of(p, rows, cols, group, rpt, offsets_loaded);
  std::vector<uint8_t> codes((size_t)(rows * p.row_bytes));
  std::vector<float> sc((size_t)(rows * p.gpr)), of(sc.size());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = (uint8_t)(i * 2654435761u >> 13);
  for (size_t i = 0; i < sc.size(); ++i) sc[i] = (float)i, of[i] = -(float)i;
  const int E = w4 ? 32 : 16;
  int64_t bad = 0;
  std::vector<uint8_t> stage((size_t)g.stage_bytes), stage2((size_t)g.stage_bytes);
  for (int64_t tile = 0; tile * rpt < rows; ++tile)
    for (int64_t q = 0; q < g.nk; ++q) {
      const Unit u = unit_of(g, tile, q);
      std::fill(stage.begin(), stage.end(), 0xEE);
      if (!emulate_issue(g, u, codes, sc, of, stage, g.nk != 1)) return -1;
      if (g.nk == 1) {  // the whole-row form writes what the per-row form writes
        std::fill(stage2.begin(), stage2.end(), 0xEE);
        if (!emulate_issue(g, u, codes, sc, of, stage2, true)) return -1;
        bad += stage != stage2;
      }
      for (int64_t lr = 0; lr < u.nr; ++lr)
        for (int64_t kk = 0; kk < u.nc; kk += E) {
          const int64_t k = u.c0 + kk, e = (u.r0 + lr) * cols + k, gi = (u.r0 + lr) * p.gpr + k / group;
          bad += std::memcmp(stage.data() + at_codes(g, lr, kk, w4), codes.data() + (w4 ? e / 2 : e), 16) != 0;
          float s, o;
          std::memcpy(&s, stage.data() + g.w_bytes + 4 * at_group(g, lr, kk), 4);
          bad += s != sc[(size_t)gi];
          if (offsets_loaded) {
            std::memcpy(&o, stage.data() + g.w_bytes + g.so_bytes + 4 * at_group(g, lr, kk), 4);
            bad += o != of[(size_t)gi];
          }
        }
    }
  return bad;
}

}  // namespace

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
  // the layout emulated: whole rows (7B-like gate_up W4 g128 with a partial last tile), K chunks with a partial last
  // chunk and tile (down-like W4 g128; W8 g32 with uniform offsets), small shared memory forcing chunks of one period
  struct Em { const char *what; int64_t rows, cols; int group; bool w4, offs; int rpt; int64_t period, smem; bool chunks; };
  for (const Em &e : {Em{"W4 g128 whole rows, partial tile", 1000, 3584, 128, true, true, 32, 1024, kOptin, false},
                      Em{"W4 g32 whole rows", 96, 3584, 32, true, true, 32, 1024, kOptin, false},
                      Em{"W4 g128 K chunks (K 18944), partial tile", 200, 18944, 128, true, true, 16, 2048, kOptin, true},
                      Em{"W8 g32 K chunks, uniform offsets", 100, 3584, 32, false, false, 32, 512, kOptin, true},
                      Em{"W4 g64 one-period chunks, partial chunk", 40, 5120, 64, true, true, 32, 1024, 60000, true}}) {
    const int64_t act = e.cols + 2 * (e.cols / (e.w4 ? 32 : 16) + 1) * 4;
    const Plan p = plan(e.rows, e.cols, e.group, e.w4, e.offs, false, e.rpt, e.period, act, e.smem);
    CHECK((p.nk > 1) == e.chunks, "%s: K chunks %lld", e.what, (long long)p.nk);
    const int64_t bad = emulate(e.rows, e.cols, e.group, e.w4, e.offs, e.rpt, e.period, e.smem);
    CHECK(bad == 0, "%s: %lld mismatches (-1: a copy broke the bulk-copy rules, -2: no plan)", e.what, (long long)bad);
  }
  return finish("test_i8_ring");
}
