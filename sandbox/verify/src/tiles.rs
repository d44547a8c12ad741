//! The on-disk layout of c2sp.org/tlog-tiles: tiles of height 8 (256 hashes), their paths
//! `tile/<L>/<N>[.p/<W>]` with `N` in 3-digit groups (`x001/x234/067`), and entry bundles
//! `tile/entries/<N>[.p/<W>]` of big-endian uint16 length-prefixed entries.
//!
//! Reading goes through [`TileStorage`], so the writer and the verifier share one layout; the
//! only implementation here reads a directory ([`DirStorage`]). Nothing here writes files.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::checkpoint::parse_decimal;
use crate::error::{Error, Format};
use crate::merkle::{Hash, HashReader, node_hash};

/// Levels of the Merkle tree one tile spans.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u16 = 256;
/// The largest entry a bundle can frame.
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;

/// A tile: the hashes at Merkle level `8 * level`, indexes `256 * index ..` `256 * index + width`.
/// The entry bundle with the same `index` and `width` holds the entries of the level-0 tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// The tile level (0 to 63 in paths; a tree below 2^64 leaves uses 0 to 7).
    pub level: u8,
    /// The tile's position in its level.
    pub index: u64,
    /// 1 to 256; below 256 the tile is partial.
    pub width: u16,
}

/// What a path under `tile/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// A tile of hashes.
    Hashes(Tile),
    /// An entry bundle: the entries of the level-0 tile given.
    Entries(Tile),
}

fn encode_index(index: u64) -> String {
    let mut path = format!("{:03}", index % 1000);
    let mut rest = index / 1000;
    while rest > 0 {
        path = format!("x{:03}/{path}", rest % 1000);
        rest /= 1000;
    }
    path
}

impl Tile {
    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}{}", self.level, encode_index(self.index), self.partial_suffix())
    }

    /// `tile/entries/<N>[.p/<W>]`, the entry bundle of a level-0 tile.
    pub fn bundle_path(&self) -> String {
        format!("tile/entries/{}{}", encode_index(self.index), self.partial_suffix())
    }

    fn partial_suffix(&self) -> String {
        if self.width < TILE_WIDTH { format!(".p/{}", self.width) } else { String::new() }
    }

    /// The same tile at full width.
    pub fn full(&self) -> Tile {
        Tile { width: TILE_WIDTH, ..*self }
    }

    /// The Merkle level of the tile's hashes.
    pub fn hash_level(&self) -> u8 {
        self.level.saturating_mul(TILE_HEIGHT)
    }

    /// The index, at [`Tile::hash_level`], of the tile's first hash.
    pub fn first(&self) -> u64 {
        self.index.saturating_mul(u64::from(TILE_WIDTH))
    }
}

/// Parses a path relative to the log's root. Only canonical paths parse: each index has one
/// spelling (no `x000/` in front, no leading zeros), so a log cannot hold one tile twice.
pub fn parse_path(path: &str) -> Result<TilePath, Error> {
    let bad = || {
        Error::malformed(
            Format::TilePath,
            format!("{path:?} is not tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]"),
            format!("{path:?} 不是 tile/<L>/<N>[.p/<W>] 或 tile/entries/<N>[.p/<W>]"),
        )
    };
    let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
    let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
    let (number, width) = match rest.split_once(".p/") {
        Some((number, width)) => (number, parse_decimal(width).filter(|w| (1..256).contains(w)).ok_or_else(bad)?),
        None => (rest, u64::from(TILE_WIDTH)),
    };
    let mut index: u64 = 0;
    let groups: Vec<&str> = number.split('/').collect();
    for (i, group) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() { group.strip_prefix('x').ok_or_else(bad)? } else { group };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let group: u64 = digits.parse().map_err(|_| bad())?;
        index = index.checked_mul(1000).and_then(|i| i.checked_add(group)).ok_or_else(bad)?;
    }
    let width = width as u16;
    let parsed = if level == "entries" {
        TilePath::Entries(Tile { level: 0, index, width })
    } else {
        let level = parse_decimal(level).filter(|l| *l < 64).ok_or_else(bad)? as u8;
        TilePath::Hashes(Tile { level, index, width })
    };
    let canonical = match parsed {
        TilePath::Hashes(tile) => tile.path(),
        TilePath::Entries(tile) => tile.bundle_path(),
    };
    if canonical == path { Ok(parsed) } else { Err(bad()) }
}

