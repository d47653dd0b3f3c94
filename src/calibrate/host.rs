//! Which machine a profile times: what a profile's header names and what `compare` holds a
//! profile to before it predicts this machine with it.

use crate::engine::candle::kernels::cpu;

/// The CPU's model name and core count (`machine` in a profile).
pub fn machine() -> String {
    let cpu = cpuinfo().as_deref().and_then(|s| field(s, "model name")).unwrap_or("unknown CPU").to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The CPU's family, model and stepping and the vector extensions the engine's kernels choose
/// their paths by (`cpu` in a profile). A hypervisor may give two CPUs the same model name
/// (the Ice Lake and the Sapphire Rapids Xeons this project ran on were "Intel(R) Xeon(R)
/// Processor", one with "@ 2.80GHz" after it and one without): these tell them apart, and the
/// kernels' extensions are what set a step's time.
pub fn cpu() -> String {
    let kernels: Vec<&str> = [(cpu::avx512(), "AVX-512"), (cpu::vnni(), "VNNI"), (cpu::bf16(), "BF16")]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
    cpu_of(cpuinfo().as_deref().unwrap_or(""), &kernels, cpu::avx2())
}

/// `kernels`: the AVX-512 extensions; `avx2` is named only without them (profiles of AVX-512
/// machines were written before the AVX2 kernels, and name only those).
fn cpu_of(cpuinfo: &str, kernels: &[&str], avx2: bool) -> String {
    let id = match (field(cpuinfo, "cpu family"), field(cpuinfo, "model"), field(cpuinfo, "stepping")) {
        (Some(f), Some(m), Some(s)) => format!("family {f} model {m} stepping {s}"),
        _ => std::env::consts::ARCH.to_owned(),
    };
    let kernels = match (kernels.is_empty(), avx2) {
        (false, _) => kernels.join(" "),
        (true, true) => "AVX2, no AVX-512".to_owned(),
        (true, false) => "no AVX-512".to_owned(),
    };
    format!("{id}; {kernels}")
}

fn cpuinfo() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo").ok()
}

/// The first processor's `key` in /proc/cpuinfo's text (`model` is not `model name`).
fn field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::cpu_of;

    #[test]
    fn the_cpu_is_its_family_model_stepping_and_kernel_extensions() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\n\
                    model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\n\nprocessor\t: 1\nmodel\t\t: 999\n";
        let id = "family 6 model 167 stepping 1";
        assert_eq!(cpu_of(info, &["AVX-512", "VNNI", "BF16"], true), format!("{id}; AVX-512 VNNI BF16"));
        assert_eq!(cpu_of(info, &[], true), format!("{id}; AVX2, no AVX-512"));
        assert_eq!(cpu_of(info, &[], false), format!("{id}; no AVX-512"));
        // No /proc/cpuinfo, or one without these fields (not x86): the architecture.
        assert_eq!(cpu_of("", &[], false), format!("{}; no AVX-512", std::env::consts::ARCH));
    }
}
