//! The history of what has left: the sketches of every released cell (JSON lines, for
//! differencing), beside it every released table's contract and figures (`<file>.tables`, JSON
//! lines, for margins across runs), and the key the sketches are made with (`<file>.key`, 64 hex
//! digits, mode 600), created with a new history. The key stays inside the domain, so a sketch
//! cannot be tested for a given person; the history itself holds aggregates of the domain's
//! data and stays inside it too.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{History, UnitHasher};

fn error(en: String, zh: &str) -> io::Error {
    io::Error::other(format!("{en} / {zh}"))
}

/// An exclusive lock on the history (`<file>.lock`), held from reading it to appending to it,
/// so that two audits of one history are judged as if one followed the other. Released when
/// dropped.
pub fn lock(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::File::options().create(true).truncate(false).write(true).open(path.with_extension("lock"))?;
    file.lock()?;
    Ok(file)
}

/// The history's key (created, mode 600, with a new history) and what it holds.
pub fn open(path: &Path) -> io::Result<(UnitHasher, History)> {
    let hasher = hasher(path)?;
    let history = History { cells: lines(path)?, tables: lines(&path.with_extension("tables"))? };
    Ok((hasher, history))
}

/// The history's key only (created, mode 600, with a new history): what sketches units with.
pub fn hasher(path: &Path) -> io::Result<UnitHasher> {
    let key_path = path.with_extension("key");
    if !key_path.exists() {
        if path.exists() {
            return Err(error(
                format!("{} has no key file {}: its sketches cannot be compared", path.display(), key_path.display()),
                "差分历史缺少密钥文件，无法比较",
            ));
        }
        let key: [u8; 32] = rand_key()?;
        let mut file = std::fs::File::options().write(true).create_new(true).mode(0o600).open(&key_path)?;
        file.write_all(hex::encode(key).as_bytes())?;
        file.sync_all()?;
    }
    let metadata = std::fs::metadata(&key_path)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(error(format!("{} must have mode 600 (chmod 600)", key_path.display()), "密钥文件权限必须为 600"));
    }
    let text = std::fs::read_to_string(&key_path)?;
    let key: [u8; 32] = hex::decode(text.trim()).ok().and_then(|k| k.try_into().ok()).ok_or_else(|| {
        error(format!("{} is not a 32-byte hex key", key_path.display()), "不是 32 字节的十六进制密钥")
    })?;
    Ok(UnitHasher::new(&key))
}

/// A JSON-lines file's records; none if it does not exist. A last line without its newline is
/// an append a crash cut short — never acknowledged, since an append syncs before the release
/// it belongs to is made — and is cut off, so that the next append starts on a line of its own.
fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut text = std::fs::read_to_string(path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_len(whole as u64)?;
        file.sync_all()?;
        text.truncate(whole);
    }
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        records.push(serde_json::from_str(line).map_err(|e| {
            error(format!("{}:{}: not a history record: {e}", path.display(), n + 1), "不是发布历史记录")
        })?);
    }
    Ok(records)
}

/// A history read once and then followed: each [`Follower::current`] parses only the lines
/// appended since the last one, so a run's audit costs the same after ten thousand releases as
/// after ten (reading the whole history for every run did not: 110 kB more JSON a release of
/// the demo's table, parsed twice a run). The files only grow, by whole lines ([`append`]); a
/// file that shrank or was replaced (another inode) is read again from its start.
#[derive(Debug)]
pub struct Follower {
    path: std::path::PathBuf,
    hasher: UnitHasher,
    cells: Tail,
    tables: Tail,
    history: std::sync::Arc<History>,
}

/// How far a file of the history has been read, and the last line read there: a file whose
/// bytes before that point are not that line any more has been replaced, whatever its inode.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tail {
    end: u64,
    last: Vec<u8>,
}

impl Follower {
    /// Opens the history and its key (created with a new history). A line a crash cut short
    /// is read once whole, and cut by the next [`append`].
    pub fn open(path: &Path) -> io::Result<Follower> {
        let mut follower = Follower {
            path: path.to_owned(),
            hasher: hasher(path)?,
            cells: Tail::default(),
            tables: Tail::default(),
            history: std::sync::Arc::new(History::default()),
        };
        follower.current()?;
        Ok(follower)
    }

    /// What sketches units, as of the last [`Follower::current`].
    pub fn hasher(&self) -> &UnitHasher {
        &self.hasher
    }

