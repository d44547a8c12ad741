//! RFC 6962 / RFC 9162 Merkle trees over SHA-256: leaf and node hashes, roots, inclusion and
//! consistency proofs.
//!
//! Proofs and roots are built from a [`HashReader`], which gives the hash of any complete subtree
//! by (level, index): a writer serves them from its tiles without holding the leaves, a verifier
//! from the tiles of an archive, tests from a [`Tree`] in memory. Verifying a proof needs only
//! the proof. Nothing here reads files.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::error::{Error, Format, ProofFault, ProofKind};

/// A SHA-256 hash: a leaf, a node, a root, or a file's digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// SHA-256 of `data` as it is (no domain byte): for files and statements.
    pub fn sha256(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// Decodes standard, padded base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Hash, Error> {
        let bytes = BASE64.decode(text).map_err(|e| {
            Error::malformed(Format::Hash, format!("{text:?} is not base64: {e}"), format!("{text:?} 不是 base64"))
        })?;
        Hash::from_slice(&bytes).ok_or_else(|| {
            Error::malformed(
                Format::Hash,
                format!("{text:?} decodes to {} bytes, not 32", bytes.len()),
                format!("{text:?} 解码后为 {} 字节，应为 32 字节", bytes.len()),
            )
        })
    }

    /// Decodes 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Result<Hash, Error> {
        let bad = || {
            Error::malformed(
                Format::Hash,
                format!("{text:?} is not 64 lowercase hex digits"),
                format!("{text:?} 不是 64 位小写十六进制数"),
            )
        };
        if text.len() != 64 {
            return Err(bad());
        }
        let mut out = [0; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            out[i] = digit(pair[0]).zip(digit(pair[1])).map(|(h, l)| h << 4 | l).ok_or_else(bad)?;
        }
        Ok(Hash(out))
    }

    /// The hash in `bytes`, if it is 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        bytes.try_into().ok().map(Hash)
    }

    /// Standard, padded base64, as checkpoints and proofs write hashes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Lowercase hex, as entries write hashes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Hash {
    /// Lowercase hex, as `sha256sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// The hash of a leaf: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash(Sha256::new().chain_update([0]).chain_update(data).finalize().into())
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash(Sha256::new().chain_update([1]).chain_update(left.0).chain_update(right.0).finalize().into())
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Hash::sha256(b"")
}

/// Gives the hash of a complete subtree: the one at `level` (its height; leaves are level 0)
/// covering leaves `index << level .. (index + 1) << level`.
pub trait HashReader {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error>;
}

/// A complete subtree's hash, as a writer stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHash {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The hashes a tree of `size` leaves gains when `leaf` (a [`leaf_hash`]) is appended: the leaf
/// at level 0, then every subtree it completes, lowest first. `existing` must give the tree's
/// current complete subtrees (only the left siblings on the new leaf's path are read).
pub fn appended_hashes(size: u64, leaf: Hash, existing: &impl HashReader) -> Result<Vec<StoredHash>, Error> {
    let mut out = vec![StoredHash { level: 0, index: size, hash: leaf }];
    let (mut hash, mut index, mut level) = (leaf, size, 0u8);
    // While the new node is a right child, its parent is now complete.
    while index & 1 == 1 {
        hash = node_hash(&existing.hash(level, index - 1)?, &hash);
        index >>= 1;
        level += 1;
        out.push(StoredHash { level, index, hash });
    }
    Ok(out)
}

/// The root of the tree of the first `size` leaves.
pub fn root(size: u64, hashes: &impl HashReader) -> Result<Hash, Error> {
    range_hash(0, size, hashes)
}

/// MTH(D[start..end]) for a range the RFC 6962 recursion produces: `start` is a multiple of the
/// largest power of two not above `end - start`, so the range is its complete subtrees of
/// decreasing size, hashed together from the right.
fn range_hash(start: u64, end: u64, hashes: &impl HashReader) -> Result<Hash, Error> {
    if start == end {
        return Ok(empty_root());
    }
    let mut parts = Vec::new();
    let mut at = start;
    for level in (0..64u8).rev() {
        if (end - start) >> level & 1 == 1 {
            debug_assert_eq!(at % (1 << level), 0, "range {start}..{end} is not aligned");
            parts.push(hashes.hash(level, at >> level)?);
            at += 1 << level;
        }
    }
    let mut hash = parts.pop().unwrap_or_else(empty_root);
    while let Some(left) = parts.pop() {
        hash = node_hash(&left, &hash);
    }
    Ok(hash)
}

/// The largest power of two below `n` (n ≥ 2): where RFC 6962 splits a tree of `n` leaves.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The RFC 6962 §2.1.1 audit path PATH(index, D[size]), leaf side first.
pub fn inclusion_proof(index: u64, size: u64, hashes: &impl HashReader) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::Proof { kind: ProofKind::Inclusion, fault: ProofFault::IndexNotBelowSize { index, size } });
    }
    let mut proof = Vec::new();
    path(index, 0, size, hashes, &mut proof)?;
    Ok(proof)
}

