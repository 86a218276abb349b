// tile.cpp — the registry entry of toggle "tile": its values (in Tile enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "tile.hpp"
#include "json.hpp"
#include "tile_json.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(tile) {
  return OptDef<Tile>("tile", "Kernel tile sizes")
      .value(Tile::Auto, "auto")
      .value(Tile::Fixed, "fixed")
      .by_default(Tile::Fixed)
      .cpu({Tile::Auto, Tile::Fixed})
      .cuda({Tile::Auto, Tile::Fixed})
      .spec("QWEN-010")
      .describe(
          "Blocking of every GEMV / GEMM call, per shape (kind, weight type, rows of each job, columns). fixed: the "
          "hand-picked configuration of each kernel. auto: the candidate the tuner measured fastest for that shape on "
          "this device (profiles/tuning/<device>.json, written by `npm run calibrate -- --tile` or on first use; the "
          "tuner keeps fixed unless a candidate is faster outside both spreads), fixed for shapes the table lacks. "
          "CPU: GEMV = rb (row streams per work item: 1/2/4/8; fixed 4), chunk (min rows per work item: 32..256; "
          "fixed 64), threads (all, 1, half; fixed all); GEMM (>= 8 tokens, AVX-512) = kc (K block 512/1024/2048; "
          "fixed 1024), l2k (KiB of weight rows per dequantized block 256/512/1024; fixed 512), threads; AVX2 GEMM = "
          "chunk, threads. GEMV candidates give the same bits as fixed; a GEMM kc other than fixed changes only the "
          "summation order. Calls of 2..7 tokens and the int8-activation arm stay fixed. CUDA (compile-checked only, "
          "not yet run): GEMV = r (rows per warp 2/4) x ks (K split 1/2/4/8; fixed = the pick_ks heuristic), GEMM = "
          "fixed (cuBLASLt when loaded) | mma64 | mma128 (our kernel's tile); the CUDA tuner times them with cudaEvents "
          "on the session's weights (GEMV candidates with another K split than fixed's are reordered sums, within the "
          "bound). Not tuned on CUDA: marlin-repacked weights, GEMVs under QW_GEMV_MMA=1.");
}

void write_tuned_candidate(JsonWriter &w, const std::string &name, const std::function<void(JsonWriter &)> &config,
                           const std::vector<double> &samples_ns, double max_abs, bool bitwise, bool within) {
  w.begin_object().key("name").value(name).key("config");
  config(w);
  w.key("samplesNs").begin_array();
  for (double v : samples_ns) w.value(v);
  w.end_array();
  w.key("maxAbsDiff").value(max_abs).key("bitwiseEqual").value(bitwise).key("withinBound").value(within);
  w.end_object();
}

}  // namespace qw
