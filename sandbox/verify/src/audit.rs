//! Replaying a whole log archive offline: every checkpoint, every entry, every tile.
//!
//! An archive is a c2sp.org/tlog-tiles directory plus the history of its checkpoints:
//!
//! ```text
//! <archive>/checkpoint                      the latest checkpoint
//! <archive>/checkpoints/<size, 20 digits>   every checkpoint the log signed, one per size, never changed
//! <archive>/tile/<L>/<N>[.p/<W>]            hash tiles
//! <archive>/tile/entries/<N>[.p/<W>]        entry bundles
//! ```
//!
//! The audit rebuilds the tree from the entries and compares it with every stored tile and every
//! checkpoint's root; checks every checkpoint's signature and every signed entry's (principal keys are learned
//! from the log's own `principal.registered` and `key.rotated` entries); and reports each
//! problem where it is. Two validly signed checkpoints that cannot both hold are a fork, reported
//! with both notes as evidence. It reads the archive and never changes it; other files at the
//! archive's root are not part of the log and are not looked at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::checkpoint::{self, Checkpoint};
use crate::entry::{self, Entry, SignedBy, actor_role, kind};
use crate::error::Error;
use crate::merkle::{self, Hash, HashReader, Tree};
use crate::note::{MAX_NOTE_SIZE, Note, VerifierKey};
use crate::problem::{Fork, Problem, ProblemKind, RootSource};
use crate::tiles::{
    DirStorage, MAX_BUNDLE_ENTRY, TILE_WIDTH, Tile, TilePath, TileReader, TileStorage, decode_bundle, parse_path,
    tile_hashes, tiles_for_size,
};
use crate::time::Timestamp;
use crate::trust::{Role, Trust};

/// The latest checkpoint's path.
pub const LATEST: &str = "checkpoint";

/// Where the checkpoint of tree size `size` is kept: the size zero-padded to 20 digits, so names
/// sort by size.
pub fn history_path(size: u64) -> String {
    format!("checkpoints/{size:020}")
}

/// What an audit checked, and what it found. The archive is verified when `problems` is empty.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub origin: Option<String>,
    /// The largest tree size a valid checkpoint signs.
    pub size: u64,
    /// Checkpoint files whose signature verified.
    pub checkpoints: usize,
    /// Entries read and checked.
    pub entries: u64,
    /// Tile files compared with the rebuilt tree.
    pub tiles: usize,
    pub problems: Vec<Problem>,
}