fn path(index: u64, start: u64, end: u64, hashes: &impl HashReader, proof: &mut Vec<Hash>) -> Result<(), Error> {
    if end - start == 1 {
        return Ok(());
    }
    let mid = start + split(end - start);
    if index < mid {
        path(index, start, mid, hashes, proof)?;
        proof.push(range_hash(mid, end, hashes)?);
    } else {
        path(index, mid, end, hashes, proof)?;
        proof.push(range_hash(start, mid, hashes)?);
    }
    Ok(())
}

/// The RFC 6962 §2.1.2 consistency proof PROOF(old, D[new]); empty when the sizes are equal.
pub fn consistency_proof(old: u64, new: u64, hashes: &impl HashReader) -> Result<Vec<Hash>, Error> {
    let fault = if old > new {
        ProofFault::OldLargerThanNew { old, new }
    } else if old == 0 && new > 0 {
        ProofFault::FromEmptyTree
    } else {
        let mut proof = Vec::new();
        if old < new {
            subproof(old, 0, new, true, hashes, &mut proof)?;
        }
        return Ok(proof);
    };
    Err(Error::Proof { kind: ProofKind::Consistency, fault })
}

/// SUBPROOF(m, D[start..end], complete): `m` leaves of the old tree lie in this range.
fn subproof(
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    hashes: &impl HashReader,
    proof: &mut Vec<Hash>,
) -> Result<(), Error> {
    if m == end - start {
        if !complete {
            proof.push(range_hash(start, end, hashes)?);
        }
        return Ok(());
    }
    let k = split(end - start);
    if m <= k {
        subproof(m, start, start + k, complete, hashes, proof)?;
        proof.push(range_hash(start + k, end, hashes)?);
    } else {
        subproof(m - k, start + k, end, false, hashes, proof)?;
        proof.push(range_hash(start, start + k, hashes)?);
    }
    Ok(())
}

/// Verifies that `leaf` (a [`leaf_hash`]) is at `index` in the tree of `size` leaves with `root`,
/// by the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    let fail = |fault| Err(Error::Proof { kind: ProofKind::Inclusion, fault });
    if index >= size {
        return fail(ProofFault::IndexNotBelowSize { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return fail(ProofFault::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return fail(ProofFault::TooShort);
    }
    if r != *root {
        return fail(ProofFault::RootMismatch { old: false });
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with `new_root` extends the tree of `old_size`
/// leaves with `old_root`, by the algorithm of RFC 9162 §2.1.4.2. Equal sizes need an empty proof
/// and equal roots (the empty root for size 0); from size 0 to more there is no proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    let fail = |fault| Err(Error::Proof { kind: ProofKind::Consistency, fault });
    if old_size > new_size {
        return fail(ProofFault::OldLargerThanNew { old: old_size, new: new_size });
    }
    if old_size == new_size {
        return if !proof.is_empty() {
            fail(ProofFault::NotEmpty)
        } else if old_size == 0 && *old_root != empty_root() {
            fail(ProofFault::RootMismatch { old: true })
        } else if old_root != new_root {
            fail(ProofFault::RootMismatch { old: false })
        } else {
            Ok(())
        };
    }
    if old_size == 0 {
        return fail(ProofFault::FromEmptyTree);
    }
    let Some((first, rest)) = proof.split_first() else {
        return fail(ProofFault::Empty);
    };
    // When the old tree is a complete subtree of the new one, its root is the first node of the
    // path and the proof leaves it out.
    let (start, rest) = if old_size.is_power_of_two() { (old_root, proof) } else { (first, rest) };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if snode == 0 {
            return fail(ProofFault::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return fail(ProofFault::TooShort);
    }
    if fr != *old_root {
        return fail(ProofFault::RootMismatch { old: true });
    }
    if sr != *new_root {
        return fail(ProofFault::RootMismatch { old: false });
    }
    Ok(())
}

/// A tree held in memory: every complete subtree's hash, by level. For tests, small logs, and
/// replaying an archive.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Appends a leaf hash; returns the stored hashes it added (see [`appended_hashes`]).
    pub fn push(&mut self, leaf: Hash) -> Vec<StoredHash> {
        let added = appended_hashes(self.size(), leaf, self).expect("a tree in memory has every left sibling");
        for stored in &added {
            let level = usize::from(stored.level);
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(stored.hash);
        }
        added
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        root(self.size(), self).expect("a tree in memory has every complete subtree")
    }
}

impl HashReader for Tree {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(Error::HashUnavailable { level, index })
    }
}

impl FromIterator<Hash> for Tree {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaves: I) -> Tree {
        let mut tree = Tree::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }
}
