//! `sandbox catalog check|list|show`: the bureau's view of the catalog.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets};
use sandbox_catalog::{Catalog, Dataset, Variant, check};
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// 校验每个条目及其数据文件，每个问题一行（文件:行: 说明）；有问题时退出码为 1
    /// / Check every entry against its files, one line per problem (file:line: message); exit 1 on any
    Check {
        /// 目录文件夹 / Catalog folder
        dir: PathBuf,
    },
    /// 列出数据集及其版本（文件的 SHA-256） / List datasets with their versions (SHA-256 of their files)
    List {
        dir: PathBuf,
        /// 机器可读输出 / Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// 显示一个数据集的全部属性和列约束 / Show one dataset's attributes and column constraints
    Show {
        dir: PathBuf,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { dir } => {
            let report = check(&dir)?;
            for problem in &report.problems {
                println!("{problem}");
            }
            if report.problems.is_empty() {
                println!("目录无误 / catalog ok: {} dataset(s) in {}", report.entries, dir.display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} 个问题 / {} problem(s)", report.problems.len(), report.problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::List { dir, json } => {
            let catalog = Catalog::open(&dir)?;
            let mut rows = Vec::new();
            for d in &catalog.datasets {
                rows.push(Listed::of(d)?);
            }
            if json {
                let list: Vec<_> = rows.iter().map(Listed::json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table([
                "标识 ID",
                "名称 Title",
                "数源部门 Provider",
                "分级 Level",
                "共享 Sharing",
                "开放 Open",
                "更新 Update",
                "行数 Rows",
                "版本 Version",
            ]);
            for r in &rows {
                let d = r.dataset;
                t.add_row(vec![
                    d.id.clone(),
                    format!("{}\n{}", d.title.zh, d.title.en),
                    format!("{}\n{}", d.provider.zh, d.provider.en),
                    level(d),
                    format!("{}\n{}", d.sharing.zh(), d.sharing),
                    format!("{}\n{}", d.open.zh(), d.open),
                    format!("{}\n{}", d.update_frequency.zh(), d.update_frequency),
                    r.rows.map_or("—".to_owned(), |n| n.to_string()),
                    r.version.short().to_owned(),
                ]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { dir, id, json } => {
            let catalog = Catalog::open(&dir)?;
            let listed = Listed::of(catalog.dataset(&id)?)?;
            let d = listed.dataset;
            if json {
                println!("{}", serde_json::to_string_pretty(&listed.json())?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(["属性 Field", "值 Value"]);
            let twin = d.twin_files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join("\n");
            for (field, value) in [
                ("标识 ID", d.id.clone()),
                ("名称 Title", format!("{}\n{}", d.title.zh, d.title.en)),
                ("数源部门 Provider", format!("{}\n{}", d.provider.zh, d.provider.en)),
                ("分级 Level", level(d)),
                ("共享 Sharing", format!("{} {}", d.sharing.zh(), d.sharing)),
                ("开放 Open", format!("{} {}", d.open.zh(), d.open)),
                ("更新 Update", format!("{} {}", d.update_frequency.zh(), d.update_frequency)),
                ("隐私单元 Privacy unit", d.privacy_unit.clone()),
                ("格式 Format", d.format.to_string()),
                ("文件 Files", d.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join("\n")),
                ("孪生 Twin", if twin.is_empty() { "—".to_owned() } else { twin }),
                ("行数 Rows", listed.rows.map_or("—".to_owned(), |n| n.to_string())),
                ("版本 Version", listed.version.to_string()),
                ("条目 Entry", d.entry.display().to_string()),
            ] {
                t.add_row(vec![field.to_owned(), value]);
            }
            println!("{t}");
            let mut c = table(["列 Column", "类型 Type", "约束 Constraint", "公开分类 Published", "说明 Description"]);
            for col in &d.columns {
                c.add_row(vec![
                    col.name.clone(),
                    col.data_type.to_string(),
                    format!("{} {}", col.constraint.zh(), col.constraint),
                    classification(col.classification.as_ref()),
                    format!("{}\n{}", col.description.zh, col.description.en),
                ]);
            }
            println!("{c}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A dataset with what listing it costs a read of its files.
struct Listed<'a> {
    dataset: &'a Dataset,
    rows: Option<u64>,
    version: sandbox_catalog::DatasetVersion,
}

impl<'a> Listed<'a> {
    fn of(dataset: &'a Dataset) -> anyhow::Result<Listed<'a>> {
        Ok(Listed { dataset, rows: dataset.row_count(Variant::Real)?, version: dataset.version(Variant::Real)? })
    }

    fn json(&self) -> serde_json::Value {
        let d = self.dataset;
        let files = |v: Variant| d.files(v).iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        json!({
            "id": d.id,
            "title": { "zh": d.title.zh, "en": d.title.en },
            "provider": { "zh": d.provider.zh, "en": d.provider.en },
            "level": d.level.code(),
            "sub_level": d.sub_level,
            "sharing": d.sharing.code(),
            "open": d.open.code(),
            "update_frequency": d.update_frequency.code(),
            "privacy_unit": d.privacy_unit,
            "format": d.format.code(),
            "files": files(Variant::Real),
            "twin_files": files(Variant::Twin),
            "rows": self.rows,
            "version": self.version.as_str(),
            "columns": d.columns.iter().map(|c| json!({
                "name": c.name,
                "type": c.data_type.to_string(),
                "constraint": c.constraint.as_str(),
                "classification": match &c.classification {
                    Some(sandbox_catalog::Classification::Grains(g)) => json!({ "grains": g.iter().map(|g| g.as_str()).collect::<Vec<_>>() }),
                    Some(sandbox_catalog::Classification::Edges(e)) => json!({ "edges": e }),
                    None => serde_json::Value::Null,
                },
                "description": { "zh": c.description.zh, "en": c.description.en },
            })).collect::<Vec<_>>(),
        })
    }
}

/// A column's published classification: the grains or edges a contract may cut it at.
fn classification(c: Option<&sandbox_catalog::Classification>) -> String {
    match c {
        Some(sandbox_catalog::Classification::Grains(grains)) => {
            grains.iter().map(|g| format!("{} {}", g.zh(), g.as_str())).collect::<Vec<_>>().join("\n")
        }
        Some(sandbox_catalog::Classification::Edges(edges)) => {
            edges.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
        }
        None => "—".to_owned(),
    }
}

fn level(d: &Dataset) -> String {
    match d.sub_level {
        Some(n) => format!("{}数据 {n} 级\n{} L{n}", d.level.zh(), d.level),
        None => format!("{}数据\n{}", d.level.zh(), d.level),
    }
}

/// A table for people: CJK characters count as two columns wide, so Chinese lines up.
pub(crate) fn table<const N: usize>(header: [&str; N]) -> Table {
    table_of(header.into_iter().map(str::to_owned).collect())
}

pub(crate) fn table_of(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled).set_header(header);
    t
}
