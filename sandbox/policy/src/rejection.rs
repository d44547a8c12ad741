//! Why a query was rejected, in terms an operator can act on, in English and Chinese.

use std::fmt;

use sandbox_catalog::Constraint;

/// A query the gate or the constraint checker refused. Nothing was executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    /// Where in the query, outermost first: named subqueries and CTEs, or "subquery".
    pub within: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Empty text, or only comments.
    Empty,
    /// More than one statement.
    MultipleStatements(usize),
    /// A statement other than a query: DDL, DML, COPY, SET, EXPLAIN ...
    NotAQuery(String),
    /// The SQL text is longer than the gate accepts.
    TooLong { bytes: usize, limit: usize },
    /// The SQL nests deeper than the gate accepts.
    TooDeep { limit: usize },
    /// A relation that is not a policy view of the licence.
    NotAView(String),
    /// A function whose result is not reproducible (clock, randomness).
    Volatile(String),
    /// A query feature the checker does not admit.
    Unsupported(&'static str),
    /// A column used where its constraint does not allow.
    Constraint { view: String, column: String, constraint: Constraint, place: Place },
    /// A function that can build values far larger than its input.
    Amplifying(String),
    /// An aggregate over raw `aggregate_only` values together with an identifier.
    IdentifiedAggregate { value: String, identifier: String, function: String },
    /// An aggregate of identifiers in a grouping by `group_by_only` values.
    GroupMembers { identifier: String, function: String },
    /// A value assembled from more parts than allowed.
    TooLarge { parts: u64, limit: u64 },
    /// A grouping whose groups under the threshold could not be dropped.
    SmallGroups(String),
    /// A `compare_only` column compared with values from other rows or another table.
    CrossRowComparison { view: String, column: String, place: Place },
}

/// Where in a query a value is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Returned by the query.
    Output,
    /// Returned by a subquery to the query around it.
    SubqueryResult,
    Where,
    Having,
    JoinOn,
    GroupBy,
    Distinct,
    DistinctOn,
    OrderBy,
    Limit,
    /// A list turned into rows: its values decide how many.
    Unnest,
    /// As an argument (or in the ORDER BY) of an aggregate function.
    Aggregate(String),
    AggregateFilter(String),
    /// In a window function's arguments, PARTITION BY or ORDER BY.
    Window(String),
    WindowFilter(String),
}

impl Place {
    /// Whether a value used here only decides which rows are kept.
    pub(crate) fn is_predicate(&self) -> bool {
        matches!(
            self,
            Place::Where | Place::Having | Place::JoinOn | Place::AggregateFilter(_) | Place::WindowFilter(_)
        )
    }

    pub(crate) fn is_grouping(&self) -> bool {
        matches!(self, Place::GroupBy | Place::Distinct | Place::DistinctOn)
    }

    fn zh(&self) -> String {
        match self {
            Place::Output => "查询结果".to_owned(),
            Place::SubqueryResult => "子查询结果".to_owned(),
            Place::Where => "WHERE 条件".to_owned(),
            Place::Having => "HAVING 条件".to_owned(),
            Place::JoinOn => "JOIN ON 条件".to_owned(),
            Place::GroupBy => "GROUP BY".to_owned(),
            Place::Distinct => "SELECT DISTINCT".to_owned(),
            Place::DistinctOn => "DISTINCT ON".to_owned(),
            Place::OrderBy => "ORDER BY".to_owned(),
            Place::Limit => "LIMIT/OFFSET".to_owned(),
            Place::Unnest => "UNNEST 展开".to_owned(),
            Place::Aggregate(f) => format!("聚合函数 {f}()"),
            Place::AggregateFilter(f) => format!("聚合函数 {f}() 的 FILTER 条件"),
            Place::Window(f) => format!("窗口函数 {f}()"),
            Place::WindowFilter(f) => format!("窗口函数 {f}() 的 FILTER 条件"),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Output => f.write_str("the query result"),
            Place::SubqueryResult => f.write_str("a subquery's result"),
            Place::Where => f.write_str("WHERE"),
            Place::Having => f.write_str("HAVING"),
            Place::JoinOn => f.write_str("JOIN ON"),
            Place::GroupBy => f.write_str("GROUP BY"),
            Place::Distinct => f.write_str("SELECT DISTINCT"),
            Place::DistinctOn => f.write_str("DISTINCT ON"),
            Place::OrderBy => f.write_str("ORDER BY"),
            Place::Limit => f.write_str("LIMIT/OFFSET"),
            Place::Unnest => f.write_str("UNNEST"),
            Place::Aggregate(n) => write!(f, "aggregate {n}()"),
            Place::AggregateFilter(n) => write!(f, "the FILTER of aggregate {n}()"),
            Place::Window(n) => write!(f, "window function {n}()"),
            Place::WindowFilter(n) => write!(f, "the FILTER of window function {n}()"),
        }
    }
}

fn rule(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::Plaintext | Constraint::Pseudonymized => "it may be used anywhere",
        Constraint::GroupByOnly => "a group_by_only column may only be a GROUP BY key",
        Constraint::AggregateOnly => {
            "an aggregate_only column may only be the argument of a reducing aggregate (count, sum, avg, min, max, stddev ...)"
        }
        Constraint::CompareOnly => "a compare_only column may only be used in WHERE, HAVING or JOIN ON conditions",
        Constraint::Forbidden => "a forbidden column may not be used at all",
    }
}

