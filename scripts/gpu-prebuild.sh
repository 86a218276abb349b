#!/usr/bin/env bash
# gpu-prebuild.sh — builds the CUDA library, the CPU library and the lab here (sm_90a only; nvcc compiles without a
# GPU) and packs them xz-compressed into .gpu/prebuilt/, which travels with .gpu (carry [".gpu"]). On the GPU machine
# `BUILD=carried bash scripts/gpu-owed.sh` unpacks them instead of building: a cold build there took 330 s of a 570 s
# call (2026-12-07), device time the session pays for. The sources' hash (scripts/gpu-src-hash.sh) is stored beside them
# and checked on the device, so binaries of other sources are refused, not run.
#   bash scripts/gpu-prebuild.sh          # here, before gpu-strip.sh strip (2 cores: ~15 minutes cold, seconds to
#                                         # minutes after an edit)
# It builds in a folder of its own (cuda/build/gpu: sm_90a only, no line tables), because the Makefiles do not track
# flags: objects of these flags in cuda/build would be reused by a plain `make` (no sm_80 code, no line tables).
# Without line tables (LINEINFO=) the device code is a third of its size: all three binaries ~12 MiB compressed
# instead of 36, so they travel beside Bun (37) with the stripped tree and one tiny model (GPU_MODELS default of
# gpu-strip.sh). Nsight Compute's source view is what is lost; its sections (gpu-owed.sh ncu-*) do not need it.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
gen=-gencode=arch=compute_90a,code=sm_90a
make -C cuda -j"$(nproc)" cuda cpu BUILD=build/gpu LINEINFO= GENCODE="$gen"
make -C cuda/dev -j"$(nproc)" LAB_OUT=../build/gpu/dev LINEINFO= GENCODE="$gen"
rm -rf .gpu/prebuilt; mkdir -p .gpu/prebuilt
for f in cuda/build/gpu/libqwen_cuda.so cuda/build/gpu/libqwen_cpu.so cuda/build/gpu/dev/qwlab; do
  xz -T"$(nproc)" -9 -c "$f" > ".gpu/prebuilt/$(basename "$f").xz"
done
bash scripts/gpu-src-hash.sh > .gpu/prebuilt/src.hash
echo "gpu-prebuild: .gpu/prebuilt $(du -sm .gpu/prebuilt | cut -f1) MiB, sources $(cat .gpu/prebuilt/src.hash)"
