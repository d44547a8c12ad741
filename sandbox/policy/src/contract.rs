//! The output contract judged like SQL: every output table of a manifest rendered as the query
//! the host will run over the policy views, checked with the same checker and constraint rules
//! as a module's own SQL, plus the rules only a contract has.
//!
//! The host computes a release from the contract with its own privileges over the raw files
//! (`sandbox-audit`), so the contract must never ask for what the operator could not have
//! written: nothing on `forbidden` columns; `pseudonymized` columns only as join keys between
//! pseudonyms, never compared with a literal or a parameter (in the raw files they are the
//! identifiers themselves) and never a dimension; and `compare_only` and `aggregate_only` columns
//! banded or filtered only at the catalog's published classifications (`Classification`), so
//! that no two tables can be cut a few units apart and subtracted. Nothing here runs a query.

use sandbox_catalog::{Catalog, Classification, ColumnType, Constraint, Grain, Variant};
use sandbox_contract::manifest::{
    AgeAt, Banding, DatePart, Dimension, Filter, FilterOp, Manifest, ManifestError, ManifestProblem, OutputSpec,
    ParameterType, Statistic, dataset_of,
};

use crate::{PolicyConfig, PolicyContext, PolicyError};

/// One output table's contract as the query the host runs over the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractQuery {
    pub table: String,
    pub sql: String,
}

/// One output table's contract and what is wrong with it (nothing, if admitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedTable {
    pub query: ContractQuery,
    pub problems: Vec<ManifestProblem>,
}

/// Renders and judges every output table's contract; an error only when the problems are
/// found. `parameters` are the bound values of a run; without them (at submission) each
/// parameter stands for a value of its type, and the rules that depend on a value are checked
/// when a run binds it. Problems never quote a parameter's value.
pub async fn judge(
    manifest: &Manifest,
    catalog: &Catalog,
    parameters: Option<&[(String, String)]>,
) -> Result<Vec<ContractQuery>, ManifestError> {
    let tables = judge_tables(manifest, catalog, parameters).await?;
    let problems: Vec<ManifestProblem> = tables.iter().flat_map(|t| t.problems.iter().cloned()).collect();
    if problems.is_empty() {
        Ok(tables.into_iter().map(|t| t.query).collect())
    } else {
        Err(ManifestError { problems })
    }
}

/// Every output table's contract rendered as SQL, each with its problems: the contract's own
/// rules first, then the checker's verdict on the SQL. An error only when the views cannot be
/// built at all.
pub async fn judge_tables(
    manifest: &Manifest,
    catalog: &Catalog,
    parameters: Option<&[(String, String)]>,
) -> Result<Vec<JudgedTable>, ManifestError> {
    let datasets: Vec<&str> = manifest.datasets.iter().map(String::as_str).collect();
    // The twins' views, without a key: they can check a query but never run one.
    let views = PolicyContext::new(catalog, &datasets, Variant::Twin, None, PolicyConfig::default()).map_err(|e| {
        ManifestError {
            problems: vec![ManifestProblem { place: "datasets".to_owned(), en: e.to_string(), zh: e.zh() }],
        }
    })?;
    let mut tables = Vec::new();
    for (i, out) in manifest.outputs.iter().enumerate() {
        let mut r = Renderer { manifest, catalog, parameters, place: format!("outputs[{i}]"), problems: Vec::new() };
        let sql = r.table(out);
        let mut problems = r.problems;
        // The contract's own rules speak more precisely than the checker about the same use.
        if problems.is_empty()
            && let Err(e) = views.check(&sql).await
        {
            let (en, zh) = match &e {
                PolicyError::Rejected(r) => {
                    (format!("the contract is rejected: {r}"), format!("输出契约被拒绝：{}", r.zh()))
                }
                other => {
                    (format!("the contract cannot be checked: {other}"), format!("输出契约无法检查：{}", other.zh()))
                }
            };
            problems.push(ManifestProblem { place: format!("outputs[{i}]"), en, zh });
        }
        tables.push(JudgedTable { query: ContractQuery { table: out.name.clone(), sql }, problems });
    }
    Ok(tables)
}

struct Renderer<'a> {
    manifest: &'a Manifest,
    catalog: &'a Catalog,
    parameters: Option<&'a [(String, String)]>,
    place: String,
    problems: Vec<ManifestProblem>,
}

