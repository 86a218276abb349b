#!/usr/bin/env bash
# Prints the path of a libcublasLt.so.* on this machine (CUDA toolkit or the pip wheel PyTorch uses), or nothing.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  for f in "$d"/libcublasLt.so.13 "$d"/libcublasLt.so.12 "$d"/libcublasLt.so; do [[ -e $f ]] && { echo "$f"; exit 0; }; done
done
if command -v python3 >/dev/null; then
  python3 - <<'PY' 2>/dev/null
import glob, site, sys, os
roots = []
try: roots += site.getsitepackages()
except Exception: pass
roots += [p for p in sys.path if p.endswith("site-packages")]
for r in roots:
    for pat in ("nvidia/cu13/lib/libcublasLt.so*", "nvidia/cublas/lib/libcublasLt.so*", "nvidia/*/lib/libcublasLt.so*"):
        hits = sorted(glob.glob(os.path.join(r, pat)))
        if hits:
            print(hits[-1]); sys.exit(0)
PY
fi
