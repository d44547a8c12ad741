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
    let mut file = std::fs::File::options().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())?;
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

    #[test]
    fn an_append_a_crash_cut_short_is_cut_off_and_the_history_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let cell = |label: &str| ReleasedCell {
            dataset: "shops".to_owned(),
            label: label.to_owned(),
            sketch: Sketch::default(),
            contributions: Vec::new(),
            magnitudes: Vec::new(),
        };
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
