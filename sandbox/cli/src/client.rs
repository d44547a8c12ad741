//! The command line as a client of `sandbox serve`: one subcommand group per role's work, over
//! gRPC. Who calls is an identity folder (`--as DIR`: `token`, and `key` for what the caller
//! signs); where is `--server`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sandbox_client::{Identity, Session, verify_bundle};
use sandbox_proto::v1 as pb;
use sandbox_verify::event::Event;
use sandbox_verify::time::Timestamp;

/// Where the server is and who calls it.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Connect {
    /// 服务地址 / The server's address
    #[arg(long, env = "SANDBOX_SERVER", default_value = "http://127.0.0.1:7700", global = true)]
    pub(crate) server: String,
    /// 身份目录（token 与签名密钥 key）/ Identity folder (its `token` and signing `key`)
    #[arg(long = "as", env = "SANDBOX_IDENTITY", value_name = "DIR", global = true)]
    pub(crate) identity: Option<PathBuf>,
    /// 以 JSON 输出 / Print JSON
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// 服务端证书的签发 CA（PEM），用于 https:// 地址 / CA of the server's certificate (PEM),
    /// for an https:// address
    #[arg(long, env = "SANDBOX_TLS_CA", global = true)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// 客户端证书（PEM），服务端要求双向 TLS 时 / Client certificate (PEM), where the server
    /// requires mutual TLS
    #[arg(long, env = "SANDBOX_TLS_CERT", global = true, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// 客户端私钥（PEM）/ Client private key (PEM)
    #[arg(long, env = "SANDBOX_TLS_KEY", global = true, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl Connect {
    fn tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        if !self.server.starts_with("https://") {
            anyhow::ensure!(
                self.tls_ca.is_none() && self.tls_cert.is_none(),
                "TLS files are given but {} is not an https:// address / 已给出 TLS 文件，但服务地址不是 https://",
                self.server
            );
            return Ok(None);
        }
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.tls_ca {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(config))
    }
}

/// A group of client subcommands with the connection flags.
#[derive(clap::Args)]
pub(crate) struct Client<C: clap::Subcommand> {
    #[command(subcommand)]
    pub(crate) command: C,
    #[command(flatten)]
    pub(crate) connect: Connect,
}

impl Connect {
    /// A session as the identity of `--as`.
    pub(crate) async fn session(&self) -> anyhow::Result<Session> {
        let Some(identity) = &self.identity else {
            bail!("who is calling? give --as DIR (or SANDBOX_IDENTITY) / 请用 --as 指定身份目录");
        };
        Session::open(&self.server, identity, self.tls()?).await
    }
}

pub(crate) fn status_name(status: i32) -> &'static str {
    match pb::RunStatus::try_from(status).unwrap_or(pb::RunStatus::Unspecified) {
        pb::RunStatus::Queued => "排队 queued",
        pb::RunStatus::Running => "运行中 running",
        pb::RunStatus::Auditing => "审核中 auditing",
        pb::RunStatus::Released => "已发布 released",
        pb::RunStatus::Withheld => "未放行 withheld",
        pb::RunStatus::InReview => "待人工复核 in review",
        pb::RunStatus::Failed => "失败 failed",
        pb::RunStatus::Cancelled => "已取消 cancelled",
        pb::RunStatus::Unspecified => "?",
    }
}

fn module_status(status: i32) -> &'static str {
    match pb::ModuleStatus::try_from(status).unwrap_or(pb::ModuleStatus::Unspecified) {
        pb::ModuleStatus::Submitted => "待审核 submitted",
        pb::ModuleStatus::Approved => "已批准 approved",
        pb::ModuleStatus::Rejected => "已驳回 rejected",
        pb::ModuleStatus::Revoked => "已撤销 revoked",
        pb::ModuleStatus::Unspecified => "?",
    }
}

fn licence_status(status: i32) -> &'static str {
    match pb::LicenceStatus::try_from(status).unwrap_or(pb::LicenceStatus::Unspecified) {
        pb::LicenceStatus::Active => "有效 active",
        pb::LicenceStatus::Suspended => "已暂停 suspended",
        pb::LicenceStatus::Revoked => "已撤销 revoked",
        pb::LicenceStatus::Unspecified => "?",
    }
}

/// Prints rows as a table, or the messages as JSON.
fn print<T: serde::Serialize>(
    json: bool,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    let mut table = crate::catalog::table_of(header.iter().map(|h| h.to_string()).collect());
    for item in items {
        table.add_row(row(item));
    }
    println!("{table}");
    Ok(())
}