/// What the catalog says about one `dataset.column`.
struct ColumnFacts {
    constraint: Constraint,
    data_type: ColumnType,
    classification: Option<Classification>,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn column(source: &str) -> String {
    match source.split_once('.') {
        Some((dataset, name)) => format!("{}.{}", quote(dataset), quote(name)),
        None => quote(source),
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether a constraint lets a value be grouped or compared as it is: banding such a column
/// needs no published classification.
fn groupable(constraint: Constraint) -> bool {
    matches!(constraint, Constraint::Plaintext | Constraint::GroupByOnly)
}

fn grain_of(banding: &Banding) -> Option<Grain> {
    match banding {
        Banding::Year => Some(Grain::Year),
        Banding::Quarter => Some(Grain::Quarter),
        Banding::Month => Some(Grain::Month),
        _ => None,
    }
}

fn grain_of_part(part: DatePart) -> Grain {
    match part {
        DatePart::Year => Grain::Year,
        DatePart::Quarter => Grain::Quarter,
        DatePart::Month => Grain::Month,
    }
}

impl Renderer<'_> {
    fn problem(&mut self, place: &str, en: impl Into<String>, zh: impl Into<String>) {
        self.problems.push(ManifestProblem { place: place.to_owned(), en: en.into(), zh: zh.into() });
    }

    fn facts(&self, source: &str) -> Option<ColumnFacts> {
        let (dataset, name) = source.split_once('.')?;
        let c = self.catalog.dataset(dataset).ok()?.column(name)?.clone();
        Some(ColumnFacts { constraint: c.constraint, data_type: c.data_type, classification: c.classification })
    }

    /// A parameter's value: bound, or one that stands for any value of its type.
    fn parameter(&self, name: &str) -> (String, bool) {
        if let Some(bound) = self.parameters {
            return (bound.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default(), true);
        }
        let spec = self.manifest.parameters.iter().find(|p| p.name == name);
        let stand_in = match spec.map(|p| p.kind) {
            Some(ParameterType::Integer) => "0",
            Some(ParameterType::Number) => "0.0",
            Some(ParameterType::Boolean) => "false",
            Some(ParameterType::Date) => "2000-01-01",
            _ => "x",
        };
        let default = spec.and_then(|p| p.default.as_ref()).map(|d| match d {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        (default.unwrap_or_else(|| stand_in.to_owned()), false)
    }

    fn table(&mut self, out: &OutputSpec) -> String {
        let counted = out.measures.first().map_or("", |m| dataset_of(&m.of)).to_owned();
        let unit = self.catalog.dataset(&counted).map(|d| d.privacy_unit.clone()).unwrap_or_default();
        let mut select = Vec::new();
        let mut keys = Vec::new();
        for (j, dim) in out.dimensions.iter().enumerate() {
            let place = format!("{}.dimensions[{j}]", self.place);
            match (&dim.source, &dim.terms) {
                (Some(source), _) => {
                    let expr = self.dimension(dim, source, &place);
                    select.push(format!("{expr} AS {}", quote(&dim.name)));
                    keys.push((j + 1).to_string());
                }
                (None, Some(terms)) => {
                    for t in terms {
                        self.key_column(t, &place);
                        select.push(column(t));
                        keys.push(select.len().to_string());
                    }
                }
                (None, None) => {}
            }
        }
        for (j, m) in out.measures.iter().enumerate() {
            let place = format!("{}.measures[{j}]", self.place);
            self.magnitude(&m.of, &place);
            if let Some(per) = &m.per {
                self.magnitude(per, &place);
            }
            let x = column(&m.of);
            let name = quote(&m.name);
            let expr = match m.statistic {
                Statistic::Count => format!("count(DISTINCT {})", column(&format!("{counted}.{unit}"))),
                Statistic::Sum => format!("sum({x})"),
                Statistic::Mean => format!("avg({x})"),
                Statistic::Min => format!("min({x})"),
                Statistic::Max => format!("max({x})"),
                Statistic::Quantile => format!("percentile_cont({x}, {:?})", m.quantile.unwrap_or(0.5)),
                Statistic::Ratio => {
                    let per = m.per.clone().unwrap_or_default();
                    if dataset_of(&per) != counted {
                        self.problem(
                            &place,
                            format!("a ratio's denominator {per} must be a column of {counted}, the counted dataset"),
                            format!("比率的分母 {per} 必须是被计数数据集 {counted} 的列"),
                        );
                    }
                    format!("sum({x}) / sum({})", column(&per))
                }
                // The host fits a model from sums of the response and its square per cross cell.
                Statistic::Coefficient | Statistic::StdError => format!("sum({x} * {x})"),
                Statistic::ResidualDf => "count(*)".to_owned(),
            };
            select.push(format!("{expr} AS {name}"));
        }
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), quote(&counted));
        if let Some(join) = &out.join {
            self.join(&join.from, &join.to);
            sql += &format!(" JOIN {} ON {} = {}", quote(dataset_of(&join.to)), column(&join.from), column(&join.to));
        }
        let conditions: Vec<String> = out.filters.iter().enumerate().filter_map(|(k, f)| self.filter(f, k)).collect();
        if !conditions.is_empty() {
            sql += &format!(" WHERE {}", conditions.join(" AND "));
        }
        if !keys.is_empty() {
            sql += &format!(" GROUP BY {}", keys.join(", "));
        }
        sql
    }

    /// A column a statistic is computed of: a number the views let be aggregated. A pseudonym
    /// is an identifier in the raw files the host reads: its "maximum" is a person's number.
    fn magnitude(&mut self, source: &str, place: &str) {
        if !source.contains('.') {
            return;
        }
        let Some(facts) = self.facts(source) else { return };
        if matches!(facts.constraint, Constraint::Pseudonymized | Constraint::Forbidden) {
            self.problem(
                place,
                format!("{source} is {}: no statistic is computed of it", facts.constraint),
                format!("{source} 为{}列，不能对其计算统计量", facts.constraint.zh()),
            );
        } else if !facts.data_type.is_numeric() {
            self.problem(
                place,
                format!("{source} is {}, not a number: no statistic is computed of it", facts.data_type),
                format!("{source} 的类型 {} 不是数值，不能对其计算统计量", facts.data_type),
            );
        }
    }

    /// A column whose values become keys (a dimension or a model's terms).
    fn key_column(&mut self, source: &str, place: &str) {
        let Some(facts) = self.facts(source) else { return };
        if facts.constraint == Constraint::Pseudonymized {
            self.problem(
                place,
                format!("{source} is pseudonymized: an identifier is never a dimension or a model term"),
                format!("{source} 为去标识化列：标识符不能作为维度或模型项"),
            );
        }
    }

    fn dimension(&mut self, dim: &Dimension, source: &str, place: &str) -> String {
        let x = column(source);
        let Some(facts) = self.facts(source) else { return x };
        let Some(banding) = &dim.banding else {
            self.key_column(source, place);
            return x;
        };
        let published = |facts: &ColumnFacts| facts.classification.clone();
        let restricted = !groupable(facts.constraint);
        if matches!(facts.constraint, Constraint::Pseudonymized | Constraint::Forbidden) {
            self.problem(
                place,
                format!("{source} is {}: it is never banded", facts.constraint),
                format!("{source} 为{}列，不能分段", facts.constraint.zh()),
            );
            return x;
        }
        if let Some(grain) = grain_of(banding) {
            if restricted && !published(&facts).is_some_and(|c| c.has_grain(grain)) {
                self.off_classification(place, source, &facts, &format!("by {}", grain.as_str()));
            }
            return format!("classify({x}, {})", literal(grain.as_str()));
        }
        match banding {
            Banding::Bins { edges, labels } => {
                if restricted && !published(&facts).is_some_and(|c| c.admits_edges(edges)) {
                    self.off_classification(place, source, &facts, &format!("at {edges:?}"));
                }
                let edges: Vec<String> = edges.iter().map(|e| format!("{e:?}")).collect();
                let mut case = format!("CASE classify({x}, {})", edges.join(", "));
                for (i, label) in labels.iter().enumerate() {
                    case += &format!(" WHEN {i} THEN {}", literal(label));
                }
                case + " END"
            }
            Banding::Age { at, edges, labels } => {
                if restricted {
                    self.problem(
                        place,
                        format!(
                            "{source} is {}: ages are not a published classification of it; band it by year, quarter or month",
                            facts.constraint
                        ),
                        format!("{source} 为{}列，年龄段不是其公开分类；请按年、季度或月分段", facts.constraint.zh()),
                    );
                }
                let at = match at {
                    AgeAt::Date(date) => date.clone(),
                    AgeAt::Parameter { parameter } => self.parameter(parameter).0,
                };
                let mut case = "CASE".to_owned();
                for (edge, label) in edges.iter().zip(labels) {
                    case +=
                        &format!(" WHEN {x} > DATE {} - INTERVAL '{edge} years' THEN {}", literal(&at), literal(label));
                }
                case + &format!(" ELSE {} END", literal(labels.last().map_or("", String::as_str)))
            }
            Banding::Year | Banding::Quarter | Banding::Month => x,
        }
    }

    fn off_classification(&mut self, place: &str, source: &str, facts: &ColumnFacts, what: &str) {
        let published = match &facts.classification {
            Some(Classification::Grains(grains)) => {
                format!("by {}", grains.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", "))
            }
            Some(Classification::Edges(edges)) => format!("at {edges:?}"),
            None => "nowhere".to_owned(),
        };
        self.problem(
            place,
            format!(
                "{source} is {}: it may be banded or filtered only at its published classification ({published}), not {what}",
                facts.constraint
            ),
            format!("{source} 为{}列，只能按其公开分类（{published}）分段或过滤", facts.constraint.zh()),
        );
    }

    fn join(&mut self, from: &str, to: &str) {
        let (Some(a), Some(b)) = (self.facts(from), self.facts(to)) else { return };
        let pseudonyms = (a.constraint == Constraint::Pseudonymized, b.constraint == Constraint::Pseudonymized);
        if pseudonyms.0 != pseudonyms.1 {
            self.problem(
                &format!("{}.join", self.place),
                format!("{from} = {to} joins a pseudonym with a plain value: pseudonyms join only pseudonyms"),
                format!("{from} = {to} 将去标识化值与明文值关联：去标识化列只能与去标识化列关联"),
            );
        }
    }

    fn filter(&mut self, f: &Filter, k: usize) -> Option<String> {
        let place = format!("{}.filters[{k}]", self.place);
        let facts = self.facts(&f.column)?;
        let x = column(&f.column);
        let (value, bound) = match (&f.value, &f.parameter) {
            (Some(toml::Value::String(s)), _) => (s.clone(), true),
            (Some(v), _) => (v.to_string(), true),
            (None, Some(name)) => self.parameter(name),
            (None, None) => return None,
        };
        let what = if f.parameter.is_some() { "its parameter's value" } else { "its value" };
        match facts.constraint {
            Constraint::Pseudonymized => {
                self.problem(
                    &place,
                    format!(
                        "{} is pseudonymized: it is only a join key between pseudonyms, never compared with a literal or a parameter",
                        f.column
                    ),
                    format!("{} 为去标识化列：只能作为去标识化列之间的关联键，不能与字面值或参数比较", f.column),
                );
                return None;
            }
            Constraint::Forbidden => {
                self.problem(
                    &place,
                    format!("{} is forbidden: no contract touches it", f.column),
                    format!("{} 为禁止使用列，输出契约不得使用", f.column),
                );
                return None;
            }
            _ => {}
        }
        let op = match f.op {
            FilterOp::Eq => "=",
            FilterOp::Ne => "<>",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
            FilterOp::StartsWith => "starts_with",
        };
        let restricted = !groupable(facts.constraint);
        if let Some(part) = f.part {
            let grain = grain_of_part(part);
            if restricted && !facts.classification.as_ref().is_some_and(|c| c.has_grain(grain)) {
                self.off_classification(&place, &f.column, &facts, &format!("by {}", grain.as_str()));
            }
            let label = format!("classify({x}, {})", literal(grain.as_str()));
            return Some(match f.op {
                FilterOp::StartsWith => format!("starts_with({label}, {})", literal(&value)),
                _ => format!("{label} {op} {}", literal(&value)),
            });
        }
        let typed = format!("arrow_cast({}, {})", literal(&value), literal(&facts.data_type.to_arrow().to_string()));
        if !restricted {
            return Some(match f.op {
                FilterOp::StartsWith => format!("starts_with(CAST({x} AS VARCHAR), {})", literal(&value)),
                _ => format!("{x} {op} {typed}"),
            });
        }
        // A restricted column: only a cut at a published edge, from below (lt) or from it up (ge).
        if !matches!(f.op, FilterOp::Lt | FilterOp::Ge) {
            self.problem(
                &place,
                format!(
                    "{} is {}: a filter on it cuts at a published edge, with lt (below it) or ge (from it up); or compares a date's part",
                    f.column, facts.constraint
                ),
                format!("{} 为{}列：只能在公开分段边界处以 lt 或 ge 过滤，或比较日期的年、季度、月", f.column, facts.constraint.zh()),
            );
            return None;
        }
        let at_edge = match &facts.classification {
            Some(c @ Classification::Grains(_)) => {
                // Exactly `YYYY-MM-DD`, as the host's cast reads it.
                value.len() == 10
                    && chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d").is_ok_and(|d| c.starts_period(d))
            }
            Some(c @ Classification::Edges(_)) => value.parse::<f64>().is_ok_and(|v| c.has_edge(v)),
            None => false,
        };
        // A parameter's value is judged when a run binds it.
        if bound && !at_edge {
            self.off_classification(&place, &f.column, &facts, &format!("where {what} cuts"));
            return None;
        }
        Some(match &facts.classification {
            Some(Classification::Edges(edges)) => {
                let band = if f.op == FilterOp::Ge { 1 } else { 0 };
                // An unbound parameter stands for some published edge.
                let edge = if bound { value.parse::<f64>().unwrap_or(edges[0]) } else { edges[0] };
                format!("classify({x}, {edge:?}) = {band}")
            }
            _ => format!("{x} {op} {typed}"),
        })
    }
}