    /// The history as its files hold it now (whole lines), and its key read again: a history
    /// replaced with its key (a restore) is sketched with its own. Nothing changes if a file
    /// cannot be read.
    pub fn current(&mut self) -> io::Result<std::sync::Arc<History>> {
        let hasher = hasher(&self.path)?;
        let tables_path = self.path.with_extension("tables");
        let (mut cells, mut tables) = (Vec::new(), Vec::new());
        let grown = (read_on(&self.path, &self.cells, &mut cells)?, read_on(&tables_path, &self.tables, &mut tables)?);
        if let (Some(cells_tail), Some(tables_tail)) = grown {
            if !cells.is_empty() || !tables.is_empty() {
                let history = std::sync::Arc::make_mut(&mut self.history);
                history.cells.extend(cells);
                history.tables.extend(tables);
            }
            (self.cells, self.tables) = (cells_tail, tables_tail);
        } else {
            // Shrunk or replaced: nothing read before can be trusted to be in it.
            let mut history = History::default();
            let cells = read_on(&self.path, &Tail::default(), &mut history.cells)?.unwrap_or_default();
            let tables = read_on(&tables_path, &Tail::default(), &mut history.tables)?.unwrap_or_default();
            (self.cells, self.tables, self.history) = (cells, tables, std::sync::Arc::new(history));
        }
        self.hasher = hasher;
        Ok(self.history.clone())
    }
}

/// Parses the whole lines of `path` after `tail` into `records`, and says where they end; or
/// `None`, adding nothing, if the file is not the one `tail` read (shorter, or other bytes
/// where its last line was). A file that does not exist is an empty one.
fn read_on<T: serde::de::DeserializeOwned>(path: &Path, tail: &Tail, records: &mut Vec<T>) -> io::Result<Option<Tail>> {
    use std::io::{Read, Seek};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((tail.end == 0).then(Tail::default)),
        Err(e) => return Err(e),
    };
    let from = tail.end - tail.last.len() as u64;
    if file.metadata()?.len() < tail.end {
        return Ok(None);
    }
    file.seek(io::SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let Some(after) = bytes.strip_prefix(tail.last.as_slice()) else { return Ok(None) };
    // A line still being written is read when it is whole.
    let whole = after.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole == 0 {
        return Ok(Some(tail.clone()));
    }
    let text = std::str::from_utf8(&after[..whole]).map_err(io::Error::other)?;
    let mut added = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        added.push(
            serde_json::from_str(line)
                .map_err(|e| error(format!("{}: not a history record: {e}", path.display()), "不是发布历史记录"))?,
        );
    }
    records.extend(added);
    let start_of_last = after[..whole - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(Tail { end: tail.end + whole as u64, last: after[start_of_last..whole].to_vec() }))
}

/// How many released cells and released tables the history holds (its whole lines), without
/// reading them: what each release entry of the log states, for the annual report.
pub fn size(path: &Path) -> io::Result<(u64, u64)> {
    let count = |path: &Path| -> io::Result<u64> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()).count() as u64
                - u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    };
    Ok((count(path)?, count(&path.with_extension("tables"))?))
}

/// Appends what a release adds to the history, durably. The caller appends before it releases:
/// a crash between the two leaves a history holding what never left, which only makes later
/// audits stricter.
pub fn append(path: &Path, added: &History) -> io::Result<()> {
    append_lines(&path.with_extension("tables"), &added.tables)?;
    append_lines(path, &added.cells)
}

