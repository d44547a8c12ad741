//! The log writer: the sandbox's one writer of its transparency log (DESIGN.md section 6).
//!
//! The log is a c2sp.org/tlog-tiles directory plus the history of its checkpoints, exactly what
//! `sandbox-verify audit` replays:
//!
//! ```text
//! <log>/checkpoint                      the latest signed checkpoint (replaced)
//! <log>/checkpoints/<size, 20 digits>   every checkpoint signed, never changed
//! <log>/tile/<L>/<N>[.p/<W>]            hash tiles, never changed
//! <log>/tile/entries/<N>[.p/<W>]        entry bundles, never changed
//! <log>/torn/<time>/...                 bytes of a torn tail, set aside on start (not the log)
//! <log>/lock                            held by the writer
//! ```
//!
//! One thread writes. Appends queue up while it commits, and the next commit takes all of them
//! (group commit): their entries, the tiles and bundles they change, then a checkpoint signed by
//! the log key — each file written to a temporary name, fsynced, linked or renamed into place,
//! its directory fsynced. An append is answered only once the checkpoint covering it is durable.
//! After a failed write the writer answers every later append with an error: its memory may be
//! ahead of the disk, and only a restart (which repairs) makes them agree again.
//!
//! On open, the last checkpoint's signature is verified and the root is recomputed from the
//! stored tiles; the log refuses to open if they disagree. Files past the checkpoint (a torn
//! tail: written, never acknowledged) are moved under `torn/`, not deleted.

mod edge;
pub mod files;
pub mod keys;
pub mod release;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;

use sandbox_verify::audit::{LATEST, history_path};
use sandbox_verify::checkpoint::{self, Checkpoint};
use sandbox_verify::entry::{self, Entry, MAX_ENTRY_SIZE, kind};
use sandbox_verify::merkle::{self, Hash};
use sandbox_verify::note::{Note, SignerKey, VerifierKey};
use sandbox_verify::proof::TlogProof;
use sandbox_verify::tiles::{DirStorage, TILE_WIDTH, Tile, TilePath, TileReader, TileStorage, parse_path};
use sandbox_verify::time::Timestamp;

use crate::edge::Edge;
use crate::files::TMP_SUFFIX;

/// Why the log could not do what was asked. Messages are in English and Chinese.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log folder {}: {source} / 日志目录 {}：{source}", path.display(), path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("another writer holds {} / 另一个写入进程正在使用该日志", path.display())]
    Locked { path: PathBuf },
    #[error("{context}: {en} / {context}：{zh}", en = .source, zh = .source.zh())]
    Format { context: &'static str, source: sandbox_verify::Error },
    #[error(
        "the stored tiles give root {stored} at size {size}, but the signed checkpoint says {signed}; \
         the log refuses to open (run `sandbox-verify audit` on it) / 存储的瓦片在大小 {size} 处的根为 {stored}，\
         与已签名检查点的 {signed} 不符，拒绝打开日志（请用 sandbox-verify audit 检查）"
    )]
    RootMismatch { size: u64, stored: Hash, signed: Hash },
    #[error(
        "{} does not hold the entries the stored tiles hash; the log refuses to open (run \
         `sandbox-verify audit` on it) / {} 中的条目与存储的瓦片不符，拒绝打开日志", path.display(), path.display()
    )]
    BundleMismatch { path: PathBuf },
    #[error(
        "{} has log files but no checkpoint; refusing to start a new log over them / \
         {} 中有日志文件但没有检查点，拒绝在其上新建日志", path.display(), path.display()
    )]
    NoCheckpoint { path: PathBuf },
    #[error(
        "the checkpoint is for the log {found:?}, the key signs for {expected:?} / 检查点属于日志 {found:?}，\
         而密钥属于 {expected:?}"
    )]
    Origin { found: String, expected: String },
    #[error("entry refused: {en} / 条目被拒绝：{zh}", en = .0, zh = .0.zh())]
    Entry(sandbox_verify::Error),
    #[error(
        "the log writer stopped after a failed write ({0}); restart the sandbox to repair the log / \
         日志写入在一次写失败后已停止（{0}）；请重启以修复日志"
    )]
    Stopped(String),
    #[error("key file {}: {en} / 密钥文件 {}：{zh}", path.display(), path.display())]
    KeyFile { path: PathBuf, en: String, zh: String },
    #[error("entry {index} is not in the log of size {size} / 条目 {index} 不在大小为 {size} 的日志中")]
    NoSuchEntry { index: u64, size: u64 },
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.into();
    move |source| LogError::Io { path, source }
}

