//! Proofs for every pair of small tree sizes, against a reference written naively from RFC 6962
//! §2.1 (MTH, PATH, PROOF/SUBPROOF over slices of leaves), and the classic verifier bugs.

use std::cell::RefCell;
use std::collections::HashMap;

use sandbox_verify::Hash;
use sandbox_verify::merkle::{
    HashReader, Tree, appended_hashes, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};
use sandbox_verify::tiles::{DirStorage, TileReader, new_tiles, tile_data, tiles_for_size};

const N: u64 = 300;

/// RFC 6962 §2.1 as written, over `leaves[start..end]`. Memoized, or the test would hash for
/// minutes in a debug build; the recursion is the RFC's.
struct Reference {
    leaves: Vec<Hash>,
    memo: RefCell<HashMap<(u64, u64), Hash>>,
}

impl Reference {
    fn k(n: u64) -> u64 {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(&self, start: u64, end: u64) -> Hash {
        if let Some(hash) = self.memo.borrow().get(&(start, end)) {
            return *hash;
        }
        let hash = match end - start {
            0 => empty_root(),
            1 => self.leaves[start as usize],
            n => node_hash(&self.mth(start, start + Self::k(n)), &self.mth(start + Self::k(n), end)),
        };
        self.memo.borrow_mut().insert((start, end), hash);
        hash
    }

    fn path(&self, m: u64, start: u64, end: u64) -> Vec<Hash> {
        let n = end - start;
        if n == 1 {
            return Vec::new();
        }
        let k = Self::k(n);
        let mut path;
        if m < k {
            path = self.path(m, start, start + k);
            path.push(self.mth(start + k, end));
        } else {
            path = self.path(m - k, start + k, end);
            path.push(self.mth(start, start + k));
        }
        path
    }

    fn subproof(&self, m: u64, start: u64, end: u64, b: bool) -> Vec<Hash> {
        let n = end - start;
        if m == n {
            return if b { Vec::new() } else { vec![self.mth(start, end)] };
        }
        let k = Self::k(n);
        let mut proof;
        if m <= k {
            proof = self.subproof(m, start, start + k, b);
            proof.push(self.mth(start + k, end));
        } else {
            proof = self.subproof(m - k, start + k, end, false);
            proof.push(self.mth(start, start + k));
        }
        proof
    }
}

fn leaves() -> Vec<Hash> {
    (0..N).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
}

/// Every tree size up to `N`, every leaf and every older size: the proofs generated equal the
/// reference's. SHA-256 in a debug build costs about 9 µs a node, so verifying them, with the bug
/// checks below, covers every pair for new sizes up to 32, 256 and `N`, and one pair in 31
/// elsewhere (about 2 500 of the 90 000).
#[test]
fn proofs_match_the_reference_for_every_size_up_to_300() {
    let reference = Reference { leaves: leaves(), memo: RefCell::default() };
    let tree: Tree = reference.leaves.iter().copied().collect();
    let roots: Vec<Hash> = (0..=N).map(|n| reference.mth(0, n)).collect();
    let mut pairs = 0u64;
    for n in 1..=N {
        assert_eq!(root(n, &tree).unwrap(), roots[n as usize], "root of {n}");
        let all = n <= 32 || n == 256 || n == N;
        for m in 0..n {
            pairs += 1;
            let proof = inclusion_proof(m, n, &tree).unwrap();
            assert_eq!(proof, reference.path(m, 0, n), "PATH({m}, {n})");
            if all || pairs.is_multiple_of(31) {
                let leaf = &reference.leaves[m as usize];
                verify_inclusion(leaf, m, n, &proof, &roots[n as usize]).unwrap();
                inclusion_bugs(leaf, m, n, &proof, &roots);
            }
        }
        for m in 1..=n {
            let proof = consistency_proof(m, n, &tree).unwrap();
            assert_eq!(proof, if m == n { Vec::new() } else { reference.subproof(m, 0, n, true) }, "PROOF({m}, {n})");
            if all || (pairs + m).is_multiple_of(31) {
                verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &proof).unwrap();
                consistency_bugs(m, n, &proof, &roots);
            }
        }
    }
}

