//! Durable file writes. A file is written under a temporary name and fsynced, then linked to its
//! final name if it must never change (tiles, bundles, the checkpoint history) or renamed over it
//! if it may (the latest checkpoint); the directories that gained a name are fsynced after. The
//! server stores submitted modules the same way.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes files under one root and remembers which directories must be fsynced.
#[derive(Debug)]
pub struct Writer<'r> {
    root: &'r Path,
    dirty: BTreeSet<PathBuf>,
}

/// The suffix of files being written; anything with it is left over from a crash.
pub const TMP_SUFFIX: &str = ".tmp";

impl<'r> Writer<'r> {
    pub fn new(root: &'r Path) -> Writer<'r> {
        Writer { root, dirty: BTreeSet::new() }
    }

    /// Creates the directories up to `dir`, marking the parents that gained one as dirty.
    fn make_dirs(&mut self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dirs(parent)?;
            match fs::create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            self.dirty.insert(parent.to_owned());
        }
        Ok(())
    }

    /// Writes `data` to a fsynced temporary file beside `path`; returns its path.
    fn temporary(&mut self, path: &Path, data: &[u8]) -> io::Result<PathBuf> {
        let dir = path.parent().expect("written paths have a parent");
        self.make_dirs(dir)?;
        let mut name = path.file_name().expect("written paths have a name").to_owned();
        name.push(TMP_SUFFIX);
        let tmp = dir.join(name);
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        self.dirty.insert(dir.to_owned());
        Ok(tmp)
    }

    /// Stores an immutable file at `relative`. If it exists already it must hold `data`.
    pub fn create(&mut self, relative: &str, data: &[u8]) -> io::Result<()> {
        let path = self.root.join(relative);
        let tmp = self.temporary(&path, data)?;
        let linked = fs::hard_link(&tmp, &path);
        fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::read(&path)? == data {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "{relative} exists with other content; an immutable file is never rewritten \
                         / {relative} 已存在且内容不同；不可变文件不能重写"
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Stores `data` at `relative`, replacing what was there.
    pub fn replace(&mut self, relative: &str, data: &[u8]) -> io::Result<()> {
        let path = self.root.join(relative);
        let tmp = self.temporary(&path, data)?;
        fs::rename(&tmp, &path)
    }

    /// Marks `dir` as changed by the caller.
    pub fn mark(&mut self, dir: &Path) {
        self.dirty.insert(dir.to_owned());
    }

    /// Fsyncs every directory that gained or changed a name, deepest first.
    pub fn sync(&mut self) -> io::Result<()> {
        while let Some(dir) = self.dirty.pop_last() {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }
}