impl AuditReport {
    /// Whether the audit found nothing wrong.
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A checkpoint file whose signature verified.
struct Signed {
    path: String,
    bytes: Vec<u8>,
    checkpoint: Checkpoint,
    signers: Vec<VerifierKey>,
}

/// A principal as the log registered it.
struct Principal {
    /// `None` for principal keys from the trust file.
    role: Option<String>,
    key: VerifierKey,
    /// Between its `principal.disabled` and `principal.enabled` entries.
    disabled: bool,
}

/// An entry of a bundle not replayed (a partial bundle of an older checkpoint) that differs from
/// the entry replayed at its index.
struct Disagreement {
    path: String,
    index: u64,
    leaf: Hash,
}

/// A stored tile hash that differs from the rebuilt tree.
struct Mismatch {
    tile: Tile,
    position: u16,
    stored: Hash,
    rebuilt: Hash,
}

/// Audits the archive at `archive` against the trusted keys.
pub fn audit(archive: &Path, trust: &Trust) -> AuditReport {
    audit_visiting(archive, trust, &mut |_, _| {})
}

/// [`audit`], showing `visit` every entry in order as it is replayed (`None` for one that does
/// not parse), so a caller computes what it needs from the log in the same pass.
pub fn audit_visiting(archive: &Path, trust: &Trust, visit: &mut dyn FnMut(u64, Option<&Entry>)) -> AuditReport {
    let storage = DirStorage::new(archive);
    let mut report = AuditReport::default();
    let checkpoints = read_checkpoints(&storage, trust, &mut report);
    report.checkpoints = checkpoints.len();
    report.size = checkpoints.iter().map(|c| c.checkpoint.size()).max().unwrap_or(0);

    let mut replay = Replay::new(trust, visit);
    let used_bundles = replay.read_entries(&storage, report.size, &mut report.problems);
    report.entries = replay.tree.size();
    let disagreements = check_other_bundles(&storage, &used_bundles, &replay.tree, &mut report.problems);

    let mismatches = compare_tiles(&storage, report.size, &replay.tree, &mut report);
    let tiles_confirmed = judge(&storage, trust, &checkpoints, &replay, &mut report.problems);
    attribute(&mismatches, &disagreements, &used_bundles, tiles_confirmed, &mut report.problems);
    report
}

/// Reads `checkpoint` and `checkpoints/*`; returns those validly signed by a trusted log key.
fn read_checkpoints(storage: &DirStorage, trust: &Trust, report: &mut AuditReport) -> Vec<Signed> {
    let log_keys = trust.checkpoint_keys(None);
    let mut paths: Vec<(String, Option<u64>)> = Vec::new();
    match list_files(&storage.root().join("checkpoints"), "checkpoints") {
        Ok(files) => {
            for path in files {
                let name = &path["checkpoints/".len()..];
                match name.parse::<u64>() {
                    Ok(size) if history_path(size) == path => paths.push((path, Some(size))),
                    _ => report.problems.push(Problem::new(path, ProblemKind::Unexpected)),
                }
            }
        }
        Err(e) => report.problems.push(Problem::new("checkpoints", ProblemKind::Invalid(e))),
    }
    let mut signed: Vec<Signed> = Vec::new();
    let mut latest = None;
    for (path, named) in std::iter::once((LATEST.to_owned(), None)).chain(paths) {
        let bytes = match storage.read(&path, MAX_NOTE_SIZE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                report.problems.push(Problem::new(path, ProblemKind::Missing));
                continue;
            }
            Err(e) => {
                report.problems.push(Problem::new(path, ProblemKind::Invalid(e)));
                continue;
            }
        };
        let (checkpoint, signers) = match checkpoint::open(&bytes, &log_keys) {
            Ok(opened) => opened,
            Err(e) => {
                report.problems.push(Problem::new(path, ProblemKind::Invalid(e)));
                continue;
            }
        };
        if let Some(named) = named.filter(|&n| n != checkpoint.size()) {
            report.problems.push(Problem::new(path, ProblemKind::WrongSize { named, found: checkpoint.size() }));
            continue;
        }
        match &report.origin {
            None => report.origin = Some(checkpoint.origin().to_owned()),
            Some(origin) if origin != checkpoint.origin() => {
                let kind = ProblemKind::OtherOrigin { expected: origin.clone(), found: checkpoint.origin().to_owned() };
                report.problems.push(Problem::new(path, kind));
                continue;
            }
            Some(_) => {}
        }
        if named.is_none() {
            latest = Some(checkpoint.size());
        }
        signed.push(Signed { path, bytes, checkpoint, signers });
    }
    if let Some(latest) = latest {
        let largest = signed.iter().map(|s| s.checkpoint.size()).max().unwrap_or(0);
        if latest < largest {
            report.problems.push(Problem::new(LATEST, ProblemKind::Rollback { latest, largest }));
        }
        if !signed.iter().any(|s| s.path != LATEST && s.checkpoint.size() == latest) {
            report.problems.push(Problem::new(LATEST, ProblemKind::NotInHistory { size: latest }));
        }
    }
    signed
}

/// Entries checked together: enough to keep every core busy, few enough to hold in memory.
const BATCH: usize = 4096;

/// An entry as far as it can be checked without the entries before it.
struct Prechecked {
    leaf: Hash,
    opened: Result<(Entry, Signature), Error>,
}

/// An entry's signature check: done, or waiting for the actor's key.
enum Signature {
    Checked(Result<(), ProblemKind>),
    ByActor(Note),
}

