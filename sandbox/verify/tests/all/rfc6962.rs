//! The RFC 6962 proof vectors of transparency-dev/merkle (commit 417fb0c, Apache-2.0; see
//! `tests/data/rfc6962/README.md` and `LICENSE` there): a verifier must accept exactly the cases
//! marked `wantErr: false`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sandbox_verify::Hash;
use sandbox_verify::merkle::{Tree, empty_root, leaf_hash, verify_consistency, verify_inclusion};
use serde_json::Value;

fn cases(kind: &str) -> Vec<(PathBuf, Value)> {
    let mut cases = Vec::new();
    let mut dirs = vec![
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/data/rfc6962")
            .join(kind),
    ];
    while let Some(dir) = dirs.pop() {
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                cases.push((path, value));
            }
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

fn bytes(value: &Value) -> Vec<u8> {
    BASE64.decode(value.as_str().unwrap()).unwrap()
}

/// A hash that is hashed (a leaf, a proof node) must be 32 bytes; anything else is refused
/// when it is decoded, as `Hash::from_base64` does.
fn hashed(value: &Value) -> Option<Hash> {
    Hash::from_slice(&bytes(value))
}

/// A root is only compared. The vectors write placeholders for roots that do not matter
/// ("don't care 1", "WrongRoot", ""): each stands for a root no tree has, the same placeholder
/// for the same root. Real roots pass through.
fn root(value: &Value) -> Hash {
    let bytes = bytes(value);
    Hash::from_slice(&bytes).unwrap_or_else(|| Hash::sha256(&[b"placeholder root: ".as_slice(), &bytes].concat()))
}

fn proof(value: &Value) -> Option<Vec<Hash>> {
    value.as_array().map_or(Some(Vec::new()), |hashes| hashes.iter().map(hashed).collect())
}

#[test]
fn inclusion_vectors() {
    let cases = cases("inclusion");
    assert!(cases.len() > 50, "{}", cases.len());
    let mut accepted = 0;
    for (path, case) in cases {
        let (index, size) = (case["leafIdx"].as_u64().unwrap(), case["treeSize"].as_u64().unwrap());
        let ok = match (hashed(&case["leafHash"]), proof(&case["proof"])) {
            (Some(leaf), Some(proof)) => verify_inclusion(&leaf, index, size, &proof, &root(&case["root"])).is_ok(),
            _ => false,
        };
        assert_eq!(ok, !case["wantErr"].as_bool().unwrap(), "{}: {}", path.display(), case["desc"]);
        accepted += usize::from(ok);
    }
    assert_eq!(accepted, 6);
}

#[test]
fn consistency_vectors() {
    let cases = cases("consistency");
    assert!(cases.len() > 50, "{}", cases.len());
    let mut accepted = 0;
    for (path, case) in cases {
        let (old, new) = (case["size1"].as_u64().unwrap(), case["size2"].as_u64().unwrap());
        let ok = match proof(&case["proof"]) {
            Some(proof) => verify_consistency(old, new, &root(&case["root1"]), &root(&case["root2"]), &proof).is_ok(),
            None => false,
        };
        assert_eq!(ok, !case["wantErr"].as_bool().unwrap(), "{}: {}", path.display(), case["desc"]);
        accepted += usize::from(ok);
    }
    assert_eq!(accepted, 6);
}

/// The README's known root of the eight leaves, and of none.
#[test]
fn known_roots() {
    let leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    let tree: Tree = leaves
        .iter()
        .map(|hex| {
            let data: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            leaf_hash(&data)
        })
        .collect();
    assert_eq!(tree.root().to_hex(), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    assert_eq!(Tree::new().root(), empty_root());
    assert_eq!(empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
