// tile_cpu.cpp — the CPU candidates, shape keys, the session table and the tuner of toggle "tile" (tile_cpu.hpp).
#include "tile_cpu.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "act_quant_cpu.hpp"
#include "convert.hpp"
#include "cpu.hpp"
#include "json.hpp"
#include "tile_json.hpp"

namespace qw {
namespace cpu {

TileKind tile_kind(int64_t T) { return T == 1 ? TileKind::Gemv : T >= kDequantMinT ? TileKind::Gemm : TileKind::None; }

const CpuTile &tile_fixed() {
  static const CpuTile fixed{};
  return fixed;
}

std::string tile_name(TileKind k, const CpuTile &c) {
  const std::string th = c.threads == 0 ? "tall" : "t" + std::to_string(c.threads);
  if (k == TileKind::Gemv) return "rb" + std::to_string(c.rb) + ".c" + std::to_string(c.chunk) + "." + th;
  if (cpu_has_avx512()) return "kc" + std::to_string(c.kc) + ".l2k" + std::to_string(c.l2k) + "." + th;
  return "c" + std::to_string(c.chunk) + "." + th;  // the AVX2 prefill kernels have fixed blocks (matmul.cpp)
}

std::vector<TileCandidate> tile_candidates(TileKind k, int threads) {
  std::vector<TileCandidate> out;
  auto add = [&](const CpuTile &c) {
    const std::string n = tile_name(k, c);
    for (const auto &o : out)
      if (o.name == n) return;
    out.push_back({n, c});
  };
  add(tile_fixed());
  std::vector<int32_t> ths{0};
  if (threads > 1) ths.push_back(1);
  if (threads > 3) ths.push_back(threads / 2);
  if (k == TileKind::Gemv) {
    for (int32_t rb : {1, 2, 4, 8})
      for (int64_t ch : {32, 64, 128, 256})
        for (int32_t t : ths) add(CpuTile{rb, ch, t, 1024, 512});
  } else if (k == TileKind::Gemm) {
    if (cpu_has_avx512()) {
      for (int64_t kc : {512, 1024, 2048})
        for (int64_t l2 : {256, 512, 1024})
          for (int32_t t : ths) add(CpuTile{4, 64, t, kc, l2});
    } else {
      for (int64_t ch : {32, 64, 128, 256})
        for (int32_t t : ths) add(CpuTile{4, ch, t, 1024, 512});
    }
  }
  return out;
}

namespace {

std::string type_tag(const NativeTensor &t) {
  switch (t.type) {
    case NativeType::F32: return "f32";
    case NativeType::F16: return "f16";
    case NativeType::BF16: return "bf16";
    case NativeType::W8: return "w8g" + std::to_string(t.group);
    case NativeType::W4: return "w4g" + std::to_string(t.group);
  }
  return "?";
}

TileKind kind_of_key(const std::string &key) {
  if (key.compare(0, 5, "gemv.") == 0) return TileKind::Gemv;
  if (key.compare(0, 5, "gemm.") == 0) return TileKind::Gemm;
  return TileKind::None;
}

thread_local CpuTileTable *g_active = nullptr;

}  // namespace

std::string tile_key(const MatJob *jobs, int n_jobs, int64_t T) {
  const TileKind k = tile_kind(T);
  if (k == TileKind::None || n_jobs <= 0) return "";
  for (int j = 0; j < n_jobs; ++j)
    if (act_quant_runs(jobs[j].act_quant, *jobs[j].w.t, T)) return "";
  std::string s = (k == TileKind::Gemv ? "gemv." : "gemm.") + type_tag(*jobs[0].w.t) + ":";
  for (int j = 0; j < n_jobs; ++j) s += (j ? "+" : "") + std::to_string(jobs[j].w.t->rows);
  return s + "x" + std::to_string(jobs[0].w.t->cols);
}

void CpuTileTable::set(const TileTable &t, int threads) {
  std::map<std::string, CpuTile> next;
  std::map<int, std::vector<TileCandidate>> cands;
  for (const auto &[key, name] : t) {
    const TileKind k = kind_of_key(key);
    if (k == TileKind::None)
      throw Error(QW_ERR_INVALID_ARGUMENT, "tile table: shape key \"" + key +
                                               "\" does not start with gemv. or gemm. (keys come from qw_session_tile_tune)");
    auto &cs = cands[int(k)];
    if (cs.empty()) cs = tile_candidates(k, threads);
    const auto it = std::find_if(cs.begin(), cs.end(), [&](const TileCandidate &c) { return c.name == name; });
    if (it == cs.end()) {
      std::string known;
      for (const auto &c : cs) known += (known.empty() ? "" : ", ") + c.name;
      throw Error(QW_ERR_INVALID_ARGUMENT, "tile table: \"" + name + "\" (for " + key +
                                               ") is not a candidate of this CPU build and thread count; known: " + known +
                                               ". Re-run the tuner (npm run calibrate -- --tile)");
    }
    next[key] = it->cfg;
  }
  by_key_ = std::move(next);
  cache_.clear();
}

const CpuTile &CpuTileTable::lookup(const MatJob *jobs, int n_jobs, int64_t T) {
  const TileKind k = tile_kind(T);
  if (k == TileKind::None || by_key_.empty()) return tile_fixed();
  const auto ck = std::make_tuple(static_cast<const void *>(jobs[0].w.t), n_jobs, int(k));
  auto it = cache_.find(ck);
  if (it == cache_.end()) {
    const auto e = by_key_.find(tile_key(jobs, n_jobs, T));
    it = cache_.emplace(ck, e == by_key_.end() ? tile_fixed() : e->second).first;
  }
  return it->second;
}

TileScope::TileScope(CpuTileTable *t) : prev_(g_active) { g_active = t; }
TileScope::~TileScope() { g_active = prev_; }

const CpuTile &tile_for(const MatJob *jobs, int n_jobs, int64_t T) {
  return g_active ? g_active->lookup(jobs, n_jobs, T) : tile_fixed();
}

namespace {

std::string isa_name() {
  if (cpu_has_vnni()) return "avx512vnni";
  if (cpu_has_avx512()) return "avx512";
  return "avx2";
}

void write_device(JsonWriter &w, int threads) {
  w.key("device").begin_object();
  w.key("backend").value("cpu");
  w.key("name").value(cpu_name());
  w.key("isa").value(isa_name());
  w.key("threads").value(int32_t(threads));
  w.end_object();
}

void write_config(JsonWriter &w, const CpuTile &c) {
  w.begin_object();
  w.key("rb").value(c.rb).key("chunk").value(c.chunk).key("threads").value(c.threads);
  w.key("kc").value(c.kc).key("l2k").value(c.l2k);
  w.end_object();
}

}  // namespace

std::string tile_info_json(int threads, size_t entries) {
  JsonWriter w;
  w.begin_object();
  write_device(w, threads);
  w.key("entries").value(uint64_t(entries));
  w.key("candidates").begin_object();
  for (TileKind k : {TileKind::Gemv, TileKind::Gemm}) {
    w.key(k == TileKind::Gemv ? "gemv" : "gemm").begin_array();
    for (const auto &c : tile_candidates(k, threads)) {
      w.begin_object().key("name").value(c.name).key("config");
      write_config(w, c.cfg);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
  w.key("fixed").begin_object();
  w.key("gemv").value(tile_name(TileKind::Gemv, tile_fixed()));
  w.key("gemm").value(tile_name(TileKind::Gemm, tile_fixed()));
  w.end_object();
  w.end_object();
  return w.str();
}

namespace {

// One call shape of the model: its jobs (weights of the first layer that has the shape) and where it occurs.
struct Shape {
  std::string key, op;
  TileKind kind;
  std::vector<MatJob> jobs;
  int32_t paired_rows = 0;
  std::vector<int32_t> layers;
};

void add_shape(std::vector<Shape> &out, const char *op, int32_t layer, TileKind k, std::vector<MatJob> jobs) {
  const int64_t T = k == TileKind::Gemv ? 1 : kDequantMinT;
  const std::string key = tile_key(jobs.data(), int(jobs.size()), T);
  if (key.empty()) return;
  for (auto &s : out)
    if (s.key == key) {
      if (layer >= 0 && std::find(s.layers.begin(), s.layers.end(), layer) == s.layers.end()) s.layers.push_back(layer);
      return;
    }
  Shape s{key, op, k, std::move(jobs), 0, {}};
  if (layer >= 0) s.layers.push_back(layer);
  out.push_back(std::move(s));
}

std::vector<Shape> model_shapes(const Model &m, const TileTuneRequest &r) {
  std::vector<Shape> out;
  auto job = [](const Weight &w, const float *bias) {
    MatJob j;
    j.w = w;
    j.bias = bias;
    return j;
  };
  for (TileKind k : {TileKind::Gemv, TileKind::Gemm}) {
    if ((k == TileKind::Gemv && !r.gemv) || (k == TileKind::Gemm && !r.gemm)) continue;
    for (int32_t l = 0; l < int32_t(m.layers.size()); ++l) {
      const Layer &ly = m.layers[size_t(l)];
      add_shape(out, "qkv", l, k, {job(ly.q, ly.bq), job(ly.k, ly.bk), job(ly.v, ly.bv)});
      add_shape(out, "o_proj", l, k, {job(ly.o, nullptr)});
      add_shape(out, "gate_up", l, k, {job(ly.gate, nullptr), job(ly.up, nullptr)});
      add_shape(out, "down", l, k, {job(ly.down, nullptr)});
    }
    // The lm_head reads the last row of each sequence (a GEMV) unless every position's logits are asked for.
    if (k == TileKind::Gemv && m.output.t) add_shape(out, "lm_head", -1, k, {job(m.output, nullptr)});
  }
  if (!r.only.empty()) {
    out.erase(std::remove_if(out.begin(), out.end(), [&](const Shape &s) { return s.key != r.only; }), out.end());
    if (out.empty()) throw Error(QW_ERR_NOT_FOUND, "tile tune: the model has no shape \"" + r.only + "\"");
  }
  return out;
}

// Per output (job-major, as snapshot() lays them out): 2 gamma_K sum_k |w_k x_k| (+ the bias add) in fp64, w dequantized exactly.
// Two fp32 sums of the same K products in any two orders differ by at most this (Higham, eq. 4.4, twice).
std::vector<double> reorder_bound(const std::vector<MatJob> &jobs, const float *x, int64_t T, int64_t cols) {
  const double u = std::ldexp(1.0, -24), gamma = double(cols) * u / (1.0 - double(cols) * u);
  std::vector<double> out;
  std::vector<float> row(static_cast<size_t>(cols));
  for (const MatJob &j : jobs) {
    const int64_t rows = j.w.t->rows;
    const size_t base = out.size();
    out.resize(base + size_t(T * rows));
    for (int64_t r = 0; r < rows; ++r) {
      dequant_rows(row.data(), *j.w.t, r, 1);
      for (int64_t t = 0; t < T; ++t) {
        double a = 0;
        for (int64_t c = 0; c < cols; ++c) a += std::fabs(double(row[size_t(c)]) * double(x[t * cols + c]));
        // + the rounding of the bias add after the dot (one ulp of the sum either way)
        const double b = j.bias ? std::fabs(double(j.bias[r])) : 0.0;
        out[base + size_t(t * rows + r)] = 2.0 * gamma * a + 2.0 * u * (a + b);
      }
    }
  }
  return out;
}

double now_ns() {
  return double(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace

std::string tile_tune_json(const Model &m, Pool &pool, const TileTuneRequest &r) {
  std::vector<Shape> shapes = model_shapes(m, r);
  CpuTileTable table;  // one entry at a time: the candidate under measurement
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  JsonWriter w;
  w.begin_object();
  write_device(w, pool.size());
  w.key("request").begin_object();
  w.key("reps").value(r.reps).key("warmup").value(r.warmup).key("repMs").value(r.rep_ms);
  w.key("gemmTokens").value(r.gemm_tokens);
  w.end_object();
  w.key("shapes").begin_array();
  for (Shape &s : shapes) {
    if (r.dry_run) {
      w.begin_object().key("key").value(s.key).key("op").value(s.op);
      w.key("kind").value(s.kind == TileKind::Gemv ? "gemv" : "gemm").key("cols").value(s.jobs[0].w.t->cols);
      w.key("rows").begin_array();
      for (const auto &j : s.jobs) w.value(j.w.t->rows);
      w.end_array().key("layers").begin_array();
      for (int32_t l : s.layers) w.value(l);
      w.end_array().end_object();
      continue;
    }
    const int64_t T = s.kind == TileKind::Gemv ? 1 : r.gemm_tokens;
    const int64_t cols = s.jobs[0].w.t->cols;
    std::vector<float> x(size_t(T * cols));
    for (float &v : x) v = uni(rng);
    std::vector<std::vector<float>> outs(s.jobs.size());
    for (size_t j = 0; j < s.jobs.size(); ++j) {
      outs[j].assign(size_t(T * s.jobs[j].w.t->rows), 0.0f);
      s.jobs[j].out = outs[j].data();
      s.jobs[j].out_stride = s.jobs[j].w.t->rows;
    }
    std::vector<TileCandidate> cands = tile_candidates(s.kind, pool.size());
    if (!r.names.empty()) {  // fixed (first) and the named ones, in the library's order
      for (const std::string &n : r.names)
        if (std::none_of(cands.begin(), cands.end(), [&](const TileCandidate &c) { return c.name == n; }))
          throw Error(QW_ERR_INVALID_ARGUMENT, "tile tune: \"" + n + "\" is not a " +
                                                   (s.kind == TileKind::Gemv ? "gemv" : "gemm") + " candidate of this CPU");
      std::vector<TileCandidate> keep{cands[0]};
      for (size_t i = 1; i < cands.size(); ++i)
        if (std::find(r.names.begin(), r.names.end(), cands[i].name) != r.names.end()) keep.push_back(cands[i]);
      cands = std::move(keep);
    }
    auto run = [&](size_t c) {
      table.set({{s.key, cands[c].name}}, pool.size());
      TileScope scope(&table);
      matmul(s.jobs.data(), int(s.jobs.size()), x.data(), T, cols, pool);
    };
    auto snapshot = [&] {
      std::vector<float> all;
      for (const auto &o : outs) all.insert(all.end(), o.begin(), o.end());
      return all;
    };
    // Reference output (fixed) and the repeat count that makes one repetition last rep_ms.
    run(0);
    const std::vector<float> ref = snapshot();
    double t0 = now_ns();
    run(0);
    const double one = std::max(1.0, now_ns() - t0);
    const int64_t inner = std::max<int64_t>(1, int64_t(std::ceil(r.rep_ms * 1e6 / one)));
    std::vector<std::vector<double>> samples(cands.size());
    std::vector<double> max_abs(cands.size(), 0.0), max_ratio(cands.size(), 0.0);
    std::vector<bool> equal(cands.size(), true);
    std::vector<double> bound;  // per output: the rounding bound of a reordered sum (filled when first needed)
    for (size_t c = 0; c < cands.size(); ++c) {
      // at least one run, warm-up or not: the check below must read this candidate's output, not the previous one's
      for (int32_t i = 0; i < std::max<int32_t>(1, r.warmup); ++i) run(c);
      const std::vector<float> got = snapshot();
      if (std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)) == 0) continue;
      equal[c] = false;
      if (bound.empty()) bound = reorder_bound(s.jobs, x.data(), T, cols);
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::fabs(double(got[i]) - double(ref[i]));
        const double q = std::isnan(d) ? 1e30 : d / std::max(bound[i], 1e-300);
        max_abs[c] = std::max(max_abs[c], std::isnan(d) ? 1e30 : d);
        max_ratio[c] = std::max(max_ratio[c], q);
      }
    }
    // Repetitions interleaved over the candidates: a burst of load from another process hits them all alike.
    for (int32_t rep = 0; rep < r.reps; ++rep)
      for (size_t c = 0; c < cands.size(); ++c) {
        table.set({{s.key, cands[c].name}}, pool.size());
        TileScope scope(&table);
        const double a = now_ns();
        for (int64_t i = 0; i < inner; ++i) matmul(s.jobs.data(), int(s.jobs.size()), x.data(), T, cols, pool);
        samples[c].push_back((now_ns() - a) / double(inner));
      }
    w.begin_object();
    w.key("key").value(s.key).key("op").value(s.op).key("kind").value(s.kind == TileKind::Gemv ? "gemv" : "gemm");
    w.key("tokens").value(T).key("cols").value(cols);
    w.key("rows").begin_array();
    for (const auto &j : s.jobs) w.value(j.w.t->rows);
    w.end_array();
    w.key("layers").begin_array();
    for (int32_t l : s.layers) w.value(l);
    w.end_array();
    w.key("inner").value(inner);
    w.key("candidates").begin_array();
    for (size_t c = 0; c < cands.size(); ++c)  // withinBound: the bound of a reordered fp32 sum (tile_cpu.hpp)
      write_tuned_candidate(w, cands[c].name, [&](JsonWriter &j) { write_config(j, cands[c].cfg); }, samples[c],
                            max_abs[c], bool(equal[c]), max_ratio[c] <= 1.0);
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str();
}

}  // namespace cpu
}  // namespace qw