fn rule_zh(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::Plaintext | Constraint::Pseudonymized => "可任意使用",
        Constraint::GroupByOnly => "仅限分组的列只能作为 GROUP BY 分组键",
        Constraint::AggregateOnly => "仅限聚合的列只能作为归约型聚合函数（count、sum、avg、min、max、stddev 等）的参数",
        Constraint::CompareOnly => "仅限比较的列只能用于 WHERE、HAVING 或 JOIN ON 条件",
        Constraint::Forbidden => "禁止使用的列不得以任何方式使用",
    }
}

impl Rejection {
    pub(crate) fn new(reason: Reason) -> Rejection {
        Rejection { reason, within: Vec::new() }
    }

    fn within(&self) -> String {
        match self.within.as_slice() {
            [] => String::new(),
            path => format!(" (inside {})", path.join(" > ")),
        }
    }

    /// The message in Chinese.
    pub fn zh(&self) -> String {
        let within = match self.within.as_slice() {
            [] => String::new(),
            path => format!("（位于 {}）", path.join(" > ")),
        };
        let text = match &self.reason {
            Reason::Empty => "查询为空".to_owned(),
            Reason::MultipleStatements(n) => format!("只允许一条 SELECT 语句，收到 {n} 条"),
            Reason::NotAQuery(kind) => format!("只允许一条 SELECT 查询，不允许 {kind}"),
            Reason::TooLong { bytes, limit } => format!("SQL 长度 {bytes} 字节，超过上限 {limit} 字节"),
            Reason::TooDeep { limit } => format!("SQL 嵌套层数超过上限 {limit}"),
            Reason::NotAView(name) => format!("{name} 不是本授权的策略视图：只能查询策略视图"),
            Reason::Volatile(name) => format!("函数 {name}() 的结果不可复现：分析代码不能获取时间、随机数等外部输入"),
            Reason::Unsupported(what) => format!("不支持：{what}"),
            Reason::SmallGroups(what) => format!("无法剔除低于阈值的分组：{what}"),
            Reason::Amplifying(name) => format!("函数 {name}() 可生成远大于输入的值，分析代码不可使用"),
            Reason::GroupMembers { identifier, function } => format!(
                "在按仅限分组的列分组时，聚合函数 {function}() 使用了标识符 {identifier}：会列出各组的成员；只能用 count(DISTINCT 标识符) 计数"
            ),
            Reason::TooLarge { parts, limit } => format!("一个值由 {parts} 个部分拼接而成，超过上限 {limit}"),
            Reason::IdentifiedAggregate { value, identifier, function } => {
                format!(
                    "聚合函数 {function}() 将仅限聚合的列 {value} 与标识符 {identifier} 一同聚合：结果会是某个人的值"
                )
            }
            Reason::Constraint { view, column, constraint, place } => {
                format!("列 {view}.{column}（{}）被用于{}：{}", constraint.zh(), place.zh(), rule_zh(*constraint))
            }
            Reason::CrossRowComparison { view, column, place } => format!(
                "列 {view}.{column}（仅限比较）在{}中与其他表或其他行的值比较：仅限比较的列只能与常量或同一行的值比较",
                place.zh()
            ),
        };
        format!("{text}{within}")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Reason::Empty => f.write_str("the query is empty")?,
            Reason::MultipleStatements(n) => write!(f, "exactly one SELECT statement is allowed, found {n}")?,
            Reason::NotAQuery(kind) => write!(f, "only a single SELECT query is allowed, not {kind}")?,
            Reason::TooLong { bytes, limit } => write!(f, "the SQL text is {bytes} bytes, over the limit of {limit}")?,
            Reason::TooDeep { limit } => write!(f, "the SQL nests deeper than the limit of {limit} levels")?,
            Reason::NotAView(name) => {
                write!(f, "{name} is not a policy view of this licence: only policy views can be queried")?
            }
            Reason::Volatile(name) => write!(
                f,
                "function {name}() is not reproducible: analysis code gets no clock, randomness or other outside input"
            )?,
            Reason::Unsupported(what) => write!(f, "not supported: {what}")?,
            Reason::SmallGroups(what) => write!(f, "{what}")?,
            Reason::Amplifying(name) => {
                write!(f, "function {name}() can build values far larger than its input; it is not available")?
            }
            Reason::GroupMembers { identifier, function } => write!(
                f,
                "aggregate {function}() of the identifier {identifier} in a grouping by group_by_only columns would name \
                 the members of each group; only count(DISTINCT {identifier}) is allowed there"
            )?,
            Reason::TooLarge { parts, limit } => write!(
                f,
                "a value would be assembled from {parts} parts, over the limit of {limit}: repeated concatenation \
                 can make values larger than memory"
            )?,
            Reason::IdentifiedAggregate { value, identifier, function } => write!(
                f,
                "aggregate {function}() combines the aggregate_only column {value} with the identifier {identifier}: \
                 the result would be one person's value"
            )?,
            Reason::Constraint { view, column, constraint, place } => {
                let what = match constraint {
                    Constraint::Forbidden => format!("column {view}.{column} is forbidden and is used in {place}"),
                    _ => format!("column {view}.{column} ({constraint}) is used in {place}"),
                };
                write!(f, "{what}: {}", rule(*constraint))?
            }
            Reason::CrossRowComparison { view, column, place } => write!(
                f,
                "column {view}.{column} (compare_only) is compared in {place} with values from other rows or another \
                 table: a compare_only column may only be compared with constants or values of the same row"
            )?,
        }
        f.write_str(&self.within())
    }
}
