#!/usr/bin/env python3
"""Independent check of a sandbox log and a release bundle, written from the public specs only
(RFC 6962/9162, c2sp.org/signed-note, tlog-checkpoint, tlog-tiles, tlog-proof) with Python's
hashlib and the `cryptography` package -- none of the project's Rust code.

    check_log.py --log-key VKEY --release-key VKEY [--log DIR] [--bundle DIR]

--log DIR: verifies DIR/checkpoint's signature, rebuilds the tree from every entry bundle and
           compares its root with the checkpoint's.
--bundle DIR: verifies the release statement's signature, every result file's SHA-256, the
           statement's inclusion proof and the proof's checkpoint signature.
Exit 0 when everything verifies, 1 when something does not (the reason on stderr).
"""
import argparse
import base64
import hashlib
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failed(Exception):
    pass


def verifier_key(text):
    """<name>+<hex key id>+<base64(0x01 || 32-byte key)> -> (name, key id bytes, public key)."""
    name, key_id, data = text.rsplit("+", 2)
    raw = base64.b64decode(data, validate=True)
    if len(raw) != 33 or raw[0] != 1:
        raise Failed(f"not an ed25519 verifier key: {text}")
    computed = hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4]
    if computed.hex() != key_id:
        raise Failed(f"key id {key_id} does not match the key")
    return name, computed, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(data, key):
    """The text of a signed note if `key` signed it."""
    name, key_id, public = key
    split = data.rfind(b"\n\n")
    if split < 0:
        raise Failed("not a signed note")
    text, signatures = data[: split + 1], data[split + 2 :]
    for line in signatures.decode().splitlines():
        if not line.startswith("\u2014 "):
            raise Failed(f"bad signature line {line!r}")
        signer, blob = line[2:].split(" ")
        blob = base64.b64decode(blob, validate=True)
        if signer == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text)
                return text.decode()
            except InvalidSignature:
                raise Failed(f"the signature of {name} does not verify")
    raise Failed(f"no signature by {name}")


def open_checkpoint(data, key):
    lines = open_note(data, key).split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    if origin != key[0]:
        raise Failed(f"checkpoint origin {origin} is not the log key's name")
    return size, root


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 6962 section 2.1, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise Failed("index not below tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed("inclusion proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Failed("inclusion proof does not lead to the checkpoint's root")


def tile_index_path(n):
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.insert(0, f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(parts)


def read_bundle(path):
    data = open(path, "rb").read()
    entries, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at : at + 2], "big")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if at != len(data):
        raise Failed(f"{path}: truncated bundle")
    return entries


def check_log(directory, log_key):
    size, root = open_checkpoint(open(os.path.join(directory, "checkpoint"), "rb").read(), log_key)
    leaves = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        path = os.path.join(directory, "tile", "entries", tile_index_path(n))
        if width < 256:
            path += f".p/{width}"
        entries = read_bundle(path)
        if len(entries) != width:
            raise Failed(f"{path}: {len(entries)} entries, expected {width}")
        leaves += [leaf_hash(e) for e in entries]
    if mth(leaves) != root:
        raise Failed(f"the entries give another root than the checkpoint of size {size}")
    print(f"log: {size} entries, root matches the signed checkpoint")


def check_bundle(directory, log_key, release_key):
    statement = open(os.path.join(directory, "statement"), "rb").read()
    text = open_note(statement, release_key)
    results = {}
    for line in text.split("\n")[1:]:
        key, _, value = line.partition(" ")
        if key.startswith("result."):
            results[key[len("result.") :]] = value
    files = sorted(os.listdir(os.path.join(directory, "results")))
    if sorted(results) != files:
        raise Failed(f"the statement names {sorted(results)}, the bundle holds {files}")
    for name, digest in results.items():
        data = open(os.path.join(directory, "results", name), "rb").read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise Failed(f"results/{name} does not have the SHA-256 the statement gives")
    proof = open(os.path.join(directory, "statement.tlog-proof"), "rb").read()
    head, _, checkpoint = proof.partition(b"\n\n")
    lines = head.decode().split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise Failed("not a tlog-proof")
    lines = [l for l in lines[1:] if not l.startswith("extra ")]
    index = int(lines[0][len("index ") :])
    hashes = [base64.b64decode(l, validate=True) for l in lines[1:]]
    size, root = open_checkpoint(checkpoint, log_key)
    verify_inclusion(leaf_hash(statement), index, size, hashes, root)
    print(f"release: {len(results)} result(s), statement at index {index} of {size}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-key", required=True)
    parser.add_argument("--release-key", required=True)
    parser.add_argument("--log")
    parser.add_argument("--bundle")
    args = parser.parse_args()
    try:
        log_key = verifier_key(args.log_key)
        if args.log:
            check_log(args.log, log_key)
        if args.bundle:
            check_bundle(args.bundle, log_key, verifier_key(args.release_key))
    except (Failed, OSError, ValueError) as e:
        print(f"NOT VERIFIED: {e}", file=sys.stderr)
        return 1
    print("VERIFIED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
