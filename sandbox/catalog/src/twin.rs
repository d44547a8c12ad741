//! Whether a dataset's synthetic twin is in fact its real data.
//!
//! Development runs show their operator everything the module returns, without an output audit,
//! because they read the twin. An entry whose twin names a real file (or a copy of one) would
//! turn a development run into an unaudited production run. This check must stay cheap, since it
//! runs each time twin files are opened for a query: it compares canonical paths, then sizes, and
//! hashes only files of equal size.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::version::file_sha256;
use crate::{DataFile, Dataset};

/// A twin file that is one of the dataset's real files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealTwin {
    /// The twin file's name, as the entry writes it.
    pub twin: String,
    /// The real file it is, as the entry writes it.
    pub real: String,
    pub same: Sameness,
}

/// How a twin file was found to be a real file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sameness {
    /// Both names resolve to the same path.
    Path,
    /// Another file with the same bytes.
    Bytes,
}

impl fmt::Display for RealTwin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (twin, real) = (&self.twin, &self.real);
        match self.same {
            Sameness::Path => write!(f, "twin file {twin} is the real file {real}")?,
            Sameness::Bytes => write!(f, "twin file {twin} has the same bytes as the real file {real}")?,
        }
        f.write_str(": development runs would show real rows without an output audit")
    }
}

impl RealTwin {
    /// The same message for Chinese readers.
    pub fn zh(&self) -> String {
        let (twin, real) = (&self.twin, &self.real);
        let what = match self.same {
            Sameness::Path => format!("合成孪生数据文件 {twin} 就是真实数据文件 {real}"),
            Sameness::Bytes => format!("合成孪生数据文件 {twin} 与真实数据文件 {real} 内容完全相同"),
        };
        format!("{what}：开发运行将不经出域审核展示真实数据")
    }
}

impl Dataset {
    /// The first twin file that is the same file as, or has the same bytes as, a real file.
    /// An I/O error (a file missing or unreadable) is returned as such: callers that open twins
    /// must refuse rather than assume the twin is safe.
    pub fn twin_is_real(&self) -> io::Result<Option<RealTwin>> {
        if self.twin_files.is_empty() {
            return Ok(None);
        }
        let real: Vec<(&DataFile, PathBuf, u64)> = self
            .files
            .iter()
            .map(|f| {
                let path = fs::canonicalize(&f.path)?;
                let size = fs::metadata(&path)?.len();
                Ok((f, path, size))
            })
            .collect::<io::Result<_>>()?;
        for twin in &self.twin_files {
            let path = fs::canonicalize(&twin.path)?;
            let found = |real: &DataFile, same| RealTwin { twin: twin.name.clone(), real: real.name.clone(), same };
            if let Some((file, ..)) = real.iter().find(|(_, p, _)| *p == path) {
                return Ok(Some(found(file, Sameness::Path)));
            }
            let size = fs::metadata(&path)?.len();
            let mut twin_hash = None;
            for (file, real_path, _) in real.iter().filter(|(.., s)| *s == size) {
                let hash = match twin_hash {
                    Some(h) => h,
                    None => *twin_hash.insert(file_sha256(&path)?),
                };
                if file_sha256(real_path)? == hash {
                    return Ok(Some(found(file, Sameness::Bytes)));
                }
            }
        }
        Ok(None)
    }
}