/// Wrong tree sizes (with that size's real root), extra and missing hashes, a changed hash, the
/// wrong leaf and index.
fn inclusion_bugs(leaf: &Hash, m: u64, n: u64, proof: &[Hash], roots: &[Hash]) {
    let root = &roots[n as usize];
    for other in [n - 1, n + 1, n * 2, n / 2].into_iter().filter(|&o| o != n && o > m && o <= N) {
        assert!(verify_inclusion(leaf, m, other, proof, &roots[other as usize]).is_err(), "{m} in {n} as {other}");
    }
    let mut longer = proof.to_vec();
    longer.push(*leaf);
    assert!(verify_inclusion(leaf, m, n, &longer, root).is_err(), "extra hash {m} {n}");
    if let Some((_, shorter)) = proof.split_last() {
        assert!(verify_inclusion(leaf, m, n, shorter, root).is_err(), "missing hash {m} {n}");
        let mut changed = proof.to_vec();
        changed[0].0[0] ^= 1;
        assert!(verify_inclusion(leaf, m, n, &changed, root).is_err(), "changed hash {m} {n}");
        assert!(verify_inclusion(leaf, m ^ 1, n, proof, root).is_err(), "index {m} {n}");
    }
    assert!(verify_inclusion(&node_hash(leaf, leaf), m, n, proof, root).is_err(), "wrong leaf {m} {n}");
    assert!(verify_inclusion(leaf, n, n, proof, root).is_err());
}

/// Swapped roots, wrong sizes, extra and missing hashes, a proof against the wrong old root.
fn consistency_bugs(m: u64, n: u64, proof: &[Hash], roots: &[Hash]) {
    let (old, new) = (&roots[m as usize], &roots[n as usize]);
    if m < n {
        assert!(verify_consistency(m, n, new, old, proof).is_err(), "swapped {m} {n}");
        assert!(verify_consistency(n, m, new, old, proof).is_err(), "swapped sizes {m} {n}");
        let (_, shorter) = proof.split_last().unwrap();
        assert!(verify_consistency(m, n, old, new, shorter).is_err(), "missing hash {m} {n}");
        assert!(verify_consistency(m, n, &roots[m as usize - 1], new, proof).is_err(), "wrong old root {m} {n}");
    }
    for other in [n - 1, n + 1].into_iter().filter(|&o| o != n && o >= m && o <= N) {
        assert!(verify_consistency(m, other, old, &roots[other as usize], proof).is_err(), "{m} {n} as {other}");
    }
    for other in [m - 1, m + 1].into_iter().filter(|&o| o != m && o >= 1 && o <= n) {
        assert!(verify_consistency(other, n, &roots[other as usize], new, proof).is_err(), "{m} as {other} {n}");
    }
    let mut longer = proof.to_vec();
    longer.push(*old);
    assert!(verify_consistency(m, n, old, new, &longer).is_err(), "extra hash {m} {n}");
}

#[test]
fn proofs_that_cannot_exist_are_refused() {
    let tree: Tree = leaves().into_iter().take(10).collect();
    assert!(inclusion_proof(10, 10, &tree).is_err());
    assert!(consistency_proof(0, 5, &tree).is_err());
    assert!(consistency_proof(6, 5, &tree).is_err());
    assert!(consistency_proof(5, 11, &tree).is_err(), "the tree has only 10 leaves");
    assert_eq!(consistency_proof(0, 0, &tree).unwrap(), Vec::new());
    verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    assert!(verify_consistency(0, 0, &tree.root(), &tree.root(), &[]).is_err());
}