fn format(context: &'static str) -> impl FnOnce(sandbox_verify::Error) -> LogError {
    move |source| LogError::Format { context, source }
}

/// How the log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Signs checkpoints; its name is the log's origin.
    pub key: SignerKey,
    /// Keys earlier checkpoints may be signed with (before a rotation); the key itself is
    /// always accepted.
    pub previous_keys: Vec<VerifierKey>,
    /// The most appends one commit takes.
    pub max_batch: usize,
}

impl LogOptions {
    pub fn new(key: SignerKey) -> LogOptions {
        LogOptions { key, previous_keys: Vec::new(), max_batch: 1024 }
    }
}

/// An acknowledged append: the entry is at `index` in the tree that `checkpoint` signs, and the
/// checkpoint is on disk.
#[derive(Debug, Clone)]
pub struct Appended {
    pub index: u64,
    /// The signed checkpoint note of the commit that took the entry.
    pub checkpoint: Arc<[u8]>,
    pub size: u64,
}

struct Request {
    entry: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Result<Appended, LogError>>,
}

/// The latest durable checkpoint.
#[derive(Debug, Clone)]
struct Published {
    size: u64,
    checkpoint: Arc<[u8]>,
}

/// How long `Log::open` waits for a lock held by someone else, and how often it looks again.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(25);

