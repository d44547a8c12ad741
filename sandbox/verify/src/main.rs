//! `sandbox-verify`: the offline verifier evaluators run. Parses arguments, reads the files, calls
//! the library, and prints the verdict for people (English and Chinese) or as one JSON object.
//!
//! Exit status: 0 verified, 1 not verified (including evidence that is malformed: a tampered file
//! is not verified), 2 unusable input (bad arguments, unreadable files or trust file, a trust
//! file without the keys needed, an unusable monitor state).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sandbox_verify::annual::{self, Filed, ReportCheck};
use sandbox_verify::audit::{self, AuditReport};
use sandbox_verify::checkpoint::{self, Checkpoint};
use sandbox_verify::monitor::{self, Outcome, Refusal};
use sandbox_verify::note::MAX_NOTE_SIZE;
use sandbox_verify::proof::{MAX_PROOF_HASHES, parse_hash_list};
use sandbox_verify::release::{self, ReleaseReport};
use sandbox_verify::tiles::read_limited;
use sandbox_verify::trust::{MAX_TRUST_FILE, Role, Trust};
use sandbox_verify::{Error, Fork, Problem, ProblemKind, merkle};

const USAGE: &str = "\
usage / 用法:
  sandbox-verify release BUNDLE --trust FILE [--json]
  sandbox-verify consistency OLD NEW PROOF --trust FILE [--json]
  sandbox-verify audit ARCHIVE --trust FILE [--json]
  sandbox-verify report ARCHIVE REPORT --trust FILE [--json]
  sandbox-verify monitor --state FILE CHECKPOINT [--proof PROOF] --trust FILE [--json]

exit status / 退出码: 0 verified 已验证, 1 not verified 未通过验证, 2 unusable input 输入无法使用";

fn main() -> ExitCode {
    // Paths need not be UTF-8; options are.
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().and_then(|a| a.to_str()).is_some_and(|a| matches!(a, "help" | "--help" | "-h")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let json = args.iter().any(|a| a == "--json");
    let verdict = match Args::parse(&args) {
        Ok(args) => run(&args),
        Err(unusable) => Verdict::unusable(unusable),
    };
    let status = verdict.status;
    verdict.print(json);
    ExitCode::from(status)
}

/// The parsed command line.
struct Args {
    command: String,
    paths: Vec<PathBuf>,
    trust: PathBuf,
    state: Option<PathBuf>,
    proof: Option<PathBuf>,
}

impl Args {
    fn parse(args: &[OsString]) -> Result<Args, Unusable> {
        let usage = |en: &str, zh: &str| Unusable::new("usage", format!("{en}\n{USAGE}"), zh);
        let mut it = args.iter().filter(|a| *a != "--json");
        let Some(command) = it.next() else { return Err(usage("no command given", "未给出命令")) };
        let command = command.to_string_lossy().into_owned();
        let (mut paths, mut trust, mut state, mut proof) = (Vec::new(), None, None, None);
        while let Some(arg) = it.next() {
            let text = arg.to_str().unwrap_or_default();
            let (flag, inline) = match text.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(OsString::from(value))),
                _ => (text, None),
            };
            let slot = match flag {
                "--trust" => &mut trust,
                "--state" => &mut state,
                "--proof" => &mut proof,
                _ if flag.starts_with('-') => {
                    return Err(usage(&format!("unknown option {flag}"), &format!("未知选项 {flag}")));
                }
                _ => {
                    paths.push(PathBuf::from(arg));
                    continue;
                }
            };
            let Some(value) = inline.or_else(|| it.next().cloned()) else {
                return Err(usage(&format!("{flag} needs a value"), &format!("{flag} 需要一个值")));
            };
            *slot = Some(PathBuf::from(value));
        }
        let expected = match command.as_str() {
            "release" | "audit" | "monitor" => 1,
            "report" => 2,
            "consistency" => 3,
            other => return Err(usage(&format!("unknown command {other:?}"), &format!("未知命令 {other:?}"))),
        };
        if paths.len() != expected {
            return Err(usage(
                &format!("{command} takes {expected} path(s), got {}", paths.len()),
                &format!("{command} 需要 {expected} 个路径，实际给出 {} 个", paths.len()),
            ));
        }
        if command == "monitor" && state.is_none() {
            return Err(usage("monitor needs --state FILE", "monitor 需要 --state 文件"));
        }
        if command != "monitor" && (state.is_some() || proof.is_some()) {
            return Err(usage("--state and --proof are for monitor only", "--state 和 --proof 只用于 monitor"));
        }
        let Some(trust) = trust else { return Err(usage("--trust FILE is required", "必须给出 --trust 文件")) };
        Ok(Args { command, paths, trust, state, proof })
    }
}

