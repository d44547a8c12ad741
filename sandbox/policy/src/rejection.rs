//! Why a query was rejected, in terms an operator can act on, in English and Chinese.

use std::fmt;

use sandbox_catalog::{Constraint, Grain};

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
    /// An aggregate over raw `aggregate_only` values whose FILTER names an identifier: the FILTER
    /// counts like the aggregate's arguments.
    IdentifiedFilter { value: String, identifier: String, function: String },
    /// An aggregate of identifiers in a restricted grouping (by `group_by_only` values or a
    /// published classification).
    GroupMembers { identifier: String, function: String, keys: RestrictedKeys },
    /// An aggregate whose FILTER names an identifier, in a restricted grouping.
    GroupMembersFilter { identifier: String, function: String, keys: RestrictedKeys },
    /// A grouping key (GROUP BY, DISTINCT, DISTINCT ON) computed from an identifier rather than
    /// the identifier itself: `citizen_id = 'x'`, `substr(citizen_id, 1, 3)`, `district || citizen_id`.
    IdentifierKey { identifier: String, place: Place },
    /// An identifier as a grouping key next to raw `group_by_only` keys (or a published
    /// classification): one group per person and district is a list of who lives where.
    MemberKey { identifier: String, place: Place, keys: RestrictedKeys },
    /// A function that repeats an argument as many times as the data decides (`array_to_string`
    /// repeats its delimiter once per element), given an argument that is not a literal.
    /// `argument` names it: "delimiter", "null string" or "replacement".
    Repeating { function: String, argument: &'static str },
    /// A list turned into text other than by `array_to_string` (a cast, or a text function that
    /// coerces its argument): it repeats a separator once per element.
    ListAsText(String),
    /// A value assembled from more parts than allowed.
    TooLarge { parts: u64, limit: u64 },
    /// A grouping whose groups under the threshold could not be dropped.
    SmallGroups(String),
    /// A `compare_only` column compared with values from other rows or another table.
    CrossRowComparison { view: String, column: String, place: Place },
    /// A column's classification (`classify`) used where it is not allowed before grouping.
    ClassifiedUse { view: String, column: String, constraint: Constraint, place: Place },
    /// `classify` of a value computed from a column rather than the column itself.
    ClassifyExpression,
    /// `classify` with a grain or edges that are not literals.
    ClassifyNotLiteral,
    /// `classify` of a `pseudonymized` or `forbidden` column.
    Unclassifiable { view: String, column: String, constraint: Constraint },
    /// `classify` of a `compare_only` or `aggregate_only` column (`view.column`) by a grain or at
    /// edges the catalog does not publish for it. `asked` holds only what is not published.
    Unpublished { column: String, constraint: Constraint, asked: Classes, published: Option<Classes> },
}

/// What makes a grouping restricted, so that identifiers may only be counted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictedKeys {
    /// Keys from `group_by_only` columns, raw or classified.
    GroupByOnly,
    /// Published classifications of `compare_only` or `aggregate_only` columns only.
    Classified,
}

impl fmt::Display for RestrictedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestrictedKeys::GroupByOnly => "group_by_only columns",
            RestrictedKeys::Classified => "published classifications",
        })
    }
}

impl RestrictedKeys {
    fn zh(self) -> &'static str {
        match self {
            RestrictedKeys::GroupByOnly => "仅限分组的列",
            RestrictedKeys::Classified => "公开分类",
        }
    }
}

/// Grains or band edges: what a `classify` call asks for, or what the catalog publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classes {
    Grains(Vec<Grain>),
    /// The edges as numbers are written (`10`, `1000`, `2.5`).
    Edges(Vec<String>),
}

impl Classes {
    /// `by month`, `at 123, 456`.
    fn asked(&self) -> String {
        match self {
            Classes::Grains(grains) => format!("by {}", list(grains.iter().map(|g| g.as_str()), ", ")),
            Classes::Edges(edges) => format!("at {}", edges.join(", ")),
        }
    }

    fn asked_zh(&self) -> String {
        match self {
            Classes::Grains(grains) => format!("按{}分类", list(grains.iter().map(|g| g.zh()), "、")),
            Classes::Edges(edges) => format!("在 {} 处分段", edges.join(", ")),
        }
    }

    /// `by its published grains (year, quarter)`, `at its published edges [10, 50]`.
    fn published(&self) -> String {
        match self {
            Classes::Grains(grains) => {
                format!("by its published grains ({})", list(grains.iter().map(|g| g.as_str()), ", "))
            }
            Classes::Edges(edges) => format!("at its published edges [{}]", edges.join(", ")),
        }
    }

