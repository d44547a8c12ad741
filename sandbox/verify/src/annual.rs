//! The annual operation report (年度运营报告): what the log says happened in one calendar year,
//! Beijing time, for the bureau and its evaluators (第三方评估机构) — per operator, per application
//! unit and per reviewer, with the refused requests.
//!
//! The report is a function of the log's first `size` entries and nothing else, written in one
//! canonical text, so an evaluator holding the log computes it again byte for byte
//! (`sandbox-verify report`) and compares it with the copy the bureau filed; the `report` entry
//! of the filing names the copy's SHA-256. The first lines are for programs:
//!
//! ```text
//! sandbox.report/annual/v1
//! year 2026
//! log <origin>
//! size <entries covered>
//! ```
//!
//! then a blank line and the report for people, in Chinese and English.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use crate::entry::{Entry, kind};
use crate::error::{Error, Format};
use crate::event::Event;
use crate::merkle::Hash;
use crate::problem::{Problem, ProblemKind};
use crate::time::Timestamp;
use crate::trust::Trust;

/// The first line of every annual report of this version.
pub const HEADER: &str = "sandbox.report/annual/v1";
/// Beijing time is UTC+8 all year.
const BEIJING_OFFSET: i64 = 8 * 3600;

/// What a count is of: a bilingual label, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Metric {
    LicencesGranted,
    LicencesSuspended,
    LicencesRevoked,
    LicenceConsents,
    Incidents,
    IncidentMeasures,
    IncidentsClosed,
    AgreementsSigned,
    AgreementsEnded,
    ModulesSubmitted,
    ModuleApprovals,
    ModulesRejected,
    ModulesRevoked,
    DevelopmentRuns,
    DevelopmentRunsFailed,
    ProductionRuns,
    RunsEnded,
    AuditOutcomes,
    OutputsApproved,
    OutputsRejected,
    Releases,
    Deliveries,
    Feedback,
    RatingSum,
    ProviderRatings,
    Refused,
    Disabled,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::LicencesGranted => "授予授权运营协议 / licences granted",
            Metric::LicencesSuspended => "暂停授权 / licences suspended",
            Metric::LicencesRevoked => "撤销授权 / licences revoked",
            Metric::LicenceConsents => "数源部门同意（按数据集）/ providers' consents (by dataset)",
            Metric::Incidents => "报告的安全事件（按类别）/ incidents reported (by category)",
            Metric::IncidentMeasures => "处置措施（按措施）/ incident measures (by measure)",
            Metric::IncidentsClosed => "已结案的安全事件 / incidents closed",
            Metric::AgreementsSigned => "签订数据服务协议 / agreements signed",
            Metric::AgreementsEnded => "终止数据服务协议 / agreements ended",
            Metric::ModulesSubmitted => "提交模块 / modules submitted",
            Metric::ModuleApprovals => "模块审核通过签名 / module approvals signed",
            Metric::ModulesRejected => "驳回模块 / modules rejected",
            Metric::ModulesRevoked => "撤销模块 / modules revoked",
            Metric::DevelopmentRuns => "开发运行（合成数据）/ development runs (synthetic twins)",
            Metric::DevelopmentRunsFailed => "其中出错 / of which ended in an error",
            Metric::ProductionRuns => "生产运行 / production runs",
            Metric::RunsEnded => "运行结束于 / runs ended",
            Metric::AuditOutcomes => "出域审核结论 / output audit outcomes",
            Metric::OutputsApproved => "人工复核放行的表 / held tables approved",
            Metric::OutputsRejected => "人工复核驳回的表 / held tables rejected",
            Metric::Releases => "发布 / releases",
            Metric::Deliveries => "交付（下载）/ deliveries (downloads)",
            Metric::Feedback => "评价 / feedback",
            Metric::RatingSum => "平均评分 / mean rating",
            Metric::ProviderRatings => "数源部门评价（按分值）/ providers' ratings (by score)",
            Metric::Refused => "被拒绝的请求 / refused requests",
            Metric::Disabled => "被停用 / times disabled",
        }
    }
}

