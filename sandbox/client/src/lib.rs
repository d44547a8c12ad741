//! The client of `sandbox serve`: a [`Session`] as one principal (its identity folder's token
//! and signing key), the service clients, the entries a principal signs itself (submissions,
//! approvals), following a run, downloading a release bundle and verifying it.
//!
//! The CLI, the service benchmark and the tests use it; so will the portal. It holds no rule of
//! the service: everything it sends, the server checks.

use std::path::Path;

use anyhow::Context;
use sandbox_log::keys;
use sandbox_proto::v1 as pb;
use sandbox_proto::v1::{
    agreements_client::AgreementsClient, feedback_client::FeedbackClient, licences_client::LicencesClient,
    log_client::LogClient, modules_client::ModulesClient, principals_client::PrincipalsClient,
    releases_client::ReleasesClient, runs_client::RunsClient,
};
use sandbox_verify::event::Event;
use sandbox_verify::note::SignerKey;
use sandbox_verify::time::Timestamp;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A principal's credentials kept in a folder: `token` (600) and `key` (600, with `key.pub`).
#[derive(Debug)]
pub struct Identity {
    pub token: String,
    pub key: SignerKey,
}

impl Identity {
    /// Makes a new key in `dir` (which must not hold one) and keeps `token` beside it.
    pub fn create(dir: &Path, name: &str, token: &str) -> anyhow::Result<Identity> {
        let key = Identity::create_key(dir, name)?;
        keys::write_secret(&dir.join("token"), token)?;
        Ok(Identity { token: token.to_owned(), key })
    }

    /// A key made for a principal not yet registered (its token comes from the registration).
    pub fn create_key(dir: &Path, name: &str) -> anyhow::Result<SignerKey> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = keys::generate(name)?;
        keys::write_key_file(&dir.join("key"), &key)?;
        Ok(key)
    }

    /// Stores the token a registration returned.
    pub fn save_token(dir: &Path, token: &str) -> anyhow::Result<()> {
        Ok(keys::write_secret(&dir.join("token"), token)?)
    }

    /// Replaces the token in `dir` with a rotated one, atomically.
    pub fn replace_token(dir: &Path, token: &str) -> anyhow::Result<()> {
        let new = dir.join("token.new");
        match std::fs::remove_file(&new) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", new.display()));
            }
            _ => {}
        }
        keys::write_secret(&new, token)?;
        std::fs::rename(&new, dir.join("token")).with_context(|| format!("replacing {}", dir.join("token").display()))
    }

    pub fn load(dir: &Path) -> anyhow::Result<Identity> {
        let token = std::fs::read_to_string(dir.join("token"))
            .with_context(|| format!("reading {} / 无法读取令牌", dir.join("token").display()))?
            .trim()
            .to_owned();
        let key = keys::read_key_file(&dir.join("key"))?;
        Ok(Identity { token, key })
    }
}

#[derive(Clone, Debug)]
pub struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A service client calling as the session's principal.
pub type Svc = InterceptedService<Channel, Auth>;

/// A connection as one principal.
#[derive(Debug)]
pub struct Session {
    channel: Channel,
    auth: Auth,
    pub name: String,
    key: SignerKey,
}

impl Session {
    /// Connects to `server` as the principal whose identity folder is `identity`, over TLS
    /// with `tls` (for an `https://` address).
    pub async fn open(
        server: &str,
        identity: &Path,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> anyhow::Result<Session> {
        let Identity { token, key } = Identity::load(identity)?;
        // Bounded waits: a connection the server drops mid-handshake (a refused client
        // certificate) once left a call waiting for ever, with no socket and no timer. The
        // timeout runs until the answer's headers, so a long `Runs.Watch` stream is not cut.
        let mut endpoint = Channel::from_shared(server.to_owned())
            .with_context(|| format!("server address {server}"))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).context("TLS configuration / TLS 配置无效")?;
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {server} / 无法连接服务端"))?;
        let auth = Auth(format!("Bearer {token}").parse().context("token")?);
        Ok(Session { channel, auth, name: key.verifier().name().to_owned(), key })
    }

