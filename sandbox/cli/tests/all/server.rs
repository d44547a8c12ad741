//! `sandbox serve` end to end: the real server process on loopback, driven by the real CLI and,
//! for the authorization matrix and malformed requests, by a plain gRPC client.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandbox_proto::v1 as pb;
use sandbox_verify::time::Timestamp;
use tonic::Code;

use super::{city, sandbox, stderr, stdout};

/// A data folder with a copy of the test city as its catalog.
fn data_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("cp").arg("-r").arg(city()).arg(dir.join("catalog")).status().unwrap();
    assert!(status.success());
    dir
}

/// A `sandbox serve` process.
struct Served {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Served {
    fn start(dir: &Path, extra: &[&str]) -> Served {
        // Runs go to this binary's own `sandbox runner`, as they do by default.
        let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Served { child, url, dir: dir.to_owned() }
    }

    /// The CLI as the principal whose identity is `identities/<who>`.
    fn cli(&self, who: &str, args: &[&str]) -> Output {
        let identity = self.dir.join("identities").join(who);
        Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(args)
            .args(["--server", &self.url, "--as", identity.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// The CLI, which must succeed; its stdout.
    fn ok(&self, who: &str, args: &[&str]) -> String {
        let o = self.cli(who, args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }

    fn token(&self, who: &str) -> String {
        std::fs::read_to_string(self.dir.join("identities").join(who).join("token")).unwrap()
    }

    /// SIGTERM, and wait.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the server stopped with {status}");
    }

    /// SIGKILL: a crash.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn http_get(&self, path: &str) -> String {
        self.http_get_as(path, None)
    }

    /// A GET with `who`'s token, if any.
    fn http_get_as(&self, path: &str, who: Option<&str>) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let auth = who.map_or(String::new(), |w| format!("Authorization: Bearer {}\r\n", self.token(w).trim()));
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn in_days(days: i64) -> String {
    Timestamp(Timestamp::now().0 + days * 86_400).to_string()
}

/// Writes an example module and its manifest into `dir/<name>/`.
fn example_files(dir: &Path, name: &str) -> (String, String, String) {
    let example =
        if name == "hostile-module" { sandbox_examples::hostile() } else { sandbox_examples::find(name).unwrap() };
    let folder = dir.join("files").join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("module.wasm"), example.wasm).unwrap();
    std::fs::write(folder.join("module.toml"), example.manifest).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(example.wasm));
    let path = |f: &str| folder.join(f).to_str().unwrap().to_owned();
    (path("module.wasm"), path("module.toml"), sha)
}

/// Principals of every role, a licence on persons and an agreement; returns nothing, all is in
/// `identities/`.
fn populate(s: &Served) {
    for (name, role) in [
        ("reviewer-a", "reviewer"),
        ("reviewer-b", "reviewer"),
        ("op", "operator"),
        ("op2", "operator"),
        ("unit", "application_unit"),
        ("unit2", "application_unit"),
        ("eval", "evaluator"),
    ] {
        let out = s.dir.join("identities").join(name);
        s.ok(
            "admin",
            &["principal", "add", name, "--role", role, "--display-name", name, "--out", out.to_str().unwrap()],
        );
    }
    // The persons register's provider by its Chinese name, the enterprise register's by English.
    for (name, provider) in
        [("prov", "包头市公安局"), ("prov2", "Baotou Municipal Administration for Market Regulation")]
    {
        let out = s.dir.join("identities").join(name);
        let args = ["principal", "add", name, "--role", "provider", "--display-name", name, "--provider", provider];
        s.ok("admin", &[&args[..], &["--out", out.to_str().unwrap()]].concat());
    }
    let until = in_days(30);
    s.ok(
        "admin",
        &[
            "licence",
            "grant",
            "lic",
            "--operator",
            "op",
            "--datasets",
            "persons",
            "--purpose",
            "测试 test",
            "--until",
            &until,
        ],
    );
    // The persons register is shared on conditions: in effect once its provider consents.
    s.ok("prov", &["licence", "consent", "lic", "--dataset", "persons"]);
    s.ok(
        "op",
        &[
            "agreement",
            "create",
            "agr",
            "--licence",
            "lic",
            "--unit",
            "unit",
            "--scenario",
            "测试 test",
            "--until",
            &until,
        ],
    );
}

/// Submits an example under `lic` and has both reviewers approve it; its SHA-256.
fn approved(s: &Served, name: &str) -> String {
    let (wasm, toml, sha) = example_files(&s.dir, name);
    let out = s.ok("op", &["module", "submit", "--module", &wasm, "--manifest", &toml, "--licence", "lic"]);
    assert!(out.contains(&sha) && out.contains("0/2"), "{out}");
    let out = s.ok("reviewer-a", &["module", "approve", &sha]);
    assert!(out.contains("1/2") && out.contains("submitted"), "one reviewer is not enough for important data: {out}");
    let out = s.ok("reviewer-b", &["module", "approve", &sha]);
    assert!(out.contains("2/2") && out.contains("approved"), "{out}");
    sha
}

/// Whether gRPC reflection, v1 and v1alpha, lists the Runs service.
fn reflected_services(url: &str) -> (bool, bool) {
    use tokio_stream::StreamExt as _;
    macro_rules! lists_runs {
        ($version:ident) => {{
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            };
            let channel = tonic::transport::Channel::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = ServerReflectionClient::new(channel);
            let mut answers = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
            match answers.next().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.iter().any(|s| s.name == "sandbox.v1.Runs")
                }
                other => panic!("{other:?}"),
            }
        }};
    }
    block_on(async { (lists_runs!(v1), lists_runs!(v1alpha)) })
}