/// The open log. Appends go to its writer thread; reads go to the immutable files directly.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    requests: Option<mpsc::Sender<Request>>,
    published: Arc<RwLock<Published>>,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl Log {
    /// Opens the log in `dir`, creating it if `dir` holds none: a new log's first entry registers
    /// its key as the principal of the log's name, role `log`.
    pub fn open(dir: impl Into<PathBuf>, options: LogOptions) -> Result<Log, LogError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        // A lock just released can stay held for a moment by a child process another thread
        // of this process forked: the child shares the open file until it execs. A writer that
        // really holds the log holds it for longer than this wait.
        let mut waited = std::time::Duration::ZERO;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if waited < LOCK_WAIT => {
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked { path: dir }),
                Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
            }
        }
        let origin = options.key.verifier().name().to_owned();
        let storage = DirStorage::new(&dir);
        let latest = storage.read(LATEST, sandbox_verify::note::MAX_NOTE_SIZE).map_err(format("checkpoint"))?;
        let (edge, checkpoint) = match latest {
            Some(bytes) => {
                let mut known = options.previous_keys.clone();
                known.push(options.key.verifier().clone());
                let (signed, _) = checkpoint::open(&bytes, &known).map_err(format("checkpoint"))?;
                if signed.origin() != origin {
                    return Err(LogError::Origin { found: signed.origin().to_owned(), expected: origin });
                }
                set_aside_torn_tail(&dir, signed.size())?;
                let edge = load_edge(&storage, &signed)?;
                // The history must hold the checkpoint: a crash may fall between the two.
                let mut writer = files::Writer::new(&dir);
                writer.create(&history_path(signed.size()), &bytes).map_err(io(&dir))?;
                writer.sync().map_err(io(&dir))?;
                (edge, bytes)
            }
            None => {
                if dir.join("tile").exists() || dir.join("checkpoints").exists() {
                    return Err(LogError::NoCheckpoint { path: dir });
                }
                let edge = Edge::default();
                let bytes = store_checkpoint(&dir, &options.key, &edge, Vec::new())?;
                (edge, bytes)
            }
        };
        let published = Arc::new(RwLock::new(Published {
            size: edge.size(),
            checkpoint: Arc::from(checkpoint.into_boxed_slice()),
        }));
        let (requests, queue) = mpsc::channel();
        let state = WriterState {
            dir: dir.clone(),
            key: options.key.clone(),
            edge,
            published: published.clone(),
            failed: None,
            max_batch: options.max_batch.max(1),
        };
        let writer =
            std::thread::Builder::new().name("log-writer".into()).spawn(move || state.run(queue)).map_err(io(&dir))?;
        let log = Log { dir, requests: Some(requests), published, writer: Some(writer), _lock: lock };
        if log.size() == 0 {
            log.append_blocking(genesis(&options.key)?)?;
        }
        Ok(log)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends an entry (the exact bytes to log); resolves once it is durable. Entries
    /// must be well formed and at most [`MAX_ENTRY_SIZE`] bytes; whose signature they need is
    /// for the caller to have checked.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Appended, LogError> {
        let reply = self.send(entry)?;
        reply.await.unwrap_or_else(|_| Err(LogError::Stopped("the writer thread ended".into())))
    }

    /// [`Log::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, entry: Vec<u8>) -> Result<Appended, LogError> {
        let reply = self.send(entry)?;
        reply.blocking_recv().unwrap_or_else(|_| Err(LogError::Stopped("the writer thread ended".into())))
    }

    fn send(&self, entry: Vec<u8>) -> Result<tokio::sync::oneshot::Receiver<Result<Appended, LogError>>, LogError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let requests = self.requests.as_ref().expect("open until dropped");
        requests.send(Request { entry, reply }).map_err(|_| LogError::Stopped("the writer thread ended".into()))?;
        Ok(receiver)
    }

    /// The size of the latest durable checkpoint.
    pub fn size(&self) -> u64 {
        self.published.read().expect("never poisoned").size
    }

    /// The latest durable signed checkpoint note.
    pub fn checkpoint(&self) -> Arc<[u8]> {
        self.published.read().expect("never poisoned").checkpoint.clone()
    }

    /// The entry at `index`, from its bundle.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        Ok(self.entries(index..index + 1)?.swap_remove(0))
    }

    /// The entries in `range`, reading each bundle once.
    pub fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<Vec<u8>>, LogError> {
        let size = self.size();
        if range.end > size {
            return Err(LogError::NoSuchEntry { index: range.end - 1, size });
        }
        let width = u64::from(TILE_WIDTH);
        let storage = DirStorage::new(&self.dir);
        let mut out = Vec::with_capacity(range.clone().count());
        let mut index = range.start;
        while index < range.end {
            let first = index / width * width;
            let tile = Tile { level: 0, index: index / width, width: (size - first).min(width) as u16 };
            let bundle = storage.read_bundle(&tile).map_err(format("entry bundle"))?;
            let end = range.end.min(first + width);
            out.extend(bundle.into_iter().skip((index - first) as usize).take((end - index) as usize));
            index = end;
        }
        Ok(out)
    }

    /// Every entry in `range` with its index, read with [`Log::entries`] `batch` entries at a
    /// time, so that a long range needs no more memory than one batch.
    pub fn scan(
        &self,
        range: std::ops::Range<u64>,
        batch: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        let (end, batch) = (range.end, batch.max(1));
        range.step_by(batch as usize).flat_map(move |start| match self.entries(start..end.min(start + batch)) {
            Ok(entries) => (start..).zip(entries).map(Ok).collect(),
            Err(e) => vec![Err(e)],
        })
    }

    /// A c2sp.org/tlog-proof of the entry at `index` in the latest checkpoint.
    pub fn tlog_proof(&self, index: u64) -> Result<TlogProof, LogError> {
        let Published { size, checkpoint } = self.published.read().expect("never poisoned").clone();
        if index >= size {
            return Err(LogError::NoSuchEntry { index, size });
        }
        let storage = DirStorage::new(&self.dir);
        let hashes = merkle::inclusion_proof(index, size, &TileReader::new(&storage, size))
            .map_err(format("inclusion proof"))?;
        Ok(TlogProof { extra: None, index, hashes, checkpoint: checkpoint.to_vec() })
    }

    /// The RFC 6962 consistency proof from the tree of `old` leaves to that of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        let size = self.size();
        if new > size {
            return Err(LogError::NoSuchEntry { index: new - 1, size });
        }
        let storage = DirStorage::new(&self.dir);
        merkle::consistency_proof(old, new, &TileReader::new(&storage, new)).map_err(format("consistency proof"))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // The writer ends once the queue is closed and drained.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A new log's first entry: its key, registered as the principal named like the log.
