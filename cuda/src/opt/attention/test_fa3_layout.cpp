// test_fa3_layout.cpp — the layout arithmetic of the sm_90a flash prefill kernel (fa3_layout.hpp) without a GPU:
//  1. the shared-memory map (1024-aligned tiles, fits the 227 KB of an H100 / H200 CTA) and the setmaxnreg budget;
//  2. descriptor bit fields, decoded back;
//  3. for every wgmma the kernel issues, the byte a model of the hardware reads through the descriptor (PTX ISA
//     canonical layouts: K-major / MN-major with 128B swizzle) is the byte TMA wrote that element to (dense box, then
//     the 128B swizzle); each tile's TMA image is a bijection onto its bytes;
//  4. the accumulator and A-operand fragment maps cover a warpgroup's tile exactly once, and P's registers come from
//     S's registers of the same (row, key);
//  5. the TMA maps (box coordinates, strides, out-of-bounds) against q [n][nH][d] and the cache [nKV][max_ctx][d]:
//     box element -> packed row t*G + g, and the CTA's key range / mask rule against the causal definition;
//  6. the whole consumer data path emulated on the CPU with those maps (TMA into a byte image of shared memory,
//     wgmma through the descriptor model, the kernel's online softmax in the fragment layout, P.V with A from
//     "registers", the kernel's output store) against fp64 attention: hd 64 (3 consumer warpgroups) / 128 (2),
//     G = 1, 4, 7, 8, lengths 1, 17, 127, 128, 129, 300, chunked prefill (pos0 > 0).
// It checks the arithmetic and its composition, not the hardware: the kernel itself has not run (README).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "dca_positions.hpp"
#include "fa3_layout.hpp"
#include "half.hpp"
#include "testlib.hpp"

using namespace qwc;