fn precheck(trust: &Trust, bytes: &[u8]) -> Prechecked {
    let leaf = merkle::leaf_hash(bytes);
    // `open` sees to it that the kinds to sign are signed notes and that the kinds of this
    // version the log vouches for (through the checkpoints) are not.
    let opened = entry::open(bytes).map(|(entry, note)| match (note, SignedBy::of(entry.kind())) {
        (Some(note), SignedBy::Actor) => (entry, Signature::ByActor(note)),
        (Some(note), SignedBy::ReleaseKey) => {
            let checked = verify_release(trust, &note, entry.time());
            (entry, Signature::Checked(checked))
        }
        // Unsigned, or a kind of a later version whose signers this version cannot know.
        (_, _) => (entry, Signature::Checked(Ok(()))),
    });
    Prechecked { leaf, opened }
}

/// Checks that a trusted release key valid at `time` signed `note`.
fn verify_release(trust: &Trust, note: &Note, time: Timestamp) -> Result<(), ProblemKind> {
    let keys: Vec<VerifierKey> = trust.keys(Role::Release).map(|k| k.key.clone()).collect();
    let signers = note.verify(&keys).map_err(ProblemKind::Invalid)?;
    if trust.valid_at(Role::Release, time).iter().any(|k| signers.contains(&k)) {
        Ok(())
    } else {
        let key = signers.first().map(|k| k.label()).unwrap_or_default();
        Err(ProblemKind::KeyNotValid { key, time })
    }
}

/// The state rebuilt by replaying the entries in order.
struct Replay<'t> {
    trust: &'t Trust,
    visit: &'t mut dyn FnMut(u64, Option<&Entry>),
    tree: Tree,
    /// Each entry's time, where the entry parsed.
    times: Vec<Option<Timestamp>>,
    principals: HashMap<String, Principal>,
}

