//! The annual operation report (年度运营报告): counts per operator, application unit and reviewer
//! over the calendar year in Beijing time, and `sandbox-verify report`, which computes it again
//! from the log and wants a `report` entry naming it.

use std::process::Command;

use sandbox_verify::Hash;
use sandbox_verify::annual::Annual;
use sandbox_verify::entry::{Entry, kind};

use crate::{ORIGIN, TestLog, time};

fn logged(log: &mut TestLog, at: &str, kind: &str, actor: &str, fields: &[(&str, &str)]) -> u64 {
    let mut builder = Entry::builder(kind, time(at), actor);
    for (k, v) in fields {
        builder = builder.field(k, v);
    }
    log.append(builder.build().unwrap().unsigned().unwrap())
}

/// A year of operation: the story (an operator and a reviewer registered, a module submitted and
/// approved, a run started), then a licence, an agreement, development and production runs, a
/// release, its delivery and feedback, a refusal — and entries just outside 2026, Beijing time.
fn year_of_operation() -> TestLog {
    let mut log = TestLog::new();
    log.append_story();
    let op = "operator.acme";
    let unit_key = crate::key("unit.a", 5).verifier().to_string();
    logged(
        &mut log,
        "2026-01-01T00:00:00Z",
        kind::PRINCIPAL_REGISTERED,
        "bureau.admin",
        &[("principal", "unit.a"), ("role", "application_unit"), ("key", &unit_key)],
    );
    // 00:30 on 1 January in Beijing: 2026. And 00:00 on 1 January 2027 in Beijing: not.
    logged(
        &mut log,
        "2025-12-31T16:30:00Z",
        kind::LICENCE_GRANTED,
        "bureau.admin",
        &[
            ("licence", "lic-1"),
            ("operator", op),
            ("datasets", "persons"),
            ("purpose", "人口统计 population statistics"),
            ("valid_from", "2025-12-31T16:00:00Z"),
            ("valid_until", "2027-12-31T16:00:00Z"),
        ],
    );
    logged(&mut log, "2026-12-31T16:00:00Z", kind::LICENCE_SUSPENDED, "bureau.admin", &[("licence", "lic-1")]);
    logged(
        &mut log,
        "2026-02-01T00:00:00Z",
        kind::AGREEMENT_SIGNED,
        op,
        &[
            ("agreement", "agr-1"),
            ("licence", "lic-1"),
            ("application_unit", "unit.a"),
            ("scenario", "规划 planning"),
            ("valid_until", "2027-01-01T00:00:00Z"),
        ],
    );
    let sha = Hash::sha256(b"module").to_hex();
    for outcome in ["ok", "fuel-exhausted", "ok"] {
        logged(
            &mut log,
            "2026-03-01T00:00:00Z",
            kind::RUN_DEVELOPED,
            op,
            &[("module", &sha), ("licence", "lic-1"), ("parameters", &sha), ("outcome", outcome)],
        );
    }
    for run in ["run-2", "run-3"] {
        let fields = [
            ("run", run),
            ("module", &sha),
            ("licence", "lic-1"),
            ("agreement", "agr-1"),
            ("parameters", &sha),
            ("datasets", "persons@1"),
        ];
        logged(&mut log, "2026-04-01T00:00:00Z", kind::RUN_QUEUED, op, &fields);
    }
    logged(&mut log, "2026-04-01T00:01:00Z", kind::RUN_FINISHED, "sandbox", &[("run", "run-2"), ("status", "ok")]);
    logged(
        &mut log,
        "2026-04-01T00:01:00Z",
        kind::RUN_FINISHED,
        "sandbox",
        &[("run", "run-3"), ("status", "failed"), ("error", "timeout")],
    );
    let outcome = [("run", "run-2"), ("outcome", "pass"), ("report", "r-2"), ("released", "1")];
    logged(&mut log, "2026-04-01T00:02:00Z", kind::AUDIT_OUTCOME, "sandbox", &outcome);
    // A release states the history later audits compare with, as it leaves it: one in 2026,
    // one in 2027 (Beijing time; a run the log does not know).
    for (at, run, id, cells, tables) in
        [("2026-04-01T00:03:00Z", "run-2", "rel-1", "5", "1"), ("2027-01-01T00:00:00Z", "run-9", "rel-9", "12", "2")]
    {
        let mut release = Entry::builder(kind::RELEASE, time(at), "sandbox");
        for field in ["module", "manifest", "audit_report", "policy", "result.t.csv"] {
            release = release.field(field, &sha);
        }
        let release = release
            .field("datasets", "persons@1")
            .field("recipient", "unit.a")
            .field("agreement", "agr-1")
            .field("run", run)
            .field("release", id)
            .field("history_cells", cells)
            .field("history_tables", tables)
            .build()
            .unwrap()
            .sign(&[&log.release_key])
            .unwrap();
        log.append(release);
    }
    logged(&mut log, "2026-04-02T00:00:00Z", kind::DELIVERY, "unit.a", &[("release", "rel-1")]);
    for (id, rating) in [("fb-1", "4"), ("fb-2", "5"), ("fb-3", "5")] {
        logged(
            &mut log,
            "2026-04-03T00:00:00Z",
            kind::FEEDBACK,
            "unit.a",
            &[("feedback", id), ("release", "rel-1"), ("rating", rating)],
        );
    }
    logged(
        &mut log,
        "2026-05-01T00:00:00Z",
        kind::REQUEST_REFUSED,
        op,
        &[("rpc", "Runs.Start"), ("code", "FailedPrecondition"), ("reason", "suspended")],
    );
    log
}

