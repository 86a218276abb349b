"""Hugging Face transformers eager generate on random-init Qwen2.5 shapes (bf16, CUDA).

    python3 notebooks/peers/hf_eager.py [--models 0.5b,1.5b,7b] [--reps 3] [--prompt 128] [--gen 128] [--out FILE]

Decode tok/s = n_gen / (generate time - prefill time), prefill measured by one forward of the prompt;
one warm-up, then >= 3 repetitions. Prints BenchRow JSON lines (system "transformers-eager").
"""
import time

import torch
from common import arg, emit, qwen_config, random_model


def main():
    models = arg("--models", "0.5b,1.5b,7b").split(",")
    reps = max(3, int(arg("--reps", "3")))
    n_prompt, n_gen = int(arg("--prompt", "128")), int(arg("--gen", "128"))
    out = arg("--out")
    for shape in models:
        torch.manual_seed(0)
        cfg = qwen_config(shape)
        model = random_model(cfg, torch.bfloat16, "eager")
        ids = torch.randint(10, 150000, (1, n_prompt), device="cuda")
        pre, dec = [], []
        for r in range(reps + 1):
            with torch.no_grad():
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(ids)
                torch.cuda.synchronize()
                tp = time.perf_counter() - t0
                t0 = time.perf_counter()
                model.generate(ids, max_new_tokens=n_gen, min_new_tokens=n_gen, do_sample=False, pad_token_id=0)
                torch.cuda.synchronize()
                tg = time.perf_counter() - t0
            if r > 0:
                pre.append(n_prompt / tp)
                dec.append(n_gen / max(tg - tp, 1e-9))
        emit("transformers-eager", shape, f"tg{n_gen} b1", 1, n_prompt, n_gen, dec, {"attn": "eager"}, out)
        emit("transformers-eager", shape, f"pp{n_prompt}", 1, n_prompt, 0, pre, {"attn": "eager"}, out)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
