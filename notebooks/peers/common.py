"""Shared helpers of the peer scripts (run on the GPU machine with its python3: torch + transformers).

Shapes are the Qwen2.5 checkpoints' (kernel-brief §1.1); weights are random (HF init, std 0.02), bf16.
Every script prints JSON lines in the BenchRow shape of engine/profile.ts, which notebooks/bench.ts merges
with --peers FILE.
"""
import json
import statistics
import sys

SHAPES = {
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}
COMMON = dict(max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
              attention_dropout=0.0, use_sliding_window=False, bos_token_id=151643, eos_token_id=151643)


def qwen_config(shape):
    from transformers import Qwen2Config
    c = dict(COMMON)
    c.update(SHAPES[shape])
    # transformers 5 keeps RoPE in rope_parameters; 4.x reads rope_theta. Give both.
    c["rope_parameters"] = {"rope_type": "default", "rope_theta": c["rope_theta"]}
    return Qwen2Config(**c)


def random_model(cfg, dtype, attn="eager"):
    """A randomly initialized Qwen2ForCausalLM (HF init) built directly on the GPU."""
    import torch
    from transformers import Qwen2ForCausalLM
    try:
        cfg._attn_implementation = attn
    except Exception:
        pass
    with torch.device("cuda"):
        try:
            m = Qwen2ForCausalLM._from_config(cfg, attn_implementation=attn)
        except TypeError:
            m = Qwen2ForCausalLM._from_config(cfg)
    return m.to(dtype).eval()


def stat(samples):
    s = sorted(samples)
    return {"samples": samples, "median": statistics.median(s), "min": s[0], "max": s[-1], "unit": "tok/s"}


def emit(system, shape, test, batch, n_prompt, n_gen, samples, extra=None, out=None):
    row = {"test": test, "model": f"synthetic:{shape}:bf16", "weights": "bf16", "backend": "cuda", "batch": batch,
           "n_prompt": n_prompt, "n_gen": n_gen, "tokens_per_s": stat(samples), "system": system}
    if extra:
        row["extra"] = extra
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def arg(name, default=None):
    a = sys.argv
    return a[a.index(name) + 1] if name in a and a.index(name) + 1 < len(a) else default
