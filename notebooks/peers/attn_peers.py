#!/usr/bin/env python3
"""Peer attention kernels on the shapes of issue 11, on the GPU machine: PyTorch SDPA with the cuDNN backend and the
flash (FA2) backend, causal bf16 prefill, batch 1, T = 4k / 16k / 32k, Qwen2.5 7B (28 query heads / 4 KV heads, hd 128)
and 0.5B (14 / 2, hd 64). The figures our own flash prefill is compared with (`qwlab fa3` prints ours in the same
units on the same card): TFLOP/s with the lab's FLOP count (causal: 4 d nH per visible key per query, i.e.
2 d nH T (T + 1)), the median of the timed launches after warm-up, with the fastest and slowest.

    python3 notebooks/peers/attn_peers.py [--lens 4096,16384,32768] [--reps 10] [--json FILE]

GQA: K and V are expanded to the query heads once, outside the timed region (cuDNN's SDPA path takes equal head
counts), so the peers read G times the K/V bytes our kernel reads; at these lengths attention is compute-bound and
the FLOPs are the same.
"""
import argparse
import json
import statistics
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [("7B hd128", 28, 4, 128), ("0.5B hd64", 14, 2, 64)]
BACKENDS = [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash2", SDPBackend.FLASH_ATTENTION)]


def time_ms(fn, reps: int, warm: int = 3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out), min(out), max(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="4096,16384,32768")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    try:
        lens = [int(x) for x in a.lens.split(",")]
    except ValueError:
        print(f"--lens: expected comma-separated integers, got {a.lens!r}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("attn_peers: no CUDA device", file=sys.stderr)
        return 1
    dev = torch.cuda.get_device_name()
    print(f"attn_peers on {dev}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    print("| shape | T | backend | ms median (min–max) | TFLOP/s |")
    print("|---|---:|---|---|---:|")
    rows = []
    torch.manual_seed(0)
    for label, nh, nkv, d in SHAPES:
        for t in lens:
            q = torch.randn(1, nh, t, d, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, nkv, t, d, device="cuda", dtype=torch.bfloat16).repeat_interleave(nh // nkv, dim=1)
            v = torch.randn(1, nkv, t, d, device="cuda", dtype=torch.bfloat16).repeat_interleave(nh // nkv, dim=1)
            flop = 2.0 * d * nh * t * (t + 1)
            for name, be in BACKENDS:
                try:
                    with sdpa_kernel([be]):
                        med, lo, hi = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), a.reps)
                except RuntimeError as e:  # a backend that does not take this shape says so; the others still run
                    print(f"| {label} | {t} | {name} | unavailable: {str(e).splitlines()[0][:80]} | – |")
                    continue
                tf = flop / (med * 1e-3) / 1e12
                rows.append({"shape": label, "heads": nh, "kv_heads": nkv, "head_dim": d, "len": t, "backend": name,
                             "ms": med, "ms_min": lo, "ms_max": hi, "tflops": tf, "device": dev})
                print(f"| {label} | {t} | {name} | {med:.3f} ({lo:.3f}–{hi:.3f}) | {tf:.1f} |")
            del q, k, v
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": dev, "torch": torch.__version__, "reps": a.reps, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
