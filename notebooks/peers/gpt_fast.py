"""gpt-fast-style decode on random-init Qwen2.5 shapes: a self-contained Qwen2 module with a static KV cache,
the one-token decode step compiled with torch.compile(mode="reduce-overhead", fullgraph=True) (CUDA graphs),
SDPA attention with GQA, bf16 weights (std 0.02, random biases).

    python3 notebooks/peers/gpt_fast.py [--models 0.5b,1.5b,7b] [--batches 1] [--reps 3] [--prompt 128]
                                         [--gen 128] [--out FILE]

Decode tok/s = batch * n_gen / time of the n_gen decode steps (after a 128-token prefill), two warm-up runs
(compilation and graph capture), then >= 3 measured repetitions. Prints BenchRow JSON lines
(system "torch.compile").
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import SHAPES, arg, emit

THETA, EPS = 1000000.0, 1e-6


class Block(nn.Module):
    def __init__(self, H, nH, nKV, d, I):
        super().__init__()
        self.nH, self.nKV, self.d = nH, nKV, d
        self.q = nn.Linear(H, nH * d, bias=True)
        self.k = nn.Linear(H, nKV * d, bias=True)
        self.v = nn.Linear(H, nKV * d, bias=True)
        self.o = nn.Linear(nH * d, H, bias=False)
        self.gate = nn.Linear(H, I, bias=False)
        self.up = nn.Linear(H, I, bias=False)
        self.down = nn.Linear(I, H, bias=False)
        self.n1 = nn.RMSNorm(H, eps=EPS)
        self.n2 = nn.RMSNorm(H, eps=EPS)


def rope(x, cos, sin):
    d = x.shape[-1] // 2
    rot = torch.cat((-x[..., d:], x[..., :d]), dim=-1)
    return x * cos + rot * sin


class Qwen2Fast(nn.Module):
    def __init__(self, shape, batch, max_seq):
        super().__init__()
        s = SHAPES[shape]
        H, nH, nKV, I, L, V = (s["hidden_size"], s["num_attention_heads"], s["num_key_value_heads"],
                               s["intermediate_size"], s["num_hidden_layers"], s["vocab_size"])
        d = H // nH
        self.embed = nn.Embedding(V, H)
        self.layers = nn.ModuleList([Block(H, nH, nKV, d, I) for _ in range(L)])
        self.norm = nn.RMSNorm(H, eps=EPS)
        self.lm_head = None if s["tie_word_embeddings"] else nn.Linear(H, V, bias=False)
        self.register_buffer("kc", torch.zeros(L, batch, nKV, max_seq, d))
        self.register_buffer("vc", torch.zeros(L, batch, nKV, max_seq, d))
        inv = 1.0 / (THETA ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        f = torch.outer(torch.arange(max_seq).float(), inv)
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        self.register_buffer("mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool)))

    def forward(self, idx, pos):
        B, T = idx.shape
        x = self.embed(idx)
        cos = self.cos[pos].to(x.dtype)[None, None]
        sin = self.sin[pos].to(x.dtype)[None, None]
        mask = self.mask[pos][None, None]
        for i, b in enumerate(self.layers):
            h = b.n1(x)
            q = b.q(h).view(B, T, b.nH, b.d).transpose(1, 2)
            k = b.k(h).view(B, T, b.nKV, b.d).transpose(1, 2)
            v = b.v(h).view(B, T, b.nKV, b.d).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            self.kc[i][:, :, pos] = k
            self.vc[i][:, :, pos] = v
            y = F.scaled_dot_product_attention(q, self.kc[i], self.vc[i], attn_mask=mask, enable_gqa=True)
            x = x + b.o(y.transpose(1, 2).reshape(B, T, -1))
            h = b.n2(x)
            x = x + b.down(F.silu(b.gate(h)) * b.up(h))
        x = self.norm(x)
        return F.linear(x, self.embed.weight) if self.lm_head is None else self.lm_head(x)


def main():
    models = arg("--models", "0.5b,1.5b,7b").split(",")
    batches = [int(b) for b in arg("--batches", "1").split(",")]
    reps = max(3, int(arg("--reps", "3")))
    n_prompt, n_gen = int(arg("--prompt", "128")), int(arg("--gen", "128"))
    out = arg("--out")
    torch._inductor.config.coordinate_descent_tuning = True
    torch._inductor.config.triton.unique_kernel_names = True
    for shape in models:
        for B in batches:
            torch.manual_seed(0)
            with torch.device("cuda"):
                m = Qwen2Fast(shape, B, n_prompt + n_gen + 8)
            for name, p in m.named_parameters():
                if name.endswith("bias"):
                    nn.init.normal_(p, std=0.02)
                elif "n1" in name or "n2" in name or name.startswith("norm"):
                    nn.init.ones_(p)
                else:
                    nn.init.normal_(p, std=0.02)
            m = m.to(torch.bfloat16).eval()

            def decode_one(idx, pos):
                logits = m(idx, pos)
                return torch.argmax(logits[:, -1], dim=-1, keepdim=True)

            step = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True)
            prompt = torch.randint(10, 150000, (B, n_prompt), device="cuda")
            dec, pre = [], []
            for r in range(reps + 2):
                with torch.no_grad():
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    logits = m(prompt, torch.arange(n_prompt, device="cuda"))
                    tok = torch.argmax(logits[:, -1], dim=-1, keepdim=True)
                    torch.cuda.synchronize()
                    tp = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    for i in range(n_gen):
                        pos = torch.tensor([n_prompt + i], device="cuda")
                        tok = step(tok, pos).clone()
                    torch.cuda.synchronize()
                    tg = time.perf_counter() - t0
                if r >= 2:
                    dec.append(B * n_gen / tg)
                    pre.append(B * n_prompt / tp)
            emit("torch.compile", shape, f"tg{n_gen} b{B}", B, n_prompt, n_gen, dec,
                 {"mode": "reduce-overhead", "static_kv": True, "torch": torch.__version__}, out)
            if B == 1:
                emit("torch.compile", shape, f"pp{n_prompt}", 1, n_prompt, 0, pre, {"mode": "eager prefill"}, out)
            del m, step
            torch._dynamo.reset()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