/// The counts of one principal: per metric, per code (`""` when the metric has none).
type Counts = BTreeMap<(Metric, String), u64>;

/// Who an operator's runs, releases and agreements belong to, learnt from every entry before.
#[derive(Debug, Default)]
struct Owners {
    roles: HashMap<String, String>,
    licences: HashMap<String, String>,
    /// Incident → the operator of its licence.
    incidents: HashMap<String, String>,
    /// Agreement → (operator, application unit).
    agreements: HashMap<String, (String, String)>,
    modules: HashMap<String, String>,
    /// Run → (operator, application unit).
    runs: HashMap<String, (String, String)>,
    releases: HashMap<String, (String, String)>,
    /// Release → the datasets it was computed from.
    release_datasets: HashMap<String, Vec<String>>,
}

/// What one dataset's data took part in during the year (数据贡献评价, 包头 第二十五条).
#[derive(Debug, Default)]
struct Contribution {
    runs: u64,
    releases: u64,
    deliveries: u64,
    units: std::collections::BTreeSet<String>,
}

/// `id@version,…` (or ids alone): the ids.
fn dataset_ids<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let ids = items.into_iter().filter(|d| !d.is_empty()).map(|d| d.split('@').next().unwrap_or(d).to_owned());
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    ids.dedup();
    ids
}

/// An annual report being computed: feed it the log's entries in order with [`Annual::add`],
/// then [`Annual::render`] it.
#[derive(Debug)]
pub struct Annual {
    year: i32,
    origin: String,
    size: u64,
    start: Timestamp,
    end: Timestamp,
    seen: u64,
    in_period: u64,
    kinds: BTreeMap<String, u64>,
    owners: Owners,
    operators: BTreeMap<String, Counts>,
    units: BTreeMap<String, Counts>,
    reviewers: BTreeMap<String, Counts>,
    /// (role, RPC, status code) → refusals.
    refusals: BTreeMap<(String, String, String), u64>,
    history: History,
    contributions: BTreeMap<String, Contribution>,
}

/// The release history later audits compare with, as release entries state it.
#[derive(Debug, Default)]
struct History {
    /// The first release that stated it: since when it has been kept.
    since: Option<Timestamp>,
    /// (released cells, released tables) as the last release before the period left it.
    before: (u64, u64),
    /// The same, by the end of the period.
    after: (u64, u64),
}

fn malformed(en: impl Into<String>, zh: impl Into<String>) -> Error {
    Error::malformed(Format::File, en, zh)
}

/// The calendar year of `time` in Beijing time.
pub fn year_of(time: Timestamp) -> i32 {
    Timestamp(time.0 + BEIJING_OFFSET).year() as i32
}

/// The first instant of `year` in Beijing time.
fn year_start(year: i32) -> Timestamp {
    let midnight = Timestamp::parse(&format!("{year:04}-01-01T00:00:00Z")).expect("years 1..=9998 parse");
    Timestamp(midnight.0 - BEIJING_OFFSET)
}

impl Annual {
    /// A report on `year` (Beijing time) from the first `size` entries of the log `origin`.
    pub fn new(year: i32, origin: &str, size: u64) -> Result<Annual, Error> {
        if !(2000..=9998).contains(&year) {
            return Err(malformed(format!("year {year} is not 2000–9998"), format!("年份 {year} 不在 2000–9998 之间")));
        }
        if origin.is_empty() || origin.contains(char::is_whitespace) {
            return Err(malformed(format!("log origin {origin:?} is not a name"), format!("日志名 {origin:?} 无效")));
        }
        Ok(Annual {
            year,
            origin: origin.to_owned(),
            size,
            start: year_start(year),
            end: year_start(year + 1),
            seen: 0,
            in_period: 0,
            kinds: BTreeMap::new(),
            owners: Owners::default(),
            operators: BTreeMap::new(),
            units: BTreeMap::new(),
            reviewers: BTreeMap::new(),
            refusals: BTreeMap::new(),
            history: History::default(),
            contributions: BTreeMap::new(),
        })
    }

    /// The report's period: from its first instant to the first instant after it.
    pub fn period(&self) -> (Timestamp, Timestamp) {
        (self.start, self.end)
    }

