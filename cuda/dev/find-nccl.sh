#!/usr/bin/env bash
# Prints the path of a libnccl.so.2 on this machine (system, CUDA toolkit, or the nvidia-nccl wheel of a PyTorch
# environment: site-packages/nvidia/nccl/lib), or nothing. cuda/src/cuda/nccl.cu reads it from QW_NCCL.
for f in /usr/lib/x86_64-linux-gnu/libnccl.so.2 /usr/local/cuda/lib64/libnccl.so.2 /usr/local/nccl/lib/libnccl.so.2; do
  [[ -e $f ]] && { echo "$f"; exit 0; }
done
command -v python3 >/dev/null || exit 0
python3 -c '
import glob, os, site, sys
roots = [p for p in sys.path if p.endswith("site-packages")]
try: roots = site.getsitepackages() + roots
except Exception: pass
hits = sorted(h for r in roots for h in glob.glob(os.path.join(r, "nvidia", "nccl", "lib", "libnccl.so*")))
print(hits[-1] if hits else "")
' 2>/dev/null
