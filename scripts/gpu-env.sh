# gpu-env.sh — sourced by the device-side scripts (gpu-validate.sh, gpu-owed.sh) from the repo root on the GPU machine:
# $OUT and the deadline D, CUDA and libcublasLt on the paths, and the models that scripts/gpu-strip.sh moved into
# .gpu/models unpacked back into models/ (the device's tree is the stripped working tree).
OUT=${OUT:-/tmp/qw-out}; mkdir -p "$OUT"; D=${DEADLINE:-560}
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
lt=$(bash cuda/dev/find-cublaslt.sh || true)
[[ -n "$lt" ]] && export QW_CUBLASLT="$lt" LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
for x in .gpu/models/*.safetensors.xz; do
  [[ -f $x ]] || continue; n=$(basename "$x" .safetensors.xz); [[ -f models/$n/model.safetensors ]] || xz -dc "$x" > "models/$n/model.safetensors"; done
