// parallel.cpp — the registry entry of toggle "parallel": its values (in Parallel enumerator order), default,
// which values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "parallel.hpp"

#include "json.hpp"
#include "registry.hpp"
#include "tp_plan.hpp"

namespace qw {

QW_OPTIMIZATION(parallel) {
  return OptDef<Parallel>("parallel", "Tensor parallelism")
      .value(Parallel::Tp1, "tp1")
      .value(Parallel::Tp2, "tp2")
      .value(Parallel::Tp4, "tp4")
      .value(Parallel::Tp8, "tp8")
      .by_default(Parallel::Tp1)
      .needs_reset()
      // The CPU runs tp2..tp8 as an emulation of the sharding plan (one process, every rank in turn, all-reduce
      // as an fp32 sum in rank order: tp_cpu.hpp): the reference the CUDA ranks are to be checked against.
      .cpu({Parallel::Tp1, Parallel::Tp2, Parallel::Tp4, Parallel::Tp8})
      // CUDA: one thread and device per rank, each running the tp1 forward over its shards with NCCL collectives
      // (src/cuda/tp_cuda.cuh). COMPILE-CHECKED ONLY: never run on a multi-GPU machine (README, "Tensor
      // parallelism").
      .cuda({Parallel::Tp1, Parallel::Tp2, Parallel::Tp4, Parallel::Tp8})
      .spec("QWEN-018")
      .describe(
          "Tensor parallelism, chosen when the model loads (model option parallel; changing it reloads the "
          "model): tpN splits every layer over N ranks, Megatron style: column-parallel qkv and gate_up, "
          "row-parallel o_proj and down (an all-reduce after each), query and KV heads split per rank, "
          "vocab-parallel embedding and lm_head (logits gathered). N must divide the query heads, the KV heads "
          "and the intermediate size. CPU: an emulation of the ranks in one process (the reference); CUDA: one "
          "device per rank (devices device .. device + N - 1), NCCL all-reduce in fp32 and logits all-gather, the "
          "decode step one CUDA graph per rank, op records carrying their rank; compile-checked only, never run "
          "on a multi-GPU machine.");
}

Parallel parse_parallel(const char *config_json) {
  const Json o = parse_json_object(config_json, "model config");
  const Json *v = o.get("parallel");
  if (!v || v->kind == Json::Null) return Parallel::Tp1;
  const ToggleDef &d = toggle_def(OptId::parallel);
  std::string list;
  for (const auto &x : d.values) list += (list.empty() ? "" : ", ") + x;
  const int32_t i = v->kind == Json::String ? d.find_value(v->str) : -1;
  if (i < 0)
    throw Error(QW_ERR_INVALID_ARGUMENT, "model config: parallel must be one of " + list +
                                             (v->kind == Json::String ? " (got \"" + v->str + "\")" : " (a string)"));
  return Parallel(i);
}

}  // namespace qw
