#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs, on a machine with no GPU and no CUDA
# installation, from PyPI alone, into .cuda/ (ignored by git). Prints the toolkit root.
#
# What the build needs, and where it comes from:
# - nvcc (with cicc/ptxas, the CUDA headers, CCCL's thrust/cub and libcudart), to compile
#   candle's kernels: NVIDIA's wheels nvidia-cuda-nvcc, -nvvm, -crt, -runtime, -cccl. Pinned to
#   CUDA 13.0: the PTX a compiler writes loads only on drivers at least as new, and the GPU
#   machines we check on have a CUDA 13.0 driver.
# - the CUDA libraries the binary links to (libcuda, cuBLAS, cuBLASLt, cuRAND, NVRTC): only
#   their names and symbols matter at link time, so this writes link stubs, as the CUDA toolkit
#   itself ships for libcuda (lib64/stubs): every function cudarc's bindings declare, in a
#   library with the real library's soname. At run time the GPU machine's own driver and
#   CUDA libraries are loaded (scripts/gpu-check.sh finds them). This keeps the download to
#   ~140 MB instead of ~1 GB of cuBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${PDSIM_CUDA_DIR:-$PWD/.cuda}"
root="$dest/py/nvidia/cu13"
if [[ -f "$dest/.complete" ]]; then
    echo "$root"
    exit 0
fi
say() { echo "cuda-toolchain: $*" >&2; }
rm -rf "$dest"
mkdir -p "$dest/wheels" "$dest/stubs"

say "downloading the CUDA 13.0 compiler wheels from PyPI"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux_2_12_x86_64 \
    -d "$dest/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
python3 -m pip install -q --no-deps --no-compile --target "$dest/py" "$dest"/wheels/*.whl >&2
rm -rf "$dest/wheels"
[[ -x "$root/bin/nvcc" ]] || { say "nvcc missing after install (expected $root/bin/nvcc)"; exit 1; }
ln -sf libcudart.so.13 "$root/lib/libcudart.so"

# cudarc's sources (its bindings list the functions each library exports).
cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, sys
pk = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
pk.sort(key=lambda p: [int(x) for x in p["version"].split(".")])
print(pk[-1]["manifest_path"].rsplit("/", 1)[0])')
say "writing link stubs from the bindings in $cudarc"
stub() { # stub MODULE SONAME LINKNAME
    local c="$dest/stubs/$3.c"
    grep -ohE '^\s+(pub )?fn [A-Za-z_][A-Za-z0-9_]*\(' "$cudarc/src/$1/sys/mod.rs" |
        sed -E 's/^\s+(pub )?fn ([A-Za-z0-9_]+)\(/void \2(void) {}/' | sort -u >"$c"
    gcc -shared -fPIC -o "$dest/stubs/$2" -Wl,-soname,"$2" "$c"
    ln -sf "$2" "$dest/stubs/$3.so"
}
stub driver libcuda.so.1 libcuda
stub cublas libcublas.so.13 libcublas
stub cublaslt libcublasLt.so.13 libcublasLt
stub curand libcurand.so.10 libcurand
stub nvrtc libnvrtc.so.13 libnvrtc
touch "$dest/.complete"
say "ready: $root"
echo "$root"