namespace {

// ---- models of the hardware side, from the PTX ISA (independent of the kernel's helpers)
uint32_t swz(uint32_t a) { return a ^ (((a >> 7) & 7u) << 4); }
struct Desc { uint32_t start, lbo, sbo, swizzle, base_off; };
Desc decode(uint64_t d) {
  return {(uint32_t)(d & 0x3FFF) << 4, (uint32_t)((d >> 16) & 0x3FFF) << 4, (uint32_t)((d >> 32) & 0x3FFF) << 4,
          (uint32_t)(d >> 62), (uint32_t)((d >> 49) & 7)};
}
// K-major SW128: element (mn, k), k < 16, of the operand the descriptor describes.
uint32_t read_kmajor(uint64_t d, int mn, int k) {
  const Desc x = decode(d);
  return swz(x.start + (uint32_t)(mn % 8) * 128 + (uint32_t)(mn / 8) * x.sbo + (uint32_t)k * 2);
}
// MN-major SW128: element (n, k), k < 16: 64 n contiguous, k rows at 128 B, 8-k groups at SBO, 64-n blocks at LBO.
uint32_t read_mnmajor(uint64_t d, int n, int k) {
  const Desc x = decode(d);
  return swz(x.start + (uint32_t)(n % 64) * 2 + (uint32_t)(n / 64) * x.lbo + (uint32_t)(k % 8) * 128 +
             (uint32_t)(k / 8) * x.sbo);
}
// TMA with SWIZZLE_128B: box element with linear index `lin` (dim 0 fastest, 64 bf16 per 128-byte row) at dst.
uint32_t tma_write(uint32_t dst, int64_t lin) { return swz(dst + (uint32_t)lin * 2); }

void test_geometry() {
  for (int d : {64, 128}) {
    const int nc = fa3_consumers(d);
    CHECK(fa3_smem_bytes(d, nc) <= 232448u, "d %d: %u bytes of shared memory", d, fa3_smem_bytes(d, nc));
    for (int s = 0; s < fa3_stages(d); ++s)
      CHECK(fa3_k_off(d, nc, s) % kFa3SwizzleAtom == 0 && fa3_v_off(d, nc, s) % kFa3SwizzleAtom == 0, "d %d stage %d", d, s);
    CHECK(fa3_bar_off(d, nc) % 8 == 0 && fa3_q_off() % kFa3SwizzleAtom == 0, "d %d", d);
    CHECK(fa3_k_off(d, nc, 0) >= fa3_tile_bytes(fa3_rows(nc), d), "Q and K overlap");
  }
  // the lab variants (QW_FA3_VARIANT): a 3-stage ring at hd 128 and split K / V release, each within 227 KB, the V ring
  // after the K ring, the barriers after the V ring
  for (int st : {0, 3})
    for (bool split : {false, true}) {
      const int d = 128, nc = fa3_consumers(d), S = st > 0 ? st : fa3_stages(d);
      CHECK(fa3_smem_bytes(d, nc, st, split) <= 232448u, "st %d split %d: %u bytes", st, (int)split, fa3_smem_bytes(d, nc, st, split));
      for (int s = 0; s < S; ++s)
        CHECK(fa3_v_off(d, nc, s, st) % kFa3SwizzleAtom == 0 && fa3_v_off(d, nc, s, st) >= fa3_k_off(d, nc, S),
              "st %d stage %d", st, s);
      CHECK(fa3_bar_off(d, nc, st) == fa3_v_off(d, nc, S, st) &&
                fa3_abort_off(d, nc, st, split) == fa3_bar_off(d, nc, st) + 8u * (1u + (split ? 4u : 3u) * (uint32_t)S),
            "st %d split %d: barriers", st, (int)split);
    }
  // setmaxnreg: the consumers' increase must fit what the producer's decrease frees from the launch allocation
  // (65536 / threads per thread, in steps of 8), or setmaxnreg.inc waits forever
  for (int nc : {2, 3}) {
    const int launch = 65536 / fa3_threads(nc) / 8 * 8, regs = fa3_consumer_regs(nc);
    CHECK(regs % 8 == 0 && regs >= launch && regs <= 256, "nc %d: %d registers", nc, regs);
    CHECK(128 * kFa3ProducerRegs + 128 * nc * regs <= launch * fa3_threads(nc), "nc %d: register budget", nc);
  }
  CHECK(fa3_consumer_regs(2) == 240 && fa3_consumer_regs(3) == 160, "FA3's 24 / 240 at 384 threads; 24 / 160 at 512");
}

void test_desc_bits() {
  const uint64_t d = fa3_desc(0x12340, 16, 1024);
  const Desc x = decode(d);
  CHECK(x.start == 0x12340 && x.lbo == 16 && x.sbo == 1024 && x.swizzle == 1 && x.base_off == 0, "fields");
  CHECK(((d >> 14) & 3) == 0 && ((d >> 30) & 3) == 0 && ((d >> 46) & 0x7FFF) == 0, "reserved bits clear");
  const Desc v = decode(fa3_desc_mnmajor(0x8000, kFa3Keys, 3));
  CHECK(v.start == 0x8000 + 3 * 2048 && v.lbo == 16384 && v.sbo == 1024, "mn-major k-step 3");
}

// Every wgmma operand read = the TMA write of that element.
void test_operands() {
  for (int d : {64, 128}) {
    int bad = 0;
    const int nc = fa3_consumers(d), rows = fa3_rows(nc);
    const uint32_t qb = 0x400 * 3 + fa3_q_off();  // any 1024-aligned base
    for (int wg = 0; wg < nc; ++wg)
      for (int kk = 0; kk < d / 16; ++kk)
        for (int m = 0; m < 64; ++m)
          for (int k = 0; k < 16; ++k) {
            const int r = 64 * wg + m, c = 16 * kk + k;
            const uint32_t tma = tma_write(qb + (uint32_t)(c / 64) * fa3_block_bytes(rows), (int64_t)r * 64 + c % 64);
            bad += read_kmajor(fa3_desc_kmajor(qb, rows, 64 * wg, kk), m, k) != tma;
            bad += fa3_tma_addr(qb, rows, r, c) != tma;
          }
    CHECK(bad == 0, "d %d: %d Q (A operand) reads differ from TMA writes", d, bad);
    bad = 0;
    const uint32_t kb = fa3_k_off(d, nc, 1), vb = fa3_v_off(d, nc, 1);
    for (int kk = 0; kk < d / 16; ++kk)
      for (int key = 0; key < kFa3Keys; ++key)
        for (int k = 0; k < 16; ++k) {
          const int c = 16 * kk + k;
          bad += read_kmajor(fa3_desc_kmajor(kb, kFa3Keys, 0, kk), key, k) !=
                 tma_write(kb + (uint32_t)(c / 64) * fa3_block_bytes(kFa3Keys), (int64_t)key * 64 + c % 64);
        }
    CHECK(bad == 0, "d %d: %d K (B of Q.K^T) reads differ", d, bad);
    bad = 0;
    for (int kk = 0; kk < kFa3Keys / 16; ++kk)
      for (int n = 0; n < d; ++n)
        for (int k = 0; k < 16; ++k) {
          const int key = 16 * kk + k;
          bad += read_mnmajor(fa3_desc_mnmajor(vb, kFa3Keys, kk), n, k) !=
                 tma_write(vb + (uint32_t)(n / 64) * fa3_block_bytes(kFa3Keys), (int64_t)key * 64 + n % 64);
        }
    CHECK(bad == 0, "d %d: %d V (B of P.V, trans-b) reads differ", d, bad);
    std::set<uint32_t> seen;
    for (int r = 0; r < kFa3Keys; ++r)
      for (int c = 0; c < d; ++c) seen.insert(fa3_tma_addr(kb, kFa3Keys, r, c) & ~1u);
    CHECK(seen.size() == (size_t)kFa3Keys * d && *seen.begin() == kb &&
              *seen.rbegin() == kb + fa3_tile_bytes(kFa3Keys, d) - 2,
          "d %d: the TMA image of a tile is not a bijection onto its bytes", d);
  }
}

void test_fragments() {
  for (int n : {64, 128}) {
    std::vector<int> hits(64 * n, 0);
    for (int w = 0; w < 4; ++w)
      for (int lane = 0; lane < 32; ++lane)
        for (int r = 0; r < n / 2; ++r) ++hits[(size_t)fa3_acc_row(w, lane, r) * n + fa3_acc_col(lane, r)];
    CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }), "m64n%d accumulator coverage", n);
  }
  std::vector<int> hits(64 * 16, 0);
  int bad = 0;
  for (int w = 0; w < 4; ++w)
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg)
        for (int h = 0; h < 2; ++h) {
          ++hits[(size_t)fa3_afrag_row(w, lane, reg) * 16 + fa3_afrag_k(lane, reg, h)];
          for (int kk = 0; kk < kFa3Keys / 16; ++kk) {
            const int sr = fa3_p_from_s(kk, reg, h);
            bad += sr < 0 || sr >= kFa3Keys / 2 || fa3_acc_row(w, lane, sr) != fa3_afrag_row(w, lane, reg) ||
                   fa3_acc_col(lane, sr) != 16 * kk + fa3_afrag_k(lane, reg, h);
          }
        }
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }), "m64k16 A fragment coverage");
  CHECK(bad == 0, "%d P registers not made from the S register of their (row, key)", bad);
}

