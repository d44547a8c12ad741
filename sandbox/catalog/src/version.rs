//! Dataset versions: the SHA-256 of a dataset's files, which every run names.
//!
//! The version is `sha256:` and the hex SHA-256 of the text `sha256sum` prints for the files in
//! the order the entry lists them, with their names as the entry writes them. So an evaluator can
//! recompute it without our code, from the entry's folder:
//! `sha256sum data/a.parquet data/b.parquet | sha256sum`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Dataset, Variant};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetVersion(String);

impl DatasetVersion {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> &str {
        &self.0["sha256:".len().."sha256:".len() + 12]
    }
}

impl fmt::Display for DatasetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Dataset {
    /// Hashes the files of one variant. Reads every byte: large datasets take seconds.
    pub fn version(&self, variant: Variant) -> io::Result<DatasetVersion> {
        let mut listing = String::new();
        for file in self.files(variant) {
            listing.push_str(&hex::encode(file_sha256(&file.path)?));
            listing.push_str("  ");
            listing.push_str(&file.name);
            listing.push('\n');
        }
        Ok(DatasetVersion(format!("sha256:{}", hex::encode(Sha256::digest(listing.as_bytes())))))
    }
}

/// A file as the operating system describes it: path, length, modification time (ns), inode.
/// Cheap to read; files replaced or written since are other files (a file rewritten with the
/// same length within the same nanosecond is not told apart: only [`Dataset::version`] is).
pub type FileStamp = (std::path::PathBuf, u64, i128, u64);

impl Dataset {
    /// The stamps of one variant's files, in the entry's order.
    pub fn stamps(&self, variant: Variant) -> io::Result<Vec<FileStamp>> {
        use std::os::unix::fs::MetadataExt;
        (self.files(variant).iter())
            .map(|file| {
                let m = std::fs::metadata(&file.path)?;
                let modified = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                Ok((file.path.clone(), m.len(), modified, m.ino()))
            })
            .collect()
    }
}

pub(crate) fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

impl Dataset {
    /// Rows in one variant's files, from Parquet footers; `None` for CSV, whose rows are only
    /// known by reading them.
    pub fn row_count(&self, variant: Variant) -> Result<Option<u64>, parquet::errors::ParquetError> {
        if self.format != crate::FileFormat::Parquet {
            return Ok(None);
        }
        let mut rows = 0;
        for file in self.files(variant) {
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(File::open(&file.path)?)?;
            rows += parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows() as u64;
        }
        Ok(Some(rows))
    }
}