fn genesis(key: &SignerKey) -> Result<Vec<u8>, LogError> {
    let name = key.verifier().name();
    Entry::builder(kind::PRINCIPAL_REGISTERED, Timestamp::now(), name)
        .field("principal", name)
        .field("role", "log")
        .field("key", &key.verifier().to_string())
        .build()
        .and_then(|entry| entry.unsigned())
        .map_err(format("genesis entry"))
}

/// The writer thread's state.
struct WriterState {
    dir: PathBuf,
    key: SignerKey,
    edge: Edge,
    published: Arc<RwLock<Published>>,
    /// Why an earlier commit failed; from then on nothing is written.
    failed: Option<String>,
    max_batch: usize,
}

impl WriterState {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch
                && let Ok(next) = queue.try_recv()
            {
                batch.push(next);
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        if let Some(failed) = &self.failed {
            for request in batch {
                let _ = request.reply.send(Err(LogError::Stopped(failed.clone())));
            }
            return;
        }
        let old = self.edge.size();
        let mut full = Vec::new();
        let mut accepted = Vec::new();
        for Request { entry, reply } in batch {
            if let Err(e) = check_entry(&entry) {
                let _ = reply.send(Err(e));
                continue;
            }
            match self.edge.push(entry, &mut full) {
                Ok(index) => accepted.push((index, reply)),
                Err(e) => {
                    self.failed = Some(e.to_string());
                    let _ = reply.send(Err(LogError::Stopped(e.to_string())));
                }
            }
        }
        if accepted.is_empty() && self.failed.is_none() {
            return;
        }
        let stored = match &self.failed {
            Some(failed) => Err(LogError::Stopped(failed.clone())),
            None => self.edge.partial_files(old).map_err(format("tiles")).and_then(|partial| {
                full.extend(partial);
                store_checkpoint(&self.dir, &self.key, &self.edge, full)
            }),
        };
        match stored {
            Ok(bytes) => {
                let checkpoint: Arc<[u8]> = Arc::from(bytes.into_boxed_slice());
                let size = self.edge.size();
                *self.published.write().expect("never poisoned") = Published { size, checkpoint: checkpoint.clone() };
                for (index, reply) in accepted {
                    let _ = reply.send(Ok(Appended { index, checkpoint: checkpoint.clone(), size }));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                self.failed = Some(reason.clone());
                for (_, reply) in accepted {
                    let _ = reply.send(Err(LogError::Stopped(reason.clone())));
                }
            }
        }
    }
}

/// What the writer checks of an entry: its size and form. Signatures are the caller's to check.
fn check_entry(bytes: &[u8]) -> Result<(), LogError> {
    if bytes.len() > MAX_ENTRY_SIZE {
        return Err(LogError::Entry(sandbox_verify::Error::TooLarge {
            format: sandbox_verify::Format::Entry,
            size: bytes.len() as u64,
            limit: MAX_ENTRY_SIZE as u64,
        }));
    }
    entry::open(bytes).map(|_| ()).map_err(LogError::Entry)
}

/// Stores `files` (tiles and bundles), then the checkpoint of `edge` signed by `key`, each
/// durably; returns the checkpoint note.
fn store_checkpoint(dir: &Path, key: &SignerKey, edge: &Edge, files: Vec<edge::TileFile>) -> Result<Vec<u8>, LogError> {
    let mut writer = files::Writer::new(dir);
    for file in &files {
        writer.create(&file.path, &file.data).map_err(io(dir.join(&file.path)))?;
    }
    // The tiles are durable before a checkpoint names them.
    writer.sync().map_err(io(dir))?;
    let root = edge.root().map_err(format("root"))?;
    let checkpoint = Checkpoint::new(key.verifier().name(), edge.size(), root).map_err(format("checkpoint"))?;
    let mut note = Note::new(&checkpoint.to_text()).map_err(format("checkpoint"))?;
    note.sign(key);
    let bytes = note.to_bytes();
    writer.replace(LATEST, &bytes).map_err(io(dir.join(LATEST)))?;
    writer.create(&history_path(edge.size()), &bytes).map_err(io(dir.join(history_path(edge.size()))))?;
    writer.sync().map_err(io(dir))?;
    Ok(bytes)
}

/// Reads the right edge of the tree `checkpoint` signs and checks its root.
fn load_edge(storage: &DirStorage, checkpoint: &Checkpoint) -> Result<Edge, LogError> {
    let size = checkpoint.size();
    let reader = TileReader::new(storage, size);
    let stored = merkle::root(size, &reader).map_err(format("stored tiles"))?;
    if stored != *checkpoint.root() {
        return Err(LogError::RootMismatch { size, stored, signed: *checkpoint.root() });
    }
    let mut levels = Vec::new();
    for t in 0..8u8 {
        if size >> (u32::from(t) * 8) == 0 {
            break;
        }
        let hashes = match Edge::partial_tile(size, t) {
            Some(tile) => storage.read_tile(&tile).map_err(format("stored tiles"))?,
            None => Vec::new(),
        };
        levels.push(hashes);
    }
    let mut bundle = Vec::new();
    if let Some(tile) = Edge::partial_tile(size, 0) {
        bundle = storage.read_bundle(&tile).map_err(format("entry bundle"))?;
        // The last entries must be the ones the tiles hash.
        if bundle.iter().map(|e| merkle::leaf_hash(e)).ne(levels[0].iter().copied()) {
            return Err(LogError::BundleMismatch { path: storage.root().join(tile.bundle_path()) });
        }
    }
    Ok(Edge::new(size, levels, bundle))
}

/// Moves what lies past the checkpoint of `size` leaves — tiles, bundles and history written by
/// a commit that never finished, and temporary files — to `torn/<unix time>/`, keeping the
/// bytes for inspection.
fn set_aside_torn_tail(dir: &Path, size: u64) -> Result<(), LogError> {
    let mut torn = Vec::new();
    for top in ["tile", "checkpoints"] {
        let mut stack = vec![dir.join(top)];
        while let Some(at) = stack.pop() {
            let entries = match fs::read_dir(&at) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&at)(e)),
            };
            for entry in entries {
                let path = entry.map_err(io(&at))?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                if relative.ends_with(TMP_SUFFIX) || past(&relative, size) {
                    torn.push(relative);
                }
            }
        }
    }
    if torn.is_empty() {
        return Ok(());
    }
    let aside = dir.join("torn").join(Timestamp::now().0.to_string());
    let mut writer = files::Writer::new(dir);
    for relative in torn {
        let to = aside.join(&relative);
        fs::create_dir_all(to.parent().expect("has a parent")).map_err(io(&aside))?;
        fs::rename(dir.join(&relative), &to).map_err(io(dir.join(&relative)))?;
        // Both directories changed.
        writer.mark(to.parent().expect("has a parent"));
        writer.mark(dir.join(&relative).parent().expect("has a parent"));
    }
    writer.mark(&aside);
    writer.mark(&dir.join("torn"));
    writer.mark(dir);
    writer.sync().map_err(io(dir))
}

/// Whether a log file belongs to a tree larger than `size` leaves.
fn past(relative: &str, size: u64) -> bool {
    if let Some(history) = relative.strip_prefix("checkpoints/") {
        return history.parse::<u64>().map_or(true, |s| s > size);
    }
    match parse_path(relative) {
        Ok(TilePath::Hashes(tile) | TilePath::Entries(tile)) => {
            let count = size.checked_shr(u32::from(tile.hash_level())).unwrap_or(0);
            tile.first().saturating_add(u64::from(tile.width)) > count
        }
        // Not a log file at all: not ours to move.
        Err(_) => false,
    }
}