// cuTensorMapEncodeTiled's documented requirements on a tiled bf16 map with SWIZZLE_128B (cuda.h)
bool encodable(const Fa3MapShape &m) {
  const uint64_t eb = (uint64_t)m.eb;
  bool ok = m.rank >= 1 && m.rank <= 5 && m.box[0] * eb % 16 == 0 && m.box[0] * eb <= 128;
  for (int k = 0; k < m.rank; ++k) ok = ok && m.dims[k] >= 1 && m.dims[k] <= (1ull << 32) && m.box[k] >= 1 && m.box[k] <= 256;
  for (int k = 0; k + 1 < m.rank; ++k) {
    ok = ok && m.strides[k] % 16 == 0 && m.strides[k] < (1ull << 40);
    ok = ok && m.strides[k] >= (k == 0 ? m.dims[0] * eb : m.strides[k - 1] * m.dims[k]);  // each includes the previous
  }
  return ok;
}

// TMA maps and the causal key range of a CTA.
void test_maps() {
  int bad = 0;
  for (int d : {64, 128})
    for (int g : {1, 4, 7, 8, 64})
      for (int nkv : {1, 2, 4, 8}) {
        bad += !encodable(fa3_q_map(1, g * nkv, nkv, d, fa3_consumers(d)));
        bad += !encodable(fa3_q_map(32768, g * nkv, nkv, d, fa3_consumers(d)));
        bad += !encodable(fa3_kv_map(1, nkv, d, 1)) + !encodable(fa3_kv_map(32768, nkv, d, 32768 + 9));
      }
  CHECK(bad == 0, "%d maps break cuTensorMapEncodeTiled's requirements", bad);
  for (int g : {1, 4, 7, 8})
    for (int nkv : {1, 2, 4})
      for (int d : {64, 128}) {
        const int nc = fa3_consumers(d), nh = g * nkv, n = 45, P = fa3_pos_per_tile(g, nc);
        CHECK(P * g <= fa3_rows(nc) && (P + 1) * g > fa3_rows(nc), "G %d: %d positions per tile", g, P);
        const Fa3MapShape m = fa3_q_map(n, nh, nkv, d, nc);
        for (int c = 0; c < 4; ++c) CHECK(m.box[c] >= 1 && m.box[c] <= 256, "box dim");
        for (int c = 0; c + 1 < m.rank; ++c) CHECK(m.strides[c] % 16 == 0, "stride %d", c);
        for (int kvh = 0; kvh < nkv; ++kvh)
          for (int t0 = 0; t0 < n; t0 += P)
            for (int cb = 0; cb < d / 64; ++cb)
              for (int tt = 0; tt < P; ++tt)
                for (int gg = 0; gg < g; ++gg)
                  for (int e0 = 0; e0 < 64; e0 += 21) {
                    const int coord[4] = {cb * 64, 0, kvh, t0}, e[4] = {e0, gg, 0, tt};
                    const int64_t got = fa3_map_elem(m, coord, e);
                    const int row = (tt * 1 + 0) * g + gg;  // dense box order: dims 1..3 above dim 0
                    const int t = t0 + fa3_row_pos(row, g), head = kvh * g + fa3_row_head(row, g);
                    const int64_t want = t < n ? (int64_t)t * nh * d + head * d + cb * 64 + e0 : -1;
                    bad += got != want;
                  }
        const int max_ctx = 300, kv_len = 200;
        const Fa3MapShape k = fa3_kv_map(kv_len, nkv, d, max_ctx);
        for (int kvh = 0; kvh < nkv; ++kvh)
          for (int k0 = 0; k0 < kv_len; k0 += kFa3Keys)
            for (int r = 0; r < kFa3Keys; r += 3) {
              const int coord[4] = {64 * (d / 64 - 1), k0, kvh, 0}, e[4] = {5, r, 0, 0};
              const int64_t want = k0 + r < kv_len ? ((int64_t)kvh * max_ctx + k0 + r) * d + 64 * (d / 64 - 1) + 5 : -1;
              bad += fa3_map_elem(k, coord, e) != want;
            }
      }
  CHECK(bad == 0, "%d TMA box elements land on the wrong q / cache element", bad);
  // sage-int8 on wgmma (hd 128): int8 Q [n][nH][128] and K~ [nKV][ctx64][128], one 128-element box per row
  bad = 0;
  for (int g : {1, 4, 7, 8})
    for (int nkv : {1, 2, 4}) {
      const int nc = fa3_consumers(128), nh = g * nkv, n = 45, P = fa3_pos_per_tile(g, nc), ctx64 = 320, kv_len = 300;
      const Fa3MapShape m = fa3_q_map(n, nh, nkv, 128, nc, 1), k = fa3_kv_map(kv_len, nkv, 128, ctx64, 1);
      bad += !encodable(m) + !encodable(k) + (m.box[0] != 128) + (k.box[0] != 128);
      bad += (uint32_t)m.box[0] * m.box[1] * m.box[3] != fa3_block_bytes(g * P);  // the producer's expect_tx for Q
      bad += (uint32_t)k.box[0] * k.box[1] != fa3_block_bytes(kFa3Keys);           // and for a K tile
      for (int kvh = 0; kvh < nkv; ++kvh)
        for (int tt = 0; tt < P; ++tt)
          for (int gg = 0; gg < g; ++gg) {
            const int coord[4] = {0, 0, kvh, 0}, e[4] = {77, gg, 0, tt};
            const int row = tt * g + gg, t = fa3_row_pos(row, g), head = kvh * g + fa3_row_head(row, g);
            bad += fa3_map_elem(m, coord, e) != (t < n ? (int64_t)t * nh * 128 + head * 128 + 77 : -1);
          }
      for (int kvh = 0; kvh < nkv; ++kvh)
        for (int r = 0; r < kFa3Keys; r += 5) {
          const int coord[4] = {0, kFa3Keys * 2, kvh, 0}, e[4] = {9, r, 0, 0};
          const int key = kFa3Keys * 2 + r;
          bad += fa3_map_elem(k, coord, e) != (key < kv_len ? ((int64_t)kvh * ctx64 + key) * 128 + 9 : -1);
        }
    }
  for (int nkv : {1, 4}) {  // sage-fp8's V~^T: channel rows of 128 key bytes
    const int ctx64 = 320;
    const Fa3MapShape v = fa3_vt_map(ctx64, nkv, 128);
    bad += !encodable(v) + (v.box[0] * v.box[1] != fa3_block_bytes(128));  // the producer's expect_tx for a V tile
    for (int kvh = 0; kvh < nkv; ++kvh)
      for (int c = 0; c < 128; c += 7)
        for (int r = 0; r < kFa3Keys; r += 9) {
          const int coord[4] = {kFa3Keys * 2, 0, kvh, 0}, e[4] = {r, c, 0, 0};
          const int key = kFa3Keys * 2 + r;
          bad += fa3_map_elem(v, coord, e) != (key < ctx64 ? ((int64_t)kvh * 128 + c) * ctx64 + key : -1);
        }
  }
  CHECK(bad == 0, "%d int8 / e4m3 (sage wgmma) map checks fail", bad);
  // a CTA visits every key any of its rows sees, and the mask is skipped only where no row is masked
  bad = 0;
  for (int pos0 : {0, 5, 130})
    for (int n : {1, 17, 129, 300})
      for (int p : {128, 32, 18, 16, 192, 48, 27, 24})
        for (int t0 = 0; t0 < n; t0 += p) {
          const int kv_end = fa3_kv_end(pos0, n, t0, p);
          for (int t = t0; t < std::min(n, t0 + p); ++t) bad += pos0 + t >= kv_end;
          bad += kv_end > pos0 + n;
          const int last = std::min(n, t0 + p) - 1;  // the CTA's last row
          const Fa3CtaKeys ck = fa3_cta_keys(0, pos0 + t0 + 1, 0, pos0 + last + 1);
          bad += ck.jb != 0 || ck.n_tiles * kFa3Keys < kv_end || (ck.n_tiles - 1) * kFa3Keys >= kv_end;
          for (int k0 = 0; k0 < kv_end; k0 += kFa3Keys)
            if (!fa3_tile_masked(ck, k0))  // then no row of the CTA is masked in the tile
              for (int t = t0; t <= last; ++t) bad += k0 + kFa3Keys - 1 > pos0 + t;
        }
  CHECK(bad == 0, "%d key-range / mask violations", bad);
}

