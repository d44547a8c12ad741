//! The differencing history: the sketches of every released cell (JSON lines), and beside it the
//! key they are made with (`<file>.key`, 64 hex digits, mode 600), created with a new history.
//! The key stays inside the domain, so a sketch cannot be tested for a given person.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{ReleasedCell, UnitHasher};

fn error(en: String, zh: &str) -> io::Error {
    io::Error::other(format!("{en} / {zh}"))
}

/// The history's key (created, mode 600, with a new history) and its cells.
pub fn open(path: &Path) -> io::Result<(UnitHasher, Vec<ReleasedCell>)> {
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
    let mut cells = Vec::new();
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            cells.push(serde_json::from_str(line).map_err(|e| {
                error(format!("{}:{}: not a released cell: {e}", path.display(), n + 1), "不是已发布单元格记录")
            })?);
        }
    }
    Ok((UnitHasher::new(&key), cells))
}

/// Appends released cells to the history, durably.
pub fn append(path: &Path, cells: &[ReleasedCell]) -> io::Result<()> {
    let mut text = String::new();
    for cell in cells {
        text.push_str(&serde_json::to_string(cell).map_err(io::Error::other)?);
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
