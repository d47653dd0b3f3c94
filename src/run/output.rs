//! Where a run's files go. Every run gets a folder of its own, `<root>/<scenario>/<run>/`, so a
//! new run never mixes with an earlier one's files; `<root>/<scenario>/latest` points at the
//! newest. `<run>` is the start time (UTC, `2026-11-29T01-20-05`) unless the user names it;
//! a named folder that already holds files is only replaced with `--force`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{} already holds the results of an earlier run; pass --force to replace them, or choose another --run-name",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("--run-name {0:?}: use letters, digits, '-', '_' and '.' only (it names a folder)")]
    BadName(String),
    #[error(
        "--run-name {0:?}: pdsim keeps its own folder of that name beside the runs ({names}); choose another name",
        names = RESERVED_NAMES.join(", ")
    )]
    Reserved(String),
    #[error("cannot prepare the output folder {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Folders pdsim itself keeps beside a scenario's runs: the newest run's link, and the folders
/// of `compare`, `search` and `sweep`. A run named like one would land in it, and with `--force`
/// remove what it holds.
pub const RESERVED_NAMES: [&str; 4] = ["latest", "compare", "search", "sweep"];

/// Creates the run's folder under `root/scenario/` and returns it.
pub fn new_run_dir(root: &Path, scenario: &str, name: Option<&str>, force: bool) -> Result<PathBuf, OutputError> {
    let base = root.join(scenario);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OutputError::Io { path, source }
    };
    let dir = match name {
        Some(n) => {
            if RESERVED_NAMES.contains(&n) {
                return Err(OutputError::Reserved(n.to_owned()));
            }
            let ok = !n.is_empty()
                && !n.starts_with('.')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(OutputError::BadName(n.to_owned()));
            }
            let dir = base.join(n);
            let holds_files = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
            if holds_files {
                if !force {
                    return Err(OutputError::Exists(dir));
                }
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
            dir
        }
        None => {
            // Two runs started in the same second get `-2`, `-3`, ...
            let stamp = utc_stamp(SystemTime::now());
            (1..)
                .map(|k| if k == 1 { base.join(&stamp) } else { base.join(format!("{stamp}-{k}")) })
                .find(|d| !d.exists())
                .expect("an unused name exists")
        }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Points `<root>/<scenario>/latest` at `run_dir` (a relative symbolic link, replaced
/// atomically). Where links cannot be made, says so and goes on: the results are in `run_dir`.
pub fn mark_latest(run_dir: &Path) {
    let (Some(base), Some(name)) = (run_dir.parent(), run_dir.file_name()) else {
        return;
    };
    let latest = base.join("latest");
    let tmp = base.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(name, &tmp).and_then(|()| std::fs::rename(&tmp, &latest));
    #[cfg(not(unix))]
    let made: std::io::Result<()> = Err(std::io::Error::other("symbolic links need a Unix system here"));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("note: could not point {} at this run ({e})", latest.display());
    }
}

/// `YYYY-MM-DDTHH-MM-SS` in UTC (no colons: the name is a folder on every system).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01T00-00-00");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "2024-02-29T12-34-56");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_798_761_599)), "2026-12-31T23-59-59");
    }

    #[test]
    fn runs_never_share_a_folder() {
        let root = tempfile::tempdir().unwrap();
        let a = new_run_dir(root.path(), "s", None, false).unwrap();
        let b = new_run_dir(root.path(), "s", None, false).unwrap();
        assert_ne!(a, b);
        let named = new_run_dir(root.path(), "s", Some("baseline"), false).unwrap();
        std::fs::write(named.join("summary.csv"), "x").unwrap();
        assert!(matches!(new_run_dir(root.path(), "s", Some("baseline"), false), Err(OutputError::Exists(_))));
        assert!(named.join("summary.csv").exists(), "a refused run touches nothing");
        let again = new_run_dir(root.path(), "s", Some("baseline"), true).unwrap();
        assert!(!again.join("summary.csv").exists(), "--force starts the folder afresh");
        assert!(matches!(new_run_dir(root.path(), "s", Some("../x"), false), Err(OutputError::BadName(_))));
        // A sweep's folder beside the runs is not a run's to replace, even with --force.
        let sweeps = root.path().join("s/sweep/2026-12-01T05-00-00");
        std::fs::create_dir_all(&sweeps).unwrap();
        std::fs::write(sweeps.join("sweep.csv"), "x").unwrap();
        for name in RESERVED_NAMES {
            let refused = new_run_dir(root.path(), "s", Some(name), true);
            assert!(matches!(&refused, Err(OutputError::Reserved(n)) if n == name), "{name}: {refused:?}");
        }
        assert!(sweeps.join("sweep.csv").exists(), "the sweep's results are kept");
        mark_latest(&a);
        mark_latest(&b);
        assert_eq!(std::fs::read_link(root.path().join("s/latest")).unwrap(), b.file_name().unwrap());
    }
}