fn append_lines<T: serde::Serialize>(path: &Path, records: &[T]) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record).map_err(io::Error::other)?);
        text.push('\n');
    }
    let mut file = std::fs::File::options().create(true).read(true).append(true).open(path)?;
    cut_torn_tail(&mut file)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Cuts off a last line without its newline — an append that failed part-way (a crash, a full
/// disk) — so that what is appended next starts on a line of its own instead of making the
/// torn line part of the history (and the history unreadable).
fn cut_torn_tail(file: &mut std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || (file.read_exact_at(&mut last, len - 1).is_ok() && last[0] == b'\n') {
        return Ok(());
    }
    // Rare: read back to the last newline.
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(whole as u64)?;
    file.sync_all()
}

fn rand_key() -> io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReleasedCell, Sketch};

    fn cell(label: &str) -> ReleasedCell {
        ReleasedCell {
            dataset: "shops".to_owned(),
            label: label.to_owned(),
            sketch: Sketch::default(),
            contributions: Vec::new(),
            magnitudes: Vec::new(),
        }
    }

    #[test]
    fn a_follower_reads_what_was_appended_and_a_replaced_history_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut follower = Follower::open(&path).unwrap();
        assert!(follower.current().unwrap().is_empty());
        append(&path, &History { cells: vec![cell("a"), cell("b")], tables: Vec::new() }).unwrap();
        let first = follower.current().unwrap();
        assert_eq!(first.cells, [cell("a"), cell("b")]);
        append(&path, &History { cells: vec![cell("c")], tables: Vec::new() }).unwrap();
        // A line half written by another process waits until it is whole.
        let torn = serde_json::to_string(&cell("d")).unwrap();
        let mut file = std::fs::File::options().append(true).open(&path).unwrap();
        file.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        assert_eq!(follower.current().unwrap().cells, [cell("a"), cell("b"), cell("c")]);
        file.write_all(&torn.as_bytes()[torn.len() / 2..]).unwrap();
        file.write_all(b"\n").unwrap();
        assert_eq!(*follower.current().unwrap(), open(&path).unwrap().1, "what reading it all gives");
        assert_eq!(first.cells.len(), 2, "an earlier snapshot stays as it was");

        // Replaced by another history (a restore): read from its start.
        std::fs::remove_file(&path).unwrap();
        append(&path, &History { cells: vec![cell("z"); 5], tables: Vec::new() }).unwrap();
        assert_eq!(follower.current().unwrap().cells, vec![cell("z"); 5]);
        // A damaged line is refused, not skipped.
        std::fs::write(&path, "{not json}\n").unwrap();
        assert!(follower.current().unwrap_err().to_string().contains("not a history record"));
    }

    /// Red team of the follower: a torn tail left while the server runs (a full disk) is cut
    /// by the next append; a look that fails changes nothing; a history replaced with its key
    /// is sketched with the new key.
    #[test]
    fn a_follower_survives_torn_tails_failed_looks_and_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut follower = Follower::open(&path).unwrap();
        append(&path, &History { cells: vec![cell("a")], tables: Vec::new() }).unwrap();
        let torn = serde_json::to_string(&cell("b")).unwrap();
        let mut file = std::fs::File::options().append(true).open(&path).unwrap();
        file.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        follower.current().unwrap();
        append(&path, &History { cells: vec![cell("c")], tables: Vec::new() }).unwrap();
        assert_eq!(follower.current().unwrap().cells, [cell("a"), cell("c")]);
        assert_eq!(open(&path).unwrap().1.cells, [cell("a"), cell("c")]);

        let tables = path.with_extension("tables");
        std::os::unix::fs::symlink(&tables, &tables).unwrap();
        append(&path, &History { cells: vec![cell("d")], tables: Vec::new() }).unwrap();
        assert!(follower.current().is_err());
        assert!(follower.current().is_err(), "a second failed look adds nothing either");
        std::fs::remove_file(&tables).unwrap();
        assert_eq!(*follower.current().unwrap(), open(&path).unwrap().1);

        let old = follower.hasher().clone();
        for extension in ["jsonl", "tables", "key"] {
            let _ = std::fs::remove_file(path.with_extension(extension));
        }
        let restored = hasher(&path).unwrap();
        assert!(restored != old);
        append(&path, &History { cells: vec![cell("z")], tables: Vec::new() }).unwrap();
        assert_eq!(follower.current().unwrap().cells, [cell("z")]);
        assert!(follower.hasher() == &restored, "sketched with the restored history's key");
    }

    #[test]
    fn an_append_a_crash_cut_short_is_cut_off_and_the_history_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let (_, empty) = open(&path).unwrap();
        assert!(empty.is_empty());
        append(&path, &History { cells: vec![cell("a")], tables: Vec::new() }).unwrap();
        // A crash in the middle of the second append.
        let whole = std::fs::read_to_string(&path).unwrap();
        let torn = serde_json::to_string(&cell("b")).unwrap();
        std::fs::write(&path, format!("{whole}{}", &torn[..torn.len() / 2])).unwrap();
        let (_, history) = open(&path).unwrap();
        assert_eq!(history.cells, vec![cell("a")]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole, "cut back to the last whole line");
        append(&path, &History { cells: vec![cell("c")], tables: Vec::new() }).unwrap();
        assert_eq!(open(&path).unwrap().1.cells, vec![cell("a"), cell("c")]);
        assert_eq!(size(&path).unwrap(), (2, 0));
        std::fs::write(&path, format!("{whole}{}", &torn[..torn.len() / 2])).unwrap();
        assert_eq!(size(&path).unwrap(), (1, 0), "a torn line is no cell");
        // A damaged whole line is not a crash: it is refused, not dropped.
        std::fs::write(&path, format!("{whole}{{not json}}\n")).unwrap();
        assert!(open(&path).unwrap_err().to_string().contains("not a history record"));
    }
}
