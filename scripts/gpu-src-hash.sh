#!/usr/bin/env bash
# gpu-src-hash.sh — one hash of every file the native build reads (cuda/ sources, headers, Makefiles; not build/),
# the same here and on the GPU machine (no git there): gpu-prebuild.sh stores it, gpu-owed.sh BUILD=carried checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
find cuda -path cuda/build -prune -o -type f \( -name '*.cu' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.hpp' \
  -o -name '*.h' -o -name 'Makefile' \) -print | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16