/// The number of hashes at Merkle level `level` in a tree of `size` leaves.
fn hashes_at(level: u8, size: u64) -> u64 {
    size.checked_shr(u32::from(level)).unwrap_or(0)
}

/// The tiles of a tree of `size` leaves: at every tile level, the full tiles and the rightmost
/// partial one, lowest level first.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    new_tiles(0, size)
}

/// The tiles a tree of `new` leaves has that a tree of `old` leaves has not (new tiles, and
/// partial tiles that grew): what a writer must write, lowest level first.
pub fn new_tiles(old: u64, new: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    let width = u64::from(TILE_WIDTH);
    for level in 0..64 / TILE_HEIGHT {
        let (before, after) = (hashes_at(level * TILE_HEIGHT, old), hashes_at(level * TILE_HEIGHT, new));
        if after == 0 {
            break;
        }
        for index in before / width..after.div_ceil(width) {
            let tile = Tile { level, index, width: (after - index * width).min(width) as u16 };
            let had = (before > index * width).then(|| (before - index * width).min(width));
            if had != Some(u64::from(tile.width)) {
                tiles.push(tile);
            }
        }
    }
    tiles
}

/// The tile of a tree of `size` leaves that holds the hash at Merkle level `8 * level`, `index`.
fn tile_holding(level: u8, index: u64, size: u64) -> Tile {
    let width = u64::from(TILE_WIDTH);
    let tile_index = index / width;
    let count = hashes_at(level * TILE_HEIGHT, size);
    Tile { level, index: tile_index, width: count.saturating_sub(tile_index * width).min(width) as u16 }
}

/// The content of `tile`: its hashes from `hashes`, concatenated.
pub fn tile_data(tile: &Tile, hashes: &impl HashReader) -> Result<Vec<u8>, Error> {
    let mut data = Vec::with_capacity(usize::from(tile.width) * 32);
    for i in 0..u64::from(tile.width) {
        data.extend_from_slice(&hashes.hash(tile.hash_level(), tile.first() + i)?.0);
    }
    Ok(data)
}

/// Splits a tile's content into its hashes, which must be `tile.width` of them.
pub fn tile_hashes(tile: &Tile, data: &[u8]) -> Result<Vec<Hash>, Error> {
    let expected = usize::from(tile.width) * 32;
    if data.len() != expected {
        return Err(Error::malformed(
            Format::Tile,
            format!("{} is {} bytes, not {expected} ({} hashes)", tile.path(), data.len(), tile.width),
            format!("{} 为 {} 字节，应为 {expected} 字节（{} 个哈希）", tile.path(), data.len(), tile.width),
        ));
    }
    Ok(data.chunks_exact(32).filter_map(Hash::from_slice).collect())
}

/// Frames entries as an entry bundle. Each entry must fit a uint16 length.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, Error> {
    let mut bundle = Vec::new();
    for entry in entries {
        let length = u16::try_from(entry.len()).map_err(|_| Error::TooLarge {
            format: Format::Entry,
            size: entry.len() as u64,
            limit: MAX_BUNDLE_ENTRY as u64,
        })?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    Ok(bundle)
}

