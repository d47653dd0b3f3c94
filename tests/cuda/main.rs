//! The GPU checks (scripts/gpu-check.sh runs them on a GPU from a `--features cuda` build). The
//! device is `PDSIM_CUDA_DEVICE`, by default `cuda:0` in a CUDA build and the CPU otherwise: the
//! CPU build runs the same checks on the CPU (f16 for bf16, a smaller shape), so the checks
//! themselves are tested before a GPU's scarce minutes are spent on them. Synthetic models (the
//! real model's 98 MB do not travel to the GPU machine): their weights are a function of the
//! seed alone, the same on the CPU and the GPU, so the GPU's results can be checked against the
//! CPU's.

use std::sync::Arc;

use candle_core::DType;
use pdsim::engine::candle::device::DeviceSpec;
use pdsim::engine::candle::forward::{DeviceNet, Forward, WorkerNet};
use pdsim::engine::candle::synthetic::SyntheticSpec;

fn gpu() -> DeviceSpec {
    let default = if cfg!(feature = "cuda") { "cuda:0" } else { "cpu" };
    DeviceSpec::parse(&std::env::var("PDSIM_CUDA_DEVICE").unwrap_or_else(|_| default.into())).unwrap()
}

/// The reduced-precision type: bf16 on a GPU, f16 on the CPU (candle has no CPU bf16 matmul).
fn low() -> DType {
    if gpu().is_cuda() {
        DType::BF16
    } else {
        DType::F16
    }
}

/// On a GPU, four layers of Llama-2-7B's shape (real matrix sizes; 7B's 32 layers behave the
/// same); on the CPU, four of SmolLM2-135M's.
fn spec() -> SyntheticSpec {
    let shape = if gpu().is_cuda() { "llama-2-7b" } else { "smollm2-135m" };
    SyntheticSpec::new(shape, Some(4), 11).unwrap()
}

fn net(dtype: DType, on: DeviceSpec) -> Arc<DeviceNet> {
    Arc::new(DeviceNet::synthetic(&spec(), dtype, on).unwrap())
}

fn worker(net: &Arc<DeviceNet>, on: DeviceSpec) -> WorkerNet {
    WorkerNet::open(net.clone(), on).unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    [7usize, 33, 130, 600].iter().map(|&n| (0..n as u32).map(|i| (i * 7919 + n as u32) % 32000).collect()).collect()
}

/// Logits of each prompt followed by `steps` forced tokens, each sequence alone.
fn alone<F: Forward>(w: &F, prompts: &[Vec<u32>], steps: usize) -> Vec<Vec<Vec<f32>>> {
    prompts
        .iter()
        .map(|p| {
            let mut kv = w.new_kv(p.len() + steps).unwrap();
            let mut out = w.forward(&mut [(p, &mut kv)]).unwrap();
            for s in 0..steps as u32 {
                out.extend(w.forward(&mut [(&[forced(s)], &mut kv)]).unwrap());
            }
            out
        })
        .collect()
}

fn forced(step: u32) -> u32 {
    (step * 31 + 5) % 32000
}

