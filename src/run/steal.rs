//! CPU time the hypervisor took from this machine while a run executed (`steal` in
//! `/proc/stat`). On a shared VM it is the cause of slow spells that no model of the serving
//! system can know: on the 2-vCPU Intel Xeon this project runs on, `pdsim bench` once lost 15%
//! of its CPU time to it and decoded at 57 tokens/s where it had decoded 100 half an hour
//! before. Each execute run records the share in `<topology>/host.csv`, says so when it is
//! large, and `compare` shows it beside each run's pace. Linux only: elsewhere nothing is read.

use std::path::Path;

/// A share of stolen CPU time above which a run says its timings are not the machine's own.
pub const NOTABLE_SHARE: f64 = 0.02;

/// The machine's CPU time so far, all CPUs together (in the kernel's clock ticks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Option<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The share of the CPU time since `earlier` that the hypervisor took; `None` when no
    /// time passed.
    pub fn stolen_since(self, earlier: CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// Measures the stolen share over a stretch of work: started before it, read after.
pub struct Meter(Option<CpuTimes>);

impl Meter {
    pub fn start() -> Meter {
        Meter(CpuTimes::now())
    }

    /// The share of the machine's CPU time stolen since the start, when both readings exist.
    pub fn share(&self) -> Option<f64> {
        CpuTimes::now()?.stolen_since(self.0?)
    }
}

/// The aggregate `cpu` line: user, nice, system, idle, iowait, irq, softirq, steal (guest time
/// is counted in user already).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    (fields.len() == 8).then(|| CpuTimes { steal: fields[7], total: fields.iter().sum() })
}

pub(crate) const FILE: &str = "host.csv";

/// Writes a run's stolen share into `dir/host.csv` (under a temporary name first, as every
/// file of a run: one with its final name is whole).
pub fn write(dir: &Path, share: f64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("cpu_stolen_share\n{share:.4}\n"))?;
    std::fs::rename(tmp, dir.join(FILE))
}

/// The stolen share an execute run in `dir` recorded, if it did (runs before pdsim recorded it,
/// and machines without `/proc/stat`, have none).
pub fn read(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    text.lines().nth(1)?.trim().parse().ok().filter(|s: &f64| (0.0..=1.0).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_steal_over_all_cpu_time_between_two_readings() {
        let a = parse("cpu  100 0 20 300 5 0 1 10 7 0\ncpu0 50 0 10 150 2 0 0 5 0 0\n").unwrap();
        let b = parse("cpu  190 0 30 340 5 0 1 40 9 0\n").unwrap();
        assert_eq!(a, CpuTimes { steal: 10, total: 436 });
        // 90 + 10 + 40 + 30 ticks passed, 30 of them stolen.
        assert_eq!(b.stolen_since(a), Some(30.0 / 170.0));
        assert_eq!(a.stolen_since(a), None, "no time passed");
        assert_eq!(a.stolen_since(b), None, "readings out of order");
        assert_eq!(parse("cpu  1 2 3\n"), None, "a kernel without steal accounting");
        assert_eq!(parse("intr 5\n"), None);
    }

    #[test]
    fn a_run_folder_keeps_its_share() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()), None);
        write(d.path(), 0.1534).unwrap();
        assert_eq!(read(d.path()), Some(0.1534));
        std::fs::write(d.path().join(FILE), "cpu_stolen_share\n7\n").unwrap();
        assert_eq!(read(d.path()), None, "not a share");
    }
}