    /// The log entries the report covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads the next entry of the log (entry `index`; entries must come in order from 0, and
    /// unreadable ones as `None`). Entries from `size` on are ignored.
    pub fn add(&mut self, index: u64, entry: Option<&Entry>) {
        if index >= self.size || index != self.seen {
            return;
        }
        self.seen += 1;
        let Some(entry) = entry else { return };
        let counted = (self.start..self.end).contains(&entry.time());
        // An entry of a known kind without the fields its kind has is counted by kind only.
        let event = Event::decode(entry).ok();
        if let Some(event) = &event {
            self.learn(entry, event);
        }
        if counted {
            self.in_period += 1;
            *self.kinds.entry(entry.kind().to_owned()).or_default() += 1;
            if let Some(event) = &event {
                self.count(entry, event);
            }
        }
    }

    /// Learns who owns what from `entry`, whatever its time.
    fn learn(&mut self, entry: &Entry, event: &Event) {
        let owners = &mut self.owners;
        let actor = entry.actor().to_owned();
        match event {
            Event::PrincipalRegistered { principal, role, .. } => {
                owners.roles.insert(principal.clone(), role.clone());
            }
            Event::IncidentReported { incident, licence, .. } => {
                let operator = owners.licences.get(licence).cloned().unwrap_or_default();
                owners.incidents.insert(incident.clone(), operator);
            }
            Event::LicenceGranted { licence, operator, .. } => {
                owners.licences.insert(licence.clone(), operator.clone());
            }
            Event::AgreementSigned { agreement, application_unit, .. } => {
                owners.agreements.insert(agreement.clone(), (actor, application_unit.clone()));
            }
            Event::ModuleSubmitted { module, .. } => {
                owners.modules.insert(module.clone(), actor);
            }
            Event::RunQueued { run, agreement, .. } => {
                let unit = owners.agreements.get(agreement).map(|(_, unit)| unit.clone()).unwrap_or_default();
                owners.runs.insert(run.clone(), (actor, unit));
            }
            Event::Release { run, release, datasets, history_cells, history_tables, .. } => {
                let owner = owners.runs.get(run).cloned().unwrap_or_default();
                owners.releases.insert(release.clone(), owner);
                owners.release_datasets.insert(release.clone(), dataset_ids(datasets.split(',')));
                if let (Some(cells), Some(tables), true) = (history_cells, history_tables, entry.time() < self.end) {
                    let history = &mut self.history;
                    history.since.get_or_insert(entry.time());
                    history.after = (*cells, *tables);
                    if entry.time() < self.start {
                        history.before = (*cells, *tables);
                    }
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, entry: &Entry, event: &Event) {
        let actor = entry.actor().to_owned();
        let owners = &self.owners;
        let of = |map: &HashMap<String, String>, key: &str| map.get(key).cloned().unwrap_or_default();
        let run = |key: &str| owners.runs.get(key).cloned().unwrap_or_default();
        let release = |key: &str| owners.releases.get(key).cloned().unwrap_or_default();
        // (operator, unit, reviewer) the entry counts for, and what.
        let (operator, unit, reviewer, metric, code) = match event {
            Event::LicenceGranted { operator, .. } => (operator.clone(), None, None, Metric::LicencesGranted, ""),
            Event::LicenceSuspended { licence, .. } => {
                (of(&owners.licences, licence), None, None, Metric::LicencesSuspended, "")
            }
            Event::LicenceRevoked { licence, .. } => {
                (of(&owners.licences, licence), None, None, Metric::LicencesRevoked, "")
            }
            Event::IncidentReported { licence, category, .. } => {
                (of(&owners.licences, licence), None, None, Metric::Incidents, category.as_str())
            }
            Event::IncidentMeasure { incident, measure, .. } => {
                (of(&owners.incidents, incident), None, None, Metric::IncidentMeasures, measure.as_str())
            }
            Event::IncidentClosed { incident, .. } => {
                (of(&owners.incidents, incident), None, None, Metric::IncidentsClosed, "")
            }
            Event::LicenceConsented { licence, dataset } => {
                (of(&owners.licences, licence), None, None, Metric::LicenceConsents, dataset.as_str())
            }
            Event::AgreementSigned { application_unit, .. } => {
                (actor, Some(application_unit.clone()), None, Metric::AgreementsSigned, "")
            }
            Event::AgreementEnded { agreement, .. } => {
                let (operator, unit) = owners.agreements.get(agreement).cloned().unwrap_or_default();
                (operator, Some(unit), None, Metric::AgreementsEnded, "")
            }
            Event::ModuleSubmitted { .. } => (actor, None, None, Metric::ModulesSubmitted, ""),
            Event::ModuleApproved { module } => {
                (of(&owners.modules, module), None, Some(actor), Metric::ModuleApprovals, "")
            }
            Event::ModuleRejected { module, .. } => {
                (of(&owners.modules, module), None, Some(actor), Metric::ModulesRejected, "")
            }
            Event::ModuleRevoked { module, .. } => {
                (of(&owners.modules, module), None, None, Metric::ModulesRevoked, "")
            }
            Event::RunDeveloped { outcome, .. } => {
                if outcome != "ok" {
                    add(&mut self.operators, &actor, Metric::DevelopmentRunsFailed, "", 1);
                }
                (actor, None, None, Metric::DevelopmentRuns, "")
            }
            Event::RunQueued { run: id, datasets, .. } => {
                for dataset in dataset_ids(datasets.iter().map(String::as_str)) {
                    self.contributions.entry(dataset).or_default().runs += 1;
                }
                let (operator, unit) = run(id);
                (operator, Some(unit), None, Metric::ProductionRuns, "")
            }
            Event::RunFinished { run: id, status, error, .. } => {
                let code = match error {
                    _ if status == "ok" => return,
                    Some(error) => format!("{status}:{error}"),
                    None => status.clone(),
                };
                add(&mut self.operators, &run(id).0, Metric::RunsEnded, &code, 1);
                return;
            }
            Event::AuditOutcome { run: id, outcome, .. } => {
                add(&mut self.operators, &run(id).0, Metric::AuditOutcomes, outcome, 1);
                return;
            }
            Event::OutputApproved { run: id, .. } => (run(id).0, None, Some(actor), Metric::OutputsApproved, ""),
            Event::OutputRejected { run: id, .. } => (run(id).0, None, Some(actor), Metric::OutputsRejected, ""),
            Event::Release { release: id, .. } => {
                let (operator, unit) = release(id);
                for dataset in owners.release_datasets.get(id).into_iter().flatten() {
                    let contribution = self.contributions.entry(dataset.clone()).or_default();
                    contribution.releases += 1;
                    contribution.units.insert(unit.clone());
                }
                (operator, Some(unit), None, Metric::Releases, "")
            }
            Event::Delivery { release: id } => {
                for dataset in owners.release_datasets.get(id).into_iter().flatten() {
                    self.contributions.entry(dataset.clone()).or_default().deliveries += 1;
                }
                (release(id).0, Some(actor), None, Metric::Deliveries, "")
            }
            Event::Feedback { release: id, rating, .. } => {
                let operator = release(id).0;
                add(&mut self.operators, &operator, Metric::RatingSum, "", u64::from(*rating));
                add(&mut self.units, &actor, Metric::RatingSum, "", u64::from(*rating));
                (operator, Some(actor), None, Metric::Feedback, "")
            }
            Event::OperatorRated { operator, score, .. } => {
                let score = ["0", "1", "2", "3", "4", "5"].get(*score as usize).copied().unwrap_or("?");
                (operator.clone(), None, None, Metric::ProviderRatings, score)
            }
            Event::PrincipalDisabled { principal, .. } => {
                let who = match owners.roles.get(principal).map(String::as_str) {
                    Some("operator") => &mut self.operators,
                    Some("application_unit") => &mut self.units,
                    _ => return,
                };
                add(who, principal, Metric::Disabled, "", 1);
                return;
            }
            Event::RequestRefused { rpc, code, unlogged, .. } => {
                let role = owners.roles.get(&actor).cloned().unwrap_or_else(|| "?".to_owned());
                *self.refusals.entry((role.clone(), rpc.clone(), code.clone())).or_default() += 1;
                // Refusals past the server's allowance per minute, counted, not logged one by one.
                let unlogged = unlogged.unwrap_or(0);
                if unlogged > 0 {
                    *self.refusals.entry((role.clone(), "*".to_owned(), "unlogged".to_owned())).or_default() +=
                        unlogged;
                }
                let who = match role.as_str() {
                    "operator" => &mut self.operators,
                    "application_unit" => &mut self.units,
                    _ => return,
                };
                add(who, &actor, Metric::Refused, "", 1 + unlogged);
                return;
            }
            _ => return,
        };
        add(&mut self.operators, &operator, metric, code, 1);
        add(&mut self.units, unit.as_deref().unwrap_or_default(), metric, code, 1);
        add(&mut self.reviewers, reviewer.as_deref().unwrap_or_default(), metric, code, 1);
    }

    /// The report's canonical text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (year, origin, size) = (self.year, &self.origin, self.size);
        let _ = writeln!(out, "{HEADER}\nyear {year}\nlog {origin}\nsize {size}\n");
        let _ = writeln!(out, "{year} 年度运营报告 / Annual operation report {year}");
        let _ = writeln!(
            out,
            "期间 / period: {} – {}（北京时间全年 / the calendar year in Beijing time）",
            self.start, self.end
        );
        let _ = writeln!(
            out,
            "依据 / from: 日志 {origin} 的前 {size} 个条目，其中 {} 个在期间内 / the first {size} entries of the log \
             {origin}, {} of them in the period",
            self.in_period, self.in_period
        );
        out.push_str("\n一、条目 / Entries\n");
        section(&mut out, self.kinds.iter().map(|(kind, n)| format!("{kind}: {n}")));
        out.push_str("\n二、运营单位 / Operators\n");
        principals(&mut out, &self.operators);
        out.push_str("\n三、应用单位 / Application units\n");
        principals(&mut out, &self.units);
        out.push_str("\n四、审核人员 / Reviewers\n");
        principals(&mut out, &self.reviewers);
        out.push_str("\n五、被拒绝的请求 / Refused requests (role, RPC, code)\n");
        section(&mut out, self.refusals.iter().map(|((role, rpc, code), n)| format!("{role} {rpc} {code}: {n}")));
        out.push_str("\n六、发布历史（后续出域审核据以比对）/ Release history (what later audits compare with)\n");
        let history = &self.history;
        let lines = history.since.map(|since| {
            let ((cells, tables), (cells_before, tables_before)) = (history.after, history.before);
            [
                format!(
                    "已发布单元格 / released cells: {cells}（本年新增 / this year +{}）",
                    cells.saturating_sub(cells_before)
                ),
                format!(
                    "已发布表 / released tables: {tables}（本年新增 / this year +{}）",
                    tables.saturating_sub(tables_before)
                ),
                format!("始于 / kept since: {since}"),
            ]
        });
        section(&mut out, lines.into_iter().flatten());
        out.push_str("\n七、数据贡献（按数据集）/ Data contribution (per dataset)\n");
        section(
            &mut out,
            self.contributions.iter().map(|(dataset, c)| {
                format!(
                    "{dataset}: 生产运行 / production runs {}, 发布 / releases {}, 服务应用单位 / units served {}, \
                     交付 / deliveries {}",
                    c.runs,
                    c.releases,
                    c.units.len(),
                    c.deliveries
                )
            }),
        );
        out
    }
}

/// Adds `n` to `who`'s count of `metric` (nobody's, if `who` is empty: an owner the log never named).
fn add(counts: &mut BTreeMap<String, Counts>, who: &str, metric: Metric, code: &str, n: u64) {
    if !who.is_empty() {
        *counts.entry(who.to_owned()).or_default().entry((metric, code.to_owned())).or_default() += n;
    }
}

fn section(out: &mut String, lines: impl Iterator<Item = String>) {
    let mut any = false;
    for line in lines {
        let _ = writeln!(out, "  {line}");
        any = true;
    }
    if !any {
        out.push_str("  无 / none\n");
    }
}

fn principals(out: &mut String, counts: &BTreeMap<String, Counts>) {
    section(
        out,
        counts.iter().map(|(name, counts)| {
            let feedback = counts.get(&(Metric::Feedback, String::new())).copied().unwrap_or(0);
            let lines = counts.iter().map(|((metric, code), n)| match metric {
                Metric::RatingSum if feedback > 0 => {
                    // Two decimals, rounded half up, in integers: the same bytes everywhere.
                    let hundredths = (n * 100 * 2 + feedback) / (feedback * 2);
                    format!("    {}: {}.{:02}", metric.label(), hundredths / 100, hundredths % 100)
                }
                Metric::RatingSum => String::new(),
                _ if code.is_empty() => format!("    {}: {n}", metric.label()),
                _ => format!("    {} ({code}): {n}", metric.label()),
            });
            let lines: Vec<String> = lines.filter(|l| !l.is_empty()).collect();
            format!("{name}\n{}", lines.join("\n"))
        }),
    );
}

/// The year, log origin and size a report's first lines state.
pub fn parse_header(text: &str) -> Result<(i32, String, u64), Error> {
    let bad = || {
        malformed(
            format!("not an annual report: the first lines must be {HEADER}, year, log and size"),
            format!("不是年度运营报告：前几行须为 {HEADER}、year、log 和 size"),
        )
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(bad());
    }
    let mut value = |key: &str| lines.next().and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix(' '));
    let year = value("year").and_then(|y| y.parse().ok()).ok_or_else(bad)?;
    let origin = value("log").ok_or_else(bad)?.to_owned();
    let size = value("size").and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((year, origin, size))
}

/// The `report` entry that filed a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    pub index: u64,
    pub actor: String,
    pub time: Timestamp,
}