fn licence_row(l: &pb::Licence) -> Vec<String> {
    vec![
        l.id.clone(),
        l.operator.clone(),
        l.datasets.join(","),
        match l.awaiting_consent.is_empty() {
            true => licence_status(l.status).into(),
            false => format!(
                "{}，待数源部门同意 awaiting consent: {}",
                licence_status(l.status),
                l.awaiting_consent.join(",")
            ),
        },
        if l.in_force { "是 yes" } else { "否 no" }.into(),
        l.valid_until.clone(),
    ]
}
const LICENCE_HEADER: &[&str] =
    &["授权 licence", "运营单位 operator", "数据集 datasets", "状态 status", "生效 in force", "有效期至 until"];

fn module_row(m: &pb::Module) -> Vec<String> {
    vec![
        m.module[..16].to_owned(),
        m.name.clone(),
        m.operator.clone(),
        m.licence.clone(),
        module_status(m.status).into(),
        format!("{}/{} {}", m.approvals.len(), m.approvals_needed, m.approvals.join(",")),
    ]
}
const MODULE_HEADER: &[&str] =
    &["模块 module (sha256)", "名称 name", "运营单位 operator", "授权 licence", "状态 status", "审核 approvals"];

fn run_row(r: &pb::Run) -> Vec<String> {
    vec![
        r.id.clone(),
        r.module[..16.min(r.module.len())].to_owned(),
        r.agreement.clone(),
        status_name(r.status).into(),
        r.error_code.clone(),
        r.audit_outcome.clone(),
        r.release.clone(),
        r.held_tables.join(","),
    ]
}
const RUN_HEADER: &[&str] = &[
    "运行 run",
    "模块 module",
    "协议 agreement",
    "状态 status",
    "错误 error",
    "审核 audit",
    "发布 release",
    "待复核 held",
];

/// Reads `--param NAME=VALUE` pairs.
pub(crate) fn parse_params(params: &[String]) -> anyhow::Result<Vec<pb::Parameter>> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((name, value)) => Ok(pb::Parameter { name: name.to_owned(), value: value.to_owned() }),
            None => bail!("--param {p:?} is not NAME=VALUE / 参数格式应为 NAME=VALUE"),
        })
        .collect()
}

// ---- subcommands ----

