//! `compare --max-stolen PCT`: an execution the hypervisor disturbed is executed again.
//!
//! On a shared VM another tenant can take a fifth of the CPU for a minute. A run it hits is
//! not a measurement of the serving system: on the build machine two-thread fused runs that
//! lost 14.5% and 22.6% of the CPU (`steal` in /proc/stat) ran their steps ×1.13–1.67 of the
//! profile while the runs around them went ×0.99–1.02, and pooled with them they put figures
//! 13–47% off that the other runs had within a few percent. Over eleven rounds of the shipped
//! scenarios, leaving out the runs that lost more than 3% raised the share of figures within
//! the goal as calibrated from 63% to 74%. Executing such a run again keeps the number of runs;
//! the disturbed attempts stay on disk beside it, under `disturbed/`.

use std::path::Path;

/// Executions of one run at most: after that the least disturbed attempt counts.
pub const MAX_ATTEMPTS: usize = 3;

/// How one run of a topology was obtained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Attempts {
    /// Executions made (1: the first was undisturbed, or nothing was checked).
    pub made: usize,
    /// Which one counts (from 1).
    pub counted: usize,
    /// The CPU share the hypervisor took during the one that counts, where recorded.
    pub stolen: Option<f64>,
}

/// The runs of a topology that were executed more than once, in a line: "run 1: attempt 2 of 2
/// counts (0.5% stolen), run 4: attempt 2 of 3 counts (5.0% stolen)"; `None` when every run
/// ran once.
pub fn describe(runs: &[Attempts]) -> Option<String> {
    let again: Vec<String> = runs
        .iter()
        .enumerate()
        .filter(|(_, a)| a.made > 1)
        .map(|(k, a)| {
            let stolen = super::stolen_text(a.stolen);
            format!("run {}: attempt {} of {} counts ({stolen} stolen)", k + 1, a.counted, a.made)
        })
        .collect();
    (!again.is_empty()).then(|| again.join(", "))
}

/// Executes one run of topology `name` into `dir/<name>/` with `execute` (which returns the
/// share of CPU time stolen during it, `None` where the machine does not account for it) until
/// an attempt loses at most `max`, at most [`MAX_ATTEMPTS`] times. Disturbed attempts move to
/// `dir/disturbed/<name>-<attempt>/`; if every attempt was disturbed, the least disturbed one
/// is moved back to `dir/<name>/`. `say` hears why a run is executed again.
pub fn execute_undisturbed(
    dir: &Path,
    name: &str,
    max: f64,
    say: &mut dyn FnMut(&str),
    execute: &mut dyn FnMut() -> Result<Option<f64>, Box<dyn std::error::Error>>,
) -> Result<Attempts, Box<dyn std::error::Error>> {
    let aside = |attempt: usize| dir.join("disturbed").join(format!("{name}-{attempt}"));
    let mut least: Option<(usize, f64)> = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let stolen = match execute()? {
            Some(s) if s > max => s,
            other => return Ok(Attempts { made: attempt, counted: attempt, stolen: other }),
        };
        std::fs::create_dir_all(dir.join("disturbed"))?;
        std::fs::rename(dir.join(name), aside(attempt))?;
        if least.is_none_or(|(_, s)| stolen < s) {
            least = Some((attempt, stolen));
        }
        if attempt < MAX_ATTEMPTS {
            say(&format!(
                "the hypervisor took {:.1}% of the CPU time (over the {:.1}% allowed): executing it again \
                 (attempt {} of {MAX_ATTEMPTS})",
                stolen * 100.0,
                max * 100.0,
                attempt + 1
            ));
        }
    }
    let (counted, stolen) = least.expect("at least one attempt was made");
    std::fs::rename(aside(counted), dir.join(name))?;
    say(&format!(
        "every attempt lost more than {:.1}% of the CPU time to the hypervisor: the least disturbed ({:.1}%, \
         attempt {counted}) counts",
        max * 100.0,
        stolen * 100.0
    ));
    Ok(Attempts { made: MAX_ATTEMPTS, counted, stolen: Some(stolen) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `execute_undisturbed` with attempts that steal `shares` in turn, each attempt
    /// writing its number into `<dir>/fused/attempt`; returns the result and what was said.
    fn attempts(dir: &Path, shares: &[Option<f64>]) -> (Attempts, Vec<String>) {
        let mut said = Vec::new();
        let mut n = 0;
        let mut execute = || -> Result<Option<f64>, Box<dyn std::error::Error>> {
            std::fs::create_dir_all(dir.join("fused"))?;
            std::fs::write(dir.join("fused/attempt"), format!("{}", n + 1))?;
            n += 1;
            Ok(shares[n - 1])
        };
        let a = execute_undisturbed(dir, "fused", 0.02, &mut |s| said.push(s.to_owned()), &mut execute).unwrap();
        (a, said)
    }

    fn counted(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("fused/attempt")).unwrap()
    }

    #[test]
    fn an_undisturbed_run_or_a_machine_without_steal_accounting_runs_once() {
        for share in [Some(0.01), Some(0.02), None] {
            let d = tempfile::tempdir().unwrap();
            let (a, said) = attempts(d.path(), &[share]);
            assert_eq!(a, Attempts { made: 1, counted: 1, stolen: share });
            assert!(said.is_empty() && !d.path().join("disturbed").exists());
        }
    }

    #[test]
    fn a_disturbed_run_is_executed_again_and_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let (a, said) = attempts(d.path(), &[Some(0.145), Some(0.005)]);
        assert_eq!(a, Attempts { made: 2, counted: 2, stolen: Some(0.005) });
        assert_eq!(counted(d.path()), "2");
        assert_eq!(std::fs::read_to_string(d.path().join("disturbed/fused-1/attempt")).unwrap(), "1");
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("14.5%") && said[0].contains("2.0% allowed") && said[0].contains("attempt 2 of 3"));
    }

    #[test]
    fn the_runs_executed_again_are_named() {
        let once = Attempts { made: 1, counted: 1, stolen: Some(0.01) };
        assert_eq!(describe(&[once, once]), None);
        let again = Attempts { made: 3, counted: 2, stolen: Some(0.05) };
        assert_eq!(describe(&[once, again]).unwrap(), "run 2: attempt 2 of 3 counts (5.0% stolen)");
    }

    #[test]
    fn when_every_attempt_is_disturbed_the_least_disturbed_counts() {
        let d = tempfile::tempdir().unwrap();
        let (a, said) = attempts(d.path(), &[Some(0.30), Some(0.05), Some(0.20)]);
        assert_eq!(a, Attempts { made: 3, counted: 2, stolen: Some(0.05) });
        assert_eq!(counted(d.path()), "2");
        for k in [1, 3] {
            assert!(d.path().join(format!("disturbed/fused-{k}")).exists());
        }
        assert!(!d.path().join("disturbed/fused-2").exists());
        assert!(said.last().unwrap().contains("the least disturbed (5.0%, attempt 2) counts"), "{said:?}");
    }
}