// ---- 6. the consumer data path on the CPU
// span 0: causal attention (one pass); span > 0: Dual Chunk Attention, one pass per part (intra, successive, inter:
// dca::part_keys) with its own queries, the later passes merged into z through lse, as launch_prefill_attention_dca_fa3.
struct Case { int d, nh, nkv, pos0, n, span = 0; };

void emulate(const Case &cs, Rng &rng) {
  const int d = cs.d, nc = fa3_consumers(d), rows = fa3_rows(nc), g = cs.nh / cs.nkv, P = fa3_pos_per_tile(g, nc);
  const int kv_len = cs.pos0 + cs.n, max_ctx = kv_len + 7;
  const float scale = 1.4426950408889634f / std::sqrt((float)d);
  const bool dca = cs.span > 0;
  std::vector<uint16_t> q[3], kc((size_t)cs.nkv * max_ctx * d), vc(kc.size());
  for (int v = 0; v < (dca ? 3 : 1); ++v) {
    q[v].resize((size_t)cs.n * cs.nh * d);
    for (auto &x : q[v]) x = qw::float_to_bf16(rng.normal() * 2.f);
  }
  for (auto &x : kc) x = qw::float_to_bf16(rng.normal());
  for (auto &x : vc) x = qw::float_to_bf16(rng.normal());
  std::vector<float> out((size_t)cs.n * cs.nh * d, NAN), lse((size_t)cs.n * cs.nh, NAN);
  const Fa3MapShape mq = fa3_q_map(cs.n, cs.nh, cs.nkv, d, nc), mk = fa3_kv_map(kv_len, cs.nkv, d, max_ctx);
  std::vector<uint16_t> smem(fa3_bar_off(d, nc) / 2, 0xFFFF);  // NaN: stale rows must stay in their own rows
  auto put = [&](uint32_t addr, uint16_t v) { smem[addr / 2] = v; };
  auto get = [&](uint32_t addr) { return qw::bf16_to_float(smem[addr / 2]); };
  // TMA: box (64, b1, 1, b3) of map m at coordinates c into dst
  auto tma = [&](uint32_t dst, const Fa3MapShape &m, const std::vector<uint16_t> &src, const int c[4]) {
    const int b1 = (int)m.box[1], b3 = m.rank == 4 ? (int)m.box[3] : 1;
    for (int e3 = 0; e3 < b3; ++e3)
      for (int e1 = 0; e1 < b1; ++e1)
        for (int e0 = 0; e0 < 64; ++e0) {
          const int e[4] = {e0, e1, 0, e3};
          const int64_t off = fa3_map_elem(m, c, e);
          put(tma_write(dst, ((int64_t)e3 * b1 + e1) * 64 + e0), off < 0 ? 0 : src[(size_t)off]);
        }
  };
  // the keys [lo, hi) a row at position p sees in pass `part` (-1: causal)
  auto range = [&](int part, int p, int *lo, int *hi) {
    *lo = 0;
    *hi = p + 1;
    if (part >= 0) qw::dca::part_keys(part, p, cs.span, lo, hi);
  };
  const int n_qt = (cs.n + P - 1) / P;
  for (int part = dca ? 0 : -1; part < (dca ? 3 : 0); ++part) {
    const std::vector<uint16_t> &qp = q[part < 0 ? 0 : part];
    for (int kvh = 0; kvh < cs.nkv; ++kvh)
      for (int qt = 0; qt < n_qt; ++qt) {
        const int t0 = qt * P;
        int lo_f, hi_f, lo_l, hi_l;
        range(part, cs.pos0 + t0, &lo_f, &hi_f);
        range(part, fa3_kv_end(cs.pos0, cs.n, t0, P) - 1, &lo_l, &hi_l);
        const Fa3CtaKeys ck = fa3_cta_keys(lo_f, hi_f, lo_l, hi_l);
        if (ck.n_tiles == 0) continue;  // the kernel's CTA returns at once
        for (int cb = 0; cb < d / 64; ++cb) {
          const int c[4] = {cb * 64, 0, kvh, t0};
          tma(fa3_q_off() + (uint32_t)cb * fa3_block_bytes(rows), mq, qp, c);
        }
        for (int wg = 0; wg < nc; ++wg) {
          const int row0 = 64 * wg;
          // thread state, indexed [warp][lane]
          std::vector<std::vector<float>> o(128, std::vector<float>(d / 2, 0.f));
          std::vector<float> m(256, -1e30f), l(256, 0.f);  // [thread * 2 + h]
          auto out_of_range = [&](int th, int r, int k0) {  // register r of thread th, key tile at k0
            const int h = (r >> 1) & 1;
            int lo, hi;
            range(part, cs.pos0 + t0 + fa3_row_pos(row0 + fa3_acc_row(th / 32, th % 32, 2 * h), g), &lo, &hi);
            const int k = k0 + fa3_acc_col(th % 32, r);
            return k < lo || k >= hi;
          };
          for (int j = 0; j < ck.n_tiles; ++j) {
            const int s = j % fa3_stages(d), k0 = (ck.jb + j) * kFa3Keys;
            for (int cb = 0; cb < d / 64; ++cb) {
              const int c[4] = {cb * 64, k0, kvh, 0};
              tma(fa3_k_off(d, nc, s) + (uint32_t)cb * fa3_block_bytes(kFa3Keys), mk, kc, c);
              tma(fa3_v_off(d, nc, s) + (uint32_t)cb * fa3_block_bytes(kFa3Keys), mk, vc, c);
            }
            // S = Q.K^T through the descriptors, into each thread's registers
            std::vector<std::vector<float>> sc(128, std::vector<float>(kFa3Keys / 2));
            for (int th = 0; th < 128; ++th)
              for (int r = 0; r < kFa3Keys / 2; ++r) {
                const int row = fa3_acc_row(th / 32, th % 32, r), key = fa3_acc_col(th % 32, r);
                double acc = 0;
                for (int kk = 0; kk < d / 16; ++kk)
                  for (int k = 0; k < 16; ++k)
                    acc += (double)get(read_kmajor(fa3_desc_kmajor(fa3_q_off(), rows, row0, kk), row, k)) *
                           get(read_kmajor(fa3_desc_kmajor(fa3_k_off(d, nc, s), kFa3Keys, 0, kk), key, k));
                sc[th][r] = (float)acc;
              }
            // the kernel's softmax step (quad = 4 consecutive lanes)
            const bool mask = fa3_tile_masked(ck, k0);
            std::vector<float> mx(256, -1e30f);
            for (int th = 0; th < 128; ++th)
              for (int r = 0; r < kFa3Keys / 2; ++r) {
                const int h = (r >> 1) & 1;
                if (mask && out_of_range(th, r, k0)) sc[th][r] = -1e30f;  // raw scores, as the kernel
                mx[th * 2 + h] = std::max(mx[th * 2 + h], sc[th][r]);
              }
            std::vector<std::vector<uint16_t>> pa(128, std::vector<uint16_t>(kFa3Keys / 16 * 8));
            for (int th = 0; th < 128; ++th)
              for (int h = 0; h < 2; ++h) {
                const int q0 = th & ~3;
                float qm = -1e30f;
                for (int x = 0; x < 4; ++x) qm = std::max(qm, mx[(q0 + x) * 2 + h]);
                const float mn = std::max(m[th * 2 + h], qm * scale), alpha = std::exp2(m[th * 2 + h] - mn);
                m[th * 2 + h] = mn;
                l[th * 2 + h] *= alpha;
                for (int i = 0; i < d / 2; ++i)
                  if (((i >> 1) & 1) == h) o[th][i] *= alpha;
              }
            for (int th = 0; th < 128; ++th)
              for (int kk = 0; kk < kFa3Keys / 16; ++kk)
                for (int reg = 0; reg < 4; ++reg)
                  for (int hh = 0; hh < 2; ++hh) {
                    const int r = fa3_p_from_s(kk, reg, hh);
                    float e = std::exp2(std::fma(sc[th][r], scale, -m[th * 2 + (reg & 1)]));
                    if (mask && out_of_range(th, r, k0)) e = 0.f;  // the kernel zeroes masked probabilities
                    const uint16_t pv = qw::float_to_bf16(e);
                    l[th * 2 + (reg & 1)] += qw::bf16_to_float(pv);
                    pa[th][kk * 8 + reg * 2 + hh] = pv;
                  }
            // O += P.V: A(row, k) gathered from the registers that hold it, V through the MN-major descriptor
            for (int kk = 0; kk < kFa3Keys / 16; ++kk) {
              std::vector<float> A(64 * 16);
              for (int th = 0; th < 128; ++th)
                for (int reg = 0; reg < 4; ++reg)
                  for (int hh = 0; hh < 2; ++hh)
                    A[(size_t)fa3_afrag_row(th / 32, th % 32, reg) * 16 + fa3_afrag_k(th % 32, reg, hh)] =
                        qw::bf16_to_float(pa[th][kk * 8 + reg * 2 + hh]);
              for (int th = 0; th < 128; ++th)
                for (int r = 0; r < d / 2; ++r) {
                  const int row = fa3_acc_row(th / 32, th % 32, r), col = fa3_acc_col(th % 32, r);
                  double acc = 0;
                  for (int k = 0; k < 16; ++k)
                    acc += (double)A[(size_t)row * 16 + k] * get(read_mnmajor(fa3_desc_mnmajor(fa3_v_off(d, nc, s), kFa3Keys, kk), col, k));
                  o[th][r] += (float)acc;
                }
            }
          }
          // the kernel's epilogue (a DCA part after the first merges into z and lse)
          for (int th = 0; th < 128; ++th)
            for (int h = 0; h < 2; ++h) {
              const int q0 = th & ~3;
              float L = 0;
              for (int x = 0; x < 4; ++x) L += l[(q0 + x) * 2 + h];
              const int i = row0 + fa3_acc_row(th / 32, th % 32, 2 * h), t = t0 + fa3_row_pos(i, g);
              if (i >= g * P || t >= cs.n) continue;
              const int head = kvh * g + fa3_row_head(i, g);
              float *lp = &lse[(size_t)t * cs.nh + head];
              float inv = 1.f / L, wz = 0.f;
              if (dca) {
                if (L == 0.f) {
                  if (part == 0)
                    for (int c = 0; c < d / 8; ++c)
                      for (int x = 0; x < 2; ++x) out[(size_t)t * cs.nh * d + head * d + fa3_acc_col(th % 32, 4 * c) + x] = 0.f;
                  if (part == 0) *lp = -INFINITY;
                  continue;
                }
                const float prev = part == 0 ? -INFINITY : *lp, cur = m[th * 2 + h] + std::log2(L);
                const float mx = std::max(cur, prev), wc = std::exp2(cur - mx), wp = std::exp2(prev - mx);
                inv = wc / (L * (wc + wp));
                wz = wp / (wc + wp);
                if ((th & 3) == 3) *lp = mx + std::log2(wc + wp);  // after the quad's other lanes read prev
              }
              for (int c = 0; c < d / 8; ++c)
                for (int x = 0; x < 2; ++x) {
                  float &z = out[(size_t)t * cs.nh * d + head * d + fa3_acc_col(th % 32, 4 * c) + x];
                  float v = o[th][4 * c + 2 * h + x] * inv;
                  if (wz > 0.f) v = std::fma(z, wz, v);
                  z = qw::bf16_to_float(qw::float_to_bf16(v));
                }
            }
        }
      }
  }
  // fp64 reference: causal attention, or DCA (each key scored with the query of its part, dca::part)
  double err = 0, ref_max = 0;
  int unwritten = 0;
  for (int t = 0; t < cs.n; ++t)
    for (int h = 0; h < cs.nh; ++h) {
      const int kh = h / g, pos = cs.pos0 + t, len = pos + 1;
      std::vector<double> s(len);
      double mxs = -1e300, L = 0;
      for (int k = 0; k < len; ++k) {
        const std::vector<uint16_t> &qv = q[dca ? qw::dca::part(pos, k, cs.span) : 0];
        double a = 0;
        for (int e = 0; e < d; ++e)
          a += (double)qw::bf16_to_float(qv[((size_t)t * cs.nh + h) * d + e]) *
               qw::bf16_to_float(kc[((size_t)kh * max_ctx + k) * d + e]);
        s[k] = a / std::sqrt((double)d);
        mxs = std::max(mxs, s[k]);
      }
      for (int k = 0; k < len; ++k) L += s[k] = std::exp(s[k] - mxs);
      for (int e = 0; e < d; ++e) {
        double ref = 0;
        for (int k = 0; k < len; ++k) ref += s[k] * qw::bf16_to_float(vc[((size_t)kh * max_ctx + k) * d + e]);
        ref /= L;
        const float got = out[((size_t)t * cs.nh + h) * d + e];
        if (!std::isfinite(got)) ++unwritten;
        err = std::max(err, std::fabs(got - ref));
        ref_max = std::max(ref_max, std::fabs(ref));
      }
    }
  CHECK(unwritten == 0 && err <= 1e-2 * std::max(1.0, ref_max),
        "d %d h %d/%d pos0 %d n %d span %d: %d outputs unwritten or NaN, max |err| %.3g (max |ref| %.3g)", d, cs.nh,
        cs.nkv, cs.pos0, cs.n, cs.span, unwritten, err, ref_max);
}

void test_emulation(Rng &rng) {
  const Case cases[] = {
      {64, 1, 1, 0, 1},     {128, 4, 4, 0, 17},  {64, 7, 1, 0, 127},   {128, 8, 1, 0, 128}, {64, 14, 2, 0, 129},
      {128, 28, 4, 0, 40},  {64, 4, 1, 50, 77},  {128, 7, 1, 130, 21}, {64, 8, 2, 0, 300},  {128, 1, 1, 200, 129},
      // DCA (span s): tiles straddling chunk boundaries, s below and above a key tile, chunked prefill (pos0 > 0),
      // rows with no successive / inter keys next to rows with them in one CTA
      {64, 4, 1, 0, 300, 40},  {128, 7, 1, 37, 200, 25}, {64, 14, 2, 100, 250, 150}, {128, 4, 4, 0, 400, 128},
  };
  for (const Case &c : cases) emulate(c, rng);
}

}  // namespace

int main() {
  Rng rng(90);
  test_geometry();
  test_desc_bits();
  test_operands();
  test_fragments();
  test_maps();
  test_emulation(rng);
  return finish("test_fa3_layout");
}