fn rebuild_equals_live(dir: &Path) {
    let o = sandbox(&["state", "rebuild", "--data-dir", dir.to_str().unwrap(), "--check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("identical"), "{}", stdout(&o));
}

#[test]
fn the_whole_flow_through_the_cli() {
    let dir = data_dir("flow");
    let s = Served::start(&dir, &[]);
    assert!(s.http_get("/healthz").contains("200 OK"));
    block_on(async {
        let channel = tonic::transport::Channel::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(answer.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    });
    assert_eq!(reflected_services(&s.url), (true, true), "reflection v1 and v1alpha list the services");
    populate(&s);
    let sha = approved(&s, "population");
    // Approved, the module is compiled into the cache by a process that runs nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cached = || {
        std::fs::read_dir(dir.join("cache"))
            .is_ok_and(|mut d| d.any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&sha)))
    };
    while !cached() {
        assert!(Instant::now() < deadline, "module {sha} was never compiled into the cache");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A development run answers its operator in full, from the twins, and is logged.
    let dev = ["run", "--dev", "--module", &sha, "--param", "reference_date=2024-12-31"];
    let out = s.ok("op", &dev);
    assert!(out.contains("table population") && out.contains("[query] SELECT district"), "{out}");
    // Another operator's module is answered as a missing one: nothing tells it exists.
    let o = s.cli("op2", &dev);
    assert!(!o.status.success() && stderr(&o).contains("NotFound"), "{}", stderr(&o));

    // The operator runs it; the CLI follows the run and prints the audit report only.
    let o = s.cli("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("queued") && err.contains("released"), "progress is shown: {err}");
    assert!(out.contains("Output audit report") && out.contains(release_id(&s, 1).as_str()), "{out}");
    assert!(!out.contains("[query]"), "no development log leaves a production run: {out}");

    // Only the agreement's application unit gets it, and it verifies.
    let trust = dir.join("keys/trust");
    let bundle = dir.join("got");
    let rel = release_id(&s, 1);
    let args = [
        "release",
        "get",
        rel.as_str(),
        "--out",
        bundle.to_str().unwrap(),
        "--verify",
        "--trust",
        trust.to_str().unwrap(),
    ];
    let out = s.ok("unit", &args);
    assert!(out.contains("verified"), "{out}");
    let csv = std::fs::read_to_string(bundle.join("results/population.csv")).unwrap();
    assert!(csv.starts_with("district,age_band,gender,"), "{csv}");
    // Only what the signed statement names is delivered: files planted in the release's folder
    // stay there.
    let folder = dir.join("releases").join(&rel);
    std::fs::write(folder.join("planted.txt"), "x").unwrap();
    std::fs::write(folder.join("results/extra.csv"), "a\n1\n").unwrap();
    let again = dir.join("got-again");
    s.ok("unit", &["release", "get", &rel, "--out", again.to_str().unwrap()]);
    assert!(!again.join("planted.txt").exists() && !again.join("results/extra.csv").exists());
    assert!(again.join("results/population.csv").exists());
    let other = dir.join("stolen");
    let o = s.cli("unit2", &["release", "get", release_id(&s, 1).as_str(), "--out", other.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("NotFound"), "{}", stderr(&o));
    assert!(!other.join("results").exists());
    let o = s.cli("op", &["release", "get", release_id(&s, 1).as_str(), "--out", other.to_str().unwrap()]);
    assert!(!o.status.success(), "the operator does not receive results");

    let out = s.ok(
        "unit",
        &["feedback", "submit", release_id(&s, 1).as_str(), "--rating", "4", "--comment", "口径清楚 clear"],
    );
    assert!(out.contains("fb-"), "{out}");
    assert!(s.ok("op", &["feedback", "list"]).contains("口径清楚"));
    assert!(s.ok("op", &["runs", "list"]).contains(run_id(&s, 1).as_str()));
    assert!(!s.ok("op2", &["runs", "list"]).contains(run_id(&s, 1).as_str()), "an operator sees only its own runs");
    let json = s.ok("op", &["module", "list", "--json"]);
    let modules: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(modules[0]["approvals"], serde_json::json!(["reviewer-a", "reviewer-b"]));

    // A suspension stops new runs at once, and the attempt is logged; nothing more is delivered.
    s.ok("admin", &["licence", "suspend", "lic", "--reason", "整改 rectification"]);
    let o = s.cli("op", &["run", "--module", &sha, "--agreement", "agr"]);
    assert!(!o.status.success() && stderr(&o).contains("suspended"), "{}", stderr(&o));
    let o = s.cli("unit", &["release", "get", release_id(&s, 1).as_str(), "--out", other.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("suspended"), "{}", stderr(&o));
    let o = s.cli("op", &dev);
    assert!(!o.status.success() && stderr(&o).contains("suspended"), "so do development runs: {}", stderr(&o));
    // The counts move as other operators' runs end: for administrators only.
    for who in [None, Some("op"), Some("eval")] {
        assert!(s.http_get_as("/metrics", who).contains("401 Unauthorized"), "{who:?}");
    }
    let metrics = s.http_get_as("/metrics", Some("admin"));
    assert!(metrics.contains("sandbox_calls_total{method=\"Runs.Start\",code=\"FailedPrecondition\"} 1"), "{metrics}");
    assert!(metrics.contains("sandbox_runs_ended_total{status=\"released\"} 1"), "{metrics}");
    s.ok("admin", &["licence", "resume", "lic"]);
    let kinds = log_kinds(&s);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("request.refused"), 6, "three downloads, a foreign and two suspended runs: {kinds:?}");
    assert_eq!(count("run.developed"), 1, "{kinds:?}");
    assert_eq!((count("release"), count("delivery"), count("feedback")), (1, 2, 1), "{kinds:?}");

    // The bureau files the year's operation report; the evaluator gets it, nobody else does.
    let year = sandbox_verify::annual::year_of(Timestamp::now()).to_string();
    let filed = s.ok("admin", &["report", "file", "--year", &year]);
    let annual = dir.join("annual.txt");
    s.ok("eval", &["report", "get", "--year", &year, "--out", annual.to_str().unwrap()]);
    let text = std::fs::read_to_string(&annual).unwrap();
    assert_eq!(filed, text);
    for line in [
        "  op\n",
        "    开发运行（合成数据）/ development runs (synthetic twins): 1\n",
        "    发布 / releases: 1\n",
        "    平均评分 / mean rating: 4.00\n",
        "    被拒绝的请求 / refused requests: 3\n",
        "  operator Runs.Develop NotFound: 1\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // The history later audits compare with, as the release entry stated it.
    let (cells, tables) = sandbox_audit::history::size(&dir.join("audit/history.jsonl")).unwrap();
    assert!(cells > 0 && tables > 0, "{cells} {tables}");
    for line in [
        format!("  已发布单元格 / released cells: {cells}（本年新增 / this year +{cells}）\n"),
        format!("  已发布表 / released tables: {tables}（本年新增 / this year +{tables}）\n"),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    let o = s.cli("op", &["report", "get", "--year", &year]);
    assert!(stderr(&o).contains("PermissionDenied"), "{}", stderr(&o));

    // The log as an operator and an application unit read it: their own entries, the others
    // empty in their places; the evaluator reads every entry.
    let all = log_bytes(&s, "eval");
    for (who, other) in [("op", "op2"), ("unit", "unit2")] {
        let seen = log_bytes(&s, who);
        assert_eq!(seen.len(), all.len());
        let mut own = 0;
        for (mine, full) in seen.iter().zip(&all) {
            let entry = sandbox_verify::entry::open(full).unwrap().0;
            if mine.is_empty() {
                assert!(entry.actor() != who, "{who} sees its own entries: {entry:?}");
                continue;
            }
            assert_eq!(mine, full);
            assert!(entry.actor() != other && entry.get("principal") != Some(other), "{who} sees {other}'s: {entry:?}");
            own += 1;
        }
        assert!(own > 3 && own < all.len(), "{who}: {own} of {}", all.len());
    }
    let o = s.cli("admin", &["report", "file", "--year", "2999"]);
    assert!(stderr(&o).contains("has not begun"), "{}", stderr(&o));
    s.stop();

    rebuild_equals_live(&dir);
    let trust = sandbox_verify::trust::Trust::parse(&std::fs::read_to_string(&trust).unwrap()).unwrap();
    let report = sandbox_verify::audit::audit(&dir.join("log"), &trust);
    assert!(report.verified(), "{:?}", report.problems);
    let check = sandbox_verify::annual::verify(&dir.join("log"), "annual.txt", &text, &trust).unwrap();
    assert!(check.problems.is_empty() && check.filed.is_some(), "{:?}", check.problems);
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

type Svc = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// Every service's client, calling with `token` (none if empty).
struct Clients {
    principals: pb::principals_client::PrincipalsClient<Svc>,
    catalog: pb::catalog_client::CatalogClient<Svc>,
    licences: pb::licences_client::LicencesClient<Svc>,
    agreements: pb::agreements_client::AgreementsClient<Svc>,
    modules: pb::modules_client::ModulesClient<Svc>,
    runs: pb::runs_client::RunsClient<Svc>,
    releases: pb::releases_client::ReleasesClient<Svc>,
    log: pb::log_client::LogClient<Svc>,
    feedback: pb::feedback_client::FeedbackClient<Svc>,
}

fn client(url: &str, token: &str) -> Clients {
    let channel = tonic::transport::Channel::from_shared(url.to_owned()).unwrap().connect_lazy();
    let bearer = Bearer((!token.is_empty()).then(|| format!("Bearer {token}").parse().unwrap()));
    let c = || channel.clone();
    let b = || bearer.clone();
    Clients {
        principals: pb::principals_client::PrincipalsClient::with_interceptor(c(), b()),
        catalog: pb::catalog_client::CatalogClient::with_interceptor(c(), b()),
        licences: pb::licences_client::LicencesClient::with_interceptor(c(), b()),
        agreements: pb::agreements_client::AgreementsClient::with_interceptor(c(), b()),
        modules: pb::modules_client::ModulesClient::with_interceptor(c(), b()),
        runs: pb::runs_client::RunsClient::with_interceptor(c(), b()),
        releases: pb::releases_client::ReleasesClient::with_interceptor(c(), b()),
        log: pb::log_client::LogClient::with_interceptor(c(), b()),
        feedback: pb::feedback_client::FeedbackClient::with_interceptor(c(), b()),
    }
}

/// Calls `rpc` with an empty (default) request; the status code it ends with.
async fn call(c: &mut Clients, rpc: &str) -> Code {
    fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
        r.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    match rpc {
        "Principals.Register" => code(c.principals.register(pb::RegisterPrincipalRequest::default()).await),
        "Principals.List" => code(c.principals.list(pb::Empty {}).await),
        "Principals.Whoami" => code(c.principals.whoami(pb::Empty {}).await),
        "Principals.Disable" => code(c.principals.disable(pb::PrincipalAction::default()).await),
        "Principals.Enable" => code(c.principals.enable(pb::PrincipalAction::default()).await),
        "Principals.RotateToken" => code(c.principals.rotate_token(pb::PrincipalAction::default()).await),
        "Principals.RevokeToken" => code(c.principals.revoke_token(pb::PrincipalAction::default()).await),
        "Catalog.ListDatasets" => code(c.catalog.list_datasets(pb::Empty {}).await),
        "Licences.Grant" => code(c.licences.grant(pb::GrantLicenceRequest::default()).await),
        "Licences.Suspend" => code(c.licences.suspend(pb::LicenceActionRequest::default()).await),
        "Licences.Resume" => code(c.licences.resume(pb::LicenceActionRequest::default()).await),
        "Licences.Revoke" => code(c.licences.revoke(pb::LicenceActionRequest::default()).await),
        "Licences.List" => code(c.licences.list(pb::Empty {}).await),
        "Licences.Consent" => code(c.licences.consent(pb::SignedConsent::default()).await),
        "Licences.ReportIncident" => code(c.licences.report_incident(pb::IncidentReport::default()).await),
        "Licences.IncidentMeasure" => code(c.licences.incident_measure(pb::IncidentMeasureRequest::default()).await),
        "Licences.CloseIncident" => code(c.licences.close_incident(pb::CloseIncidentRequest::default()).await),
        "Licences.ListIncidents" => code(c.licences.list_incidents(pb::Empty {}).await),
        "Feedback.RateOperator" => code(c.feedback.rate_operator(pb::OperatorRating::default()).await),
        "Feedback.ListRatings" => code(c.feedback.list_ratings(pb::Empty {}).await),
        "Agreements.Create" => code(c.agreements.create(pb::CreateAgreementRequest::default()).await),
        "Agreements.End" => code(c.agreements.end(pb::AgreementActionRequest::default()).await),
        "Agreements.List" => code(c.agreements.list(pb::Empty {}).await),
        "Modules.Submit" => code(c.modules.submit(pb::SubmitModuleRequest::default()).await),
        "Modules.Approve" => code(c.modules.approve(pb::SignedDecision::default()).await),
        "Modules.Reject" => code(c.modules.reject(pb::SignedDecision::default()).await),
        "Modules.Revoke" => code(c.modules.revoke(pb::RevokeModuleRequest::default()).await),
        "Modules.List" => code(c.modules.list(pb::Empty {}).await),
        "Modules.Download" => code(c.modules.download(pb::ModuleRef::default()).await),
        "Runs.Start" => code(c.runs.start(pb::StartRunRequest::default()).await),
        "Runs.Develop" => code(c.runs.develop(pb::DevelopRequest::default()).await),
        "Runs.Cancel" => code(c.runs.cancel(pb::RunRef::default()).await),
        "Runs.Get" => code(c.runs.get(pb::RunRef::default()).await),
        "Runs.Watch" => code(c.runs.watch(pb::RunRef::default()).await),
        "Runs.List" => code(c.runs.list(pb::Empty {}).await),
        "Runs.ApproveOutput" => code(c.runs.approve_output(pb::SignedDecision::default()).await),
        "Runs.RejectOutput" => code(c.runs.reject_output(pb::SignedDecision::default()).await),
        "Runs.GetInternalReport" => code(c.runs.get_internal_report(pb::RunRef::default()).await),
        "Releases.List" => code(c.releases.list(pb::Empty {}).await),
        "Releases.Download" => code(c.releases.download(pb::ReleaseRef::default()).await),
        "Log.Checkpoint" => code(c.log.checkpoint(pb::Empty {}).await),
        "Log.Entries" => code(c.log.entries(pb::EntriesRequest::default()).await),
        "Log.InclusionProof" => code(c.log.inclusion_proof(pb::IndexRequest::default()).await),
        "Log.ConsistencyProof" => code(c.log.consistency_proof(pb::ConsistencyRequest::default()).await),
        "Log.FileReport" => code(c.log.file_report(pb::ReportRequest::default()).await),
        "Log.GetReport" => code(c.log.get_report(pb::ReportRequest::default()).await),
        "Feedback.Submit" => code(c.feedback.submit(pb::FeedbackRequest::default()).await),
        "Feedback.List" => code(c.feedback.list(pb::Empty {}).await),
        other => panic!("the matrix names {other}, which this test cannot call"),
    }
}

/// Every RPC × every role (and no token): refused with PermissionDenied exactly where the
/// matrix says, each refusal one `request.refused` entry; allowed calls get past the role check
/// (empty requests then fail their own checks: invalid, not found, out of range, or pass).
#[test]
fn authorization_matrix() {
    use sandbox_server::auth::{MATRIX, Role};
    let dir = data_dir("matrix");
    // Every refusal here is one entry: no principal reaches its allowance per minute.
    let s = Served::start(&dir, &["--refusals-per-minute", "1000"]);
    populate(&s);
    let names = [
        (Role::Admin, "admin"),
        (Role::Reviewer, "reviewer-a"),
        (Role::Operator, "op"),
        (Role::ApplicationUnit, "unit"),
        (Role::Evaluator, "eval"),
        (Role::Provider, "prov"),
    ];
    let eval = s.token("eval");
    let state_before = dump(&s).1;
    let mut cases = 0;
    block_on(async {
        let size = || async { client(&s.url, &eval).log.checkpoint(pb::Empty {}).await.unwrap().into_inner().size };
        for (rpc, roles) in MATRIX {
            for (role, name) in names {
                let before = size().await;
                let code = call(&mut client(&s.url, &s.token(name)), rpc).await;
                let after = size().await;
                if roles.contains(&role) {
                    assert!(
                        !matches!(
                            code,
                            Code::PermissionDenied | Code::Unauthenticated | Code::Unimplemented | Code::Internal
                        ),
                        "{rpc} as {role:?}: {code:?}"
                    );
                    // An empty request either reads, or is refused for its content: one entry.
                    let logged = if code == Code::Ok { 0 } else { 1 };
                    assert_eq!(after, before + logged, "{rpc} as {role:?}: {code:?}");
                } else {
                    assert_eq!(code, Code::PermissionDenied, "{rpc} as {role:?}");
                    assert_eq!(after, before + 1, "{rpc} as {role:?}: one refusal entry");
                }
                cases += 1;
            }
            let before = size().await;
            assert_eq!(call(&mut client(&s.url, ""), rpc).await, Code::Unauthenticated, "{rpc} without a token");
            assert_eq!(call(&mut client(&s.url, "00"), rpc).await, Code::Unauthenticated, "{rpc} with a bad token");
            assert_eq!(size().await, before, "unauthenticated calls leave no entry");
            cases += 2;
        }
    });
    assert!(cases >= 100, "{cases} cases");
    assert_eq!(dump(&s).1, state_before, "no empty or refused request changed any state");
    s.stop();
    rebuild_equals_live(&dir);
}

/// Waits until `run` shows `status` to its operator.
fn wait_for(s: &Served, run: &str, status: &str) -> String {
    wait_for_as(s, "op", run, status)
}

/// Waits until `run` shows `status` to `who`.
fn wait_for_as(s: &Served, who: &str, run: &str, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = s.ok(who, &["runs", "show", run]);
        if out.contains(status) {
            return out;
        }
        assert!(Instant::now() < deadline, "{run} never became {status}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server killed while a run is under way: on restart the run ends as failed
/// (`interrupted`), everything acknowledged before is there, and the projection is the log's.
/// A release whose statement was logged but whose folder a stop cut off is completed.
#[test]
fn a_crash_mid_run_fails_the_run_and_loses_nothing() {
    let dir = data_dir("restart");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let population = approved(&s, "population");
    s.ok("op", &["run", "--module", &population, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    let sha = approved(&s, "hostile-module");
    let args = ["run", "--module", &sha, "--agreement", "agr", "--param", "attack=loop", "--no-wait"];
    let out = s.ok("op", &args);
    let (run, rel) = (run_id(&s, 2), release_id(&s, 1));
    assert!(out.contains(&run), "{out}");
    wait_for(&s, &run, "running");
    s.crash();
    // What a stop between a release's append and its folder leaves: the results and the
    // statement in the partial folder, no proof. And a partial folder never appended.
    let releases = dir.join("releases");
    let partial = releases.join(format!("{rel}.partial"));
    std::fs::rename(releases.join(&rel), &partial).unwrap();
    std::fs::remove_file(partial.join("statement.tlog-proof")).unwrap();
    std::fs::create_dir(releases.join("rel-999999.partial")).unwrap();

    let s = Served::start(&dir, &[]);
    let out = s.ok("op", &["runs", "show", &run]);
    assert!(out.contains("failed") && out.contains("interrupted"), "{out}");
    assert!(s.ok("op", &["module", "list"]).contains("approved"), "acknowledged approvals survive");
    assert!(s.ok("unit", &["agreement", "list"]).contains("agr"));
    let names: Vec<_> = std::fs::read_dir(&releases).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [rel.as_str()], "the release is complete and the stray partial folder gone");
    let (bundle, trust) = (dir.join("got"), dir.join("keys/trust"));
    let get = ["release", "get", rel.as_str(), "--out", bundle.to_str().unwrap(), "--verify", "--trust"];
    let out = s.ok("unit", &[&get[..], &[trust.to_str().unwrap()]].concat());
    assert!(out.contains("verified"), "{out}");
    s.stop();
    rebuild_equals_live(&dir);
}

/// The run timeout kills the runner; a cancelled run ends as cancelled; neither releases.
#[test]
fn runs_time_out_and_are_cancelled() {
    let dir = data_dir("limits");
    let s = Served::start(&dir, &["--run-timeout", "2", "--max-runs", "1"]);
    populate(&s);
    let sha = approved(&s, "hostile-module");
    let o = s.cli("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "attack=loop"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("limits"), "a run past its time fails on limits: {}", stdout(&o));

    // With one runner slot, the second run waits in the queue behind the first.
    let start = ["run", "--module", &sha, "--agreement", "agr", "--param", "attack=loop", "--no-wait"];
    s.ok("op", &start);
    s.ok("op", &start);
    wait_for(&s, run_id(&s, 2).as_str(), "running");
    assert!(s.ok("op", &["runs", "show", run_id(&s, 3).as_str()]).contains("queued"));
    assert!(s.ok("op", &["runs", "cancel", run_id(&s, 3).as_str()]).contains("cancelled"));
    assert!(s.ok("op", &["runs", "cancel", run_id(&s, 2).as_str()]).contains("cancelled"));
    let o = s.cli("op2", &["runs", "cancel", run_id(&s, 2).as_str()]);
    assert!(stderr(&o).contains("NotFound"), "another operator's run, as a missing one: {}", stderr(&o));
    assert!(s.ok("unit", &["release", "list"]).lines().all(|l| !l.contains("run-0")));
    s.stop();
    rebuild_equals_live(&dir);
}

/// On a server with one runner slot: run-000001, a module looping until its timeout, holds it;
/// run-000002, the population module, waits in the queue behind it.
fn queue_behind_a_loop(s: &Served) -> String {
    populate(s);
    let hostile = approved(s, "hostile-module");
    let honest = approved(s, "population");
    s.ok("op", &["run", "--module", &hostile, "--agreement", "agr", "--param", "attack=loop", "--no-wait"]);
    wait_for(s, run_id(s, 1).as_str(), "running");
    let queued =
        ["run", "--module", &honest, "--agreement", "agr", "--param", "reference_date=2024-12-31", "--no-wait"];
    s.ok("op", &queued);
    assert!(s.ok("op", &["runs", "show", run_id(s, 2).as_str()]).contains("queued"));
    honest
}

/// A run queued before an incident is reported does not start while the incident blocks the
/// licence (red team: only new `run` calls were refused, and a queued run was released).
#[test]
fn an_incident_stops_runs_already_queued() {
    let dir = data_dir("incident-queued");
    let s = Served::start(&dir, &["--run-timeout", "3", "--max-runs", "1"]);
    queue_behind_a_loop(&s);
    let args = ["incident", "report", "--licence", "lic", "--category", "misuse", "--description", "异常调用 misuse"];
    s.ok("unit", &args);
    wait_for(&s, run_id(&s, 2).as_str(), "withheld");
    let entries = log_entries(&s);
    let ended = (entries.iter())
        .find(|e| e.kind() == "run.finished" && e.get("run") == Some(run_id(&s, 2).as_str()))
        .expect("the end of the queued run is logged");
    assert_eq!((ended.get("status"), ended.get("stopped")), (Some("withheld"), Some("incident")));
    assert!(!entries.iter().any(|e| e.kind() == "release"), "nothing is released");
    s.stop();
    rebuild_equals_live(&dir);
}

/// Replaces the real persons file of `dir`'s catalog with another city's (another seed).
fn replace_persons(dir: &Path) {
    let other = dir.join("other-city");
    let args = ["datagen", "--scale", "2000", "--seed", "6", "--twin-scale", "200", "--out", other.to_str().unwrap()];
    let o = sandbox(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(other.join("data/persons.parquet"), dir.join("catalog/data/persons.parquet")).unwrap();
}

#[test]
fn a_suspension_stops_runs_already_queued() {
    // One runner slot, held by a module that loops until its timeout; a run queued behind it,
    // then the licence suspended: the queued run never starts, ends withheld with the reason
    // logged, and nothing of it is released.
    let dir = data_dir("stopped");
    let s = Served::start(&dir, &["--run-timeout", "3", "--max-runs", "1"]);
    queue_behind_a_loop(&s);
    s.ok("admin", &["licence", "suspend", "lic", "--reason", "整改 rectification"]);
    wait_for(&s, run_id(&s, 2).as_str(), "withheld");
    let entries = log_entries(&s);
    let ended = (entries.iter())
        .find(|e| e.kind() == "run.finished" && e.get("run") == Some(run_id(&s, 2).as_str()))
        .expect("the end of the queued run is logged");
    assert_eq!((ended.get("status"), ended.get("stopped")), (Some("withheld"), Some("licence")));
    assert!(!entries.iter().any(|e| e.kind() == "run.started" && e.get("run") == Some(run_id(&s, 2).as_str())));
    assert!(!entries.iter().any(|e| e.kind() == "release"), "nothing is released");
    s.stop();
    rebuild_equals_live(&dir);
}

/// `op`'s development run of the `hostile` module looping until its timeout, with `act` done two
/// seconds into it; the run's CLI output.
fn during_a_development_loop(s: &Served, hostile: &str, act: impl FnOnce()) -> Output {
    std::thread::scope(|scope| {
        let running = scope.spawn(|| s.cli("op", &["run", "--dev", "--module", hostile, "--param", "attack=loop"]));
        std::thread::sleep(Duration::from_secs(2));
        act();
        running.join().unwrap()
    })
}

/// A principal disabled, or whose token is revoked, while its call is under way acts no more:
/// the entry its call would end with is refused under the write lock (red team round 7: a development run finished, its
/// output answered, for an operator disabled while it ran).
#[test]
fn a_principal_disabled_mid_call_gets_nothing_more() {
    let dir = data_dir("disabled-mid-call");
    let s = Served::start(&dir, &["--run-timeout", "4"]);
    populate(&s);
    let hostile = approved(&s, "hostile-module");
    let dev = during_a_development_loop(&s, &hostile, || {
        s.ok("admin", &["principal", "disable", "op", "--reason", "违规 misuse"]);
    });
    assert!(!dev.status.success() && stderr(&dev).contains("disabled"), "{}{}", stdout(&dev), stderr(&dev));
    let kinds = log_kinds(&s);
    let disabled = kinds.iter().position(|k| k == "principal.disabled").unwrap();
    assert!(!kinds[disabled..].iter().any(|k| k == "run.developed"), "{kinds:?}");

    // The same with the token revoked while the run goes on.
    s.ok("admin", &["principal", "enable", "op"]);
    let dev = during_a_development_loop(&s, &hostile, || {
        s.ok("admin", &["principal", "token", "revoke", "op", "--reason", "泄露 leaked"]);
    });
    assert!(!dev.status.success() && stderr(&dev).contains("disabled"), "{}{}", stdout(&dev), stderr(&dev));
    let kinds = log_kinds(&s);
    let revoked = kinds.iter().position(|k| k == "token.revoked").unwrap();
    assert!(!kinds[revoked..].iter().any(|k| k == "run.developed"), "{kinds:?}");
    s.stop();
    rebuild_equals_live(&dir);
}

/// A module revoked while its development run goes on answers nothing of it: the run is logged
/// as stopped. Red team round 8.
#[test]
fn a_module_revoked_mid_run_answers_nothing() {
    let dir = data_dir("revoked-mid-run");
    let s = Served::start(&dir, &["--run-timeout", "4"]);
    populate(&s);
    let hostile = approved(&s, "hostile-module");
    let dev = during_a_development_loop(&s, &hostile, || {
        s.ok("admin", &["module", "revoke", &hostile, "--reason", "越权 overreach"]);
    });
    assert!(!dev.status.success() && stderr(&dev).contains("withdrawn"), "{}{}", stdout(&dev), stderr(&dev));
    let developed = log_entries(&s).into_iter().rfind(|e| e.kind() == "run.developed").unwrap();
    assert_eq!(developed.get("outcome"), Some("stopped:module"));
    s.stop();
    rebuild_equals_live(&dir);
}

/// Releases made before their module is revoked are delivered no more. Red team round 8.
#[test]
fn a_revoked_module_delivers_nothing_more() {
    let dir = data_dir("revoked-release");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let population = approved(&s, "population");
    s.ok("op", &["run", "--module", &population, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    let rel = release_id(&s, 1);
    let out = dir.join("got");
    assert!(s.ok("unit", &["release", "get", &rel, "--out", out.to_str().unwrap()]).contains(&rel));
    s.ok("admin", &["module", "revoke", &population, "--reason", "口径有误 wrong basis"]);
    let again = dir.join("again");
    let o = s.cli("unit", &["release", "get", &rel, "--out", again.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("revoked"), "{}", stderr(&o));
    assert!(!again.join("results").exists());
    s.stop();
    rebuild_equals_live(&dir);
}

/// An operator or application unit gets inclusion proofs of its own entries only: a proof
/// holds the hash of the entry beside it, which a guessed entry could be checked against.
/// A data provider (数源部门) sees the licences, agreements, modules, runs and releases that
/// touch its datasets, and their entries in the log (调阅记录: who ran what on its data, what
/// left, who took it), and nothing of another provider's; it is registered only for an
/// organisation the catalog names, and no other role speaks for one.
#[test]
fn providers_see_what_touches_their_datasets() {
    let dir = data_dir("providers");
    // The utility usage records may not be shared (不予共享) in this city.
    let utility = dir.join("catalog/utility_usage.toml");
    let text = std::fs::read_to_string(&utility).unwrap();
    std::fs::write(&utility, text.replace("sharing = \"conditional\"", "sharing = \"none\"")).unwrap();
    let s = Served::start(&dir, &[]);
    populate(&s);
    let until = in_days(30);
    let grant =
        ["licence", "grant", "lic2", "--operator", "op2", "--datasets", "enterprises", "--purpose", "企业 firms"];
    s.ok("admin", &[&grant[..], &["--until", &until]].concat());
    let agreement = ["agreement", "create", "agr2", "--licence", "lic2", "--unit", "unit2", "--scenario", "企业 firms"];
    s.ok("op2", &[&agreement[..], &["--until", &until]].concat());
    let population = approved(&s, "population");
    s.ok("op", &["run", "--module", &population, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    let (run, release) = (run_id(&s, 1), release_id(&s, 1));
    let get = |to: &Path| {
        let args = ["release", "get", release.as_str(), "--out", to.to_str().unwrap()];
        s.ok("unit", &args);
    };
    get(&dir.join("got"));

    let lists = |who: &str| {
        ["licence", "agreement", "module", "runs", "release"].map(|what| s.ok(who, &[what, "list"])).join("\n")
    };
    let mine = lists("prov");
    // Modules are listed by the first 16 digits of their SHA-256.
    for thing in ["lic", "agr", &population[..16], run.as_str(), release.as_str()] {
        assert!(mine.contains(thing), "the persons register's provider sees {thing}: {mine}");
    }
    assert!(!mine.contains("lic2") && !mine.contains("agr2"), "{mine}");
    let theirs = lists("prov2");
    assert!(theirs.contains("lic2") && theirs.contains("agr2"), "{theirs}");
    for thing in ["lic ", "agr ", &population[..16], run.as_str(), release.as_str()] {
        assert!(!theirs.contains(thing), "the enterprise register's provider does not see {thing:?}: {theirs}");
    }
    // A licence over the persons register (有条件共享) is not in force until its provider's
    // signed consent; nobody else consents for it; the enterprise register (无条件共享) needs
    // none; data that may not be shared is never licensed.
    let grant = ["licence", "grant", "lic3", "--operator", "op", "--datasets", "persons,enterprises", "--purpose", "p"];
    let out = s.ok("admin", &[&grant[..], &["--until", &until]].concat());
    assert!(out.contains("awaiting consent: persons") && out.contains("否 no"), "{out}");
    let consent = |who: &str, dataset: &str| s.cli(who, &["licence", "consent", "lic3", "--dataset", dataset]);
    assert!(stderr(&consent("prov2", "persons")).contains("PermissionDenied"), "not its dataset");
    assert!(stderr(&consent("prov2", "enterprises")).contains("FailedPrecondition"), "no consent awaited");
    assert!(stderr(&consent("op", "persons")).contains("PermissionDenied"), "an operator consents to nothing");
    let other = s.cli("prov", &["licence", "consent", "lic2", "--dataset", "persons"]);
    assert!(stderr(&other).contains("NotFound"), "lic2 is not over its data: {}", stderr(&other));
    let before = log_kinds(&s).len();
    let out = stdout(&consent("prov", "persons"));
    assert!(out.contains("是 yes") && !out.contains("awaiting"), "{out}");
    assert_eq!(log_kinds(&s)[before..], ["licence.consented"]);
    assert!(stderr(&consent("prov", "persons")).contains("FailedPrecondition"), "consented once");
    let consented = log_entries(&s).into_iter().rfind(|e| e.kind() == "licence.consented").unwrap();
    assert_eq!(
        (consented.actor(), consented.get("licence"), consented.get("dataset")),
        ("prov", Some("lic3"), Some("persons"))
    );

    // Red team: under lic3, over both registers, a module and its run on the enterprise register
    // only are not the persons register provider's, in its lists or in the log.
    let agreement = ["agreement", "create", "agr3", "--licence", "lic3", "--unit", "unit", "--scenario", "s"];
    s.ok("op", &[&agreement[..], &["--until", &until]].concat());
    let (wasm, toml, capital) = example_files(&s.dir, "capital");
    s.ok("op", &["module", "submit", "--module", &wasm, "--manifest", &toml, "--licence", "lic3"]);
    for reviewer in ["reviewer-a", "reviewer-b"] {
        let _ = s.cli(reviewer, &["module", "approve", &capital]);
    }
    let out = s.ok("op", &["run", "--module", &capital, "--agreement", "agr3"]);
    assert!(out.contains("released"), "{out}");
    let kinds = log_kinds(&s);
    let (mine, theirs) = (log_bytes(&s, "prov"), log_bytes(&s, "prov2"));
    for kind in ["module.submitted", "run.queued", "release"] {
        let index = kinds.iter().rposition(|k| k == kind).unwrap();
        assert!(mine[index].is_empty() && !theirs[index].is_empty(), "{kind} over the enterprise register only");
    }
    assert!(!s.ok("prov", &["module", "list"]).contains(&capital[..16]));
    assert!(s.ok("prov2", &["module", "list"]).contains(&capital[..16]));

    let never = ["licence", "grant", "lic4", "--operator", "op", "--datasets", "utility_usage", "--purpose", "p"];
    let o = s.cli("admin", &[&never[..], &["--until", &until]].concat());
    assert!(stderr(&o).contains("FailedPrecondition") && stderr(&o).contains("不予共享"), "{}", stderr(&o));

    // Providers rate the operators that use their data, once a year; the bureau, evaluators and
    // the operator read the ratings, another provider does not.
    let rate = |who: &str, operator: &str, score: &str| s.cli(who, &["feedback", "rate", operator, "--score", score]);
    assert!(stdout(&rate("prov", "op", "4")).contains("rating-"));
    assert!(stderr(&rate("prov", "op", "5")).contains("AlreadyExists"), "once a year");
    assert!(stderr(&rate("prov", "op2", "3")).contains("NotFound"), "op2 holds no licence over persons");
    assert!(stderr(&rate("prov", "nobody", "3")).contains("NotFound"), "answered as op2 is");
    assert!(stderr(&rate("prov2", "op", "9")).contains("InvalidArgument"));
    assert!(stderr(&rate("unit", "op", "3")).contains("PermissionDenied"));
    for who in ["eval", "admin", "op", "prov"] {
        let out = s.ok(who, &["feedback", "ratings"]);
        assert!(out.contains("prov ") && out.contains(" 4 "), "{who}: {out}");
    }
    assert!(!s.ok("prov2", &["feedback", "ratings"]).contains("op "), "not another provider's ratings");

    // The annual report counts each consent, by dataset, for the licence's operator.
    let year = sandbox_verify::annual::year_of(Timestamp::now()).to_string();
    s.ok("admin", &["report", "file", "--year", &year]);
    let annual = dir.join("annual.txt");
    s.ok("eval", &["report", "get", "--year", &year, "--out", annual.to_str().unwrap()]);
    let text = std::fs::read_to_string(&annual).unwrap();
    let line = text.lines().find(|l| l.contains("数源部门同意")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("(persons): 2"), "lic and lic3: {line}");
    let line = text.lines().find(|l| l.contains("数源部门评价")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("(4): 1"), "{line}");

    let whoami = s.ok("prov", &["principal", "whoami"]);
    assert!(whoami.contains("provider") && whoami.contains("包头市公安局"), "{whoami}");

    // The log: each provider reads the entries about its own data in full, the rest redacted.
    let kinds = log_kinds(&s);
    let at = |kind: &str| kinds.iter().position(|k| k == kind).unwrap();
    let (started, released, delivered) = (at("run.queued"), at("release"), at("delivery"));
    let (mine, theirs) = (log_bytes(&s, "prov"), log_bytes(&s, "prov2"));
    for index in [started, released, delivered] {
        assert!(!mine[index].is_empty() && theirs[index].is_empty(), "entry {index} ({})", kinds[index]);
    }
    let granted = kinds.iter().enumerate().filter(|(_, k)| *k == "licence.granted").map(|(i, _)| i).collect::<Vec<_>>();
    assert!(!mine[granted[0]].is_empty() && mine[granted[1]].is_empty(), "lic, not lic2");
    assert!(theirs[granted[0]].is_empty() && !theirs[granted[1]].is_empty(), "lic2, not lic");

    // Registration: only for an organisation of the catalog, and only as a provider.
    let out = dir.join("identities/nobody");
    let add = |role: &str, provider: Option<&str>| {
        let mut args = vec!["principal", "add", "nobody", "--role", role, "--display-name", "x"];
        args.extend(provider.map(|p| ["--provider", p]).into_iter().flatten());
        args.extend(["--out", out.to_str().unwrap()]);
        let o = s.cli("admin", &args);
        let _ = std::fs::remove_dir_all(&out);
        stderr(&o)
    };
    assert!(add("provider", Some("某某局")).contains("InvalidArgument"));
    assert!(add("provider", None).contains("InvalidArgument"));
    assert!(add("operator", Some("包头市公安局")).contains("InvalidArgument"));
    assert!(add("provider", Some("包头市公安局")).contains("AlreadyExists"), "one principal speaks for it");

    // A provider brings its own key: generated on its side, only the verifier key registered;
    // the identity folder the administrator made holds the token and no private key.
    let own = dir.join("hr.key");
    assert!(sandbox(&["keys", "generate", "--name", "hr", "--out", own.to_str().unwrap()]).status.success());
    let ids = dir.join("identities/hr");
    let verifier = format!("{}.pub", own.display());
    let args = ["principal", "add", "hr", "--role", "provider", "--display-name", "人社局", "--key", &verifier];
    let args = [&args[..], &["--provider", "包头市人力资源和社会保障局", "--out", ids.to_str().unwrap()]].concat();
    s.ok("admin", &args);
    assert!(ids.join("token").exists() && !ids.join("key").exists());
    std::fs::copy(&own, ids.join("key")).unwrap();
    assert!(s.ok("hr", &["principal", "whoami"]).contains("包头市人力资源和社会保障局"));
    let grant = ["licence", "grant", "lic6", "--operator", "op", "--datasets", "social_insurance", "--purpose", "p"];
    s.ok("admin", &[&grant[..], &["--until", &until]].concat());
    let out = s.ok("hr", &["licence", "consent", "lic6", "--dataset", "social_insurance"]);
    assert!(out.contains("是 yes"), "signed with the key only the provider held: {out}");
    s.stop();

    // Red team: the enterprise register, reclassified as shared on conditions, holds lic2 (granted
    // when it needed no consent) out of force from the next start until its provider consents.
    let enterprises = dir.join("catalog/enterprises.toml");
    let text = std::fs::read_to_string(&enterprises).unwrap();
    std::fs::write(&enterprises, text.replace("sharing = \"unconditional\"", "sharing = \"conditional\"")).unwrap();
    let s = Served::start(&dir, &[]);
    let out = s.ok("admin", &["licence", "list"]);
    let lic2 = out.lines().find(|l| l.contains("lic2")).unwrap();
    assert!(lic2.contains("awaiting consent: enterprises") && lic2.contains("否 no"), "{lic2}");
    let required = |s: &Served| log_kinds(s).iter().filter(|k| *k == "licence.consent_required").count();
    assert_eq!(required(&s), 2, "lic2 and lic3, over both registers");
    let o = s.cli(
        "op2",
        &["agreement", "create", "agr5", "--licence", "lic2", "--unit", "unit2", "--scenario", "s", "--until", &until],
    );
    assert!(stderr(&o).contains("FailedPrecondition"), "no new agreement under it: {}", stderr(&o));
    let out = s.ok("prov2", &["licence", "consent", "lic2", "--dataset", "enterprises"]);
    assert!(out.contains("是 yes"), "{out}");
    s.stop();
    let s = Served::start(&dir, &[]);
    assert_eq!(required(&s), 2, "nothing more is required at the next start");
    s.stop();
    rebuild_equals_live(&dir);
}

/// Security incidents (包头试点 第三十三~三十四条): an operator or application unit of a licence
/// reports one; from then no new run starts and no held output is approved under the licence
/// until the bureau closes it or allows runs; the bureau's measures suspend or end the licence;
/// the closure names the report to the authorities; the annual report counts them.
#[test]
fn incidents_stop_new_runs_until_closed_or_allowed() {
    let dir = data_dir("incidents");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let population = approved(&s, "population");
    let run = ["run", "--module", population.as_str(), "--agreement", "agr", "--param", "reference_date=2024-12-31"];
    let report = |who: &str, licence: &str, category: &str| {
        s.cli(
            who,
            &[
                "incident",
                "report",
                "--licence",
                licence,
                "--category",
                category,
                "--description",
                "样本外泄 sample leaked",
            ],
        )
    };
    s.ok("op", &run);
    let release = release_id(&s, 1);
    let out = stdout(&report("unit", "lic", "leak"));
    assert!(out.contains("inc-") && out.contains("处置中 open"), "{out}");
    let incident = nth_named(&s, "incident.reported", "incident", 1);
    assert!(stderr(&report("unit", "lic", "loss")).contains("FailedPrecondition"), "one open report at a time");
    // Nothing more is delivered while it is open: a leak may be under way.
    let got = dir.join("got");
    let o = s.cli("unit", &["release", "get", &release, "--out", got.to_str().unwrap()]);
    assert!(stderr(&o).contains("FailedPrecondition"), "{}", stderr(&o));
    // The persons register's provider sees the incident on its data.
    assert!(s.ok("prov", &["incident", "list"]).contains(&incident));
    for (who, code) in
        [("unit2", "NotFound"), ("op2", "NotFound"), ("reviewer-a", "PermissionDenied"), ("prov", "PermissionDenied")]
    {
        assert!(stderr(&report(who, "lic", "leak")).contains(code), "{who}");
    }
    assert!(stderr(&report("op", "lic", "gossip")).contains("InvalidArgument"));
    let o = s.cli("op", &run);
    assert!(stderr(&o).contains("FailedPrecondition") && stderr(&o).contains("安全事件"), "{}", stderr(&o));

    let measure =
        |what: &str| s.cli("admin", &["incident", "measure", &incident, "--measure", what, "--note", "处置 handled"]);
    assert!(stdout(&measure("allow_runs")).contains("allow"));
    assert!(s.ok("op", &run).contains("released"), "runs allowed while it is handled");
    assert!(stdout(&measure("suspend")).contains("suspend"));
    assert!(s.ok("admin", &["licence", "list"]).contains("暂停"), "the licence is suspended");
    assert!(stderr(&s.cli("op", &run)).contains("FailedPrecondition"));
    s.ok("admin", &["licence", "resume", "lic"]);
    let closed = s.ok(
        "admin",
        &["incident", "close", &incident, "--reported-to", "包公网安〔2026〕1号", "--note", "结案 closed"],
    );
    assert!(closed.contains("已结案 closed") && closed.contains("包公网安"), "{closed}");
    assert!(stderr(&measure("contain")).contains("FailedPrecondition"), "closed");
    assert!(s.ok("op", &run).contains("released"));

    assert!(s.ok("op", &["incident", "list"]).contains(&incident), "the licence's operator sees it");
    // …and proves the bureau's entries about it; the suspension's reason is not the note.
    let kinds = log_kinds(&s);
    let theirs = log_bytes(&s, "op");
    for kind in ["incident.measure", "incident.closed"] {
        let index = kinds.iter().position(|k| k == kind).unwrap();
        assert!(!theirs[index].is_empty(), "{kind}");
    }
    let suspended = log_entries(&s).into_iter().find(|e| e.kind() == "licence.suspended").unwrap();
    assert_eq!(suspended.get("reason"), Some(format!("incident {incident} / 安全事件 {incident}").as_str()));
    // A unit whose agreement has ended reports nothing more under the licence.
    s.ok("op", &["agreement", "end", "agr", "--reason", "到期 ended"]);
    assert!(stderr(&report("unit", "lic", "other")).contains("NotFound"));
    assert!(s.ok("eval", &["incident", "list"]).contains(&incident));
    assert!(!s.ok("unit2", &["incident", "list"]).contains(&incident));

    let year = sandbox_verify::annual::year_of(Timestamp::now()).to_string();
    s.ok("admin", &["report", "file", "--year", &year]);
    let annual = dir.join("annual.txt");
    s.ok("eval", &["report", "get", "--year", &year, "--out", annual.to_str().unwrap()]);
    let text = std::fs::read_to_string(&annual).unwrap();
    for (label, count) in [("报告的安全事件", "(leak): 1"), ("处置措施", "(suspend): 1"), ("已结案的安全事件", ": 1")]
    {
        assert!(text.lines().any(|l| l.contains(label) && l.ends_with(count)), "{label} {count}: {text}");
    }
    // 数据贡献: what the persons register took part in (three runs released to one unit; the
    // download refused during the incident is no delivery).
    let contribution = "persons: 生产运行 / production runs 3, 发布 / releases 3, 服务应用单位 / units served 1, \
                        交付 / deliveries 0";
    assert!(text.lines().any(|l| l.trim() == contribution), "{text}");
    s.stop();
    rebuild_equals_live(&dir);
}

#[test]
fn tenants_prove_their_own_entries_only() {
    let dir = data_dir("own-proofs");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let population = approved(&s, "population");
    s.ok("op", &["run", "--module", &population, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    let release = log_kinds(&s).iter().position(|k| k == "release").unwrap() as u64;
    let proof = |who: &str| {
        let token = s.token(who);
        block_on(async { client(&s.url, &token).log.inclusion_proof(pb::IndexRequest { index: release }).await })
    };
    for who in ["op", "unit", "eval", "admin"] {
        assert!(proof(who).is_ok(), "{who} proves the release");
    }
    for who in ["op2", "unit2"] {
        assert_eq!(proof(who).unwrap_err().code(), Code::NotFound, "{who}");
    }
    s.stop();
}

/// A disabled reviewer's approvals do not count (red team round 7: a module became approved
/// by a reviewer disabled before the second approval), until the reviewer is enabled again;
/// and a caller watching a run is cut off when disabled.
#[test]
fn a_disabled_reviewer_approves_nothing_and_a_disabled_watcher_hears_nothing() {
    let dir = data_dir("disabled-reviewer");
    let s = Served::start(&dir, &["--run-timeout", "6"]);
    populate(&s);
    let (wasm, toml, sha) = example_files(&s.dir, "population");
    s.ok("op", &["module", "submit", "--module", &wasm, "--manifest", &toml, "--licence", "lic"]);
    s.ok("reviewer-a", &["module", "approve", &sha]);
    s.ok("admin", &["principal", "disable", "reviewer-a", "--reason", "利益冲突 conflict of interest"]);
    let out = s.ok("reviewer-b", &["module", "approve", &sha]);
    assert!(out.contains("submitted") && !out.contains("approved "), "{out}");
    let o = s.cli("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31"]);
    assert!(!o.status.success(), "not approved, not run: {}", stdout(&o));
    s.ok("admin", &["principal", "enable", "reviewer-a"]);
    let listed = s.ok("op", &["module", "list"]);
    assert!(listed.lines().any(|l| l.contains(&sha[..16]) && l.contains("approved")), "{listed}");

    let hostile = approved(&s, "hostile-module");
    let watched = std::thread::scope(|scope| {
        let following =
            scope.spawn(|| s.cli("op", &["run", "--module", &hostile, "--agreement", "agr", "--param", "attack=loop"]));
        std::thread::sleep(Duration::from_secs(2));
        s.ok("admin", &["principal", "disable", "op", "--reason", "违规 misuse"]);
        following.join().unwrap()
    });
    assert!(!watched.status.success() && stderr(&watched).contains("disabled"), "{}", stderr(&watched));
    s.stop();
    rebuild_equals_live(&dir);
}

/// `sandbox serve`'s settings: the defaults, a `--config` file, `SANDBOX_SERVE_*`, then the
/// flags, each over the one before, as `--print-config` shows; a file with an unknown key, a
/// bad log filter or half a TLS pair is refused; `--log-format json` writes the server's log as
/// JSON lines, a span per call naming the caller.
#[test]
fn serve_settings_are_layered_and_logs_are_json() {
    let dir = data_dir("settings");
    let file = dir.join("server.toml");
    std::fs::write(&file, "max_runs = 4\nrun_timeout = 30\nrefusals_per_minute = 5\n").unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_sandbox")).arg("serve").args(args).envs(env.iter().copied()).output().unwrap()
    };
    let o = serve(
        &["--config", file.to_str().unwrap(), "--print-config", "--refusals-per-minute", "7"],
        &[("SANDBOX_SERVE_RUN_TIMEOUT", "40"), ("SANDBOX_SERVE_REFUSALS_PER_MINUTE", "6")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let merged: toml::Table = toml::from_str(&stdout(&o)).unwrap();
    assert_eq!(merged["max_runs"].as_integer(), Some(4), "from the file");
    assert_eq!(merged["run_timeout"].as_integer(), Some(40), "the environment over the file");
    assert_eq!(merged["refusals_per_minute"].as_integer(), Some(7), "the flag over the environment");
    assert_eq!(merged["listen"].as_str(), Some("127.0.0.1:7700"), "the default");
    assert_eq!(merged["data_dir"].as_str(), Some("sandbox-data"));

    std::fs::write(&file, "max_run = 4\n").unwrap();
    let o = serve(&["--config", file.to_str().unwrap(), "--print-config"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("max_run"), "{}", stderr(&o));
    let o = serve(&["--print-config", "--tls-cert", "a.pem"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("tls_key"), "{}", stderr(&o));
    let o = serve(&["--print-config", "--max-runs", "0"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("max_runs"), "{}", stderr(&o));
    let o = serve(&["--data-dir", dir.to_str().unwrap(), "--log", "sandbox_server=[", "--listen", "127.0.0.1:0"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("log filter"), "{}", stderr(&o));
    // Runners are handed the licences' pseudonym keys: never a program found by a search of PATH.
    let o = serve(&["--data-dir", dir.to_str().unwrap(), "--runner", "sandbox", "--listen", "127.0.0.1:0"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("absolute path"), "{}", stderr(&o));

    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SANDBOX_SERVE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    block_on(async {
        let admin = std::fs::read_to_string(dir.join("identities/admin/token")).unwrap();
        let mut c = client(&url, admin.trim());
        let refused = c.principals.disable(pb::PrincipalAction::default()).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refusal = lines.iter().find(|l| l["fields"]["message"] == "refused").expect("the refusal is logged");
    assert_eq!(refusal["span"]["caller"], "admin", "{refusal}");
    assert_eq!(refusal["span"]["rpc"], "/sandbox.v1.Principals/Disable", "{refusal}");
}

/// A disabled principal's token is refused without a trace in the log; its queued run ends
/// withheld, nothing is delivered under it, no licence goes to it; enabled, it acts again.
/// Tokens rotated or revoked are refused from that entry on. The evaluator's replay agrees.
#[test]
fn disabled_principals_and_old_tokens_are_refused() {
    let dir = data_dir("disabled");
    let s = Served::start(&dir, &["--run-timeout", "60", "--max-runs", "1"]);
    let honest = queue_behind_a_loop(&s);
    let size = || log_entries(&s).len();

    s.ok("admin", &["principal", "disable", "op", "--reason", "违规 misuse"]);
    let before = size();
    let o = s.cli("op", &["principal", "whoami"]);
    assert!(!o.status.success() && stderr(&o).contains("disabled"), "{}", stderr(&o));
    assert_eq!(size(), before, "a disabled principal's calls leave no entry");
    // The loop cancelled, the queued run comes to start, and ends.
    s.ok("admin", &["runs", "cancel", run_id(&s, 1).as_str()]);
    wait_for_as(&s, "admin", run_id(&s, 2).as_str(), "withheld");
    let entries = log_entries(&s);
    let ended = (entries.iter())
        .find(|e| e.kind() == "run.finished" && e.get("run") == Some(run_id(&s, 2).as_str()))
        .expect("the end of the queued run is logged");
    assert_eq!((ended.get("status"), ended.get("stopped")), (Some("withheld"), Some("principal")));
    let grant = ["licence", "grant", "lic2", "--operator", "op", "--datasets", "persons", "--purpose", "p"];
    let o = s.cli("admin", &[&grant[..], &["--until", &in_days(10)]].concat());
    let standing = "op is not a registered operator in good standing";
    assert!(stderr(&o).contains(standing), "no licence to a disabled operator: {}", stderr(&o));
    let listed = s.ok("admin", &["principal", "list"]);
    assert!(listed.contains("违规 misuse"), "{listed}");
    for (args, says) in [
        (&["principal", "disable", "op", "--reason", "again"][..], "disabled already"),
        (&["principal", "disable", "admin", "--reason", "oops"], "cannot disable itself"),
        (&["principal", "enable", "unit"], "not disabled"),
        (&["principal", "disable", "nobody", "--reason", "x"], "no principal"),
        (&["principal", "disable", "sandbox", "--reason", "x"], "no principal"),
        (&["principal", "disable", "unit", "--reason", "a\u{202e}b"], "reason"),
    ] {
        let o = s.cli("admin", args);
        assert!(!o.status.success() && stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }

    // Enabled, the operator runs again; with the operator disabled, nothing is delivered.
    s.ok("admin", &["principal", "enable", "op"]);
    let run = ["run", "--module", &honest, "--agreement", "agr", "--param", "reference_date=2024-12-31"];
    s.ok("op", &run);
    let bundle = dir.join("bundle");
    let rel = release_id(&s, 1);
    let get = ["release", "get", rel.as_str(), "--out", bundle.to_str().unwrap()];
    s.ok("admin", &["principal", "disable", "op", "--reason", "违规 misuse"]);
    let o = s.cli("unit", &get);
    assert!(!o.status.success() && stderr(&o).contains("op is not a registered operator"), "{}", stderr(&o));
    s.ok("admin", &["principal", "enable", "op"]);
    s.ok("unit", &get);

    // A unit disabled: no run for it starts.
    s.ok("admin", &["principal", "disable", "unit", "--reason", "停业 closed"]);
    let o = s.cli("op", &run);
    assert!(!o.status.success() && stderr(&o).contains("unit is not a registered application_unit"), "{}", stderr(&o));
    s.ok("admin", &["principal", "enable", "unit"]);

    // Rotated by its holder: the old token is refused, the saved new one works.
    let old = s.token("op");
    s.ok("op", &["principal", "token", "rotate"]);
    assert_ne!(s.token("op"), old);
    s.ok("op", &["principal", "whoami"]);
    block_on(async {
        let refused = client(&s.url, old.trim()).principals.whoami(pb::Empty {}).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    });
    // Another's token: an administrator's business only.
    let o = s.cli("op", &["principal", "token", "rotate", "unit"]);
    assert!(!o.status.success() && stderr(&o).contains("only an administrator"), "{}", stderr(&o));
    let out = s.ok("admin", &["principal", "token", "rotate", "op2"]);
    assert!(out.contains("shown this once"), "{out}");
    let token = out.trim().rsplit(' ').next().unwrap();
    assert_eq!(token.len(), 64);
    block_on(async {
        let me = client(&s.url, token).principals.whoami(pb::Empty {}).await.unwrap().into_inner();
        assert_eq!(me.name, "op2");
    });
    let o = s.cli("op2", &["principal", "whoami"]);
    assert!(!o.status.success(), "op2's old token is refused");
    // Revoked: refused until rotated again.
    s.ok("admin", &["principal", "token", "revoke", "unit2", "--reason", "泄露 leaked"]);
    assert!(!s.cli("unit2", &["principal", "whoami"]).status.success());
    assert!(s.ok("admin", &["principal", "list"]).contains("no token"));
    let o = s.cli("admin", &["principal", "token", "revoke", "unit2", "--reason", "again"]);
    assert!(stderr(&o).contains("has no token"), "{}", stderr(&o));
    let unit2 = dir.join("identities/unit2");
    s.ok("admin", &["principal", "token", "rotate", "unit2", "--out", unit2.to_str().unwrap()]);
    s.ok("unit2", &["principal", "whoami"]);

    // The annual report counts how often each operator and unit was disabled.
    let year = sandbox_verify::annual::year_of(Timestamp::now()).to_string();
    let annual = s.ok("admin", &["report", "file", "--year", &year]);
    for (who, times) in [("op", 2), ("unit", 1)] {
        let at = annual.find(&format!("\n  {who}\n")).unwrap_or_else(|| panic!("no {who} in:\n{annual}"));
        let block: Vec<&str> = annual[at + 1..].lines().skip(1).take_while(|l| l.starts_with("    ")).collect();
        let line = format!("    被停用 / times disabled: {times}");
        assert!(block.contains(&line.as_str()), "no {line:?} for {who} in {block:?}");
    }

    let kinds = log_kinds(&s);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    let counts = [count("principal.disabled"), count("principal.enabled"), count("token.rotated")];
    assert_eq!((counts, count("token.revoked")), ([3, 3, 3], 1), "{kinds:?}");
    s.stop();
    rebuild_equals_live(&dir);
    let trust = std::fs::read_to_string(dir.join("keys/trust")).unwrap();
    let trust = sandbox_verify::trust::Trust::parse(&trust).unwrap();
    let report = sandbox_verify::audit::audit(&dir.join("log"), &trust);
    assert!(report.verified(), "no entry of a disabled principal: {:?}", report.problems);
}

/// A runner that answers for another run than the one asked for — here it ran the module with
/// another reference date, as an escaped runner could to have the audit find the operator's
/// figures "wrong" — is not believed: the run fails as interrupted, nothing is audited, no
/// breach is counted against the licence.
/// The runner processes the server starts ahead of runs: one per run slot, each waiting on its
/// request with nothing open but its three standard streams and an empty environment; the
/// oldest serves the next run; a spare killed while it waits is not used, the run gets
/// another, and the spares are made up again.
#[test]
fn spare_runners_wait_holding_nothing_and_dead_ones_are_replaced() {
    let dir = data_dir("spares");
    let s = Served::start(&dir, &["--max-runs", "2"]);
    populate(&s);
    let sha = approved(&s, "population");
    let run = ["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31"];
    assert!(s.ok("op", &run).contains("released"));
    let spares = waiting_runners(s.child.id());
    assert_eq!(spares.len(), 2, "one spare per run slot: {spares:?}");
    for pid in &spares {
        // Started at the last run's start, a spare closes what it inherited before it waits.
        let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds() != 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fds(), 3, "a spare holds stdin, stdout and stderr only");
        assert!(std::fs::read(format!("/proc/{pid}/environ")).unwrap().is_empty());
    }

    // The oldest spare serves the next run (a run's time does not depend on how recently
    // another run started): the one started at the server's first run, not the newest.
    let started = |pid: &u32| -> (u64, u32) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        (stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap(), *pid)
    };
    let (oldest, newest) = match started(&spares[0]) <= started(&spares[1]) {
        true => (spares[0], spares[1]),
        false => (spares[1], spares[0]),
    };
    assert!(s.ok("op", &run).contains("released"));
    let spares = waiting_runners(s.child.id());
    assert!(!spares.contains(&oldest) && spares.contains(&newest), "{oldest} used, {newest} waits: {spares:?}");

    for pid in &spares {
        Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let out = s.ok("op", &run);
    assert!(out.contains("released"), "{out}");
    let again = waiting_runners(s.child.id());
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|pid| !spares.contains(pid)), "new spares: {spares:?} then {again:?}");
    s.stop();
}

/// Children of `parent` that are `sandbox runner` processes still alive, waiting for work: not
/// yet in a user namespace of their own (a runner that ran is, and may still be ending after
/// its answer).
fn waiting_runners(parent: u32) -> Vec<u32> {
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap() {
        let Ok(pid) = entry.unwrap().file_name().to_string_lossy().parse::<u32>() else { continue };
        let (Ok(stat), Ok(cmdline)) =
            (std::fs::read_to_string(format!("/proc/{pid}/stat")), std::fs::read(format!("/proc/{pid}/cmdline")))
        else {
            continue;
        };
        // pid (comm) state ppid ...: the command name may hold spaces, so read after its ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let unconfined = std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns == own);
        if fields[1] == parent.to_string() && fields[0] != "Z" && args.get(1) == Some(&&b"runner"[..]) && unconfined {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_runner_answering_another_run_is_not_believed() {
    let dir = data_dir("impostor");
    let wrapper = dir.join("impostor-runner");
    let script = format!("#!/bin/sh\nsed 's/2024-12-31/2023-12-31/' | exec {} runner\n", env!("CARGO_BIN_EXE_sandbox"));
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = Served::start(&dir, &["--runner", wrapper.to_str().unwrap()]);
    populate(&s);
    let sha = approved(&s, "population");
    let run = ["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31"];
    let o = s.cli("op", &run);
    let out = stdout(&o);
    assert!(out.contains("failed") && out.contains("interrupted"), "{out}{}", stderr(&o));
    let kinds = log_kinds(&s);
    assert!(!kinds.iter().any(|k| k == "audit.outcome" || k == "release" || k == "licence.suspended"), "{kinds:?}");
    s.stop();
    rebuild_equals_live(&dir);
}

#[test]
fn a_dataset_whose_files_change_is_versioned_again_before_a_run_reads_it() {
    // The real persons file replaced under the running server (by another city's, of another
    // seed): the next run logs the new version before it is queued, and names it.
    let dir = data_dir("reversion");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let sha = approved(&s, "population");
    let run = ["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31"];
    s.ok("op", &run);
    let versions = |s: &Served| -> Vec<String> {
        (log_entries(s).iter())
            .filter(|e| e.kind() == "dataset.registered" && e.get("dataset") == Some("persons"))
            .map(|e| e.get("version").unwrap().to_owned())
            .collect()
    };
    let first = versions(&s);
    assert_eq!(first.len(), 1, "{first:?}");
    replace_persons(&dir);
    s.ok("op", &run);
    let now = versions(&s);
    assert_eq!(now.len(), 2, "a new version is logged: {now:?}");
    assert_ne!(now[0], now[1]);
    let queued = (log_entries(&s).into_iter())
        .filter(|e| e.kind() == "run.queued")
        .map(|e| e.get("datasets").unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(queued, [format!("persons@{}", now[0]), format!("persons@{}", now[1])]);
    s.stop();
    rebuild_equals_live(&dir);
}

#[test]
fn a_suspension_while_a_run_waits_for_its_quantum_withholds_it() {
    // The run has finished and been audited, and waits for its answer's quantum (4 s) before
    // anything of it is logged: the licence suspended meanwhile, nothing of it leaves.
    let dir = data_dir("stopped-late");
    std::fs::write(dir.join("policy.toml"), "[runs]\nanswer_quantum_ms = 4000\n").unwrap();
    let s = Served::start(&dir, &[]);
    populate(&s);
    let sha = approved(&s, "population");
    s.ok("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2024-12-31", "--no-wait"]);
    wait_for(&s, run_id(&s, 1).as_str(), "running");
    s.ok("admin", &["licence", "suspend", "lic", "--reason", "整改 rectification"]);
    wait_for(&s, run_id(&s, 1).as_str(), "withheld");
    let entries = log_entries(&s);
    assert!(entries.iter().any(|e| e.kind() == "run.started" && e.get("run") == Some(run_id(&s, 1).as_str())));
    let ended =
        entries.iter().find(|e| e.kind() == "run.finished" && e.get("run") == Some(run_id(&s, 1).as_str())).unwrap();
    assert_eq!((ended.get("status"), ended.get("stopped")), (Some("withheld"), Some("licence")));
    assert!(!entries.iter().any(|e| e.kind() == "release" || e.kind() == "audit.outcome"), "nothing of it leaves");
    s.stop();
    rebuild_equals_live(&dir);
}

#[test]
fn a_run_whose_data_changes_while_it_is_queued_is_withheld() {
    // One runner slot held by a looping module; a run queued behind it; the persons file replaced
    // meanwhile: the queued run would read other data than the version its entry names.
    let dir = data_dir("changed-queued");
    let s = Served::start(&dir, &["--run-timeout", "3", "--max-runs", "1"]);
    queue_behind_a_loop(&s);
    replace_persons(&dir);
    wait_for(&s, run_id(&s, 2).as_str(), "withheld");
    let entries = log_entries(&s);
    let ended =
        entries.iter().find(|e| e.kind() == "run.finished" && e.get("run") == Some(run_id(&s, 2).as_str())).unwrap();
    assert_eq!(ended.get("stopped"), Some("dataset"));
    let versions = entries.iter().filter(|e| e.kind() == "dataset.registered" && e.get("dataset") == Some("persons"));
    assert_eq!(versions.count(), 2, "the new version is logged");
    assert!(!entries.iter().any(|e| e.kind() == "release"));
    s.stop();
    rebuild_equals_live(&dir);
}

/// A certificate authority and, signed by it, a server certificate for 127.0.0.1 and a client
/// certificate, made with the openssl command in `dir`: `<name>.pem` and `<name>.key`.
fn pki(dir: &Path, ca: &str, certs: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command (ops/setup)");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let subject = format!("/CN={ca}");
    openssl(
        &[&["req", "-x509"], &key[..], &["-keyout", &ca_key, "-out", &ca_pem, "-days", "2", "-subj", &subject]]
            .concat(),
    );
    for (name, extension) in certs {
        let (pem, private, csr, ext) =
            (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
        std::fs::write(dir.join(&ext), extension).unwrap();
        let subject = format!("/CN={name}");
        openssl(&[&["req"], &key[..], &["-keyout", &private, "-out", &csr, "-subj", &subject]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

/// TLS, and mutual TLS: with `--tls-client-ca` a client without a certificate that CA signed
/// cannot call at all, whatever its token; with one, it calls as its token says.
#[test]
fn mutual_tls_refuses_clients_without_a_certificate() {
    let dir = data_dir("mtls");
    let ca = dir.join("pki");
    pki(&ca, "ca", &[("server", "subjectAltName=IP:127.0.0.1\n"), ("client", "extendedKeyUsage=clientAuth\n")]);
    pki(&dir.join("other"), "other-ca", &[("client", "extendedKeyUsage=clientAuth\n")]);
    let file = |path: &str| dir.join(path).to_str().unwrap().to_owned();
    let args = ["--tls-cert", &file("pki/server.pem"), "--tls-key", &file("pki/server.key")];
    let s = Served::start(&dir, &[&args[..], &["--tls-client-ca", &file("pki/ca.pem")]].concat());
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let whoami = |extra: &[&str]| s.cli("admin", &[&["principal", "whoami"], extra].concat());

    let with_cert =
        ["--tls-ca", &file("pki/ca.pem"), "--tls-cert", &file("pki/client.pem"), "--tls-key", &file("pki/client.key")];
    let o = whoami(&with_cert);
    assert!(o.status.success() && stdout(&o).contains("admin"), "{}{}", stdout(&o), stderr(&o));
    let o = whoami(&["--tls-ca", &file("pki/ca.pem")]);
    assert!(!o.status.success(), "no client certificate: {}", stdout(&o));
    let stranger = [
        "--tls-ca",
        &file("pki/ca.pem"),
        "--tls-cert",
        &file("other/client.pem"),
        "--tls-key",
        &file("other/client.key"),
    ];
    let o = whoami(&stranger);
    assert!(!o.status.success(), "a certificate another CA signed: {}", stdout(&o));
    // /healthz and /metrics share the port, and its TLS: HTTP/2 after ALPN (curl, see ops/setup).
    let bearer = format!("Authorization: Bearer {}", s.token("admin").trim());
    let curl = |path: &str, cert: &str| {
        let url = format!("{}{path}", s.url);
        let (pem, key) = (file(&format!("{cert}/client.pem")), file(&format!("{cert}/client.key")));
        let args =
            ["-sS", "--http2", "--cacert", &file("pki/ca.pem"), "--cert", &pem, "--key", &key, "-H", &bearer, &url];
        let o = Command::new("curl").args(args).output().expect("curl runs (ops/setup installs it)");
        (o.status.success(), stdout(&o))
    };
    assert_eq!(curl("/healthz", "pki"), (true, "ok\n".to_owned()));
    let (ok, metrics) = curl("/metrics", "pki");
    assert!(ok && metrics.contains("sandbox_calls_total"), "{metrics}");
    assert!(!curl("/healthz", "other").0, "a certificate another CA signed");
    // Plain HTTP/2 to the TLS port gets nowhere either.
    let plain = s.url.replace("https://", "http://");
    let identity = dir.join("identities/admin");
    let o = sandbox(&["principal", "whoami", "--server", &plain, "--as", identity.to_str().unwrap()]);
    assert!(!o.status.success());
    s.stop();
}

/// A codec that sends and receives bytes as they are, to send what no client would.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = bytes::Buf::chunk(src).to_vec();
        bytes::Buf::advance(src, bytes.len());
        Ok(Some(bytes))
    }
}

/// Bytes that are no protobuf message, to every RPC as a known principal: refused with the
/// code gRPC prescribes for a message that does not parse (INTERNAL, "failed to decode"), before
/// any handler runs, so nothing is logged and nothing changes.
#[test]
fn undecodable_requests_change_nothing() {
    let dir = data_dir("garbage");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let before = dump(&s);
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", s.token("admin")).parse().unwrap();
    block_on(async {
        let channel = tonic::transport::Channel::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
        for (rpc, _) in sandbox_server::auth::MATRIX {
            let (service, method) = rpc.split_once('.').unwrap();
            let path: tonic::codegen::http::uri::PathAndQuery =
                format!("/sandbox.v1.{service}/{method}").parse().unwrap();
            // Field 1 with wire type 7, which does not exist; then a length running past the end.
            for garbage in [vec![0x0f, 0x01], vec![0x0a, 0xff, 0xff, 0x03, 0x00]] {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.unwrap();
                let mut request = tonic::Request::new(garbage);
                request.metadata_mut().insert("authorization", token.clone());
                let status = grpc.unary::<_, Vec<u8>, _>(request, path.clone(), Raw).await.unwrap_err();
                assert_eq!(status.code(), Code::Internal, "{rpc}: {status:?}");
                assert!(status.message().contains("failed to decode"), "{rpc}: {status:?}");
            }
        }
    });
    assert_eq!(dump(&s), before, "no entry, no change");
    s.stop();
    rebuild_equals_live(&dir);
}

/// Output review (人工复核) through the server, under a policy that holds every table of
/// `persons` for review: two different reviewers release a table, one rejection keeps it in,
/// and a held table whose audit changed before the decision (a release since then that it
/// differs from by a few people) does not leave.
#[test]
fn held_tables_leave_only_after_two_reviewers() {
    let dir = data_dir("review");
    std::fs::write(dir.join("policy.toml"), "[datasets.persons]\nreview_all = true\n").unwrap();
    let s = Served::start(&dir, &[]);
    populate(&s);
    let sha = approved(&s, "population");
    for date in ["2024-12-31", "2025-12-31", "2024-12-31"] {
        let param = format!("reference_date={date}");
        let out = s.ok("op", &["run", "--module", &sha, "--agreement", "agr", "--param", &param]);
        assert!(out.contains("in review") && out.contains("manual-review"), "{out}");
    }
    assert!(!s.ok("unit", &["release", "list"]).contains("rel-"), "nothing held leaves before review");
    let answer = |run: &str| dir.join("runs").join(run).join("answer").exists();
    assert!(
        answer(run_id(&s, 1).as_str()) && answer(run_id(&s, 2).as_str()),
        "the runner's answers wait with the tables"
    );
    let refused = |who: &str, args: &[&str], code: &str| {
        let o = s.cli(who, args);
        assert!(!o.status.success() && stderr(&o).contains(code), "{args:?}: {}", stderr(&o));
    };

    // One reviewer is not enough; nobody decides twice; operators do not review.
    let out = s.ok("reviewer-a", &["output", "approve", run_id(&s, 2).as_str()]);
    assert!(out.contains("in review") && out.contains("population"), "{out}");
    refused("reviewer-a", &["output", "approve", run_id(&s, 2).as_str()], "FailedPrecondition");
    refused("op", &["output", "approve", run_id(&s, 2).as_str()], "PermissionDenied");
    refused("reviewer-b", &["output", "approve", run_id(&s, 2).as_str(), "--table", "nope"], "FailedPrecondition");
    // Nothing is let out while the licence is suspended.
    s.ok("admin", &["licence", "suspend", "lic", "--reason", "整改 rectification"]);
    refused("reviewer-b", &["output", "approve", run_id(&s, 2).as_str()], "suspended");
    s.ok("admin", &["licence", "resume", "lic"]);
    // The second reviewer's approval releases it to the agreement's unit, and it verifies.
    let out = s.ok("reviewer-b", &["output", "approve", run_id(&s, 2).as_str()]);
    assert!(out.contains("released") && out.contains(release_id(&s, 1).as_str()), "{out}");
    let (bundle, trust) = (dir.join("got"), dir.join("keys/trust"));
    let rel = release_id(&s, 1);
    let get = ["release", "get", rel.as_str(), "--out", bundle.to_str().unwrap(), "--verify", "--trust"];
    let out = s.ok("unit", &[&get[..], &[trust.to_str().unwrap()]].concat());
    assert!(out.contains("verified"), "{out}");
    assert!(bundle.join("results/population.csv").exists());

    // Run 1 was audited before run 2 left; its age bands differ from run 2's by a few people,
    // so its audit now finds differencing and the report the reviewers read no longer holds.
    s.ok("reviewer-a", &["output", "approve", run_id(&s, 1).as_str()]);
    let out = s.ok("reviewer-b", &["output", "approve", run_id(&s, 1).as_str()]);
    assert!(out.contains("withheld") && out.contains("stale"), "{out}");
    let report = s.ok("op", &["runs", "show", run_id(&s, 1).as_str()]);
    assert!(report.contains("differencing"), "{report}");
    // A rejection keeps the table in; there is nothing left to decide.
    let out = s.ok("reviewer-a", &["output", "reject", run_id(&s, 3).as_str(), "--reason", "口径不清 unclear"]);
    assert!(out.contains("withheld"), "{out}");
    refused("reviewer-b", &["output", "approve", run_id(&s, 3).as_str()], "no table waiting");
    assert_eq!(s.ok("unit", &["release", "list"]).matches("rel-").count(), 1);
    assert!(
        !answer(run_id(&s, 1).as_str()) && !answer(run_id(&s, 2).as_str()) && !answer(run_id(&s, 3).as_str()),
        "and go once decided"
    );

    // A run waiting for its reviewers when its agreement ends: it ends, withheld, at once.
    let out = s.ok("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=2025-12-31"]);
    assert!(out.contains("in review"), "{out}");
    assert!(answer(run_id(&s, 4).as_str()));
    s.ok("op", &["agreement", "end", "agr", "--reason", "合同到期 contract over"]);
    assert!(s.ok("op", &["runs", "show", run_id(&s, 4).as_str()]).contains("withheld"));
    assert!(!answer(run_id(&s, 4).as_str()), "its answer goes with it");
    let ended = log_entries(&s).into_iter().find(|e| {
        e.kind() == "run.finished"
            && e.get("run") == Some(run_id(&s, 4).as_str())
            && e.get("status") == Some("withheld")
    });
    assert_eq!(ended.and_then(|e| e.get("stopped").map(str::to_owned)).as_deref(), Some("agreement"));

    let kinds = log_kinds(&s);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!((count("output.approved"), count("output.rejected"), count("release")), (4, 1, 1), "{kinds:?}");
    s.stop();
    rebuild_equals_live(&dir);
    let trust = sandbox_verify::trust::Trust::parse(&std::fs::read_to_string(&trust).unwrap()).unwrap();
    let report = sandbox_verify::audit::audit(&dir.join("log"), &trust);
    assert!(report.verified(), "reviewers' signatures check out: {:?}", report.problems);
}

/// Two runs started at once are judged as if one followed the other: the audit that ends
/// second compares with what the first released (its age bands differ from the other's by a
/// few people), whichever it is. Audited side by side against the same history, neither would.
#[test]
fn two_runs_at_once_are_judged_one_after_the_other() {
    let dir = data_dir("order");
    let s = Served::start(&dir, &[]);
    populate(&s);
    let sha = approved(&s, "population");
    for date in ["2024-12-31", "2025-12-31"] {
        let param = format!("reference_date={date}");
        s.ok("op", &["run", "--module", &sha, "--agreement", "agr", "--param", &param, "--no-wait"]);
    }
    let ended = |run: &str| {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let out = s.ok("op", &["runs", "show", run]);
            if out.contains("已发布 released") || out.contains("未放行 withheld") {
                return out;
            }
            assert!(Instant::now() < deadline, "{run} never ended: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let reports = [ended(run_id(&s, 1).as_str()), ended(run_id(&s, 2).as_str())];
    let differenced = reports.iter().filter(|r| r.contains("differencing")).count();
    assert_eq!(differenced, 1, "exactly the later audit finds the earlier release:\n{}\n{}", reports[0], reports[1]);
    // A run shows released once its audit is logged; its release entry follows.
    let releases = reports.iter().filter(|r| r.contains("已发布 released")).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.ok("unit", &["release", "list"]).matches("rel-").count() < releases {
        assert!(Instant::now() < deadline, "the releases never came");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.stop();
    rebuild_equals_live(&dir);
}

/// Refused requests: a clear code, and nothing changes but the refusal's log entry.
#[test]
fn refusals_change_nothing_but_the_log() {
    let dir = data_dir("refusals");
    let s = Served::start(&dir, &["--refusals-per-minute", "20"]);
    populate(&s);
    let sha = approved(&s, "population");
    let refused = |who: &str, args: &[&str], code: &str| {
        let o = s.cli(who, args);
        assert!(!o.status.success(), "{args:?} should be refused");
        assert!(stderr(&o).contains(code), "{args:?}: {}", stderr(&o));
    };
    let wasm = dir.join("files/population/module.wasm");
    let toml = dir.join("files/population/module.toml");
    let (wasm, toml) = (wasm.to_str().unwrap(), toml.to_str().unwrap());

    // Malformed requests of each kind.
    refused(
        "admin",
        &[
            "licence",
            "grant",
            "Bad Id",
            "--operator",
            "op",
            "--datasets",
            "persons",
            "--purpose",
            "x",
            "--until",
            &in_days(1),
        ],
        "InvalidArgument",
    );
    refused(
        "admin",
        &[
            "licence",
            "grant",
            "l2",
            "--operator",
            "op",
            "--datasets",
            "persons",
            "--purpose",
            "x",
            "--until",
            "tomorrow",
        ],
        "InvalidArgument",
    );
    refused(
        "admin",
        &["licence", "grant", "l2", "--operator", "op", "--datasets", "nope", "--purpose", "x", "--until", &in_days(1)],
        "NotFound",
    );
    refused(
        "admin",
        &[
            "licence",
            "grant",
            "l2",
            "--operator",
            "unit",
            "--datasets",
            "persons",
            "--purpose",
            "x",
            "--until",
            &in_days(1),
        ],
        "FailedPrecondition",
    );
    refused(
        "admin",
        &[
            "licence",
            "grant",
            "lic",
            "--operator",
            "op",
            "--datasets",
            "persons",
            "--purpose",
            "x",
            "--until",
            &in_days(1),
        ],
        "AlreadyExists",
    );
    refused(
        "admin",
        &[
            "principal",
            "add",
            "UPPER",
            "--role",
            "operator",
            "--display-name",
            "x",
            "--out",
            dir.join("x").to_str().unwrap(),
        ],
        "InvalidArgument",
    );
    refused(
        "op",
        &["agreement", "create", "a2", "--licence", "lic", "--unit", "op2", "--scenario", "x", "--until", &in_days(1)],
        "FailedPrecondition",
    );
    refused(
        "op2",
        &["agreement", "create", "a2", "--licence", "lic", "--unit", "unit", "--scenario", "x", "--until", &in_days(1)],
        "NotFound",
    );
    refused(
        "op",
        &[
            "agreement",
            "create",
            "a2",
            "--licence",
            "lic",
            "--unit",
            "unit",
            "--scenario",
            "x",
            "--until",
            "2020-01-01T00:00:00Z",
        ],
        "InvalidArgument",
    );
    refused("op", &["module", "submit", "--module", wasm, "--manifest", toml, "--licence", "lic"], "AlreadyExists");
    refused("op2", &["module", "submit", "--module", toml, "--manifest", toml, "--licence", "lic"], "NotFound");
    refused("reviewer-a", &["module", "approve", &sha], "FailedPrecondition");
    refused("reviewer-a", &["module", "reject", &sha, "--reason", "x"], "FailedPrecondition");
    refused(
        "op",
        &["run", "--module", &sha, "--agreement", "agr", "--param", "reference_date=yesterday"],
        "InvalidArgument",
    );
    refused("op", &["run", "--module", &sha, "--agreement", "nope"], "NotFound");
    refused("unit", &["feedback", "submit", "rel-000009", "--rating", "3"], "NotFound");
    refused("unit", &["feedback", "submit", "rel-000009", "--rating", "9"], "InvalidArgument");
    // Text that reads otherwise than it is: a right-to-left override, a line separator.
    let until = in_days(1);
    for scenario in ["报告\u{202E}txt.exe", "第一行\u{2028}第二行", "a\u{2066}b\u{2069}"] {
        let args = [
            "agreement",
            "create",
            "a3",
            "--licence",
            "lic",
            "--unit",
            "unit",
            "--scenario",
            scenario,
            "--until",
            &until,
        ];
        let o = s.cli("op", &args);
        assert!(!o.status.success() && stderr(&o).contains("InvalidArgument"), "{scenario:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("U+2"), "the character is named: {}", stderr(&o));
    }
    // A thousand refusals in a burst: each counted, a bounded number logged one by one.
    let logged_before = log_entries(&s).iter().filter(|e| e.kind() == "request.refused" && e.actor() == "op2").count();
    block_on(async {
        let mut c = client(&s.url, &s.token("op2"));
        for _ in 0..1000 {
            let status = c.runs.get(pb::RunRef { run: "run-999999".to_owned() }).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound);
        }
    });
    let logged = log_entries(&s).iter().filter(|e| e.kind() == "request.refused" && e.actor() == "op2").count();
    assert!(logged - logged_before <= 20, "{} entries for 1000 refusals", logged - logged_before);
    let metrics = s.http_get_as("/metrics", Some("admin"));
    assert!(metrics.contains("sandbox_calls_total{method=\"Runs.Get\",code=\"NotFound\"} 1000"), "{metrics}");
    // An entry signed by someone else's key is refused.
    block_on(async {
        let session_key = sandbox_log::keys::read_key_file(&dir.join("identities/reviewer-b/key")).unwrap();
        let entry = sandbox_verify::entry::Entry::builder("module.approved", Timestamp::now(), "reviewer-a")
            .field("module", &sha)
            .build()
            .unwrap()
            .sign(&[&session_key])
            .unwrap();
        let mut c = client(&s.url, &s.token("reviewer-a"));
        let status = c.modules.approve(pb::SignedDecision { entry }).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    });
    let before = dump(&s);

    // A tampered module after approval is not the approved module.
    let stored = dir.join("modules").join(format!("{sha}.wasm"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    refused("op", &["run", "--module", &sha, "--agreement", "agr"], "differ");
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();

    // An ended agreement serves no run; a revoked licence starts nothing.
    s.ok("op", &["agreement", "end", "agr", "--reason", "到期 done"]);
    refused("op", &["run", "--module", &sha, "--agreement", "agr"], "ended or expired");
    s.ok("admin", &["licence", "revoke", "lic", "--reason", "违规 breach"]);
    refused("op", &["run", "--module", &sha, "--agreement", "agr"], "FailedPrecondition");
    refused("admin", &["licence", "resume", "lic"], "FailedPrecondition");

    // An expired licence: granted for a period that is over.
    s.ok(
        "admin",
        &[
            "licence",
            "grant",
            "old",
            "--operator",
            "op",
            "--datasets",
            "persons",
            "--purpose",
            "旧 old",
            "--from",
            "2020-01-01T00:00:00Z",
            "--until",
            "2021-01-01T00:00:00Z",
        ],
    );
    refused(
        "op",
        &["agreement", "create", "a3", "--licence", "old", "--unit", "unit", "--scenario", "x", "--until", &in_days(1)],
        "not in force",
    );
    let after = dump(&s);
    assert!(after.0 > before.0, "refusals are logged");
    assert_eq!(after.1, before.1 + 3, "only the agreement's end, the revocation and the grant changed state");
    s.stop();
    rebuild_equals_live(&dir);
}

/// The kind of every entry in the log so far, read through the Log service.
/// The id of the `n`th production run queued (from 1), as the log names it.
fn run_id(s: &Served, n: usize) -> String {
    nth_named(s, "run.queued", "run", n)
}

/// The id of the `n`th release (from 1), as the log names it.
fn release_id(s: &Served, n: usize) -> String {
    nth_named(s, "release", "release", n)
}

fn nth_named(s: &Served, kind: &str, field: &str, n: usize) -> String {
    let entries = log_entries(s);
    let named = entries.iter().filter(|e| e.kind() == kind).nth(n - 1);
    named.and_then(|e| e.get(field)).unwrap_or_else(|| panic!("no {kind} number {n} in the log")).to_owned()
}

fn log_kinds(s: &Served) -> Vec<String> {
    log_entries(s).iter().map(|e| e.kind().to_owned()).collect()
}

/// The log's entries as `who` reads them, bytes as served.
fn log_bytes(s: &Served, who: &str) -> Vec<Vec<u8>> {
    block_on(async {
        let mut log = client(&s.url, &s.token(who)).log;
        let size = log.checkpoint(pb::Empty {}).await.unwrap().into_inner().size;
        let mut all = Vec::new();
        while (all.len() as u64) < size {
            let start = all.len() as u64;
            all.extend(log.entries(pb::EntriesRequest { start, count: 1000 }).await.unwrap().into_inner().entries);
        }
        all
    })
}

/// Every entry of the log, as the evaluator reads them.
fn log_entries(s: &Served) -> Vec<sandbox_verify::entry::Entry> {
    log_bytes(s, "eval").iter().map(|e| sandbox_verify::entry::open(e).unwrap().0).collect()
}

/// (log entries, state-changing entries) so far.
fn dump(s: &Served) -> (usize, usize) {
    let kinds = log_kinds(s);
    (kinds.len(), kinds.iter().filter(|k| *k != "request.refused").count())
}

/// What a production run can tell its operator (and, through the log, anyone): one code from a
/// fixed set, a released report with no figure of anything withheld, and nothing the module
/// chose. A module whose declared values disagree with the host's is a breach; breaches suspend
/// the licence. Runs per day are limited, and answers wait for the policy's quantum.
#[test]
fn a_production_run_tells_nothing_the_module_chose() {
    let dir = data_dir("boundary");
    let policy = "[runs]\nmax_breaches = 2\nruns_per_day = 6\nanswer_quantum_ms = 1500\n";
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let s = Served::start(&dir, &[]);
    populate(&s);
    let sha = approved(&s, "hostile-module");

    // A contract the checker refuses never reaches a reviewer: counting residents by the prefix
    // of their (forbidden) mobile numbers, or by one citizen's ID number.
    let (wasm, toml, _) = example_files(&s.dir, "hostile-module");
    let honest = std::fs::read_to_string(&toml).unwrap();
    for (filter, expected) in [
        (r#"{ column = "persons.mobile", op = "starts_with", value = "138" }"#, "is forbidden"),
        (r#"{ column = "persons.citizen_id", op = "eq", value = "150202198503061234" }"#, "is pseudonymized"),
    ] {
        let contract = honest.replace("en = \"Probe table\"", &format!("en = \"Probe table\"\nfilters = [{filter}]"));
        assert_ne!(contract, honest);
        let path = s.dir.join("files/attack.toml");
        std::fs::write(&path, contract).unwrap();
        let o = s.cli(
            "op",
            &["module", "submit", "--module", &wasm, "--manifest", path.to_str().unwrap(), "--licence", "lic"],
        );
        assert!(!o.status.success() && stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(!stderr(&o).contains("150202198503061234"), "{}", stderr(&o));
    }

    let run = |params: &[&str]| {
        let mut args = vec!["run", "--module", sha.as_str(), "--agreement", "agr"];
        for p in params {
            args.extend(["--param", p]);
        }
        s.cli("op", &args)
    };
    let show = |run: &str| -> serde_json::Value {
        let json = s.ok("op", &["runs", "show", run, "--json"]);
        serde_json::from_str::<serde_json::Value>(&json).unwrap()[0].clone()
    };

    // The module fails with its own number 7: in production the operator reads "module", and
    // the answer waits for the quantum; on the twins the number is the operator's to see.
    let started = Instant::now();
    let o = run(&["attack=module-error"]);
    assert!(started.elapsed() >= Duration::from_millis(1500), "answered before the quantum");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let failed = show(run_id(&s, 1).as_str());
    assert_eq!((failed["error_code"].as_str(), failed["status"].as_i64()), (Some("module"), Some(6)), "{failed}");
    let dev = stdout(&s.cli("op", &["run", "--dev", "--module", &sha, "--param", "attack=module-error"]));
    assert!(dev.contains("module:7"), "{dev}");

    // A module that adds one to every count: the host's own figures disagree. The run fails on
    // its contract; nothing is released; the released report holds no figure.
    let lie = "payload=SELECT district, count(*) + 1 AS residents FROM persons GROUP BY district";
    let o = run(&["attack=sql", lie]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let breached = show(run_id(&s, 2).as_str());
    assert_eq!(
        (breached["error_code"].as_str(), breached["audit_outcome"].as_str()),
        (Some("contract"), Some("breach"))
    );
    let report = breached["audit_report_json"].as_str().unwrap();
    assert!(report.contains("inconsistent") && !report.contains("host computes"), "{report}");
    assert!(!report.contains("\"cells\"") && !report.contains("\"figures\""), "{report}");

    // Writing a table the contract does not declare fails on the contract too: the second
    // breach reaches max_breaches, and the server suspends the licence at once.
    assert_eq!(run(&["attack=undeclared-table"]).status.code(), Some(1));
    assert_eq!(show(run_id(&s, 3).as_str())["error_code"].as_str(), Some("contract"));
    let licences = s.ok("admin", &["licence", "list"]);
    assert!(licences.contains("suspended"), "{licences}");
    let o = run(&["attack=valid"]);
    assert!(!o.status.success() && stderr(&o).contains("suspended"), "{}", stderr(&o));
    s.ok("admin", &["licence", "resume", "lic"]);

    // An honest run releases the host's table; the operator reads the released report, a
    // reviewer the internal one (logged), the operator never.
    let o = run(&["attack=valid"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let internal = s.ok("reviewer-a", &["runs", "report", run_id(&s, 4).as_str()]);
    assert!(internal.contains("internal") && internal.contains("units"), "{internal}");
    let o = s.cli("op", &["runs", "report", run_id(&s, 4).as_str()]);
    assert!(stderr(&o).contains("PermissionDenied"), "{}", stderr(&o));
    let bundle = dir.join("got");
    let rel = release_id(&s, 1);
    let get = ["release", "get", rel.as_str(), "--out", bundle.to_str().unwrap()];
    s.ok("unit", &get);
    let released = std::fs::read_to_string(bundle.join("results/audit-report.json")).unwrap();
    assert!(!released.contains("\"cells\"") && !released.contains("privacy units,"), "{released}");

    // A cancel asked for before the run's (padded) end ends it as cancelled, whether or not the
    // module had finished: when it finished is not told.
    s.ok("op", &["run", "--module", &sha, "--agreement", "agr", "--param", "attack=valid", "--no-wait"]);
    s.ok("op", &["runs", "cancel", run_id(&s, 5).as_str()]);
    wait_for(&s, run_id(&s, 5).as_str(), "cancelled");

    // Runs per day: six started (one refused while suspended does not count), the seventh is
    // refused and logged. An honest run's answer waits for the quantum too.
    let started = Instant::now();
    assert!(run(&["attack=valid"]).status.success());
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let o = run(&["attack=valid"]);
    assert!(!o.status.success() && stderr(&o).contains("ResourceExhausted"), "{}", stderr(&o));

    // The log carries codes only: no number the module chose, no run record, no figure.
    let entries = log_entries(&s);
    let finished: Vec<_> = entries.iter().filter(|e| e.kind() == "run.finished").collect();
    for e in &finished {
        assert!(e.get("record").is_none(), "no record hash: its numbers are the module's");
        assert!(e.get("error").is_none_or(|c| ["module", "limits", "contract", "interrupted"].contains(&c)));
    }
    assert!(finished.iter().any(|e| e.get("error") == Some("module")));
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "audit.report.read").count(), 1, "{kinds:?}");
    let suspended = entries.iter().find(|e| e.kind() == "licence.suspended").unwrap();
    let server = entries.iter().find(|e| e.kind() == "run.started").unwrap().actor();
    assert_eq!(suspended.actor(), server, "the server itself suspended it");
    assert!(suspended.get("reason").is_some_and(|r| r.contains("breaches of the output contract")));
    let outcomes: Vec<_> =
        entries.iter().filter(|e| e.kind() == "audit.outcome").filter_map(|e| e.get("outcome")).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "breach").count(), 1, "{outcomes:?}");
    let contract = finished.iter().filter(|e| e.get("error") == Some("contract")).count();
    assert_eq!(contract, 1, "the undeclared table; the breach's run finished ok and failed at its audit");
    s.stop();
    rebuild_equals_live(&dir);
}
