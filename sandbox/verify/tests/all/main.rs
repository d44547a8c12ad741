//! Integration tests of `sandbox-verify`: the RFC 6962 vectors, proofs for every small tree, the
//! note format against Go's published vectors, every format's parser on good, bad and random
//! input, and the binary on archives and releases built here and then tampered with.

mod annual;
mod cli;
mod formats;
mod merkle;
mod notes;
mod rfc6962;
mod robustness;

use std::path::{Path, PathBuf};

use sandbox_verify::Hash;
use sandbox_verify::audit::{LATEST, history_path};
use sandbox_verify::checkpoint::Checkpoint;
use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::merkle::{Tree, consistency_proof, inclusion_proof, leaf_hash};
use sandbox_verify::note::{Note, SignerKey};
use sandbox_verify::proof::TlogProof;
use sandbox_verify::release::{RESULTS, STATEMENT, STATEMENT_PROOF};
use sandbox_verify::tiles::{encode_bundle, new_tiles, tile_data};
use sandbox_verify::time::Timestamp;

pub(crate) const ORIGIN: &str = "log.sandbox.example/baotou";

/// A deterministic key: tests must not depend on randomness.
pub(crate) fn key(name: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(name, [seed; 32]).unwrap()
}

pub(crate) fn time(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// A log writer for tests, written only with the library's public API, as the real writer will
/// be: entries in memory, tiles and bundles and checkpoints on disk.
pub(crate) struct TestLog {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) log_key: SignerKey,
    pub(crate) release_key: SignerKey,
    pub(crate) operator: SignerKey,
    pub(crate) reviewer: SignerKey,
    pub(crate) tree: Tree,
    pub(crate) entries: Vec<Vec<u8>>,
    /// Every checkpoint note written, by size.
    pub(crate) checkpoints: Vec<Vec<u8>>,
    checkpointed: u64,
}

