#!/usr/bin/env bash
# The GPU check of the CUDA build, in one run of at most 8 minutes.
#
#   scripts/gpu-check.sh --prepare   # here (no GPU needed): build and stage the binaries in .gpu/
#   scripts/gpu-check.sh             # on the GPU machine (carry .gpu/): run everything
#
# The GPU machine has a CUDA 13 driver and CUDA's libraries (cuBLAS, cuRAND, NVRTC, the
# runtime: PyTorch's wheels) but no Rust toolchain and no network, and takes at most 64 MiB of
# files: the binaries are built here, stripped, and synthetic models are generated there.
# Results go to $OUT (the device tool's folder) or gpu-results/: the GPU's name, the CUDA test
# log, the throughput benchmark (JSON and text), and the heavy_light run (log, summary, all
# its files in a tarball).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    set -e
    scripts/cuda-build.sh --tests
    mkdir -p .gpu
    cp target/cuda/release/pdsim .gpu/pdsim
    tests=$(ls -t target/cuda/release/deps/cuda-* | grep -v '\.d$' | head -1)
    cp "$tests" .gpu/cuda-tests
    strip .gpu/pdsim .gpu/cuda-tests
    ls -la .gpu
    echo "staged in .gpu/ ($(du -sh .gpu | cut -f1)); run scripts/gpu-check.sh on the GPU machine, carrying .gpu"
    exit 0
fi

out="${OUT:-$PWD/gpu-results}"
mkdir -p "$out"
[[ -x .gpu/pdsim && -x .gpu/cuda-tests ]] || { echo "no .gpu/ binaries: run scripts/gpu-check.sh --prepare first" >&2; exit 2; }

# CUDA's libraries, wherever the machine keeps them (PyTorch's nvidia wheels, or a toolkit).
libdirs=$(
    {
        python3 -c 'import nvidia, os; [print(p) for p in nvidia.__path__]' 2>/dev/null |
            while read -r d; do find "$d" -name 'libcublas.so.*' -o -name 'libcudart.so.*' -o -name 'libcurand.so.*' -o -name 'libnvrtc.so.*'; done
        find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu -maxdepth 3 \( -name 'libcublas.so.13' -o -name 'libcudart.so.13' \) 2>/dev/null
    } | xargs -r -n1 dirname | sort -u | paste -sd:
)
# The driver's libcuda: where the container mounts it, if the loader's cache does not know it.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e "$d/libcuda.so.1" ]] && libdirs="${libdirs:+$libdirs:}$d"
done
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd .gpu/pdsim | grep -E 'cuda|cublas|curand|nvrtc|not found'
} >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

step() { # step NAME SECONDS COMMAND...
    local name=$1 secs=$2
    shift 2
    echo "== $name (at most ${secs}s)"
    local t0=$SECONDS
    timeout "$secs" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    return $rc
}

status=0
step "CUDA tests" 150 .gpu/cuda-tests --test-threads=1 2>&1 | tee "$out/tests.log" || status=1
step "bench-device llama-2-7b bf16" 150 .gpu/pdsim bench-device --device cuda:0 --synthetic llama-2-7b \
    --dtype bf16 --hardware h200 --json >"$out/bench.json" 2> >(tee "$out/bench.log" >&2) || status=1
rm -rf /tmp/pdsim-gpu-runs
step "heavy_light on cuda:0, fused vs split" 150 .gpu/pdsim scenarios/gpu/heavy_light.toml \
    --out /tmp/pdsim-gpu-runs 2>&1 | tee "$out/heavy_light.log" || status=1
if [[ -d /tmp/pdsim-gpu-runs ]]; then
    cp /tmp/pdsim-gpu-runs/heavy_light/latest/summary.csv "$out/heavy_light_summary.csv" 2>/dev/null
    tar -czf "$out/heavy_light.tar.gz" -C /tmp/pdsim-gpu-runs . 2>/dev/null
fi
echo "results in $out; overall exit $status"
exit $status