/// Splits an entry bundle into its entries: uint16 big-endian length, then that many bytes, to
/// the end. At most 256 entries.
pub fn decode_bundle(bundle: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut entries = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let n = entries.len();
        if n == usize::from(TILE_WIDTH) {
            return Err(Error::malformed(
                Format::EntryBundle,
                format!("more than {TILE_WIDTH} entries"),
                format!("条目超过 {TILE_WIDTH} 个"),
            ));
        }
        let Some((length, body)) = rest.split_first_chunk::<2>() else {
            return Err(Error::malformed(
                Format::EntryBundle,
                format!("truncated: one byte left where entry {n}'s length should be"),
                format!("被截断：第 {n} 个条目的长度只剩一个字节"),
            ));
        };
        let length = usize::from(u16::from_be_bytes(*length));
        if body.len() < length {
            return Err(Error::malformed(
                Format::EntryBundle,
                format!("truncated: entry {n} declares {length} bytes, {} remain", body.len()),
                format!("被截断：第 {n} 个条目声明 {length} 字节，只剩 {} 字节", body.len()),
            ));
        }
        let (entry, tail) = body.split_at(length);
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

/// Where a log's files are read from, by their paths relative to the log's root
/// (`checkpoint`, `tile/0/000`...).
pub trait TileStorage {
    /// The content at `path`, or `None` if there is nothing there. Content longer than `limit`
    /// is an error, so a hostile archive cannot make the reader allocate without bound.
    fn read(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>, Error>;

    /// The entries of the bundle of level-0 `tile`, `tile.width` of them. A partial bundle that
    /// is gone is read from the full bundle that replaced it, as for tiles.
    fn read_bundle(&self, tile: &Tile) -> Result<Vec<Vec<u8>>, Error> {
        let limit = usize::from(TILE_WIDTH) * (2 + MAX_BUNDLE_ENTRY);
        let mut data = self.read(&tile.bundle_path(), limit)?;
        if data.is_none() && tile.width < TILE_WIDTH {
            data = self.read(&tile.full().bundle_path(), limit)?;
        }
        let data = data.ok_or_else(|| Error::Missing { path: PathBuf::from(tile.bundle_path()) })?;
        let entries = decode_bundle(&data)?;
        if entries.len() < usize::from(tile.width) {
            return Err(Error::Missing { path: PathBuf::from(tile.bundle_path()) });
        }
        Ok(entries.into_iter().take(tile.width.into()).map(<[u8]>::to_vec).collect())
    }

    /// A tile's hashes in a tree where it has `tile.width` hashes. A partial tile that is gone
    /// is read from the full tile that replaced it, as the spec allows.
    fn read_tile(&self, tile: &Tile) -> Result<Vec<Hash>, Error> {
        let limit = usize::from(TILE_WIDTH) * 32;
        if let Some(data) = self.read(&tile.path(), limit)? {
            return tile_hashes(tile, &data);
        }
        if tile.width < TILE_WIDTH
            && let Some(data) = self.read(&tile.full().path(), limit)?
        {
            let mut hashes = tile_hashes(&tile.full(), &data)?;
            hashes.truncate(usize::from(tile.width));
            return Ok(hashes);
        }
        Err(Error::Missing { path: PathBuf::from(tile.path()) })
    }
}

/// A log laid out in a directory.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// The log whose `checkpoint` is `root/checkpoint`.
    pub fn new(root: impl Into<PathBuf>) -> DirStorage {
        DirStorage { root: root.into() }
    }

    /// The log's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TileStorage for DirStorage {
    fn read(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>, Error> {
        read_limited(&self.root.join(path), limit)
    }
}

/// Reads a file of at most `limit` bytes; `None` if it does not exist. Every file this crate
/// reads goes through here, so no input can make it allocate without bound.
pub fn read_limited(path: &Path, limit: usize) -> Result<Option<Vec<u8>>, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut data = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut data).map_err(|e| Error::io(path, e))?;
    if data.len() > limit {
        let size = std::fs::metadata(path).map_or(data.len() as u64, |m| m.len());
        return Err(Error::TooLarge { format: Format::File, size, limit: limit as u64 });
    }
    Ok(Some(data))
}

/// The hashes of a tree of `size` leaves, read from its tiles: a [`HashReader`] over storage.
/// Hashes between tile levels are recomputed from the tile below. Tiles are cached.
#[derive(Debug)]
pub struct TileReader<'s, S> {
    storage: &'s S,
    size: u64,
    cache: RefCell<BTreeMap<Tile, Vec<Hash>>>,
}

impl<'s, S: TileStorage> TileReader<'s, S> {
    /// The hashes of the tree of `size` leaves in `storage`.
    pub fn new(storage: &'s S, size: u64) -> TileReader<'s, S> {
        TileReader { storage, size, cache: RefCell::default() }
    }
}

impl<S: TileStorage> HashReader for TileReader<'_, S> {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error> {
        let unavailable = Error::HashUnavailable { level, index };
        // The subtree must be complete in this tree.
        let end = index.checked_add(1).filter(|n| u32::from(level) <= n.leading_zeros()).map(|n| n << level);
        if end.is_none_or(|end| end > self.size) {
            return Err(unavailable);
        }
        let (tile_level, height) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
        // The subtree's hashes at the tile's level, and the tile that holds them.
        let first = index << height;
        let tile = tile_holding(tile_level, first, self.size);
        let mut cache = self.cache.borrow_mut();
        let hashes = match cache.entry(tile) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(self.storage.read_tile(&tile)?),
        };
        let start = (first - tile.first()) as usize;
        let mut row: Vec<Hash> = hashes.get(start..start + (1 << height)).ok_or(unavailable)?.to_vec();
        while row.len() > 1 {
            row = row.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        }
        Ok(row[0])
    }
}