fn report(log: &TestLog, year: i32, size: u64) -> String {
    let mut annual = Annual::new(year, ORIGIN, size).unwrap();
    for (index, bytes) in log.entries.iter().enumerate() {
        annual.add(index as u64, sandbox_verify::entry::open(bytes).ok().map(|(e, _)| e).as_ref());
    }
    annual.render()
}

#[test]
fn a_year_is_counted_per_operator_unit_and_reviewer_in_beijing_time() {
    let log = year_of_operation();
    let text = report(&log, 2026, log.tree.size());
    let size = log.tree.size();
    assert!(text.starts_with(&format!("sandbox.report/annual/v1\nyear 2026\nlog {ORIGIN}\nsize {size}\n\n")), "{text}");
    assert!(text.contains("期间 / period: 2025-12-31T16:00:00Z – 2026-12-31T16:00:00Z"), "{text}");
    for line in [
        "  licence.granted: 1\n",
        "  run.developed: 3\n",
        "  feedback: 3\n",
        "operator.acme\n    授予授权运营协议 / licences granted: 1\n    签订数据服务协议 / agreements signed: 1\n    \
         提交模块 / modules submitted: 1\n    模块审核通过签名 / module approvals signed: 1\n",
        "    开发运行（合成数据）/ development runs (synthetic twins): 3\n    其中出错 / of which ended in an error: 1\n",
        "    生产运行 / production runs: 2\n    运行结束于 / runs ended (failed:timeout): 1\n    \
         出域审核结论 / output audit outcomes (pass): 1\n",
        "    发布 / releases: 1\n    交付（下载）/ deliveries (downloads): 1\n    评价 / feedback: 3\n    \
         平均评分 / mean rating: 4.67\n    被拒绝的请求 / refused requests: 1\n",
        "三、应用单位 / Application units\n  unit.a\n",
        "四、审核人员 / Reviewers\n  reviewer.bureau\n    模块审核通过签名 / module approvals signed: 1\n",
        "五、被拒绝的请求 / Refused requests (role, RPC, code)\n  operator Runs.Start FailedPrecondition: 1\n",
        "/ Release history (what later audits compare with)\n  已发布单元格 / released cells: 5（本年新增 / this year +5）\n  \
         已发布表 / released tables: 1（本年新增 / this year +1）\n  始于 / kept since: 2026-04-01T00:03:00Z\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains("licence.suspended"), "1 January 2027 in Beijing is not 2026: {text}");
    let next = report(&log, 2027, log.tree.size());
    assert!(next.contains("  licence.suspended: 1\n") && next.contains("operator.acme\n    暂停授权"), "{next}");
    assert!(next.contains("released cells: 12（本年新增 / this year +7）"), "{next}");
    assert!(next.contains("kept since: 2026-04-01T00:03:00Z"), "{next}");
    let empty = report(&log, 2025, log.tree.size());
    assert!(empty.contains("一、条目 / Entries\n  无 / none\n"), "{empty}");
    assert!(
        empty.ends_with(
            "/ Release history (what later audits compare with)\n  无 / none\n\n\
             七、数据贡献（按数据集）/ Data contribution (per dataset)\n  无 / none\n"
        ),
        "{empty}"
    );
    let contribution = report(&log, 2026, log.tree.size());
    let line = contribution.lines().find(|l| l.trim_start().starts_with("persons: 生产运行")).expect("persons' line");
    assert!(line.contains("发布 / releases") && line.contains("服务应用单位 / units served 1"), "{line}");
    assert!(Annual::new(1999, ORIGIN, 1).is_err() && Annual::new(2026, "a b", 1).is_err());
    assert_eq!(sandbox_verify::annual::year_of(time("2025-12-31T16:00:00Z")), 2026);
    assert_eq!(sandbox_verify::annual::year_of(time("2025-12-31T15:59:59Z")), 2025);
}

#[test]
fn refusals_counted_but_not_logged_one_by_one_are_in_the_report() {
    // Past its allowance per minute the server logs a principal's refusals as a count, on the
    // next refusal it logs.
    let mut log = year_of_operation();
    logged(
        &mut log,
        "2026-05-01T00:01:00Z",
        kind::REQUEST_REFUSED,
        "operator.acme",
        &[("rpc", "Runs.Get"), ("code", "NotFound"), ("reason", "no run"), ("unlogged", "998")],
    );
    let text = report(&log, 2026, log.tree.size());
    for line in [
        "    被拒绝的请求 / refused requests: 1000\n",
        "  operator * unlogged: 998\n",
        "  operator Runs.Get NotFound: 1\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

fn verify(log: &TestLog, report: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sandbox-verify"))
        .arg("report")
        .arg(log.path())
        .arg(report)
        .arg("--trust")
        .arg(log.write_trust())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap(), text)
}

#[test]
fn a_filed_report_verifies_and_a_changed_or_unfiled_one_does_not() {
    let mut log = year_of_operation();
    let size = log.tree.size();
    let text = report(&log, 2026, size);
    let sha = Hash::sha256(text.as_bytes()).to_hex();
    let filed = logged(
        &mut log,
        "2026-12-01T00:00:00Z",
        kind::REPORT,
        "bureau.admin",
        &[("year", "2026"), ("size", &size.to_string()), ("sha256", &sha)],
    );
    log.checkpoint();
    let path = log.path().join("report-2026.txt");
    std::fs::write(&path, &text).unwrap();
    let (status, out) = verify(&log, &path);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(&format!("filed / 备案: entry {filed} by bureau.admin")), "{out}");

    // One count changed: the line that differs is named.
    let changed = text.replace("平均评分 / mean rating: 4.67", "平均评分 / mean rating: 4.97");
    std::fs::write(&path, &changed).unwrap();
    let (status, out) = verify(&log, &path);
    let line = text.lines().position(|l| l.contains("4.67")).unwrap() + 1;
    assert_eq!(status, 1, "{out}");
    assert!(out.contains(&format!("line {line} differs")) && out.contains("never filed"), "{out}");

    // The right report of a shorter log, which nobody filed.
    std::fs::write(&path, report(&log, 2026, size - 1)).unwrap();
    let (status, out) = verify(&log, &path);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("never filed") && !out.contains("differs"), "{out}");

    // More entries than the log has: not verifiable.
    std::fs::write(&path, report(&log, 2026, 1000)).unwrap();
    let (status, out) = verify(&log, &path);
    assert!(status == 1 && out.contains("only the first"), "{out}");

    // Not a report at all: unusable input.
    std::fs::write(&path, "年度报告\n").unwrap();
    let (status, out) = verify(&log, &path);
    assert!(status == 2 && out.contains("not an annual report"), "{out}");
}