/// What checking a report found; it is verified when `problems` is empty.
#[derive(Debug)]
pub struct ReportCheck {
    pub year: i32,
    pub origin: String,
    pub size: u64,
    pub sha256: Hash,
    pub filed: Option<Filed>,
    pub problems: Vec<Problem>,
}

/// Checks the report `text` (read from `at`) against the log archive at `archive`: audits the
/// archive as [`crate::audit::audit`] does and, in the same pass, computes the report again from
/// the entries it covers; the text must be exactly that, and a `report` entry of the log must
/// name its SHA-256, year and size. An error if `text` is not an annual report at all.
pub fn verify(archive: &Path, at: &str, text: &str, trust: &Trust) -> Result<ReportCheck, Error> {
    let (year, origin, size) = parse_header(text)?;
    let mut computed = Annual::new(year, &origin, size)?;
    let sha256 = Hash::sha256(text.as_bytes());
    let expected = [("sha256", sha256.to_hex()), ("year", year.to_string()), ("size", size.to_string())];
    let mut filed = None;
    let audited = crate::audit::audit_visiting(archive, trust, &mut |index, entry| {
        computed.add(index, entry);
        if let Some(e) = entry.filter(|e| e.kind() == kind::REPORT)
            && expected.iter().all(|(key, value)| e.get(key) == Some(value.as_str()))
        {
            filed.get_or_insert(Filed { index, actor: e.actor().to_owned(), time: e.time() });
        }
    });
    let mut problems = audited.problems;
    let problem = |kind| Problem { at: at.to_owned(), kind };
    if let Some(log) = audited.origin.filter(|log| *log != origin) {
        problems.push(problem(ProblemKind::OtherOrigin { expected: log, found: origin.clone() }));
    }
    if size > audited.entries {
        problems.push(problem(ProblemKind::Unverifiable { size, available: audited.entries }));
    }
    let again = computed.render();
    if again != text {
        let line = again.lines().zip(text.lines()).take_while(|(a, b)| a == b).count() + 1;
        problems.push(problem(ProblemKind::ReportDiffers { line }));
    }
    if filed.is_none() {
        problems.push(problem(ProblemKind::ReportNotFiled));
    }
    Ok(ReportCheck { year, origin, size, sha256, filed, problems })
}
