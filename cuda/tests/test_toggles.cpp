// test_toggles.cpp — the typed toggle registry (src/front/registry.hpp, toggles.hpp, src/opt/list.hpp): every
// entry is well formed, enumerators map to value strings both ways, StepToggles index access reaches the named
// fields, a misordered entry is refused, and qw_session_set_toggle parses once into fields the JSON reads back.
#include <stdexcept>

#include "act_quant.hpp"
#include "gqa.hpp"
#include "graphs.hpp"
#include "kvcache.hpp"
#include "refmodel.hpp"
#include "registry.hpp"

using namespace qw;

int main() {
  // Every list line has an entry, in list order, with a well formed value table.
  const auto &defs = toggle_defs();
  CHECK(defs.size() == size_t(kOptCount), "one entry per list line (%zu vs %d)", defs.size(), kOptCount);
  for (size_t i = 0; i < defs.size(); ++i) {
    const ToggleDef &d = defs[i];
    CHECK(d.opt == OptId(i) && &toggle_def(OptId(i)) == &d, "%s: position", d.id);
    CHECK(find_toggle(d.id) == &d, "%s: found by id", d.id);
    CHECK(!d.values.empty() && d.def < d.values.size(), "%s: default is a value", d.id);
    for (const char *b : {"cpu", "cuda"}) {
      CHECK(!d.implemented(b).empty(), "%s: %s implements a value", d.id, b);
      for (uint8_t v : d.implemented(b)) CHECK(v < d.values.size(), "%s: %s value index %d", d.id, b, int(v));
      CHECK(d.implements(b, d.initial(b)), "%s: initial value on %s is implemented", d.id, b);
    }
    for (size_t v = 0; v < d.values.size(); ++v) CHECK(d.find_value(d.values[v]) == int32_t(v), "%s: find_value", d.id);
    CHECK(d.find_value("no such value") == -1, "%s: unknown value", d.id);
  }
  CHECK(find_toggle("kv_cache") == nullptr && find_toggle("kvCache") != nullptr, "ids are the registry strings");

  // Scope comes from the list line; OptOf / OptType agree with it.
  CHECK(toggle_def(OptOf<Gqa>::id).per_layer && OptOf<Gqa>::scope == Scope::PerLayer, "gqa is per layer");
  CHECK(!toggle_def(OptOf<KvCache>::id).per_layer && OptOf<KvCache>::scope == Scope::Global, "kvCache is global");
  CHECK(OptOf<OptType<OptId::act_quant>::type>::id == OptId::act_quant, "OptType / OptOf round trip");

  // Enumerator i is value i.
  CHECK(value_name(Gqa::Native) == "native" && value_name(Gqa::Broadcast) == "broadcast", "gqa names");
  CHECK(value_name(KvCache::F32) == "f32" && value_name(KvCache::Kivi2) == "kivi2", "kvCache names");
  CHECK(value_name(ActQuant::Int8) == "int8" && value_name(Graphs::Off) == "off", "actQuant / graphs names");
  CHECK(toggle_def(OptId::graphs).initial("cpu") == uint8_t(Graphs::Off) &&
            toggle_def(OptId::graphs).initial("cuda") == uint8_t(Graphs::On),
        "graphs start off on the CPU (not implemented there), on on CUDA");

  // Index access reaches the named fields (per layer and global).
  StepToggles t;
  t.layer.resize(3);
  t.set_index(OptId::gqa, 1, uint8_t(Gqa::Broadcast));
  CHECK(t.layer[0].gqa == Gqa::Native && t.layer[1].gqa == Gqa::Broadcast && t.layer[2].gqa == Gqa::Native,
        "per-layer set");
  t.set_index(OptId::act_quant, -1, uint8_t(ActQuant::Int8));
  for (int l = 0; l < 3; ++l) CHECK(t.at(l).act_quant == ActQuant::Int8, "set on every layer (%d)", l);
  t.set_index(OptId::kv_cache, 2, uint8_t(KvCache::F32));
  CHECK(t.kv_cache == KvCache::F32 && t.index(OptId::kv_cache, 0) == uint8_t(KvCache::F32), "global set / get");
  CHECK(t.index(OptId::gqa, 1) == uint8_t(Gqa::Broadcast), "per-layer get");
  const StepToggles empty;
  CHECK(empty.at(5).gqa == Gqa::Native && empty.graphs == Graphs::On, "first values when nothing is set");

  // A misordered entry or a default that is not a value is refused when built.
  bool threw = false;
  try {
    OptDef<Gqa>("x", "x").value(Gqa::Broadcast, "broadcast");
  } catch (const std::logic_error &) {
    threw = true;
  }
  CHECK(threw, "values out of enumerator order are refused");
  threw = false;
  try {
    OptDef<Gqa>("x", "x").value(Gqa::Native, "native").by_default(Gqa::Broadcast);
  } catch (const std::logic_error &) {
    threw = true;
  }
  CHECK(threw, "a default that is not a value is refused");

  // Through the ABI: a per-layer set shows in the JSON per layer; set back, it collapses to one value; a refused
  // value leaves the state as it was.
  RefConfig cfg;
  const RefModel ref(cfg, 3, [](const std::string &, int64_t) { return QW_GGML_F32; });
  qw_engine *e = nullptr;
  qw_model *m = nullptr;
  qw_session *s = nullptr;
  CHECK_OK(qw_engine_create("{\"threads\":1}", &e));
  CHECK_OK(qw_model_create(e, cfg.json().c_str(), &m));
  for (const auto &n : ref.order) {
    const RefTensor &x = ref.t.at(n);
    CHECK_OK(qw_model_load_tensor(m, n.c_str(), x.type, x.vector ? 1 : 2, x.ne0, x.vector ? 1 : x.ne1, 1, 1,
                                  x.raw.data(), x.raw.size()));
  }
  CHECK_OK(qw_model_finalize(m));
  CHECK_OK(qw_session_create(m, "{\"max_context\":16}", &s));
  char buf[4096];
  uint64_t len = 0;
  CHECK_OK(qw_session_set_toggle(s, "actQuant", "int8", 1));
  CHECK_OK(qw_session_toggles_json(s, buf, sizeof buf, &len));
  CHECK(std::strstr(buf, "\"actQuant\":[\"off\",\"int8\"]") != nullptr, "per-layer JSON: %s", buf);
  CHECK_OK(qw_session_set_toggle(s, "actQuant", "off", 1));
  CHECK_ST(qw_session_set_toggle(s, "kvCache", "q8", -1), QW_ERR_UNSUPPORTED);
  CHECK_OK(qw_session_toggles_json(s, buf, sizeof buf, &len));
  CHECK(std::strstr(buf, "\"actQuant\":\"off\"") != nullptr && std::strstr(buf, "\"kvCache\":\"bf16\"") != nullptr,
        "collapsed JSON, refused value not applied: %s", buf);
  CHECK_OK(qw_session_destroy(s));
  CHECK_OK(qw_model_destroy(m));
  CHECK_OK(qw_engine_destroy(e));
  return finish("test_toggles");
}
