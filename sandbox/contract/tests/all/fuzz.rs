//! The fuzz targets on every build: each over its seeds (`fuzz/seeds/<target>/`, the inputs a
//! well-behaved runner and the examples give) and 3 000 deterministic mutations of them — bytes
//! flipped, cut, doubled, spliced. libFuzzer goes much further (`fuzz/`, nightly); this keeps the
//! targets compiling and their invariants true on stable.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng as StdRng;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut seeds: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(!seeds.is_empty(), "{} holds no seed", dir.display());
    seeds.sort();
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        let n = bytes.len().max(1);
        match rng.random_range(0..5) {
            0 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            1 => bytes.truncate(rng.random_range(0..n)),
            2 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = [0, 0xff, 0x7f, b'\n', b'"'][rng.random_range(0..5)];
            }
            3 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=other.len());
                bytes.truncate(rng.random_range(0..n));
                bytes.extend_from_slice(&other[cut..]);
            }
            _ => {
                let at = rng.random_range(0..n).min(bytes.len());
                let piece: Vec<u8> = bytes[at..].iter().take(64).copied().collect();
                bytes.splice(at..at, piece);
            }
        }
    }
    bytes
}

fn exercise(target: &str, body: fn(&[u8])) {
    let seeds = seeds(target);
    for seed in &seeds {
        body(seed);
    }
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..3_000 {
        body(&mutate(&mut rng, &seeds));
    }
}

#[test]
fn runner_answer() {
    // The seeds decode: the target checks their round trip, not only that nothing panics.
    for seed in seeds("runner_answer") {
        sandbox_contract::wire::RunnerAnswer::decode(&seed, 1 << 20).unwrap();
    }
    exercise("runner_answer", sandbox_contract::fuzz::runner_answer);
}

#[test]
fn manifest() {
    for seed in seeds("manifest") {
        sandbox_contract::Manifest::parse(std::str::from_utf8(&seed).unwrap()).unwrap();
    }
    exercise("manifest", sandbox_contract::fuzz::manifest);
}

#[test]
fn ipc_reader() {
    for seed in seeds("ipc_reader") {
        sandbox_contract::ipc::read_stream(&seed, 1 << 20).unwrap();
    }
    exercise("ipc_reader", sandbox_contract::fuzz::ipc_reader);
}

/// Writes the seeds of the two binary targets from what a well-behaved runner sends (run with
/// `--ignored` after the wire format changes; the manifest seeds are the examples' manifests).
#[test]
#[ignore]
fn write_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let answer = crate::wire::answer();
    let mut bytes = Vec::new();
    answer.encode(&mut bytes).unwrap();
    std::fs::write(dir.join("runner_answer/two-tables"), &bytes).unwrap();
    let failed = sandbox_contract::wire::RunnerAnswer {
        record: sandbox_contract::RunRecord {
            error: Some(sandbox_contract::RunError::Module { module: 3 }),
            ..answer.record.clone()
        },
        tables: Vec::new(),
        dev_log: Some("log".into()),
        isolated: false,
    };
    let mut bytes = Vec::new();
    failed.encode(&mut bytes).unwrap();
    std::fs::write(dir.join("runner_answer/failed"), &bytes).unwrap();
    for table in &answer.tables {
        std::fs::write(dir.join("ipc_reader").join(&table.name), &table.ipc).unwrap();
    }
}
