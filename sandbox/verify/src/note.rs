//! Signed notes (c2sp.org/signed-note) with Ed25519 keys (signature type 0x01), and the key
//! strings of golang.org/x/mod/sumdb/note: `<name>+<key id>+<base64(0x01 || public key)>` for
//! verifiers, `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>` for signers.
//!
//! Parsing is bounded ([`MAX_NOTE_SIZE`], [`MAX_SIGNATURES`]). A note's text must be ignored
//! unless [`Note::verify`] accepted it. This module never generates keys: a writer brings 32
//! random bytes of its own to [`SignerKey::from_seed`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Format};

/// The signature type byte of Ed25519 in c2sp.org/signed-note.
pub const ED25519: u8 = 0x01;
/// The largest note accepted: room for 16 post-quantum cosignatures (the spec's minimum) around a
/// text of up to 16 KiB.
pub const MAX_NOTE_SIZE: usize = 128 * 1024;
/// The most signature lines accepted in one note (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The key ID: the first four bytes, big-endian, of SHA-256(name || 0x0A || 0x01 || public key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let digest = Sha256::new().chain_update(name).chain_update([b'\n', ED25519]).chain_update(public_key).finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Whether `name` can name a key: non-empty, no Unicode space, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

fn check_name(format: Format, name: &str) -> Result<(), Error> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::malformed(
            format,
            format!("key name {name:?} must be non-empty, without spaces or '+'"),
            format!("密钥名 {name:?} 不能为空，也不能含空白或 '+'"),
        ))
    }
}

/// Splits a key string's `<name>+<key id>+<base64>` (the base64 may itself contain `+`), checks
/// the name and the hex key id, and decodes `0x01 || 32 bytes`.
fn parse_key_parts(format: Format, text: &str) -> Result<(String, u32, [u8; 32]), Error> {
    let bad = |en: &str, zh: &str| Error::malformed(format, en, zh);
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <name>+<key id>+<base64 key>", "应为 <名称>+<密钥 ID>+<base64 密钥>"));
    };
    check_name(format, name)?;
    if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::malformed(
            format,
            format!("key id {id:?} is not 8 lowercase hex digits"),
            format!("密钥 ID {id:?} 不是 8 位小写十六进制数"),
        ));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| bad("key id does not parse", "密钥 ID 无法解析"))?;
    let data = BASE64.decode(data).map_err(|_| bad("key data is not base64", "密钥数据不是 base64"))?;
    match data.split_first() {
        Some((&ED25519, key)) => {
            let key = key.try_into().map_err(|_| {
                Error::malformed(
                    format,
                    format!("an Ed25519 key is 32 bytes, not {}", key.len()),
                    format!("Ed25519 密钥应为 32 字节，而不是 {} 字节", key.len()),
                )
            })?;
            Ok((name.to_owned(), id, key))
        }
        Some((alg, _)) => Err(Error::malformed(
            format,
            format!("unknown signature type 0x{alg:02x} (only 0x01, Ed25519)"),
            format!("未知的签名类型 0x{alg:02x}（只支持 0x01，Ed25519）"),
        )),
        None => Err(bad("key data is empty", "密钥数据为空")),
    }
}

fn check_key_id(format: Format, name: &str, id: u32, public_key: &[u8; 32]) -> Result<(), Error> {
    let computed = key_id(name, public_key);
    if id == computed {
        Ok(())
    } else {
        Err(Error::malformed(
            format,
            format!("key id {id:08x} does not match the key (its id is {computed:08x})"),
            format!("密钥 ID {id:08x} 与密钥不符（应为 {computed:08x}）"),
        ))
    }
}