impl TestLog {
    pub(crate) fn new() -> TestLog {
        TestLog {
            dir: tempfile::tempdir().unwrap(),
            log_key: key(ORIGIN, 1),
            release_key: key("release.sandbox.example", 2),
            operator: key("operator.acme", 3),
            reviewer: key("reviewer.bureau", 4),
            tree: Tree::new(),
            entries: Vec::new(),
            checkpoints: Vec::new(),
            checkpointed: 0,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The trust file an evaluator would hold for this log.
    pub(crate) fn trust(&self) -> String {
        format!(
            "# test log\nlog {} 2026-01-01T00:00:00Z -\nrelease {} 2026-01-01T00:00:00Z 2030-01-01T00:00:00Z\n",
            self.log_key.verifier(),
            self.release_key.verifier()
        )
    }

    pub(crate) fn write_trust(&self) -> PathBuf {
        let path = self.path().join("trust.txt");
        std::fs::write(&path, self.trust()).unwrap();
        path
    }

    pub(crate) fn append(&mut self, entry: Vec<u8>) -> u64 {
        self.tree.push(leaf_hash(&entry));
        self.entries.push(entry);
        self.tree.size() - 1
    }

    /// An entry the log vouches for, logged unsigned.
    pub(crate) fn append_logged(&mut self, kind: &str, fields: &[(&str, &str)]) -> u64 {
        let mut builder = Entry::builder(kind, time("2026-05-01T08:00:00Z"), "bureau.admin");
        for (k, v) in fields {
            builder = builder.field(k, v);
        }
        let bytes = builder.build().unwrap().unsigned().unwrap();
        self.append(bytes)
    }

    /// The usual beginning: two principals, a submission and its approval, a run.
    pub(crate) fn append_story(&mut self) {
        let principals =
            [(self.operator.verifier().clone(), "operator"), (self.reviewer.verifier().clone(), "reviewer")];
        for (key, role) in principals {
            let (name, key) = (key.name().to_owned(), key.to_string());
            self.append_logged(kind::PRINCIPAL_REGISTERED, &[("principal", &name), ("role", role), ("key", &key)]);
        }
        let module = Hash::sha256(b"module").to_hex();
        let submitted = Entry::builder(kind::MODULE_SUBMITTED, time("2026-05-01T09:00:00Z"), "operator.acme")
            .field("module", &module)
            .field("manifest", &Hash::sha256(b"manifest").to_hex())
            .field("licence", "lic-1")
            .field("name", "population")
            .field("datasets", "persons")
            .build()
            .unwrap();
        let signed = submitted.sign(&[&self.operator]).unwrap();
        self.append(signed);
        let approved = Entry::builder(kind::MODULE_APPROVED, time("2026-05-02T09:00:00Z"), "reviewer.bureau")
            .field("module", &module)
            .build()
            .unwrap();
        let signed = approved.sign(&[&self.reviewer]).unwrap();
        self.append(signed);
        self.append_logged(kind::RUN_STARTED, &[("run", "run-1"), ("module", &module)]);
    }

    /// Fills the log with entries the log vouches for, up to `size`.
    pub(crate) fn fill(&mut self, size: u64) {
        while self.tree.size() < size {
            let n = self.tree.size().to_string();
            self.append_logged(kind::FEEDBACK, &[("feedback", &n)]);
        }
    }

    /// Writes the tiles and bundles the tree gained, then a signed checkpoint.
    pub(crate) fn checkpoint(&mut self) -> Vec<u8> {
        let size = self.tree.size();
        for tile in new_tiles(self.checkpointed, size) {
            self.write(&tile.path(), &tile_data(&tile, &self.tree).unwrap());
            if tile.level == 0 {
                let first = tile.first() as usize;
                let entries = &self.entries[first..first + usize::from(tile.width)];
                self.write(&tile.bundle_path(), &encode_bundle(entries.iter().map(Vec::as_slice)).unwrap());
            }
        }
        let note = self.sign_checkpoint(size, self.tree.root());
        self.write(&history_path(size), &note);
        self.write(LATEST, &note);
        self.checkpoints.push(note.clone());
        self.checkpointed = size;
        note
    }

    pub(crate) fn sign_checkpoint(&self, size: u64, root: Hash) -> Vec<u8> {
        let mut note = Note::new(&Checkpoint::new(ORIGIN, size, root).unwrap().to_text()).unwrap();
        note.sign(&self.log_key);
        note.to_bytes()
    }

    pub(crate) fn write(&self, path: &str, bytes: &[u8]) {
        let path = self.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub(crate) fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.path().join(path)).unwrap()
    }

    /// Logs a release of `files` and writes its bundle to `<log>/bundle`, proved in a new
    /// checkpoint. Returns the bundle's path.
    pub(crate) fn release(&mut self, files: &[(&str, &[u8])]) -> PathBuf {
        let mut builder = Entry::builder(kind::RELEASE, time("2026-05-03T10:00:00Z"), "sandbox");
        for (name, data) in files {
            builder = builder.field(&format!("result.{name}"), &Hash::sha256(data).to_hex());
        }
        for field in ["module", "manifest", "audit_report", "policy"] {
            builder = builder.field(field, &Hash::sha256(field.as_bytes()).to_hex());
        }
        let statement = builder
            .field("datasets", "persons@8f2a,enterprises@91c0")
            .field("recipient", "unit.transport-bureau")
            .field("agreement", "agreement-2026-017")
            .build()
            .unwrap()
            .sign(&[&self.release_key])
            .unwrap();
        let index = self.append(statement.clone());
        let checkpoint = self.checkpoint();
        let proof = TlogProof {
            extra: None,
            index,
            hashes: inclusion_proof(index, self.tree.size(), &self.tree).unwrap(),
            checkpoint,
        };
        let bundle = self.path().join("bundle");
        std::fs::create_dir_all(bundle.join(RESULTS)).unwrap();
        std::fs::write(bundle.join(STATEMENT), &statement).unwrap();
        std::fs::write(bundle.join(STATEMENT_PROOF), proof.to_bytes()).unwrap();
        for (name, data) in files {
            std::fs::write(bundle.join(RESULTS).join(name), data).unwrap();
        }
        bundle
    }

    /// A consistency proof between two sizes of this log, as a hash list.
    pub(crate) fn consistency(&self, old: u64, new: u64) -> String {
        sandbox_verify::proof::format_hash_list(&consistency_proof(old, new, &self.tree).unwrap())
    }
}