    fn published_zh(&self) -> String {
        match self {
            Classes::Grains(grains) => format!("按其公开粒度（{}）分类", list(grains.iter().map(|g| g.zh()), "、")),
            Classes::Edges(edges) => format!("在其公开分段边界 [{}] 处分段", edges.join(", ")),
        }
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>, separator: &str) -> String {
    items.collect::<Vec<_>>().join(separator)
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

/// The Chinese name of an argument a function repeats.
fn argument_zh(argument: &str) -> &str {
    match argument {
        "delimiter" => "分隔符",
        "null string" => "空值替换串",
        "replacement" => "替换值",
        other => other,
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

/// Where a column's classification may be used before it is grouped.
fn classified_rule(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::GroupByOnly => "a classification of a group_by_only column may only be a GROUP BY or DISTINCT key",
        _ => {
            "a published classification of a compare_only or aggregate_only column may only be a GROUP BY or \
             DISTINCT key, or compared in WHERE, HAVING, JOIN ON or FILTER conditions; group by it to use it elsewhere"
        }
    }
}

fn classified_rule_zh(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::GroupByOnly => "仅限分组列的分类只能作为 GROUP BY 或 DISTINCT 分组键",
        _ => {
            "仅限比较列或仅限聚合列的公开分类只能作为 GROUP BY 或 DISTINCT 分组键，或用于 WHERE、HAVING、JOIN ON、\
             FILTER 条件中的比较；分组后方可用于其他位置"
        }
    }
}

/// Why a column cannot be classified at all.
fn unclassifiable(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::Pseudonymized => "an identifier is never classified",
        other => rule(other),
    }
}

fn unclassifiable_zh(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::Pseudonymized => "标识符不能分类",
        other => rule_zh(other),
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
            Reason::GroupMembers { identifier, function, keys } => format!(
                "在按{}分组时，聚合函数 {function}() 使用了标识符 {identifier}：会列出各组的成员；只能用 count(DISTINCT 标识符) 计数",
                keys.zh()
            ),
            Reason::GroupMembersFilter { identifier, function, keys } => format!(
                "在按{}分组时，聚合函数 {function}() 的 FILTER 条件使用了标识符 {identifier}：会标出某人所在的分组；\
                 只能用不带这种 FILTER 的 count(DISTINCT 标识符) 计数",
                keys.zh()
            ),
            Reason::IdentifierKey { identifier, place } => format!(
                "{}的分组键由标识符 {identifier} 计算而来：这样的分组键会单独挑出某个人或按标识符给人分组；只能以标识符本身作为分组键",
                place.zh()
            ),
            Reason::MemberKey { identifier, place, keys } => format!(
                "在按{}分组时，标识符 {identifier} 被用作{}的分组键：会列出各组的成员；只能用 count(DISTINCT {identifier}) 计数",
                keys.zh(),
                place.zh()
            ),
            Reason::Repeating { function, argument } => format!(
                "函数 {function}() 会按数据决定的次数重复其{}：它只能是查询中写明的字面常量",
                argument_zh(argument)
            ),
            Reason::ListAsText(function) => format!(
                "函数 {function}() 将列表转换为文本，会按数据决定的次数逐个元素重复分隔符：列表只能用 array_to_string 加字面常量分隔符拼接"
            ),
            Reason::TooLarge { parts, limit } => format!("一个值由 {parts} 个部分拼接而成，超过上限 {limit}"),
            Reason::IdentifiedAggregate { value, identifier, function } => {
                format!(
                    "聚合函数 {function}() 将仅限聚合的列 {value} 与标识符 {identifier} 一同聚合：结果会是某个人的值"
                )
            }
            Reason::IdentifiedFilter { value, identifier, function } => format!(
                "聚合函数 {function}() 聚合仅限聚合的列 {value}，其 FILTER 条件使用了标识符 {identifier}：结果会是某个人的值"
            ),
            Reason::Constraint { view, column, constraint, place } => {
                format!("列 {view}.{column}（{}）被用于{}：{}", constraint.zh(), place.zh(), rule_zh(*constraint))
            }
            Reason::CrossRowComparison { view, column, place } => format!(
                "列 {view}.{column}（仅限比较）在{}中与其他表或其他行的值比较：仅限比较的列只能与常量或同一行的值比较",
                place.zh()
            ),
            Reason::ClassifiedUse { view, column, constraint, place } => format!(
                "classify({view}.{column})（{}）被用于{}：{}",
                constraint.zh(),
                place.zh(),
                classified_rule_zh(*constraint)
            ),
            Reason::ClassifyExpression => {
                "classify() 的第一个参数必须是视图列本身，不能是由列计算得到的值：只有列本身的值才有公开分类".to_owned()
            }
            Reason::ClassifyNotLiteral => {
                "classify() 的粒度和分段边界必须是查询中写明的字面常量：查询运行前要对照公开分类审查它们".to_owned()
            }
            Reason::Unclassifiable { view, column, constraint } => format!(
                "classify() 不能使用列 {view}.{column}（{}）：{}",
                constraint.zh(),
                unclassifiable_zh(*constraint)
            ),
            Reason::Unpublished { column, constraint, asked, published } => match published {
                Some(published) => format!(
                    "{column} 为{}列：classify 只能{}，不能{}",
                    constraint.zh(),
                    published.published_zh(),
                    asked.asked_zh()
                ),
                None => {
                    format!("{column} 为{}列：目录未公布其分类，classify 不能{}", constraint.zh(), asked.asked_zh())
                }
            },
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
            Reason::GroupMembers { identifier, function, keys } => write!(
                f,
                "aggregate {function}() of the identifier {identifier} in a grouping by {keys} would name \
                 the members of each group; only count(DISTINCT {identifier}) is allowed there"
            )?,
            Reason::GroupMembersFilter { identifier, function, keys } => write!(
                f,
                "the FILTER of aggregate {function}() names the identifier {identifier} in a grouping by {keys}: \
                 it would mark the group that person is in; identifiers may only be counted there, with \
                 count(DISTINCT {identifier}) and no FILTER on an identifier"
            )?,
            Reason::IdentifierKey { identifier, place } => write!(
                f,
                "a {place} key is computed from the identifier {identifier}: such a key singles people out or sorts \
                 them by their identifier; only the identifier itself may be a key"
            )?,
            Reason::MemberKey { identifier, place, keys } => write!(
                f,
                "the identifier {identifier} is a {place} key in a grouping by {keys}: it would list \
                 the members of each group; only count(DISTINCT {identifier}) is allowed there"
            )?,
            Reason::Repeating { function, argument } => write!(
                f,
                "function {function}() repeats its {argument} as many times as the data decides: it must be a literal \
                 written in the query"
            )?,
            Reason::ListAsText(function) => write!(
                f,
                "function {function}() turns a list into text, repeating a separator once per element as many times \
                 as the data decides: lists may be joined only with array_to_string and a literal delimiter"
            )?,
            Reason::TooLarge { parts, limit } => write!(
                f,
                "a value would be assembled from {parts} parts, over the limit of {limit}: repeated concatenation \
                 or repetition can make values larger than memory"
            )?,
            Reason::IdentifiedAggregate { value, identifier, function } => write!(
                f,
                "aggregate {function}() combines the aggregate_only column {value} with the identifier {identifier}: \
                 the result would be one person's value"
            )?,
            Reason::IdentifiedFilter { value, identifier, function } => write!(
                f,
                "aggregate {function}() of the aggregate_only column {value} has a FILTER on the identifier \
                 {identifier}: the result would be one person's value"
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
            Reason::ClassifiedUse { view, column, constraint, place } => write!(
                f,
                "classify({view}.{column}) ({constraint}) is used in {place}: {}",
                classified_rule(*constraint)
            )?,
            Reason::ClassifyExpression => f.write_str(
                "classify() must take a view column as it is stored, not a value computed from one: only a \
                 column's own values have a published classification",
            )?,
            Reason::ClassifyNotLiteral => f.write_str(
                "classify()'s grain and edges must be literals written in the query: they are judged against the \
                 published classification before the query runs",
            )?,
            Reason::Unclassifiable { view, column, constraint } => write!(
                f,
                "classify() may not take column {view}.{column} ({constraint}): {}",
                unclassifiable(*constraint)
            )?,
            Reason::Unpublished { column, constraint, asked, published } => match published {
                Some(published) => write!(
                    f,
                    "{column} is {constraint}: classify may cut it only {}, not {}",
                    published.published(),
                    asked.asked()
                )?,
                None => write!(
                    f,
                    "{column} is {constraint}: the catalog publishes no classification of it, so classify \
                     may not cut it {}",
                    asked.asked()
                )?,
            },
        }
        f.write_str(&self.within())
    }
}