/// A public key that verifies note signatures, under a name.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<key id>+<base64(0x01 || 32-byte public key)>`.
    pub fn parse(text: &str) -> Result<VerifierKey, Error> {
        let (name, id, public_key) = parse_key_parts(Format::VerifierKey, text)?;
        check_key_id(Format::VerifierKey, &name, id, &public_key)?;
        VerifierKey::new(&name, public_key)
    }

    /// The key `public_key` under `name`. Refuses points of small order, which no honest key is.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<VerifierKey, Error> {
        check_name(Format::VerifierKey, name)?;
        let bad = || {
            Error::malformed(
                Format::VerifierKey,
                "not a usable Ed25519 public key (not on the curve, or of small order)",
                "不是可用的 Ed25519 公钥（不在曲线上，或阶过小）",
            )
        };
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| bad())?;
        if key.is_weak() {
            return Err(bad());
        }
        Ok(VerifierKey { name: name.to_owned(), id: key_id(name, &public_key), key })
    }

    /// The key's name: a log's origin, a principal's id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id, see [`key_id`].
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The RFC 8032 encoding of the public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `name+id`, how messages refer to the key.
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// Strict RFC 8032 verification: no malleable encodings, no small-order points.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes)).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    /// The verifier key string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = vec![ED25519];
        data.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, BASE64.encode(data))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// A private key that signs notes, under a name. Its `Debug` shows only the public half.
#[derive(Clone)]
pub struct SignerKey {
    verifier: VerifierKey,
    key: SigningKey,
}

impl SignerKey {
    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`; the key id must be
    /// the one of the public key the seed derives.
    pub fn parse(text: &str) -> Result<SignerKey, Error> {
        let Some(rest) = text.strip_prefix("PRIVATE+KEY+") else {
            return Err(Error::malformed(
                Format::SignerKey,
                "must start with PRIVATE+KEY+",
                "必须以 PRIVATE+KEY+ 开头",
            ));
        };
        let (name, id, seed) = parse_key_parts(Format::SignerKey, rest)?;
        let signer = SignerKey::from_seed(&name, seed)?;
        check_key_id(Format::SignerKey, &name, id, &signer.verifier.public_key())?;
        Ok(signer)
    }

    /// The key whose RFC 8032 seed is `seed`, under `name`. The seed must be secret and random.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, Error> {
        check_name(Format::SignerKey, name)?;
        let key = SigningKey::from_bytes(&seed);
        let verifier = VerifierKey::new(name, key.verifying_key().to_bytes())?;
        Ok(SignerKey { verifier, key })
    }

    /// The matching public key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The signer key string. It holds the secret: keep it out of logs.
    pub fn encode(&self) -> String {
        let mut data = vec![ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.verifier.name, self.verifier.id, BASE64.encode(data))
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({})", self.verifier.label())
    }
}

/// One signature line of a note: `— <name> <base64(key id || signature)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub key_id: u32,
    /// The signature proper, after the key id.
    pub bytes: Vec<u8>,
}

impl Signature {
    fn line(&self) -> String {
        let mut data = self.key_id.to_be_bytes().to_vec();
        data.extend_from_slice(&self.bytes);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(data))
    }

    fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.key_id)
    }
}

/// A note: a text and its signatures, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<Signature>,
}

fn malformed_note(en: impl Into<String>, zh: impl Into<String>) -> Error {
    Error::malformed(Format::Note, en, zh)
}

/// Checks what the spec asks of a whole note and of its text: UTF-8 (already, as `&str`), no
/// control character but newline, bounded size.
fn check_characters(text: &str) -> Result<(), Error> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(Error::TooLarge { format: Format::Note, size: text.len() as u64, limit: MAX_NOTE_SIZE as u64 });
    }
    match text.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((at, c)) => Err(malformed_note(
            format!("control character {:?} at byte {at}", c),
            format!("第 {at} 字节处有控制字符 {:?}", c),
        )),
        None => Ok(()),
    }
}

impl Note {
    /// A note of `text`, without signatures yet. The text must end in a newline.
    pub fn new(text: &str) -> Result<Note, Error> {
        check_characters(text)?;
        if !text.ends_with('\n') {
            return Err(malformed_note("the text must end in a newline", "正文必须以换行结尾"));
        }
        Ok(Note { text: text.to_owned(), signatures: Vec::new() })
    }

