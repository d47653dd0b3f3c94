//! The tensor (device) path on the CPU: synthetic models through the actors, fused and split,
//! and what a build without CUDA says about `cuda` devices. (The same checks on a GPU are in
//! tests/cuda, run by scripts/gpu-check.sh.)

use crate::common::{run, scenario};

/// A two-layer synthetic model of SmolLM2's shape: real per-layer sizes, seconds on a CPU.
const SYNTHETIC: &str = r#"
mode = "execute"
requests = 6
seed = 3
[model]
synthetic = "smollm2-135m"
layers = 2
[[workload.classes]]
name = "a"
prompt_tokens = { kind = "uniform", min = 8, max = 40 }
output_tokens = 5
[workload.arrival]
kind = "poisson"
rate_per_s = 50.0
[slo]
ttft_ms = 10000
tpot_ms = 10000
[[topology]]
name = "fused"
kind = "fused"
workers = 1
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 1
"#;

#[test]
fn a_synthetic_model_runs_fused_and_split_without_text() {
    let s = scenario(SYNTHETIC);
    for topology in ["fused", "split"] {
        let r = run(&s, topology);
        assert_eq!(r.requests.len(), 6, "{topology}");
        for q in &r.requests {
            assert_eq!(q.s("outcome"), "completed", "{topology}");
            assert_eq!(q.f("token_count"), 5.0, "{topology}: exactly the requested length (no EOS)");
            assert!(q.f("ttft_ms") > 0.0);
        }
        // Real steps were timed.
        assert!(r.iterations.iter().all(|i| i.f("duration_ms") > 0.0), "{topology}");
        // A synthetic model makes no text.
        assert!(!r.dir(topology).join("outputs.jsonl").exists(), "{topology}");
        if topology == "split" {
            // The KV cache crossed between the workers (same device: no copy, its bytes counted).
            let per_token = 2 * 2 * 3 * 64 * 4; // layers × K,V × kv_heads × head_dim × f32
            for q in &r.requests {
                assert_eq!(q.f("kv_bytes"), q.f("prompt_tokens") * per_token as f64);
            }
        }
    }
}

#[test]
fn the_description_says_synthetic() {
    let mut s = scenario(SYNTHETIC);
    let backend = pdsim::run::prepare(&mut s).unwrap();
    let d = backend.describe();
    assert!(d.contains("synthetic smollm2-135m (2 of 30 layers), f32 on cpu"), "{d}");
}

#[test]
#[cfg(not(feature = "cuda"))]
fn a_cpu_build_rejects_cuda_devices_and_says_how_to_build_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.toml");
    let text = SYNTHETIC.replace("workers = 1\n[[topology]]", "workers = 1\ndevice = \"cuda:0\"\n[[topology]]");
    std::fs::write(&path, text).unwrap();
    let pdsim = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pdsim")).args(args).output().unwrap()
    };
    // Running it: refused before anything runs, at the device's line.
    let out = pdsim(&[path.as_os_str(), "--out".as_ref(), dir.path().as_os_str()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("gpu.toml:22:1: `topology[0].device`"), "{err}");
    assert!(err.contains("scripts/cuda-build.sh"), "{err}");
    assert!(!dir.path().join("gpu").exists(), "nothing written");
    // Validating it: the file is right; it says which build runs it.
    let out = pdsim(&["validate".as_ref(), path.as_os_str()]);
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("ok (") && said.contains("runs on a CUDA build only (scripts/cuda-build.sh)"), "{said}");
}

/// The GPU scenarios are well-formed: on a CPU build the only complaint is the CUDA device,
/// and with the devices moved to the CPU (f32) they validate.
#[test]
#[cfg(not(feature = "cuda"))]
fn the_gpu_scenarios_validate_but_for_their_devices() {
    let dir = crate::common::repo().join("scenarios/gpu");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let err = pdsim::scenario::parse(&path, &text).unwrap_err().to_string();
        assert!(err.contains("device`: this pdsim was built without CUDA"), "{}: {err}", path.display());
        let any = pdsim::scenario::Build::Any;
        pdsim::scenario::parse_for(&path, &text, any).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let on_cpu = text.replace("\"cuda:0\"", "\"cpu\"").replace("\"bf16\"", "\"f32\"");
        pdsim::scenario::parse(&path, &on_cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// A synthetic model too big for the host's memory is refused with what it needs and what fits,
/// before anything is allocated (Llama-3-70B in f32: 280 GB).
#[test]
fn a_synthetic_model_too_big_for_memory_is_refused_up_front() {
    let mut s = scenario(&SYNTHETIC.replace("synthetic = \"smollm2-135m\"\nlayers = 2", "synthetic = \"llama-3-70b\""));
    let err = pdsim::run::prepare(&mut s).err().expect("280 GB do not fit").to_string();
    assert!(err.contains("synthetic llama-3-70b needs 28"), "{err}");
    assert!(err.contains("GB are available"), "{err}");
}