/// A minimal JSON value, enough for one report object.
enum Json {
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if u32::from(c) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", u32::from(c));
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::str(*key).write(out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Why the input cannot be used (exit status 2): where, in English and Chinese.
struct Unusable {
    at: String,
    en: String,
    zh: String,
}

impl Unusable {
    fn new(at: &str, en: impl Into<String>, zh: impl Into<String>) -> Unusable {
        Unusable { at: at.to_owned(), en: en.into(), zh: zh.into() }
    }

    fn from_error(at: &Path, e: Error) -> Unusable {
        Unusable::new(&at.display().to_string(), e.to_string(), e.zh())
    }
}

/// The outcome of a command: exit status, what was checked, and what is wrong.
struct Verdict {
    status: u8,
    /// What was verified, as `(JSON key, JSON value, line for people)`.
    facts: Vec<(&'static str, Json, String)>,
    problems: Vec<Problem>,
    unusable: Option<Unusable>,
}

impl Verdict {
    fn unusable(unusable: Unusable) -> Verdict {
        Verdict { status: 2, facts: Vec::new(), problems: Vec::new(), unusable: Some(unusable) }
    }

    fn checked(facts: Vec<(&'static str, Json, String)>, problems: Vec<Problem>) -> Verdict {
        Verdict { status: if problems.is_empty() { 0 } else { 1 }, facts, problems, unusable: None }
    }

    fn print(self, json: bool) {
        let mut out = String::new();
        if json {
            let mut fields = vec![("verified", Json::Bool(self.status == 0))];
            if let Some(Unusable { at, en, zh }) = &self.unusable {
                let fields_of = vec![("at", Json::str(at)), ("message", Json::str(en)), ("message_zh", Json::str(zh))];
                fields.push(("unusable", Json::Obj(fields_of)));
            }
            fields.extend(self.facts.into_iter().map(|(key, value, _)| (key, value)));
            fields.push(("problems", Json::Arr(self.problems.iter().map(problem_json).collect())));
            Json::Obj(fields).write(&mut out);
            out.push('\n');
        } else if let Some(Unusable { at, en, zh }) = &self.unusable {
            let _ = writeln!(out, "unusable input / 输入无法使用\n  {at}: {en}\n  {at}：{zh}");
        } else {
            if self.problems.is_empty() {
                out.push_str("verified / 已验证\n");
            } else {
                let n = self.problems.len();
                let _ = writeln!(out, "NOT verified / 未通过验证 ({n} problem(s) / {n} 个问题)");
            }
            for (_, _, line) in self.facts.iter().filter(|(_, _, line)| !line.is_empty()) {
                let _ = writeln!(out, "  {line}");
            }
            for problem in &self.problems {
                let _ = writeln!(out, "  ✗ {problem}\n    {}", problem.zh());
                if let ProblemKind::Fork(fork) = &problem.kind {
                    out.push_str("    fork evidence / 分叉证据:\n");
                    for note in [&fork.first, &fork.second] {
                        out.push_str("    -----\n");
                        for line in String::from_utf8_lossy(note).lines() {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                    if let Some(root) = fork.root_in_second {
                        let _ = writeln!(
                            out,
                            "    -----\n    root of the second tree at the first's size / 第二棵树在第一个大小时的根: {}",
                            root.to_base64()
                        );
                        out.push_str("    consistency proof / 一致性证明:\n");
                        for hash in &fork.proof {
                            let _ = writeln!(out, "    {}", hash.to_base64());
                        }
                    }
                }
            }
        }
        let _ = if self.status == 2 && !json {
            std::io::stderr().write_all(out.as_bytes())
        } else {
            std::io::stdout().write_all(out.as_bytes())
        };
    }
}

fn problem_json(problem: &Problem) -> Json {
    let mut fields = vec![
        ("at", Json::str(&problem.at)),
        ("message", Json::str(problem.kind.to_string())),
        ("message_zh", Json::str(problem.kind.zh())),
    ];
    if let ProblemKind::Fork(fork) = &problem.kind {
        let mut evidence = vec![
            ("first", Json::str(String::from_utf8_lossy(&fork.first))),
            ("second", Json::str(String::from_utf8_lossy(&fork.second))),
            ("proof", Json::Arr(fork.proof.iter().map(|h| Json::str(h.to_base64())).collect())),
        ];
        if let Some(root) = fork.root_in_second {
            evidence.push(("root_in_second", Json::str(root.to_base64())));
        }
        fields.push(("fork", Json::Obj(evidence)));
    }
    Json::Obj(fields)
}

fn checkpoint_fact(key: &'static str, label: &str, c: &Checkpoint) -> (&'static str, Json, String) {
    let json = Json::Obj(vec![
        ("origin", Json::str(c.origin())),
        ("size", Json::Num(c.size())),
        ("root", Json::str(c.root().to_base64())),
    ]);
    (key, json, format!("{label}: {} at size {} (root {})", c.origin(), c.size(), c.root().to_base64()))
}

/// Reads a whole input file of at most `limit` bytes; a missing or unreadable one is unusable.
fn read(path: &Path, limit: usize) -> Result<Vec<u8>, Unusable> {
    match read_limited(path, limit) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(Unusable::from_error(path, Error::Missing { path: path.into() })),
        Err(e) => Err(Unusable::from_error(path, e)),
    }
}

fn run(args: &Args) -> Verdict {
    let result = read_trust(args).and_then(|trust| match args.command.as_str() {
        "release" => release_command(&args.paths[0], &trust),
        "consistency" => consistency_command(&args.paths, &trust),
        "audit" => audit_command(&args.paths[0], &trust),
        "report" => report_command(&args.paths[0], &args.paths[1], &trust),
        _ => monitor_command(args, &trust),
    });
    result.unwrap_or_else(Verdict::unusable)
}

/// The trust file, with the keys the command needs.
fn read_trust(args: &Args) -> Result<Trust, Unusable> {
    let at = args.trust.display().to_string();
    let text = String::from_utf8(read(&args.trust, MAX_TRUST_FILE)?)
        .map_err(|_| Unusable::new(&at, "not UTF-8", "不是 UTF-8"))?;
    let trust = Trust::parse(&text).map_err(|e| Unusable::from_error(&args.trust, e))?;
    let needed: &[Role] = if args.command == "release" { &[Role::Log, Role::Release] } else { &[Role::Log] };
    match needed.iter().find(|r| trust.keys(**r).next().is_none()) {
        Some(role) => {
            let role = role.as_str();
            Err(Unusable::new(&at, format!("the trust file has no {role} key"), format!("信任文件中没有 {role} 密钥")))
        }
        None => Ok(trust),
    }
}

fn require_dir(path: &Path) -> Result<(), Unusable> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(Unusable::new(&path.display().to_string(), "not a directory", "不是目录"))
    }
}

fn release_command(bundle: &Path, trust: &Trust) -> Result<Verdict, Unusable> {
    require_dir(bundle)?;
    let ReleaseReport { statement, checkpoint, index, results, problems } = release::verify(bundle, trust);
    let mut facts = Vec::new();
    if let Some(s) = &statement {
        let fields = s.fields().iter().map(|(k, v)| Json::Arr(vec![Json::str(k), Json::str(v)])).collect();
        let json = Json::Obj(vec![
            ("kind", Json::str(s.kind())),
            ("time", Json::str(s.time().to_string())),
            ("actor", Json::str(s.actor())),
            ("fields", Json::Arr(fields)),
        ]);
        let line = format!(
            "statement / 声明: release at {} by {}, recipient {}, agreement {}",
            s.time(),
            s.actor(),
            s.get("recipient").unwrap_or("?"),
            s.get("agreement").unwrap_or("?")
        );
        facts.push(("statement", json, line));
    }
    if let (Some(c), Some(index)) = (&checkpoint, index) {
        facts.push(("index", Json::Num(index), format!("logged as entry / 日志条目序号: {index}")));
        facts.push(checkpoint_fact("checkpoint", "checkpoint / 检查点", c));
    }
    let files = results
        .iter()
        .map(|(name, hash)| Json::Obj(vec![("file", Json::str(name)), ("sha256", Json::str(hash.to_hex()))]))
        .collect();
    let lines: Vec<String> = results.iter().map(|(name, hash)| format!("results/{name} sha256 {hash} ✓")).collect();
    facts.push(("results", Json::Arr(files), lines.join("\n  ")));
    Ok(Verdict::checked(facts, problems))
}

fn consistency_command(paths: &[PathBuf], trust: &Trust) -> Result<Verdict, Unusable> {
    let (old_bytes, new_bytes) = (read(&paths[0], MAX_NOTE_SIZE)?, read(&paths[1], MAX_NOTE_SIZE)?);
    let proof_bytes = read(&paths[2], MAX_PROOF_HASHES * 46)?;
    let keys = trust.checkpoint_keys(None);
    let mut problems = Vec::new();
    let mut facts = Vec::new();
    let mut open = |path: &Path, bytes: &[u8], key, label| match checkpoint::open(bytes, &keys) {
        Ok((c, _)) => {
            facts.push(checkpoint_fact(key, label, &c));
            Some(c)
        }
        Err(e) => {
            problems.push(Problem { at: path.display().to_string(), kind: ProblemKind::Invalid(e) });
            None
        }
    };
    let old = open(&paths[0], &old_bytes, "old", "old / 旧检查点");
    let new = open(&paths[1], &new_bytes, "new", "new / 新检查点");
    let at = |i: usize| paths[i].display().to_string();
    match parse_hash_list(&proof_bytes) {
        Err(e) => problems.push(Problem { at: at(2), kind: ProblemKind::Invalid(e) }),
        Ok(proof) => {
            if let (Some(old), Some(new)) = (old, new) {
                if old.origin() != new.origin() {
                    let kind =
                        ProblemKind::OtherOrigin { expected: old.origin().to_owned(), found: new.origin().to_owned() };
                    problems.push(Problem { at: at(1), kind });
                } else if old.size() == new.size() && old.root() != new.root() {
                    // Both signed, same size, two roots: no proof needed, this is a fork.
                    let fork = Fork {
                        first: old_bytes.clone(),
                        second: new_bytes.clone(),
                        proof: Vec::new(),
                        root_in_second: None,
                    };
                    problems.push(Problem {
                        at: format!("{} and {}", at(0), at(1)),
                        kind: ProblemKind::Fork(Box::new(fork)),
                    });
                } else if let Err(e) =
                    merkle::verify_consistency(old.size(), new.size(), old.root(), new.root(), &proof)
                {
                    problems.push(Problem { at: at(2), kind: ProblemKind::Invalid(e) });
                }
            }
        }
    }
    Ok(Verdict::checked(facts, problems))
}

fn audit_command(archive: &Path, trust: &Trust) -> Result<Verdict, Unusable> {
    require_dir(archive)?;
    let AuditReport { origin, size, checkpoints, entries, tiles, problems } = audit::audit(archive, trust);
    let origin = origin.unwrap_or_default();
    let line = format!(
        "log / 日志 {origin}: size / 大小 {size}, {checkpoints} checkpoints / 个检查点, {entries} entries / 个条目, \
         {tiles} tiles / 个瓦片"
    );
    let json = Json::Obj(vec![
        ("origin", Json::str(origin)),
        ("size", Json::Num(size)),
        ("checkpoints", Json::Num(checkpoints as u64)),
        ("entries", Json::Num(entries)),
        ("tiles", Json::Num(tiles as u64)),
    ]);
    Ok(Verdict::checked(vec![("log", json, line)], problems))
}

fn monitor_command(args: &Args, trust: &Trust) -> Result<Verdict, Unusable> {
    let state = args.state.as_deref().unwrap_or(Path::new(""));
    let remembered = match std::fs::metadata(state) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(read(state, MAX_NOTE_SIZE)?),
    };
    let new = read(&args.paths[0], MAX_NOTE_SIZE)?;
    let proof = match &args.proof {
        None => None,
        Some(path) => match parse_hash_list(&read(path, MAX_PROOF_HASHES * 46)?) {
            Ok(proof) => Some(proof),
            Err(e) => {
                let problem = Problem { at: path.display().to_string(), kind: ProblemKind::Invalid(e) };
                return Ok(Verdict::checked(Vec::new(), vec![problem]));
            }
        },
    };
    let outcome = match monitor::check(remembered.as_deref(), &new, proof.as_deref(), trust) {
        Ok(outcome) => outcome,
        Err(Refusal::Refused(problem)) => return Ok(Verdict::checked(Vec::new(), vec![problem])),
        Err(Refusal::Unusable(problem)) => {
            return Err(Unusable::new(&problem.at, problem.kind.to_string(), problem.kind.zh()));
        }
    };
    let (label, json, facts) = match &outcome {
        Outcome::FirstUse(c) => {
            ("first use: remembered / 首次使用：已记录", "first-use", vec![checkpoint_fact("new", "new / 新检查点", c)])
        }
        Outcome::Unchanged(c) => ("unchanged / 未变化", "unchanged", vec![checkpoint_fact("new", "new / 新检查点", c)]),
        Outcome::Extended { old, new } => (
            "consistent, remembered / 一致，已记录",
            "extended",
            vec![checkpoint_fact("old", "old / 旧检查点", old), checkpoint_fact("new", "new / 新检查点", new)],
        ),
    };
    if !matches!(outcome, Outcome::Unchanged(_)) {
        save_state(state, &new).map_err(|e| Unusable::from_error(state, e))?;
    }
    let mut all = vec![("outcome", Json::str(json), label.to_owned())];
    all.extend(facts);
    Ok(Verdict::checked(all, Vec::new()))
}

/// Replaces the state file so that a crash leaves the old or the new one, never half of either:
/// write a temporary file, sync it, rename it over, sync the directory.
fn save_state(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The largest annual report read.
const MAX_REPORT: usize = 4 << 20;

/// Audits the archive and, in the same pass, computes the annual report again from the entries
/// it covers; the file must be exactly that report, and a `report` entry must name it.
fn report_command(archive: &Path, report: &Path, trust: &Trust) -> Result<Verdict, Unusable> {
    require_dir(archive)?;
    let at = report.display().to_string();
    let text =
        String::from_utf8(read(report, MAX_REPORT)?).map_err(|_| Unusable::new(&at, "not UTF-8", "不是 UTF-8"))?;
    let ReportCheck { year, origin, size, sha256, filed, problems } =
        annual::verify(archive, &at, &text, trust).map_err(|e| Unusable::from_error(report, e))?;
    let mut facts = vec![
        ("year", Json::Num(year as u64), format!("year / 年度: {year}")),
        ("log", Json::str(&origin), format!("log / 日志: {origin}, first {size} entries / 前 {size} 个条目")),
        ("size", Json::Num(size), String::new()),
        ("sha256", Json::str(sha256.to_hex()), format!("sha256: {sha256}")),
    ];
    if let Some(Filed { index, actor, time }) = filed {
        facts.push((
            "filed",
            Json::Obj(vec![
                ("index", Json::Num(index)),
                ("actor", Json::str(&actor)),
                ("time", Json::str(time.to_string())),
            ]),
            format!("filed / 备案: entry {index} by {actor} at {time}"),
        ));
    }
    Ok(Verdict::checked(facts, problems))
}
