//! The right edge of the tree, kept in memory by the writer: at every tile level, the hashes of
//! the rightmost tile (partial or empty), and the entries of the rightmost bundle. Appending,
//! the root and every partial tile need nothing else, so the writer never reads a tile back.

use sandbox_verify::Error as FormatError;
use sandbox_verify::merkle::{self, Hash, HashReader, StoredHash};
use sandbox_verify::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile};

const WIDTH: usize = TILE_WIDTH as usize;

/// A file the writer must store: a hash tile or an entry bundle.
#[derive(Debug)]
pub(crate) struct TileFile {
    pub(crate) path: String,
    pub(crate) data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Edge {
    size: u64,
    /// `levels[t]`: the hashes at Merkle level `8t` of the rightmost tile of tile level `t`;
    /// always `(size >> 8t) % 256` of them.
    levels: Vec<Vec<Hash>>,
    /// The entries of the rightmost bundle: `size % 256` of them.
    bundle: Vec<Vec<u8>>,
}

impl Edge {
    /// The edge of a tree of `size` leaves, from its rightmost tiles and bundle.
    pub(crate) fn new(size: u64, levels: Vec<Vec<Hash>>, bundle: Vec<Vec<u8>>) -> Edge {
        let edge = Edge { size, levels, bundle };
        debug_assert!(edge.levels.iter().enumerate().all(|(t, h)| h.len() == edge.width(t as u8)));
        edge
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// How many hashes the rightmost tile of tile level `t` has.
    fn width(&self, t: u8) -> usize {
        (self.size.checked_shr(u32::from(t * TILE_HEIGHT)).unwrap_or(0) % WIDTH as u64) as usize
    }

    /// The rightmost tile of level `t` (partial), if it has any hashes.
    pub(crate) fn partial_tile(size: u64, t: u8) -> Option<Tile> {
        let count = size.checked_shr(u32::from(t * TILE_HEIGHT)).unwrap_or(0);
        let width = (count % WIDTH as u64) as u16;
        (width > 0).then(|| Tile { level: t, index: count / WIDTH as u64, width })
    }

    /// Appends one entry. Tiles and bundles the entry completes are returned, to be stored; the
    /// partial ones are [`Edge::partial_files`].
    pub(crate) fn push(&mut self, entry: Vec<u8>, full: &mut Vec<TileFile>) -> Result<u64, FormatError> {
        let index = self.size;
        let stored = merkle::appended_hashes(index, merkle::leaf_hash(&entry), &*self)?;
        for StoredHash { level, index, hash } in stored {
            if level % TILE_HEIGHT != 0 {
                continue;
            }
            let t = usize::from(level / TILE_HEIGHT);
            if self.levels.len() <= t {
                self.levels.resize_with(t + 1, Vec::new);
            }
            let hashes = &mut self.levels[t];
            hashes.push(hash);
            if hashes.len() == WIDTH {
                let tile = Tile { level: t as u8, index: index / WIDTH as u64, width: TILE_WIDTH };
                full.push(TileFile { path: tile.path(), data: hashes.drain(..).flat_map(|h| h.0).collect() });
            }
        }
        self.bundle.push(entry);
        if self.bundle.len() == WIDTH {
            let tile = Tile { level: 0, index: index / WIDTH as u64, width: TILE_WIDTH };
            let data = sandbox_verify::tiles::encode_bundle(self.bundle.iter().map(Vec::as_slice))?;
            self.bundle.clear();
            full.push(TileFile { path: tile.bundle_path(), data });
        }
        self.size += 1;
        Ok(index)
    }

    /// The partial tiles and bundle of the current size that a tree of `since` leaves did not
    /// have.
    pub(crate) fn partial_files(&self, since: u64) -> Result<Vec<TileFile>, FormatError> {
        let mut files = Vec::new();
        for (t, hashes) in self.levels.iter().enumerate() {
            let Some(tile) = Edge::partial_tile(self.size, t as u8) else { continue };
            if Edge::partial_tile(since, t as u8) != Some(tile) {
                files.push(TileFile { path: tile.path(), data: hashes.iter().flat_map(|h| h.0).collect() });
            }
        }
        if let Some(tile) = Edge::partial_tile(self.size, 0)
            && Edge::partial_tile(since, 0) != Some(tile)
        {
            let data = sandbox_verify::tiles::encode_bundle(self.bundle.iter().map(Vec::as_slice))?;
            files.push(TileFile { path: tile.bundle_path(), data });
        }
        Ok(files)
    }

    /// The tree's root.
    pub(crate) fn root(&self) -> Result<Hash, FormatError> {
        merkle::root(self.size, self)
    }
}

/// The edge holds every hash an append or the root reads: the left siblings on a new leaf's path
/// and the complete subtrees of the tree's size all lie in the rightmost tile of their level.
impl HashReader for Edge {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, FormatError> {
        let unavailable = || FormatError::HashUnavailable { level, index };
        let (t, height) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
        let hashes = self.levels.get(usize::from(t)).ok_or_else(unavailable)?;
        let count = self.size >> (u32::from(t) * u32::from(TILE_HEIGHT));
        let start = count - count % WIDTH as u64;
        let first = index.checked_shl(u32::from(height)).ok_or_else(unavailable)?;
        let (from, to) = (first.checked_sub(start), (first + (1 << height)).checked_sub(start));
        let (Some(from), Some(to)) = (from, to) else { return Err(unavailable()) };
        let mut row: Vec<Hash> = hashes.get(from as usize..to as usize).ok_or_else(unavailable)?.to_vec();
        while row.len() > 1 {
            row = row.chunks_exact(2).map(|pair| merkle::node_hash(&pair[0], &pair[1])).collect();
        }
        Ok(row[0])
    }
}
