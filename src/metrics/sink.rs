//! A CSV file written under a temporary name and renamed into place when complete, so a crash
//! never leaves a truncated file under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct CsvFile {
    tmp: PathBuf,
    path: PathBuf,
    w: BufWriter<File>,
}

impl CsvFile {
    pub fn create(path: &Path, header: &str) -> std::io::Result<CsvFile> {
        let mut f = CsvFile::create_headerless(path)?;
        f.line(header)?;
        Ok(f)
    }

    /// A line file without a header (JSON lines).
    pub fn create_headerless(path: &Path) -> std::io::Result<CsvFile> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let tmp = path.with_file_name(name);
        let w = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        Ok(CsvFile { tmp, path: path.to_owned(), w })
    }

    pub fn line(&mut self, row: &str) -> std::io::Result<()> {
        writeln!(self.w, "{row}")
    }

    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        self.w.flush()?;
        self.w.get_ref().sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        Ok(self.path)
    }
}