    /// Parses a signed note: the text, a blank line, then one or more signature lines. Checks
    /// syntax only; see [`Note::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Note, Error> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(Error::TooLarge {
                format: Format::Note,
                size: bytes.len() as u64,
                limit: MAX_NOTE_SIZE as u64,
            });
        }
        let message = std::str::from_utf8(bytes).map_err(|e| {
            malformed_note(
                format!("not UTF-8 (at byte {})", e.valid_up_to()),
                format!("不是 UTF-8（第 {} 字节）", e.valid_up_to()),
            )
        })?;
        check_characters(message)?;
        // The text ends at the last blank line.
        let Some(split) = message.rfind("\n\n") else {
            return Err(malformed_note("no blank line before the signatures", "签名前没有空行"));
        };
        let (text, block) = (&message[..=split], &message[split + 2..]);
        if block.is_empty() {
            return Err(malformed_note("no signature lines", "没有签名行"));
        }
        if !block.ends_with('\n') {
            return Err(malformed_note(
                "the last signature line does not end in a newline",
                "最后一个签名行没有以换行结尾",
            ));
        }
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(malformed_note(
                format!("{} signature lines, more than {MAX_SIGNATURES}", lines.len()),
                format!("签名行有 {} 行，超过 {MAX_SIGNATURES} 行", lines.len()),
            ));
        }
        let signatures = lines.into_iter().map(parse_signature_line).collect::<Result<_, _>>()?;
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// The text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order, verified or not.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Adds the signature of `key`, replacing an earlier one by the same key.
    pub fn sign(&mut self, key: &SignerKey) {
        let signature = Signature {
            name: key.verifier.name.clone(),
            key_id: key.verifier.id,
            bytes: key.key.sign(self.text.as_bytes()).to_bytes().to_vec(),
        };
        self.signatures.retain(|s| (s.name.as_str(), s.key_id) != (signature.name.as_str(), signature.key_id));
        self.signatures.push(signature);
    }

    /// The signed note: text, blank line, signature lines. Empty signatures make no valid note.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.line());
        }
        out.into_bytes()
    }

    /// Verifies the signatures by `known` keys and returns those keys. A signature whose name and
    /// key id match no known key is ignored, as the spec requires; one that matches must verify,
    /// and appear once. At least one must verify.
    pub fn verify<'k>(&self, known: &'k [VerifierKey]) -> Result<Vec<&'k VerifierKey>, Error> {
        let mut verified: Vec<&VerifierKey> = Vec::new();
        for signature in &self.signatures {
            let Some(key) = known.iter().find(|k| k.name == signature.name && k.id == signature.key_id) else {
                continue;
            };
            if verified.iter().any(|v| v.name == key.name && v.id == key.id) {
                return Err(malformed_note(
                    format!("key {} signs twice", key.label()),
                    format!("密钥 {} 签名了两次", key.label()),
                ));
            }
            if !key.verifies(self.text.as_bytes(), &signature.bytes) {
                return Err(Error::BadSignature { key: key.label() });
            }
            verified.push(key);
        }
        if verified.is_empty() {
            return Err(Error::NotSigned { signers: self.signatures.iter().map(Signature::label).collect() });
        }
        Ok(verified)
    }
}

fn parse_signature_line(line: &str) -> Result<Signature, Error> {
    let bad = || malformed_note(format!("bad signature line {line:?}"), format!("签名行 {line:?} 格式错误"));
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(bad)?;
    let (name, data) = rest.split_once(' ').ok_or_else(bad)?;
    if !is_valid_name(name) {
        return Err(bad());
    }
    let data = BASE64.decode(data).map_err(|_| bad())?;
    if data.len() < 5 {
        return Err(bad());
    }
    Ok(Signature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
        bytes: data[4..].to_vec(),
    })
}
