#!/usr/bin/env bash
# gpu-prebuild.sh — builds the CUDA library, the CPU library and the lab here (sm_90a only; nvcc compiles without a
# GPU) and packs them xz-compressed into .gpu/prebuilt/, which travels with .gpu (carry [".gpu"]). On the GPU machine
# `BUILD=carried bash scripts/gpu-owed.sh` unpacks them instead of building: a cold build there took 330 s of a 570 s
# call (2026-12-07), device time the session pays for. The sources' hash (scripts/gpu-src-hash.sh) is stored beside them
# and checked on the device, so binaries of other sources are refused, not run.
#   bash scripts/gpu-prebuild.sh          # here, before gpu-strip.sh strip (2 cores: ~6 minutes cold, 2026-12-07)
# The Makefiles do not track flags: objects built here are sm_90a only and a later plain `make` reuses them (no sm_80
# code); `make -C cuda clean` before building for an sm_80 device.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
gen=-gencode=arch=compute_90a,code=sm_90a
make -C cuda -j"$(nproc)" cuda cpu GENCODE="$gen"
make -C cuda/dev -j"$(nproc)" GENCODE="$gen"
mkdir -p .gpu/prebuilt
for f in cuda/build/libqwen_cuda.so cuda/build/libqwen_cpu.so cuda/build/dev/qwlab; do
  xz -T"$(nproc)" -6 -c "$f" > ".gpu/prebuilt/$(basename "$f").xz"
done
bash scripts/gpu-src-hash.sh > .gpu/prebuilt/src.hash
echo "gpu-prebuild: .gpu/prebuilt $(du -sm .gpu/prebuilt | cut -f1) MiB, sources $(cat .gpu/prebuilt/src.hash)"