/// max |a − b| / max |b|, over all rows.
fn rel_err(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let scale = b.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().flatten().zip(b.iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn argmaxes(rows: &[Vec<f32>]) -> Vec<usize> {
    rows.iter().map(|r| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap()).collect()
}

/// Batched prefill and decode (sequences of different lengths in one step) give the logits
/// each sequence gets alone. Compared as numbers (cuBLAS picks kernels by batch size, so the
/// sums are ordered differently): within 1e-3 of the largest logit in f32, 3e-2 in bf16.
#[test]
fn batched_decode_equals_batch_one() {
    for (dtype, tol) in [(DType::F32, 1e-3), (low(), 3e-2)] {
        let n = net(dtype, gpu());
        let w = worker(&n, gpu());
        let ps = prompts();
        let steps = 8;
        let want = alone(&w, &ps, steps);
        let mut caches: Vec<_> = ps.iter().map(|p| w.new_kv(p.len() + steps).unwrap()).collect();
        let mut got = vec![Vec::new(); ps.len()];
        let mut seqs: Vec<(&[u32], _)> = ps.iter().zip(caches.iter_mut()).map(|(p, kv)| (&p[..], kv)).collect();
        for (i, row) in w.forward(&mut seqs).unwrap().into_iter().enumerate() {
            got[i].push(row);
        }
        for s in 0..steps as u32 {
            let t = [forced(s)];
            let mut seqs: Vec<(&[u32], _)> = caches.iter_mut().map(|kv| (&t[..], kv)).collect();
            for (i, row) in w.forward(&mut seqs).unwrap().into_iter().enumerate() {
                got[i].push(row);
            }
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(g, w);
            assert!(e < tol, "{dtype:?}, sequence {i}: batched vs alone differ by {e} (relative)");
        }
    }
}

/// bf16 on the GPU follows f32 on the GPU, and f32 on the GPU follows f32 on the CPU (the same
/// synthetic weights): the same first choice at every step, logits within tolerance.
#[test]
fn f32_and_bf16_agree_and_the_gpu_agrees_with_the_cpu() {
    let ps = prompts();
    let f32_gpu: Vec<Vec<f32>> = alone(&worker(&net(DType::F32, gpu()), gpu()), &ps, 4).concat();
    let bf16_gpu: Vec<Vec<f32>> = alone(&worker(&net(low(), gpu()), gpu()), &ps, 4).concat();
    let f32_cpu: Vec<Vec<f32>> = alone(&worker(&net(DType::F32, DeviceSpec::Cpu), DeviceSpec::Cpu), &ps, 4).concat();
    let e = rel_err(&f32_gpu, &f32_cpu);
    assert!(e < 1e-3, "f32 GPU vs CPU: {e}");
    let e = rel_err(&bf16_gpu, &f32_gpu);
    assert!(e < 5e-2, "{:?} vs f32: {e}", low());
    let (a, b) = (argmaxes(&bf16_gpu), argmaxes(&f32_gpu));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same * 10 >= a.len() * 9, "{:?} and f32 pick the same token at {same} of {} steps", low(), a.len());
}

/// A prefill on one stream handed to a worker on another stream of the same GPU (no copy), or
/// to the CPU and back (copies), decodes exactly as if it had stayed.
#[test]
fn kv_handoff_between_streams_and_devices() {
    let n = net(DType::F32, gpu());
    let (prefill, decode) = (worker(&n, gpu()), worker(&n, gpu()));
    let p = &prompts()[2];
    let steps = 6;
    let want = alone(&prefill, std::slice::from_ref(p), steps).remove(0);
    let mut kv = prefill.new_kv(p.len() + steps).unwrap();
    let mut got = prefill.forward(&mut [(p, &mut kv)]).unwrap();
    let mut kv = decode.receive(kv).unwrap();
    for s in 0..steps as u32 {
        got.extend(decode.forward(&mut [(&[forced(s)], &mut kv)]).unwrap());
    }
    // The same device: the same memory and kernels (each worker has its own cuBLAS handle, so
    // allow for rounding; a wrong cache would be off by whole logits).
    let e = rel_err(&got, &want);
    assert!(e < 1e-5, "the same device, another stream: {e}");
    // GPU → CPU → GPU: copies, and the CPU model continues from the GPU's cache.
    let cpu_net = net(DType::F32, DeviceSpec::Cpu);
    let cpu = worker(&cpu_net, DeviceSpec::Cpu);
    let mut kv = prefill.new_kv(p.len() + steps).unwrap();
    let first = prefill.forward(&mut [(p, &mut kv)]).unwrap();
    let mut kv = cpu.receive(kv).unwrap();
    let mut got = first;
    for s in 0..steps as u32 {
        got.extend(cpu.forward(&mut [(&[forced(s)], &mut kv)]).unwrap());
    }
    let e = rel_err(&got, &want);
    assert!(e < 1e-3, "GPU prefill, CPU decode: {e}");
}

/// A whole scenario on the GPU: fused and split (two streams), every request completed.
#[test]
fn heavy_light_runs_on_the_gpu_fused_and_split() {
    let text = format!(
        r#"
mode = "execute"
requests = 12
[model]
synthetic = "{shape}"
layers = 4
[[workload.classes]]
name = "heavy"
prompt_tokens = {{ kind = "uniform", min = 256, max = 512 }}
output_tokens = {{ kind = "uniform", min = 8, max = 16 }}
[workload.arrival]
kind = "poisson"
rate_per_s = 50.0
[slo]
ttft_ms = 1000
tpot_ms = 100
[[topology]]
name = "fused"
kind = "fused"
workers = 1
device = "{d}"
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 1
device = "{d}"
"#,
        d = gpu(),
        shape = spec().shape.name
    );
    let mut s = pdsim::scenario::parse(std::path::Path::new("gpu.toml"), &text).unwrap();
    let backend = pdsim::run::prepare(&mut s).unwrap();
    let out = tempfile::tempdir().unwrap();
    for t in &s.topologies {
        let summary = pdsim::run::run_topology(&s, &backend, t, out.path(), false).unwrap();
        assert_eq!(summary.completed, 12, "{}", t.name);
    }
}