/// What a writer does on append: the stored hashes returned are exactly the new complete
/// subtrees, readable back by (level, index).
#[test]
fn appended_hashes_are_the_new_complete_subtrees() {
    let mut tree = Tree::new();
    for (n, leaf) in leaves().into_iter().enumerate() {
        let before = tree.clone();
        let added = appended_hashes(n as u64, leaf, &before).unwrap();
        assert_eq!(tree.push(leaf), added);
        // Leaf n completes one subtree per trailing one bit of n.
        assert_eq!(added.len() as u32, 1 + (n as u64).trailing_ones());
        for stored in added {
            assert_eq!(tree.hash(stored.level, stored.index).unwrap(), stored.hash);
            assert!(before.hash(stored.level, stored.index).is_err());
        }
    }
}

/// Roots and proofs read from tiles on disk equal those from memory, for every size a tile
/// boundary matters to; partial tiles replaced by full ones are read from the full tile.
#[test]
fn tiles_on_disk_give_the_same_roots_and_proofs() {
    let leaves: Vec<Hash> = (0..70_000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let dir = tempfile::tempdir().unwrap();
    let write = |old: u64, size: u64, tree: &Tree| {
        for tile in new_tiles(old, size) {
            let path = dir.path().join(tile.path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, tile_data(&tile, tree).unwrap()).unwrap();
        }
    };
    let sizes = [1, 2, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 70_000];
    let mut tree = Tree::new();
    let storage = DirStorage::new(dir.path());
    for size in sizes {
        let old = tree.size();
        while tree.size() < size {
            tree.push(leaves[tree.size() as usize]);
        }
        write(old, size, &tree);
        let reader = TileReader::new(&storage, size);
        assert_eq!(root(size, &reader).unwrap(), tree.root(), "root at {size}");
        for index in [0, size / 3, size - 1] {
            assert_eq!(inclusion_proof(index, size, &reader).unwrap(), inclusion_proof(index, size, &tree).unwrap());
        }
        for old in [1, size / 2, size - 1].into_iter().filter(|&o| o > 0) {
            assert_eq!(consistency_proof(old, size, &reader).unwrap(), consistency_proof(old, size, &tree).unwrap());
        }
    }
    // Older sizes still read, from the partial tiles kept or, once one is gone, from the full
    // tile that replaced it.
    std::fs::remove_file(dir.path().join("tile/0/000.p/255")).unwrap();
    for size in sizes {
        assert_eq!(root(size, &TileReader::new(&storage, size)).unwrap(), root(size, &tree).unwrap());
    }
    assert!(TileReader::new(&storage, 70_000).hash(0, 70_000).is_err(), "beyond the tree");
    assert!(TileReader::new(&storage, 70_000).hash(17, 0).is_err(), "not a complete subtree");
}

/// The C2SP example: a tree of 70 000 leaves has 273 full level-0 tiles, one partial of width
/// 112, one full level-1 tile, one partial of width 17, and one level-2 tile of width 1.
#[test]
fn tiles_of_a_tree() {
    let tiles = tiles_for_size(70_000);
    let widths = |level: u8| tiles.iter().filter(|t| t.level == level).map(|t| t.width).collect::<Vec<_>>();
    assert_eq!(widths(0).len(), 274);
    assert_eq!(widths(0).iter().filter(|&&w| w == 256).count(), 273);
    assert_eq!(widths(0).last(), Some(&112));
    assert_eq!(widths(1), [256, 17]);
    assert_eq!(widths(2), [1]);
    let tiles_256 = tiles_for_size(256);
    assert_eq!(tiles_256.iter().map(|t| (t.level, t.width)).collect::<Vec<_>>(), [(0, 256), (1, 1)]);
    assert!(tiles_for_size(0).is_empty());
    // From 256 to 300 leaves one partial level-0 tile appears; the level-1 tile keeps width 1.
    let grown: Vec<_> = new_tiles(256, 300).iter().map(|t| t.path()).collect();
    assert_eq!(grown, ["tile/0/001.p/44"]);
    let grown: Vec<_> = new_tiles(300, 512).iter().map(|t| t.path()).collect();
    assert_eq!(grown, ["tile/0/001", "tile/1/000.p/2"]);
}
