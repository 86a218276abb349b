"""Creates random-init Qwen2.5-shaped Hugging Face checkpoints and the reference outputs test/gpu compares with.

    python3 notebooks/peers/make_ref.py [--models 0.5b,1.5b] [--out DIR] [--no-ref]   (default DIR: $OUT/qw-ref or /tmp/qw-ref)

--no-ref writes only the checkpoints (fast, any shape incl. 7b): notebooks/bench.ts --hf-root DIR benchmarks
them as bf16 models without generating 15 GB of random weights in TypeScript.

For each shape: DIR/<shape>/ holds config.json, model.safetensors (bf16; HF init std 0.02, plus random q/k/v
biases and norm weights so that those paths are exercised), tokenizer.json (the repo's models/qwen-tokenizer)
and reference.json + logits_last.f32: computed by transformers with the SAME bf16 weights upcast to float32
(eager attention):
  * prompt64: 64 token ids; logits_last.f32 = float32 logits at the last position (vocab floats, little endian)
  * teacher: 257 token ids; teacher_argmax[i] = argmax of the logits at position i (i < 256) and the top-1/top-2
    margin at each position
  * greedy32: 32 greedy tokens after prompt64 (greedy32_margin: top-1 minus top-2 logit at each step)
  * bf16_*: the same from the bf16 model (how far HF's own bf16 run is from its fp32 run, for scale), plus
    bf16_vs_fp32_last_{max_abs,rel_l2} (last-position logits) and bf16_teacher_max_abs[i] (max |bf16 - fp32|
    logit at teacher position i): the noise of a bf16 implementation, which test/gpu's gates are scaled by
"""
import gzip
import json
import os
import shutil
import sys

import torch
from common import arg, qwen_config, random_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    from safetensors.torch import save_file
    models = arg("--models", "0.5b,1.5b").split(",")
    out = arg("--out", os.path.join(os.environ.get("OUT", "/tmp"), "qw-ref"))
    no_ref = "--no-ref" in sys.argv
    for shape in models:
        d = os.path.join(out, shape)
        if no_ref and os.path.exists(os.path.join(d, "model.safetensors")):
            print(json.dumps({"exists": d}), flush=True)
            continue
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(1234)
        cfg = qwen_config(shape)
        model = random_model(cfg, torch.float32, "eager")
        g = torch.Generator(device="cuda").manual_seed(99)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=g, device="cuda") * 0.02)
                elif "norm" in name:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g, device="cuda"))
            # bf16 weights are the checkpoint; the fp32 reference uses exactly those values
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
        sd = {k: v.to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()}
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        c = cfg.to_dict()
        c["architectures"] = ["Qwen2ForCausalLM"]
        c["torch_dtype"] = "bfloat16"
        c.pop("_attn_implementation", None)
        c.pop("_attn_implementation_autoset", None)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=1)
        tok = os.path.join(ROOT, "models", "qwen-tokenizer")
        with gzip.open(os.path.join(tok, "tokenizer.json.gz"), "rb") as src, open(os.path.join(d, "tokenizer.json"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copy(os.path.join(tok, "tokenizer_config.json"), d)
        if no_ref:
            print(json.dumps({"made": d, "reference": False}), flush=True)
            del model, sd
            torch.cuda.empty_cache()
            continue

        gen = torch.Generator().manual_seed(7)
        prompt = torch.randint(10, 150000, (1, 64), generator=gen)
        teacher = torch.randint(10, 150000, (1, 257), generator=gen)
        ref = {"shape": shape, "prompt64": prompt[0].tolist(), "teacher": teacher[0].tolist(),
               "transformers": __import__("transformers").__version__, "torch": torch.__version__}
        for tag, dtype in (("", torch.float32), ("bf16_", torch.bfloat16)):
            m = model.to(dtype)
            with torch.no_grad():
                lg = m(prompt.cuda()).logits[0, -1].float()
                if tag == "":
                    lg.cpu().numpy().astype("<f4").tofile(os.path.join(d, "logits_last.f32"))
                ref[tag + "argmax_last"] = int(lg.argmax())
                tl = m(teacher.cuda()).logits[0, :256].float()
                if tag == "":
                    fp32_teacher = tl
                else:  # HF's own bf16 noise at every teacher position: max |bf16 - fp32| over the vocabulary
                    ref["bf16_teacher_max_abs"] = (tl - fp32_teacher).abs().amax(dim=-1).tolist()
                top2 = tl.topk(2, dim=-1)
                ref[tag + "teacher_argmax"] = top2.indices[:, 0].tolist()
                ref[tag + "teacher_margin"] = (top2.values[:, 0] - top2.values[:, 1]).tolist()
                ids = prompt.cuda()
                outs, margins = [], []
                for _ in range(32):
                    t2 = m(ids).logits[0, -1].float().topk(2)
                    nxt = int(t2.indices[0])
                    margins.append(float(t2.values[0] - t2.values[1]))
                    outs.append(nxt)
                    ids = torch.cat([ids, torch.tensor([[nxt]], device="cuda")], dim=1)
                ref[tag + "greedy32"] = outs
                ref[tag + "greedy32_margin"] = margins
            if tag == "":
                fp32_last = lg
            else:
                ref["bf16_vs_fp32_last_max_abs"] = float((lg - fp32_last).abs().max())
                ref["bf16_vs_fp32_last_rel_l2"] = float((lg - fp32_last).norm() / fp32_last.norm())
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(ref, f)
        print(json.dumps({"made": d, "argmax_last": ref["argmax_last"],
                          "bf16_vs_fp32_last_max_abs": ref["bf16_vs_fp32_last_max_abs"],
                          "bf16_vs_fp32_last_rel_l2": ref["bf16_vs_fp32_last_rel_l2"]}), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