impl<'t> Replay<'t> {
    fn new(trust: &'t Trust, visit: &'t mut dyn FnMut(u64, Option<&Entry>)) -> Replay<'t> {
        let principals = trust
            .keys(Role::Principal)
            .map(|k| (k.key.name().to_owned(), Principal { role: None, key: k.key.clone(), disabled: false }))
            .collect();
        Replay { trust, visit, tree: Tree::new(), times: Vec::new(), principals }
    }

    /// Reads the bundles of a tree of `size` entries, checking each entry, until one is missing
    /// or unreadable. Returns the path read for each bundle index.
    fn read_entries(&mut self, storage: &DirStorage, size: u64, problems: &mut Vec<Problem>) -> BTreeMap<u64, String> {
        let mut used = BTreeMap::new();
        let mut batch = Vec::new();
        let width = u64::from(TILE_WIDTH);
        // Bundle by bundle, stopping at the first gap: a checkpoint of absurd size costs nothing.
        for index in 0..size.div_ceil(width) {
            let tile = Tile { level: 0, index, width: (size - index * width).min(width) as u16 };
            let limit = usize::from(TILE_WIDTH) * (2 + MAX_BUNDLE_ENTRY);
            let mut path = tile.bundle_path();
            let mut bundle = storage.read(&path, limit);
            if matches!(bundle, Ok(None)) && tile.width < TILE_WIDTH {
                path = tile.full().bundle_path();
                bundle = storage.read(&path, limit);
            }
            let bundle = match bundle {
                Ok(Some(bundle)) => bundle,
                Ok(None) => {
                    problems.push(Problem::new(tile.bundle_path(), ProblemKind::Missing));
                    break;
                }
                Err(e) => {
                    problems.push(Problem::new(path, ProblemKind::Invalid(e)));
                    break;
                }
            };
            let entries = match decode_bundle(&bundle) {
                Ok(entries) => entries,
                Err(e) => {
                    problems.push(Problem::new(path, ProblemKind::Invalid(e)));
                    break;
                }
            };
            let (expected, found) = (u64::from(tile.width), entries.len() as u64);
            // A full bundle standing in for a gone partial one holds more than this tree covers.
            let stand_in = path != tile.bundle_path();
            if found < expected || (found > expected && !stand_in) {
                problems.push(Problem::new(&path, ProblemKind::EntryCount { found: entries.len(), expected }));
            }
            batch.extend(entries.iter().take(tile.width.into()).map(|bytes| (path.clone(), bytes.to_vec())));
            if batch.len() >= BATCH {
                self.check_batch(&mut batch, problems);
            }
            used.insert(tile.index, path);
            if found < expected {
                break;
            }
        }
        self.check_batch(&mut batch, problems);
        used
    }

    /// Checks a batch of entries in log order. What needs only the trust file (parsing, leaf
    /// hashes, signatures by log and release keys: nearly all the work) runs on every core;
    /// what depends on the entries before (principals' keys) runs in order after.
    fn check_batch(&mut self, batch: &mut Vec<(String, Vec<u8>)>, problems: &mut Vec<Problem>) {
        let trust = self.trust;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let prechecked: Vec<Prechecked> = std::thread::scope(|scope| {
            let chunk = batch.len().div_ceil(threads).max(1);
            let workers: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|(_, bytes)| precheck(trust, bytes)).collect::<Vec<_>>())
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().expect("a precheck does not panic")).collect()
        });
        for ((bundle, _), pre) in batch.drain(..).zip(prechecked) {
            let index = self.tree.size();
            let at = format!("entry {index} ({bundle})");
            self.tree.push(pre.leaf);
            (self.visit)(index, pre.opened.as_ref().ok().map(|(entry, _)| entry));
            let (entry, signed) = match pre.opened {
                Ok(opened) => opened,
                Err(e) => {
                    self.times.push(None);
                    problems.push(Problem::new(at, ProblemKind::Invalid(e)));
                    continue;
                }
            };
            self.times.push(Some(entry.time()));
            let signed = match signed {
                Signature::Checked(result) => result,
                Signature::ByActor(note) => self.check_actor(&note, &entry),
            };
            let signed = signed.and_then(|()| match self.principals.get(entry.actor()) {
                Some(p) if p.disabled => Err(ProblemKind::DisabledActor { actor: entry.actor().to_owned() }),
                _ => Ok(()),
            });
            if let Err(kind) = signed.and_then(|()| self.register(&entry)) {
                problems.push(Problem::new(at, kind));
            }
        }
    }

    /// Checks an entry its actor must sign, with the actor's key as the log registered it.
    fn check_actor(&self, note: &Note, entry: &Entry) -> Result<(), ProblemKind> {
        let Some(principal) = self.principals.get(entry.actor()) else {
            return Err(ProblemKind::UnknownActor { actor: entry.actor().to_owned() });
        };
        if let (Some(needed), Some(role)) = (actor_role(entry.kind()), &principal.role)
            && role != needed
        {
            return Err(ProblemKind::WrongRole { actor: entry.actor().to_owned(), role: role.clone(), needed });
        }
        note.verify(std::slice::from_ref(&principal.key)).map(|_| ()).map_err(ProblemKind::Invalid)
    }

    /// Learns principal keys, and which principals are disabled, from a valid entry.
    fn register(&mut self, entry: &Entry) -> Result<(), ProblemKind> {
        let rotated = match entry.kind() {
            kind::PRINCIPAL_REGISTERED => false,
            kind::KEY_ROTATED => true,
            kind::PRINCIPAL_DISABLED | kind::PRINCIPAL_ENABLED => {
                let name = entry.get("principal").unwrap_or_default();
                let principal = self
                    .principals
                    .get_mut(name)
                    .ok_or_else(|| ProblemKind::UnknownActor { actor: name.to_owned() })?;
                principal.disabled = entry.kind() == kind::PRINCIPAL_DISABLED;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let (principal, key) = entry.principal_key().map_err(ProblemKind::Invalid)?;
        // Principals from the trust file have no role; the log registers them anew.
        let registered = self.principals.get_mut(principal).filter(|p| p.role.is_some());
        match (rotated, registered) {
            (false, Some(_)) => Err(ProblemKind::AlreadyRegistered { principal: principal.to_owned() }),
            (true, None) => Err(ProblemKind::UnknownActor { actor: principal.to_owned() }),
            (true, Some(p)) => {
                p.key = key;
                Ok(())
            }
            (false, None) => {
                let role = entry.get("role").map(str::to_owned);
                self.principals.insert(principal.to_owned(), Principal { role, key, disabled: false });
                Ok(())
            }
        }
    }
}

/// Bundles other than those replayed (partial bundles of older checkpoints) must hold the same
/// entries: returns those that differ. Anything else under `tile/entries` is unexpected.
fn check_other_bundles(
    storage: &DirStorage,
    used: &BTreeMap<u64, String>,
    tree: &Tree,
    problems: &mut Vec<Problem>,
) -> Vec<Disagreement> {
    let mut disagreements = Vec::new();
    let files = match list_files(&storage.root().join("tile/entries"), "tile/entries") {
        Ok(files) => files,
        Err(e) => {
            problems.push(Problem::new("tile/entries", ProblemKind::Invalid(e)));
            return disagreements;
        }
    };
    for path in files.into_iter().filter(|p| !used.values().any(|u| u == p)) {
        let tile = match parse_path(&path) {
            Ok(TilePath::Entries(tile)) if tile.first().saturating_add(tile.width.into()) <= tree.size() => tile,
            _ => {
                problems.push(Problem::new(path, ProblemKind::Unexpected));
                continue;
            }
        };
        let limit = usize::from(TILE_WIDTH) * (2 + MAX_BUNDLE_ENTRY);
        let leaves = storage.read(&path, limit).and_then(|bundle| {
            let bundle = bundle.unwrap_or_default();
            Ok(decode_bundle(&bundle)?.into_iter().map(merkle::leaf_hash).collect::<Vec<_>>())
        });
        match leaves {
            Err(e) => problems.push(Problem::new(path, ProblemKind::Invalid(e))),
            Ok(leaves) if leaves.len() != usize::from(tile.width) => {
                let kind = ProblemKind::EntryCount { found: leaves.len(), expected: tile.width.into() };
                problems.push(Problem::new(path, kind));
            }
            Ok(leaves) => {
                for (index, leaf) in (tile.first()..).zip(leaves) {
                    if tree.hash(0, index).ok() != Some(leaf) {
                        disagreements.push(Disagreement { path: path.clone(), index, leaf });
                    }
                }
            }
        }
    }
    disagreements
}

/// Compares every stored hash tile with the tree rebuilt from the entries, and checks that the
/// tiles the entries need are there. Tiles beyond `size` are unexpected. Returns the hashes that
/// differ.
fn compare_tiles(storage: &DirStorage, size: u64, tree: &Tree, report: &mut AuditReport) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let files = match list_files(&storage.root().join("tile"), "tile") {
        Ok(files) => files,
        Err(e) => {
            report.problems.push(Problem::new("tile", ProblemKind::Invalid(e)));
            return mismatches;
        }
    };
    let mut stored = BTreeSet::new();
    for path in files.into_iter().filter(|p| !p.starts_with("tile/entries/")) {
        let tile = match parse_path(&path) {
            Ok(TilePath::Hashes(tile)) if tile.level < 8 && tile_within(&tile, size) => tile,
            _ => {
                report.problems.push(Problem::new(path, ProblemKind::Unexpected));
                continue;
            }
        };
        stored.insert(tile);
        let hashes = storage
            .read(&path, usize::from(TILE_WIDTH) * 32)
            .and_then(|data| tile_hashes(&tile, &data.ok_or_else(|| Error::Missing { path: path.clone().into() })?));
        let hashes = match hashes {
            Ok(hashes) => hashes,
            Err(e) => {
                report.problems.push(Problem::new(path, ProblemKind::Invalid(e)));
                continue;
            }
        };
        report.tiles += 1;
        for (position, stored) in hashes.into_iter().enumerate() {
            // Hashes the entries could not rebuild (missing entries) are not compared.
            if let Ok(rebuilt) = tree.hash(tile.hash_level(), tile.first() + position as u64)
                && rebuilt != stored
            {
                mismatches.push(Mismatch { tile, position: position as u16, stored, rebuilt });
            }
        }
    }
    // The tiles the entries read call for (a tree longer than its entries is reported already).
    for tile in tiles_for_size(tree.size()) {
        if !stored.contains(&tile) && !stored.contains(&tile.full()) {
            report.problems.push(Problem::new(tile.path(), ProblemKind::Missing));
        }
    }
    mismatches
}