    pub fn principals(&self) -> PrincipalsClient<Svc> {
        PrincipalsClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
    pub fn licences(&self) -> LicencesClient<Svc> {
        LicencesClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
    pub fn agreements(&self) -> AgreementsClient<Svc> {
        AgreementsClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
    pub fn modules(&self) -> ModulesClient<Svc> {
        ModulesClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20)
    }
    pub fn runs(&self) -> RunsClient<Svc> {
        RunsClient::with_interceptor(self.channel.clone(), self.auth.clone()).max_decoding_message_size(64 << 20)
    }
    pub fn releases(&self) -> ReleasesClient<Svc> {
        ReleasesClient::with_interceptor(self.channel.clone(), self.auth.clone()).max_decoding_message_size(64 << 20)
    }
    pub fn log(&self) -> LogClient<Svc> {
        LogClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
    pub fn feedback(&self) -> FeedbackClient<Svc> {
        FeedbackClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    /// The entry of `event`, made now by this principal and signed with its key.
    pub fn signed(&self, event: Event) -> anyhow::Result<Vec<u8>> {
        (event.entry(Timestamp::now(), &self.name))
            .and_then(|e| e.sign(&[&self.key]))
            .map_err(|e| anyhow::anyhow!("{e} / {}", e.zh()))
    }

    pub async fn submit(&self, module: Vec<u8>, manifest: String, licence: &str) -> anyhow::Result<pb::Module> {
        let parsed = sandbox_contract::Manifest::parse(&manifest)?;
        let mut datasets = parsed.datasets.clone();
        datasets.sort();
        datasets.dedup();
        let entry = self.signed(Event::ModuleSubmitted {
            module: hex::encode(Sha256::digest(&module)),
            manifest: hex::encode(Sha256::digest(manifest.as_bytes())),
            licence: licence.to_owned(),
            name: parsed.name.clone(),
            datasets,
        })?;
        Ok(self.modules().submit(pb::SubmitModuleRequest { module, manifest, entry }).await?.into_inner())
    }

    pub async fn approve(&self, module: &str) -> anyhow::Result<pb::Module> {
        let entry = self.signed(Event::ModuleApproved { module: module.to_owned() })?;
        Ok(self.modules().approve(pb::SignedDecision { entry }).await?.into_inner())
    }

    /// Follows a run until it ends, calling `progress` at each change.
    pub async fn follow(&self, run: &str, mut progress: impl FnMut(&pb::Run)) -> anyhow::Result<pb::Run> {
        let mut stream = self.runs().watch(pb::RunRef { run: run.to_owned() }).await?.into_inner();
        let mut last = None;
        while let Some(update) = stream.message().await? {
            progress(&update);
            last = Some(update);
        }
        last.context("the server sent no state for the run")
    }

    /// Downloads a release bundle into `out` (a new folder).
    pub async fn download(&self, release: &str, out: &Path) -> anyhow::Result<pb::ReleaseBundle> {
        let bundle = self.releases().download(pb::ReleaseRef { release: release.to_owned() }).await?.into_inner();
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for file in &bundle.files {
            let path = out.join(&file.path);
            anyhow::ensure!(
                !file.path.is_empty() && !file.path.split('/').any(|p| p.is_empty() || p == "." || p == ".."),
                "the server sent a file named {:?} / 服务端返回了非法文件名",
                file.path
            );
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &file.data).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(bundle)
    }
}

/// Verifies a downloaded bundle with `sandbox-verify`'s checks against a trust file.
pub fn verify_bundle(bundle: &Path, trust: &Path) -> anyhow::Result<sandbox_verify::release::ReleaseReport> {
    let text = std::fs::read_to_string(trust).with_context(|| format!("reading {}", trust.display()))?;
    let trust = sandbox_verify::trust::Trust::parse(&text).map_err(|e| anyhow::anyhow!("{e} / {}", e.zh()))?;
    Ok(sandbox_verify::release::verify(bundle, &trust))
}
