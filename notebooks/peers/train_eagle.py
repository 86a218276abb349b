"""Train an EAGLE-1 draft head for the embedded target (models/tiny-qwen2-brown) on the GPU machine.

The head is SafeAILab EAGLE's (eagle/model/cnets1.py `Model`), for a Qwen2 target:
    x = fc(cat(embed_tokens(token_{i+1}), feature_i))     # fc: 2H -> H with bias
    x = x + self_attn(x)                                   # layer 0 has NO input_layernorm
    x = x + mlp(post_attention_layernorm(x))
    logits = target.lm_head(x)                             # no final norm
where feature_i is the target's last hidden state AFTER its final norm at position i (what EaModel feeds:
base_model.model(...)[0]). The head learns to predict feature_{i+1} (smooth-L1 regression) and the target's
next-token distribution softmax(lm_head(feature_{i+1})) (cross-entropy), loss = reg + 0.1 * cls, as EAGLE-1.

Data: the Brown training split (every document but each 20th; the 20th ones are validation), tokenized here by
`npx bun notebooks/eagle-data.ts --out .gpu/eagle-data` (the GPU machine has no corpus package), and/or
self-distillation: the target's own greedy continuations of Brown training prompts (--distill-frac).

Writes OUT/config.json + OUT/model.safetensors in SafeAILab's layout (tensor names of their state dict:
embed_tokens.weight, fc.weight, fc.bias, layers.0.self_attn.{q,k,v,o}_proj.weight, q/k/v biases,
layers.0.mlp.{gate,up,down}_proj.weight, layers.0.post_attention_layernorm.weight) for engine/spec/eagle-head.ts,
and OUT/train_log.json: loss and acceptance over steps (teacher-forced top-1 agreement of the head's argmax
with the target's greedy token = the first draft position's acceptance, on validation text and on the target's
own greedy continuations of validation prompts; top-4 = the target's token among the head's 4 best).

    python3 notebooks/peers/train_eagle.py --data .gpu/eagle-data --target models/tiny-qwen2-brown \
        --out $OUT/tiny-qwen2-brown-eagle --steps 3000
"""
import argparse
import json
import math
import os
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder with train.bin, validation.bin, meta.json (eagle-data.ts)")
    p.add_argument("--target", default="models/tiny-qwen2-brown", help="HF folder of the target")
    p.add_argument("--out", required=True, help="output folder (SafeAILab layout)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=256, help="tokens per training sequence")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--w-reg", type=float, default=1.0)
    p.add_argument("--w-cls", type=float, default=0.1)
    p.add_argument("--noise", type=float, default=0.2, help="uniform feature noise half-width (EAGLE's data noise)")
    p.add_argument("--distill-frac", type=float, default=0.0,
                   help="share of batches drawn from the target's own greedy continuations (self-distillation)")
    p.add_argument("--distill-seqs", type=int, default=512, help="continuations generated for self-distillation")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-seqs", type=int, default=64)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16", help="dtype of the written tensors")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main():
    args = parse_args()
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    train = torch.from_numpy(np.fromfile(os.path.join(args.data, "train.bin"), dtype="<u2").astype(np.int64))
    valid = torch.from_numpy(np.fromfile(os.path.join(args.data, "validation.bin"), dtype="<u2").astype(np.int64))

    try:
        target = AutoModelForCausalLM.from_pretrained(args.target, dtype=torch.float32)
    except TypeError:  # transformers 4.x
        target = AutoModelForCausalLM.from_pretrained(args.target, torch_dtype=torch.float32)
    target = target.to(dev).eval()
    for prm in target.parameters():
        prm.requires_grad_(False)
    cfg = target.config
    if cfg.vocab_size != meta["vocab_size"]:
        raise SystemExit(f"the data was tokenized for vocab {meta['vocab_size']}, the target has {cfg.vocab_size}")
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    nkv = getattr(cfg, "num_key_value_heads", None) or nh
    hd = H // nh
    theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 1e6)
    eps = cfg.rms_norm_eps
    lm_head = target.get_output_embeddings()

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            v = x.float().pow(2).mean(-1, keepdim=True)
            return self.weight * (x.float() * torch.rsqrt(v + eps)).to(x.dtype)

    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, device=dev).float() / hd))

    def rope(x, pos):  # x [B, heads, T, hd]; NeoX halves, as HF Qwen2 / EAGLE's LlamaRotaryEmbedding
        f = pos.float()[:, None] * inv_freq[None, :]
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(H, nh * hd, bias=True)
            self.k_proj = nn.Linear(H, nkv * hd, bias=True)
            self.v_proj = nn.Linear(H, nkv * hd, bias=True)
            self.o_proj = nn.Linear(nh * hd, H, bias=False)

        def forward(self, x):
            B, T, _ = x.shape
            pos = torch.arange(T, device=x.device)
            q = rope(self.q_proj(x).view(B, T, nh, hd).transpose(1, 2), pos)
            k = rope(self.k_proj(x).view(B, T, nkv, hd).transpose(1, 2), pos)
            v = self.v_proj(x).view(B, T, nkv, hd).transpose(1, 2)
            if nkv != nh:
                k = k.repeat_interleave(nh // nkv, dim=1)
                v = v.repeat_interleave(nh // nkv, dim=1)
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(z.transpose(1, 2).reshape(B, T, nh * hd))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            I = cfg.intermediate_size
            self.gate_proj = nn.Linear(H, I, bias=False)
            self.up_proj = nn.Linear(H, I, bias=False)
            self.down_proj = nn.Linear(I, H, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Layer(nn.Module):  # EAGLE's decoder layer with index 0: no input_layernorm
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.mlp = MLP()
            self.post_attention_layernorm = RMSNorm(H)

        def forward(self, x):
            x = x + self.self_attn(x)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab_size, H)
            self.embed_tokens.weight.data.copy_(target.get_input_embeddings().weight.data.float())
            self.embed_tokens.weight.requires_grad_(False)
            self.fc = nn.Linear(2 * H, H, bias=True)
            self.layers = nn.ModuleList([Layer()])

        def forward(self, feat, ids):
            x = self.fc(torch.cat((self.embed_tokens(ids), feat), dim=-1))
            return self.layers[0](x)

    head = Head().to(dev)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))

    @torch.no_grad()
    def features(ids):  # the target's final-normed hidden states and its logits
        out = target.model(input_ids=ids)
        f = out.last_hidden_state.float()
        return f, lm_head(f).float()

    gen = torch.Generator().manual_seed(args.seed)

    def batch_from(tokens, n, L):
        off = torch.randint(0, tokens.numel() - L - 1, (n,), generator=gen)
        return torch.stack([tokens[o:o + L + 1] for o in off.tolist()]).to(dev)

    @torch.no_grad()
    def own_continuations(tokens, n, prompt_len, new):
        """The target's greedy continuations of n prompts (prompt + generated ids)."""
        x = batch_from(tokens, n, prompt_len - 1)
        for _ in range(new):
            nxt = target(input_ids=x).logits[:, -1].argmax(-1, keepdim=True)
            x = torch.cat((x, nxt), dim=1)
        return x

    distill = None
    if args.distill_frac > 0:
        t0 = time.time()
        parts = [own_continuations(train, 64, 32, args.seq + 1 - 32).cpu() for _ in range(max(1, args.distill_seqs // 64))]
        distill = torch.cat(parts)
        print(json.dumps({"distill_seqs": distill.shape[0], "seconds": round(time.time() - t0, 1)}), flush=True)
    val_own = own_continuations(valid, args.eval_seqs, 32, 96)

    def loss_on(ids, noise):
        f, logits = features(ids)  # [B, L+1, *]
        feat = f[:, :-1]
        if noise > 0:
            feat = feat + (torch.rand_like(feat) * 2 - 1) * noise
        out = head(feat, ids[:, 1:])  # position i: (token_{i+1}, feature_i) -> feature_{i+1}
        reg = F.smooth_l1_loss(out, f[:, 1:])
        p = logits[:, 1:].softmax(-1)
        hl = lm_head(out).float()
        cls = -(p * hl.log_softmax(-1)).sum(-1).mean()
        return reg, cls, hl, logits[:, 1:]

    @torch.no_grad()
    def agreement(ids, start=0):
        """Head row i predicts token i + 2; rows before `start` are context only (not counted)."""
        _, _, hl, tl = loss_on(ids, 0.0)
        hl, tl = hl[:, start:], tl[:, start:]
        want = tl.argmax(-1)
        top1 = (hl.argmax(-1) == want).float().mean().item()
        top4 = (hl.topk(4, dim=-1).indices == want[..., None]).any(-1).float().mean().item()
        return top1, top4

    def evaluate():
        head.eval()
        vb = batch_from(valid, args.eval_seqs, args.seq)
        v1, v4 = agreement(vb)
        # on the target's own greedy continuations (32 prompt tokens, then generated): rows predicting a generated
        # token only, i.e. what greedy speculation verifies
        o1, o4 = agreement(val_own, start=30)
        head.train()
        return {"val_top1": v1, "val_top4": v4, "own_top1": o1, "own_top4": o4}

    log = {"args": vars(args), "target": args.target, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "steps": []}
    t0 = time.time()
    head.train()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            rec = {"step": step, "seconds": round(time.time() - t0, 1), **evaluate()}
            if log["steps"] and "loss" in log["steps"][-1]:
                rec.update({k: log["steps"][-1][k] for k in ("loss", "reg", "cls", "lr")})
            log["steps"].append(rec)
            print(json.dumps(rec), flush=True)
        if step == args.steps:
            break
        use_distill = distill is not None and torch.rand(1, generator=gen).item() < args.distill_frac
        if use_distill:
            idx = torch.randint(0, distill.shape[0], (args.batch,), generator=gen)
            ids = distill[idx, : args.seq + 1].to(dev)
        else:
            ids = batch_from(train, args.batch, args.seq)
        reg, cls, _, _ = loss_on(ids, args.noise)
        loss = args.w_reg * reg + args.w_cls * cls
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        sched.step()
        if step % 50 == 0:
            log["steps"].append({"step": step, "loss": loss.item(), "reg": reg.item(), "cls": cls.item(),
                                 "lr": sched.get_last_lr()[0]})

    os.makedirs(args.out, exist_ok=True)
    from safetensors.torch import save_file
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    state = {k: v.detach().to(dt).contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "bias": True, "qkv_bias": True,
        "vocab_size": cfg.vocab_size, "hidden_size": H, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": 1, "num_attention_heads": nh, "num_key_value_heads": nkv,
        "max_position_embeddings": cfg.max_position_embeddings, "rms_norm_eps": eps, "rope_theta": float(theta),
        "torch_dtype": "bfloat16" if args.dtype == "bf16" else "float32",
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    log["seconds"] = round(time.time() - t0, 1)
    log["final"] = log["steps"][-1]
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(json.dumps({"wrote": args.out, "final": log["final"]}), flush=True)


if __name__ == "__main__":
    main()