/// Whether a tile lies inside a tree of `size` leaves.
fn tile_within(tile: &Tile, size: u64) -> bool {
    let count = size >> tile.hash_level();
    tile.first().checked_add(u64::from(tile.width)).is_some_and(|end| end <= count)
}

/// Decides what the differences between entries, tiles and checkpoints mean, and reports them.
/// Returns how many leaves the stored tiles are confirmed for where the entries are not: the
/// largest signed checkpoint whose root the stored tiles give and the entries do not.
fn judge(
    storage: &DirStorage,
    trust: &Trust,
    checkpoints: &[Signed],
    replay: &Replay<'_>,
    problems: &mut Vec<Problem>,
) -> u64 {
    let tree = &replay.tree;
    // Same size, different roots: a fork whatever the entries say.
    let mut forked = BTreeSet::new();
    for (i, a) in checkpoints.iter().enumerate() {
        for b in &checkpoints[i + 1..] {
            if a.checkpoint.size() == b.checkpoint.size() && a.checkpoint.root() != b.checkpoint.root() {
                let fork =
                    Fork { first: a.bytes.clone(), second: b.bytes.clone(), proof: Vec::new(), root_in_second: None };
                problems.push(Problem::new(format!("{} and {}", a.path, b.path), ProblemKind::Fork(Box::new(fork))));
                forked.extend([a.path.clone(), b.path.clone()]);
            }
        }
    }
    let rebuilt_root = |size: u64| (size <= tree.size()).then(|| merkle::root(size, tree).ok()).flatten();
    // The largest checkpoint the entries agree with: it authenticates them.
    let anchor = checkpoints
        .iter()
        .filter(|c| rebuilt_root(c.checkpoint.size()).as_ref() == Some(c.checkpoint.root()))
        .max_by_key(|c| c.checkpoint.size());
    // Stored level-0 hashes a signed checkpoint confirms, where the entries say otherwise: the
    // entries were changed (or moved).
    let mut tiles_confirmed = 0;
    // `checkpoint` is judged once, as its copy in the history.
    let copy = |c: &Signed| c.path == LATEST && checkpoints.iter().any(|h| h.path != LATEST && h.bytes == c.bytes);
    for c in checkpoints.iter().filter(|c| !forked.contains(&c.path) && !copy(c)) {
        let size = c.checkpoint.size();
        // A log key retired before the newest entry a checkpoint covers cannot have signed it.
        if let Some(time) = size.checked_sub(1).and_then(|i| replay.times.get(i as usize).copied().flatten())
            && !trust.checkpoint_keys(Some(time)).iter().any(|k| c.signers.contains(k))
        {
            let key = c.signers.iter().map(VerifierKey::label).collect::<Vec<_>>().join(", ");
            problems.push(Problem::new(&c.path, ProblemKind::KeyNotValid { key, time }));
        }
        let Some(rebuilt) = rebuilt_root(size) else {
            problems.push(Problem::new(&c.path, ProblemKind::Unverifiable { size, available: tree.size() }));
            continue;
        };
        if rebuilt == *c.checkpoint.root() {
            continue;
        }
        let from_tiles = merkle::root(size, &TileReader::new(storage, size));
        if from_tiles.as_ref().ok() == Some(c.checkpoint.root()) {
            tiles_confirmed = tiles_confirmed.max(size);
            problems.push(Problem::new(&c.path, ProblemKind::RootMismatch { size, source: RootSource::Entries }));
        } else if let Some(anchor) = anchor.filter(|a| a.checkpoint.size() >= size) {
            problems.push(Problem::new(
                format!("{} and {}", c.path, anchor.path),
                ProblemKind::Fork(Box::new(fork(c, anchor, tree))),
            ));
        } else {
            problems
                .push(Problem::new(&c.path, ProblemKind::RootMismatch { size, source: RootSource::EntriesAndTiles }));
        }
    }
    tiles_confirmed
}