#[derive(clap::Subcommand)]
pub(crate) enum PrincipalCommand {
    /// 登记主体（管理员）：在 --out 目录生成其签名密钥并保存令牌 / Register a principal (admin): its
    /// signing key is made in --out, where its token is saved
    Add {
        name: String,
        /// admin | reviewer | operator | application_unit | evaluator | provider
        #[arg(long)]
        role: String,
        /// 机构名称 / The organisation's name
        #[arg(long)]
        display_name: String,
        /// 数源部门：目录中的提供部门名称（如 包头市公安局）/ A provider: its organisation as the
        /// catalog names it (e.g. 包头市公安局)
        #[arg(long)]
        provider: Option<String>,
        /// 主体自己的公钥文件（其用 keys generate 生成的 <文件>.pub）：私钥不经管理员之手，--out 只存令牌 /
        /// The principal's own verifier key (the <file>.pub of its `keys generate`): its private key
        /// never passes through the administrator; --out then holds the token only
        #[arg(long)]
        key: Option<PathBuf>,
        /// 新身份目录 / The new identity folder
        #[arg(long)]
        out: PathBuf,
    },
    /// 列出主体 / List principals
    List,
    /// 当前身份 / Who am I
    Whoami,
    /// 停用主体（管理员）：其令牌即被拒绝，排队的运行以“扣留”结束 / Disable a principal (admin):
    /// its token is refused at once, its queued runs end withheld
    Disable {
        name: String,
        /// 原因（记入日志）/ Why (logged)
        #[arg(long)]
        reason: String,
    },
    /// 恢复被停用的主体（管理员）/ Let a disabled principal act again (admin)
    Enable { name: String },
    /// API 令牌 / API tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// 更换令牌，旧令牌立即失效：不给名称时更换自己的并存入 --as 目录；管理员可更换他人的 /
    /// Rotate a token, the old one refused at once: without a name your own, saved in the --as
    /// folder; an administrator may rotate anyone's
    Rotate {
        name: Option<String>,
        /// 将新令牌存入该身份目录（否则显示一次）/ Save the new token in this identity folder
        /// (else it is shown once)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// 撤销令牌（管理员），直至再次更换 / Revoke a token (admin) until it is rotated again
    Revoke {
        name: String,
        /// 原因（记入日志）/ Why (logged)
        #[arg(long)]
        reason: String,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum LicenceCommand {
    /// 授予授权运营协议（管理员）/ Grant a licence (admin)
    Grant {
        id: String,
        #[arg(long)]
        operator: String,
        /// 逗号分隔 / Comma-separated
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        #[arg(long)]
        purpose: String,
        /// YYYY-MM-DDTHH:MM:SSZ（默认现在 / default now）
        #[arg(long)]
        from: Option<String>,
        /// YYYY-MM-DDTHH:MM:SSZ
        #[arg(long)]
        until: String,
    },
    /// 暂停授权，立即生效（管理员）/ Suspend a licence, at once (admin)
    Suspend {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// 恢复授权（管理员）/ Resume a suspended licence (admin)
    Resume { id: String },
    /// 撤销授权（管理员）/ Revoke a licence (admin)
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// 列出授权 / List licences
    List,
    /// 数源部门同意（签名）：有条件共享的数据集，经其数源部门同意后授权方生效 / A provider's signed
    /// consent: a licence over conditionally shared data takes effect once its provider consents
    Consent {
        id: String,
        /// 本部门提供的数据集 / The provider's dataset
        #[arg(long)]
        dataset: String,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum AgreementCommand {
    /// 签订数据服务协议（运营单位）/ File a service agreement (operator)
    Create {
        id: String,
        #[arg(long)]
        licence: String,
        /// 应用单位 / The application unit
        #[arg(long)]
        unit: String,
        /// 应用场景 / The scenario
        #[arg(long)]
        scenario: String,
        /// YYYY-MM-DDTHH:MM:SSZ
        #[arg(long)]
        until: String,
    },
    /// 终止协议 / End an agreement
    End {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 列出协议 / List agreements
    List,
}

#[derive(clap::Subcommand)]
pub(crate) enum ModuleCommand {
    /// 提交模块（运营单位，签名）/ Submit a module (operator; signed)
    Submit {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        licence: String,
    },
    /// 审核通过（审核员，签名）/ Approve (reviewer; signed)
    Approve { module: String },
    /// 驳回（审核员，签名）/ Reject with a reason (reviewer; signed)
    Reject {
        module: String,
        #[arg(long)]
        reason: String,
    },
    /// 撤销批准 / Revoke an approval
    Revoke {
        module: String,
        #[arg(long)]
        reason: String,
    },
    /// 列出模块 / List modules
    List,
    /// 下载模块与清单以供审核 / Download a module and its manifest for review
    Download {
        module: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum ReleaseCommand {
    /// 列出发布结果 / List releases
    List,
    /// 下载发布结果（应用单位），--verify 用 sandbox-verify 核验 / Download a release (application
    /// unit); --verify checks it as sandbox-verify does
    Get {
        release: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        verify: bool,
        /// 信任文件（日志与发布公钥）/ The trust file (log and release keys)
        #[arg(long, required_if_eq("verify", "true"))]
        trust: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum FeedbackCommand {
    /// 对收到的结果反馈（应用单位）/ Feedback on a release received (application unit)
    Submit {
        release: String,
        /// 1–5
        #[arg(long)]
        rating: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// 列出反馈 / List feedback
    List,
    /// 评价使用本部门数据的运营单位（数源部门，每年一次）/ Rate an operator that uses your data (a
    /// provider, once a year)
    Rate {
        operator: String,
        /// 1–5
        #[arg(long)]
        score: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// 列出数源部门对运营单位的评价 / List providers' ratings of operators
    Ratings,
}

#[derive(clap::Subcommand)]
pub(crate) enum IncidentCommand {
    /// 报告安全事件（运营单位、应用单位）：该授权下的新运行暂停，直至结案或允许运行 / Report a
    /// security incident (operator, application unit): new runs under the licence wait until it is
    /// closed or runs are allowed
    Report {
        #[arg(long)]
        licence: String,
        /// leak（泄露）| loss（丢失）| misuse（滥用）| other（其他）
        #[arg(long)]
        category: String,
        #[arg(long)]
        description: String,
    },
    /// 记录处置措施（管理员）：contain | suspend（暂停授权）| terminate（终止授权）| allow_runs（允许运行）
    /// / Record a measure (admin)
    Measure {
        incident: String,
        #[arg(long)]
        measure: String,
        #[arg(long)]
        note: String,
    },
    /// 结案（管理员），注明向有关部门报告的文号 / Close an incident (admin), with its report to the
    /// authorities by reference
    Close {
        incident: String,
        #[arg(long, default_value = "")]
        reported_to: String,
        #[arg(long)]
        note: String,
    },
    /// 列出安全事件 / List incidents
    List,
}

#[derive(clap::Subcommand)]
pub(crate) enum ReportCommand {
    /// 从日志计算并备案年度运营报告（管理员）/ Compute the annual operation report from the log and
    /// file it (admin)
    File {
        /// 年度（北京时间）/ The year (Beijing time)
        #[arg(long)]
        year: i32,
    },
    /// 取得某年度最近备案的报告；用 sandbox-verify report 核验 / Get the latest report filed for a
    /// year; check it with sandbox-verify report
    Get {
        #[arg(long)]
        year: i32,
        /// 写入文件（否则打印）/ Write it to this file (else print it)
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(crate) fn block_on<F: Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

pub(crate) async fn principal(connect: Connect, command: PrincipalCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    match command {
        PrincipalCommand::Add { name, role, display_name, provider, key, out } => {
            let new =
                NewPrincipal { name: &name, role: &role, display_name: &display_name, provider: provider.as_deref() };
            let registered = match key {
                Some(key) => {
                    let verifier =
                        std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
                    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
                    registered(&session, &new, verifier.trim(), &out).await?
                }
                None => register(&session, &new, &out).await?,
            };
            if connect.json {
                println!("{}", serde_json::to_string_pretty(&registered)?);
            } else {
                println!("已登记 / registered {name} ({role}); 身份 / identity: {}", out.display());
            }
        }
        PrincipalCommand::List => {
            let list = session.principals().list(pb::Empty {}).await?.into_inner().principals;
            print_principals(connect.json, &list)?;
        }
        PrincipalCommand::Whoami => {
            let me = session.principals().whoami(pb::Empty {}).await?.into_inner();
            print_principals(connect.json, &[me])?;
        }
        PrincipalCommand::Disable { name, reason } => {
            let p = session.principals().disable(pb::PrincipalAction { name, reason }).await?.into_inner();
            print_principals(connect.json, &[p])?;
        }
        PrincipalCommand::Enable { name } => {
            let action = pb::PrincipalAction { name, reason: String::new() };
            let p = session.principals().enable(action).await?.into_inner();
            print_principals(connect.json, &[p])?;
        }
        PrincipalCommand::Token(TokenCommand::Revoke { name, reason }) => {
            let p = session.principals().revoke_token(pb::PrincipalAction { name, reason }).await?.into_inner();
            print_principals(connect.json, &[p])?;
        }
        PrincipalCommand::Token(TokenCommand::Rotate { name, out }) => {
            let name = name.unwrap_or_else(|| session.name.clone());
            let own = name == session.name;
            let action = pb::PrincipalAction { name, reason: String::new() };
            let rotated = session.principals().rotate_token(action).await?.into_inner();
            let folder = out.or_else(|| own.then(|| connect.identity.clone()).flatten());
            let principal = rotated.principal.clone().context("no principal in the answer")?;
            match folder {
                Some(folder) => {
                    Identity::replace_token(&folder, &rotated.token).with_context(|| {
                        format!(
                            "the new token could not be saved; keep it now: {} / 新令牌未能保存，请立即记下",
                            rotated.token
                        )
                    })?;
                    eprintln!(
                        "已更换令牌并存入 / token rotated and saved in {} (log entry {})",
                        folder.display(),
                        rotated.log_index
                    );
                    print_principals(connect.json, &[principal])?;
                }
                None if connect.json => println!("{}", serde_json::to_string_pretty(&rotated)?),
                None => println!(
                    "{} 的新令牌（只显示这一次）/ new token of {0} (shown this once): {}",
                    principal.name, rotated.token
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_principals(json: bool, principals: &[pb::Principal]) -> anyhow::Result<()> {
    let header = ["主体 name", "角色 role", "机构 organisation", "登记 registered", "状态 state"];
    print(json, principals, &header, |p| {
        let state = match (p.disabled.is_empty(), p.has_token) {
            (false, _) => format!("停用 disabled: {}", p.disabled),
            (true, false) => "无令牌 no token".to_owned(),
            (true, true) => "正常 active".to_owned(),
        };
        vec![
            p.name.clone(),
            pb::Role::try_from(p.role).map_or("?", |r| r.as_str_name()).into(),
            match p.provider.is_empty() {
                true => p.display_name.clone(),
                false => format!("{}（数源 provider of {}）", p.display_name, p.provider),
            },
            p.registered_at.clone(),
            state,
        ]
    })
}

/// A principal to register, as the command line gives it.
pub(crate) struct NewPrincipal<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
    pub(crate) display_name: &'a str,
    pub(crate) provider: Option<&'a str>,
}

/// Makes a key in `out`, registers the principal with it, and saves the token beside it.
pub(crate) async fn register(session: &Session, new: &NewPrincipal<'_>, out: &Path) -> anyhow::Result<pb::Principal> {
    role_of(new.role)?;
    let key = Identity::create_key(out, new.name)?;
    registered(session, new, &key.verifier().to_string(), out).await
}

fn role_of(role: &str) -> anyhow::Result<pb::Role> {
    Ok(match role {
        "admin" => pb::Role::Admin,
        "reviewer" => pb::Role::Reviewer,
        "operator" => pb::Role::Operator,
        "application_unit" => pb::Role::ApplicationUnit,
        "evaluator" => pb::Role::Evaluator,
        "provider" => pb::Role::Provider,
        other => bail!("unknown role {other:?} / 未知角色"),
    })
}

/// Registers the principal with `verifier` (its key in note form) and saves the token in `out`.
async fn registered(
    session: &Session,
    new: &NewPrincipal<'_>,
    verifier: &str,
    out: &Path,
) -> anyhow::Result<pb::Principal> {
    let NewPrincipal { name, role, display_name, provider } = *new;
    let role = role_of(role)?;
    let answer = session
        .principals()
        .register(pb::RegisterPrincipalRequest {
            name: name.to_owned(),
            role: role as i32,
            display_name: display_name.to_owned(),
            key: verifier.to_owned(),
            provider: provider.unwrap_or_default().to_owned(),
        })
        .await?
        .into_inner();
    Identity::save_token(out, &answer.token)?;
    answer.principal.context("no principal in the answer")
}

pub(crate) async fn licence(connect: Connect, command: LicenceCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let mut client = session.licences();
    let licence = match command {
        LicenceCommand::Grant { id, operator, datasets, purpose, from, until } => {
            let valid_from = from.unwrap_or_else(|| Timestamp::now().to_string());
            client
                .grant(pb::GrantLicenceRequest { id, operator, datasets, purpose, valid_from, valid_until: until })
                .await?
        }
        LicenceCommand::Suspend { id, reason } => client.suspend(pb::LicenceActionRequest { id, reason }).await?,
        LicenceCommand::Resume { id } => client.resume(pb::LicenceActionRequest { id, reason: String::new() }).await?,
        LicenceCommand::Revoke { id, reason } => client.revoke(pb::LicenceActionRequest { id, reason }).await?,
        LicenceCommand::Consent { id, dataset } => {
            let entry = session.signed(Event::LicenceConsented { licence: id, dataset })?;
            client.consent(pb::SignedConsent { entry }).await?
        }
        LicenceCommand::List => {
            let list = client.list(pb::Empty {}).await?.into_inner().licences;
            print(connect.json, &list, LICENCE_HEADER, licence_row)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(connect.json, &[licence.into_inner()], LICENCE_HEADER, licence_row)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn agreement(connect: Connect, command: AgreementCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let mut client = session.agreements();
    let header =
        &["协议 agreement", "授权 licence", "运营单位 operator", "应用单位 unit", "生效 in force", "有效期至 until"];
    let row = |a: &pb::Agreement| {
        vec![
            a.id.clone(),
            a.licence.clone(),
            a.operator.clone(),
            a.application_unit.clone(),
            if a.in_force { "是 yes" } else { "否 no" }.into(),
            a.valid_until.clone(),
        ]
    };
    let agreement = match command {
        AgreementCommand::Create { id, licence, unit, scenario, until } => {
            client
                .create(pb::CreateAgreementRequest {
                    id,
                    licence,
                    application_unit: unit,
                    scenario,
                    valid_until: until,
                })
                .await?
        }
        AgreementCommand::End { id, reason } => client.end(pb::AgreementActionRequest { id, reason }).await?,
        AgreementCommand::List => {
            let list = client.list(pb::Empty {}).await?.into_inner().agreements;
            print(connect.json, &list, header, row)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(connect.json, &[agreement.into_inner()], header, row)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn module(connect: Connect, command: ModuleCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let module = match command {
        ModuleCommand::Submit { module, manifest, licence } => {
            let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
            session.submit(bytes, text, &licence).await?
        }
        ModuleCommand::Approve { module } => session.approve(&module).await?,
        ModuleCommand::Reject { module, reason } => {
            let entry = session.signed(Event::ModuleRejected { module, reason })?;
            session.modules().reject(pb::SignedDecision { entry }).await?.into_inner()
        }
        ModuleCommand::Revoke { module, reason } => {
            session.modules().revoke(pb::RevokeModuleRequest { module, reason }).await?.into_inner()
        }
        ModuleCommand::List => {
            let list = session.modules().list(pb::Empty {}).await?.into_inner().modules;
            print(connect.json, &list, MODULE_HEADER, module_row)?;
            return Ok(ExitCode::SUCCESS);
        }
        ModuleCommand::Download { module, out } => {
            let bytes = session.modules().download(pb::ModuleRef { module }).await?.into_inner();
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("module.wasm"), &bytes.module)?;
            std::fs::write(out.join("module.toml"), &bytes.manifest)?;
            println!("{}: module.wasm, module.toml", out.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if connect.json {
        println!("{}", serde_json::to_string_pretty(&module)?);
    } else {
        print(false, std::slice::from_ref(&module), MODULE_HEADER, module_row)?;
        println!("sha256 {}", module.module);
    }
    Ok(ExitCode::SUCCESS)
}

/// `sandbox run --agreement A --module SHA`: a production run through the server, followed to
/// its end; prints status codes and the audit report only.
pub(crate) async fn production_run(
    connect: &Connect,
    module: String,
    agreement: String,
    params: &[String],
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let parameters = parse_params(params)?;
    let run = session.runs().start(pb::StartRunRequest { module, agreement, parameters }).await?.into_inner();
    if !wait {
        print(connect.json, &[run], RUN_HEADER, run_row)?;
        return Ok(ExitCode::SUCCESS);
    }
    let json = connect.json;
    let mut last = run.status;
    if !json {
        eprintln!("{}  {}", run.id, status_name(run.status));
    }
    let run = session
        .follow(&run.id, |r| {
            if !json && r.status != last {
                eprintln!("{}  {}", r.id, status_name(r.status));
            }
            last = r.status;
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print(false, std::slice::from_ref(&run), RUN_HEADER, run_row)?;
        print!("{}", run.audit_report_text);
    }
    // Held for review is not a failure: the reviewers decide next.
    let ok = [pb::RunStatus::Released as i32, pb::RunStatus::InReview as i32].contains(&run.status);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `sandbox run --dev --module SHA`: a development run through the server, on the twins.
pub(crate) async fn develop_run(connect: &Connect, module: String, params: &[String]) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let parameters = parse_params(params)?;
    let answer = session.runs().develop(pb::DevelopRequest { module, parameters }).await?.into_inner();
    if connect.json {
        println!(
            "{}",
            serde_json::json!({
                "error_code": answer.error_code, "error_text": answer.error_text, "log": answer.log,
                "tables": answer.tables.iter().map(|t| serde_json::json!({"name": t.name, "sha256": t.sha256})).collect::<Vec<_>>(),
                "fuel_used": answer.fuel_used, "wall_time_ms": answer.wall_time_ms,
            })
        );
    } else {
        for table in &answer.tables {
            println!("表 / table {} (sha256 {})", table.name, table.sha256);
            let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&table.ipc), None)?;
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            println!("{}", crate::policy::result_table(&batches, 50)?);
        }
        if !answer.log.is_empty() {
            println!("开发日志 / development log:\n{}", answer.log);
        }
        if !answer.error_code.is_empty() {
            println!("错误 / error [{}]: {}", answer.error_code, answer.error_text);
        }
        println!("fuel {}  {} ms", answer.fuel_used, answer.wall_time_ms);
    }
    Ok(if answer.error_code.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(crate) async fn runs(connect: Connect, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let runs = match command {
        RunsCommand::Report { run } => {
            let report = session.runs().get_internal_report(pb::RunRef { run }).await?.into_inner();
            if connect.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text);
            }
            return Ok(ExitCode::SUCCESS);
        }
        RunsCommand::List => session.runs().list(pb::Empty {}).await?.into_inner().runs,
        RunsCommand::Show { run } => vec![session.runs().get(pb::RunRef { run }).await?.into_inner()],
        RunsCommand::Cancel { run } => vec![session.runs().cancel(pb::RunRef { run }).await?.into_inner()],
    };
    print(connect.json, &runs, RUN_HEADER, run_row)?;
    if let [run] = &runs[..]
        && !connect.json
    {
        print!("{}", run.audit_report_text);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub(crate) enum OutputCommand {
    /// 复核通过待复核的表（审核员，签名；每张表须两名审核员）/ Approve tables held for review
    /// (reviewer; signed; each table needs two reviewers)
    Approve {
        run: String,
        /// 只复核这些表（默认全部待复核的表）/ Only these tables (default: every held table)
        #[arg(long)]
        table: Vec<String>,
    },
    /// 驳回待复核的表，其不出域（审核员，签名）/ Reject tables held for review: they stay in
    /// (reviewer; signed)
    Reject {
        run: String,
        #[arg(long)]
        table: Vec<String>,
        #[arg(long)]
        reason: String,
    },
}

/// `sandbox output approve|reject RUN`: one signed decision per held table, naming the audit
/// report the reviewer read.
pub(crate) async fn output(connect: Connect, command: OutputCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let (run, tables, reason) = match command {
        OutputCommand::Approve { run, table } => (run, table, None),
        OutputCommand::Reject { run, table, reason } => (run, table, Some(reason)),
    };
    let mut state = session.runs().get(pb::RunRef { run: run.clone() }).await?.into_inner();
    let tables = if tables.is_empty() { state.held_tables.clone() } else { tables };
    if tables.is_empty() {
        bail!("run {run} has no table waiting for review / 该运行没有待复核的表");
    }
    for table in &tables {
        let (run, report, table) = (run.clone(), state.audit_report_id.clone(), table.clone());
        let entry = session.signed(match reason.clone() {
            Some(reason) => Event::OutputRejected { run, report, table, reason },
            None => Event::OutputApproved { run, report, table },
        })?;
        let decision = pb::SignedDecision { entry };
        state = if reason.is_some() {
            session.runs().reject_output(decision).await?.into_inner()
        } else {
            session.runs().approve_output(decision).await?.into_inner()
        };
    }
    print(connect.json, std::slice::from_ref(&state), RUN_HEADER, run_row)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub(crate) enum RunsCommand {
    /// 列出运行 / List runs
    List,
    /// 运行状态与发布版审核报告 / A run's state and released audit report
    Show { run: String },
    /// 内部审核报告，含全部数值（审核员、管理员；每次读取记入日志）/ The internal audit report,
    /// with every figure (reviewers, admins; each read is logged)
    Report { run: String },
    /// 取消排队或运行中的运行 / Cancel a queued or running run
    Cancel { run: String },
}

pub(crate) async fn release(connect: Connect, command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    match command {
        ReleaseCommand::List => {
            let list = session.releases().list(pb::Empty {}).await?.into_inner().releases;
            print(
                connect.json,
                &list,
                &[
                    "发布 release",
                    "运行 run",
                    "运营单位 operator",
                    "应用单位 unit",
                    "日志序号 log index",
                    "结果 results",
                ],
                |r| {
                    vec![
                        r.id.clone(),
                        r.run.clone(),
                        r.operator.clone(),
                        r.application_unit.clone(),
                        r.log_index.to_string(),
                        r.results.join(","),
                    ]
                },
            )?;
        }
        ReleaseCommand::Get { release, out, verify, trust } => {
            let bundle = session.download(&release, &out).await?;
            println!("已下载 / downloaded {release} → {} ({} files)", out.display(), bundle.files.len());
            if verify {
                let trust = trust.context("--verify needs --trust")?;
                let report = verify_bundle(&out, &trust)?;
                if report.verified() {
                    println!(
                        "核验通过 / verified: release statement signed, in the log at index {}, {} result files match",
                        report.index.unwrap_or_default(),
                        report.results.len()
                    );
                } else {
                    for problem in &report.problems {
                        println!("核验失败 / NOT verified: {problem}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn feedback(connect: Connect, command: FeedbackCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    match command {
        FeedbackCommand::Submit { release, rating, comment } => {
            let receipt =
                session.feedback().submit(pb::FeedbackRequest { release, rating, comment }).await?.into_inner();
            println!("已记录 / logged {} at index {}", receipt.id, receipt.log_index);
        }
        FeedbackCommand::List => {
            let list = session.feedback().list(pb::Empty {}).await?.into_inner().items;
            print(
                connect.json,
                &list,
                &["反馈 id", "发布 release", "应用单位 unit", "评分 rating", "意见 comment"],
                |f| {
                    vec![
                        f.id.clone(),
                        f.release.clone(),
                        f.application_unit.clone(),
                        f.rating.to_string(),
                        f.comment.clone(),
                    ]
                },
            )?;
        }
        FeedbackCommand::Rate { operator, score, comment } => {
            let rating = pb::OperatorRating { operator, score, comment };
            let receipt = session.feedback().rate_operator(rating).await?.into_inner();
            println!("已记录 / logged {} at index {}", receipt.id, receipt.log_index);
        }
        FeedbackCommand::Ratings => {
            let list = session.feedback().list_ratings(pb::Empty {}).await?.into_inner().items;
            let header =
                ["评价 id", "数源部门 provider", "运营单位 operator", "年度 year", "评分 score", "意见 comment"];
            print(connect.json, &list, &header, |r| {
                let year = r.year.to_string();
                vec![r.id.clone(), r.provider.clone(), r.operator.clone(), year, r.score.to_string(), r.comment.clone()]
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn incident(connect: Connect, command: IncidentCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let mut client = session.licences();
    let incidents = match command {
        IncidentCommand::Report { licence, category, description } => {
            vec![client.report_incident(pb::IncidentReport { licence, category, description }).await?.into_inner()]
        }
        IncidentCommand::Measure { incident, measure, note } => {
            let request = pb::IncidentMeasureRequest { incident, measure, note };
            vec![client.incident_measure(request).await?.into_inner()]
        }
        IncidentCommand::Close { incident, reported_to, note } => {
            let request = pb::CloseIncidentRequest { incident, reported_to, note };
            vec![client.close_incident(request).await?.into_inner()]
        }
        IncidentCommand::List => client.list_incidents(pb::Empty {}).await?.into_inner().incidents,
    };
    let header = [
        "事件 incident",
        "授权 licence",
        "报告人 reporter",
        "类别 category",
        "状态 status",
        "措施 measures",
        "报告 reported to",
    ];
    print(connect.json, &incidents, &header, |i| {
        let status = match (i.status.as_str(), i.runs_allowed) {
            ("closed", _) => "已结案 closed".to_owned(),
            (_, true) => "处置中（允许运行）open, runs allowed".to_owned(),
            _ => "处置中 open".to_owned(),
        };
        vec![
            i.id.clone(),
            i.licence.clone(),
            i.reporter.clone(),
            i.category.clone(),
            status,
            i.measures.join(","),
            i.reported_to.clone(),
        ]
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn report(connect: Connect, command: ReportCommand) -> anyhow::Result<ExitCode> {
    let session = connect.session().await?;
    let (report, out) = match command {
        ReportCommand::File { year } => (session.log().file_report(pb::ReportRequest { year }).await?, None),
        ReportCommand::Get { year, out } => (session.log().get_report(pb::ReportRequest { year }).await?, out),
    };
    let report = report.into_inner();
    if connect.json {
        let json = serde_json::json!({
            "year": report.year, "size": report.size, "sha256": report.sha256, "log_index": report.log_index,
            "filed_by": report.filed_by, "filed_at": report.filed_at, "text": report.text,
        });
        println!("{json}");
    } else if out.is_none() {
        print!("{}", report.text);
    }
    if let Some(out) = &out {
        std::fs::write(out, &report.text).with_context(|| format!("writing {}", out.display()))?;
    }
    let pb::AnnualReport { year, size, sha256, log_index, filed_by, filed_at, .. } = &report;
    eprintln!(
        "{year} 年度报告：日志前 {size} 个条目，sha256 {sha256}，由 {filed_by} 于 {filed_at} 备案（日志第 {log_index} 条）\n\
         annual report {year}: the log's first {size} entries, sha256 {sha256}, filed by {filed_by} at {filed_at} \
         (log entry {log_index})"
    );
    Ok(ExitCode::SUCCESS)
}
