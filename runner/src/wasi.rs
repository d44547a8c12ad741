//! The WASI a guest's standard library expects, served with nothing real behind it.
//!
//! A Rust guest built for `wasm32-wasip2` imports the CLI, clock, random, file-system and I/O
//! interfaces whether or not it uses them. Refusing those at load would refuse every Rust guest,
//! so they are served by `wasmtime-wasi` configured to deny: no preopened directories (so no file
//! can be named), no environment or arguments, an empty stdin, clocks stuck at the Unix epoch,
//! randomness that is a fixed function of the run's seed, sockets switched off, and stdout and
//! stderr going into the run's bounded development log. Socket and HTTP interfaces are not
//! served at all: a module importing them is refused at load (see `engine.rs`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The development log: what the module wrote through `log`, stdout and stderr, plus the
/// host's explanations of refused calls. Bounded; kept only for development runs.
#[derive(Debug, Clone)]
pub struct DevLog {
    inner: Arc<Mutex<DevLogInner>>,
}

#[derive(Debug)]
struct DevLogInner {
    text: String,
    limit: usize,
    truncated: bool,
    enabled: bool,
}

impl DevLog {
    /// A log of at most `limit` bytes; a disabled log keeps nothing.
    pub(crate) fn new(limit: usize, enabled: bool) -> DevLog {
        DevLog { inner: Arc::new(Mutex::new(DevLogInner { text: String::new(), limit, truncated: false, enabled })) }
    }

    pub(crate) fn write(&self, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.enabled || inner.truncated {
            return;
        }
        let room = inner.limit - inner.text.len();
        if text.len() <= room {
            inner.text.push_str(text);
        } else {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            inner.text.push_str(&text[..cut]);
            inner.truncated = true;
        }
    }

    pub(crate) fn line(&self, tag: &str, text: &str) {
        self.write(&format!("[{tag}] {text}\n"));
    }

    /// The text, and whether some was dropped at the limit.
    pub fn contents(&self) -> (String, bool) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.text.clone(), inner.truncated)
    }
}

/// stdout or stderr of the guest, into the development log. Writes past the log's limit are
/// accepted and dropped, so a chatty module is not made to fail by its printing.
struct LogStream {
    log: DevLog,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LogStream { log: self.log.clone() })
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.log.write(&String::from_utf8_lossy(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Both clocks read zero, always: no time reaches the guest.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// Bytes that depend only on the seed and a label.
fn stream(seed: &[u8; 32], label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u64;
    while out.len() < len {
        let block = Sha256::new().chain_update(seed).chain_update(label).chain_update(counter.to_le_bytes()).finalize();
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// The WASI context of one run.
pub(crate) fn context(seed: &[u8; 32], log: &DevLog) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    let seed_bytes = stream(seed, "insecure-seed", 16);
    builder
        .stdout(LogStream { log: log.clone() })
        .stderr(LogStream { log: log.clone() })
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(Deterministic::new(stream(seed, "random", 4096)))
        .insecure_random(Deterministic::new(stream(seed, "insecure", 4096)))
        .insecure_random_seed(u128::from_le_bytes(seed_bytes.try_into().expect("16 bytes")))
        .max_random_size(1 << 20)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}