/// The evidence that `c` and `anchor` (whose root the entries give) cannot both hold.
fn fork(c: &Signed, anchor: &Signed, tree: &Tree) -> Fork {
    let (size, anchor_size) = (c.checkpoint.size(), anchor.checkpoint.size());
    let proof = merkle::consistency_proof(size, anchor_size, tree).unwrap_or_default();
    let root_in_second = (size < anchor_size).then(|| merkle::root(size, tree).ok()).flatten();
    Fork { first: c.bytes.clone(), second: anchor.bytes.clone(), proof, root_in_second }
}

/// Says what each difference means. Below `tiles_confirmed` leaves a signed checkpoint vouches
/// for the stored level-0 hashes, so where the entries differ from them the entries were changed
/// (or moved, when the tiles log an entry's hash at another index). Every other tile difference
/// not explained by a changed entry is a changed tile. An older bundle is wrong where it differs
/// from what the log vouches for. `bundles` are the bundles replayed, by index.
fn attribute(
    mismatches: &[Mismatch],
    disagreements: &[Disagreement],
    bundles: &BTreeMap<u64, String>,
    tiles_confirmed: u64,
    problems: &mut Vec<Problem>,
) {
    let leaf_index = |m: &Mismatch| m.tile.first() + u64::from(m.position);
    let level0 = || mismatches.iter().filter(|m| m.tile.level == 0);
    let logged_at: HashMap<Hash, u64> = level0().map(|m| (m.stored, leaf_index(m))).collect();
    // Changed entries: the leaf hash the log vouches for at their index, and the entry's.
    let changed: BTreeMap<u64, (Hash, Hash)> =
        level0().filter(|m| leaf_index(m) < tiles_confirmed).map(|m| (leaf_index(m), (m.stored, m.rebuilt))).collect();
    let entry_problem = |index: u64, leaf: &Hash| match logged_at.get(leaf) {
        Some(&logged_at) if logged_at != index => ProblemKind::EntryMoved { index, logged_at },
        _ => ProblemKind::EntryChanged { index },
    };
    // Each changed entry once, though every stored tile holding it differs.
    for (&index, (_, rebuilt)) in &changed {
        let bundle = bundles.get(&(index / u64::from(TILE_WIDTH))).map_or("?", String::as_str);
        problems.push(Problem::new(format!("entry {index} ({bundle})"), entry_problem(index, rebuilt)));
    }
    for m in mismatches {
        let (level, index) = (m.tile.hash_level(), leaf_index(m));
        if changed.range(index << level..(index + 1) << level).next().is_none() {
            problems.push(Problem::new(m.tile.path(), ProblemKind::TileChanged { position: m.position, level, index }));
        }
    }
    for d in disagreements.iter().filter(|d| changed.get(&d.index).map(|(logged, _)| logged) != Some(&d.leaf)) {
        problems.push(Problem::new(format!("entry {} ({})", d.index, d.path), entry_problem(d.index, &d.leaf)));
    }
}

/// The files under `dir`, as paths starting with `prefix`, sorted. A missing directory is empty.
fn list_files(dir: &Path, prefix: &str) -> Result<Vec<String>, Error> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), prefix.to_owned(), 0)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => continue,
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            // Tile paths are at most 10 levels deep; deeper is not a log's, and not followed.
            if entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir() && depth < 10 {
                pending.push((entry.path(), path, depth + 1));
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
