//! The SQL gate: admits the text of exactly one query and plans it, nothing else.
//!
//! DDL, DML, COPY, SET, EXPLAIN and every other statement are refused before planning. What the
//! planned query may read and do is the checker's business; the gate only makes sure there is
//! one query to check, of bounded size and nesting.
//!
//! Expression depth is bounded before DataFusion sees the query: its planner clones and drops
//! expression trees recursively (derived `Clone` and `Drop`, which no stack guard covers), so an
//! 8 000-term `1+1+...` would overflow a thread's stack. Parsing, measuring and dropping an
//! over-deep query happen on a thread of the gate's own with a large stack.

use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::rejection::{Reason, Rejection};
use crate::{PolicyConfig, PolicyError};

/// Stack of the parsing thread: enough for the deepest tree `max_sql_bytes` of SQL can spell.
const PARSE_STACK: usize = 256 << 20;

pub(crate) async fn plan(state: &SessionState, sql: &str, config: &PolicyConfig) -> Result<LogicalPlan, PolicyError> {
    if sql.len() > config.max_sql_bytes {
        return Err(PolicyError::Rejected(Rejection::new(Reason::TooLong {
            bytes: sql.len(),
            limit: config.max_sql_bytes,
        })));
    }
    let statement = std::thread::scope(|scope| {
        let parse = std::thread::Builder::new().name("sql-gate".to_owned()).stack_size(PARSE_STACK);
        let handle = parse.spawn_scoped(scope, || parse_query(sql, config)).expect("spawn the SQL gate's thread");
        handle.join().unwrap_or_else(|_| Err(PolicyError::InvalidSql("the SQL gate failed on this text".to_owned())))
    })?;
    state.statement_to_plan(statement).await.map_err(|e| PolicyError::InvalidSql(e.strip_backtrace()))
}

/// Parses `sql` into its one query statement, refusing anything else and over-deep expressions.
fn parse_query(sql: &str, config: &PolicyConfig) -> Result<DfStatement, PolicyError> {
    let reject = |reason| PolicyError::Rejected(Rejection::new(reason));
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .with_recursion_limit(config.max_sql_nesting)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| match e.find_root() {
            DataFusionError::SQL(p, _) if matches!(**p, ParserError::RecursionLimitExceeded) => {
                reject(Reason::TooDeep { limit: config.max_sql_nesting })
            }
            _ => PolicyError::InvalidSql(e.strip_backtrace()),
        })?;
    let statement = match statements.len() {
        0 => return Err(reject(Reason::Empty)),
        1 => statements.pop_front().expect("one statement"),
        n => return Err(reject(Reason::MultipleStatements(n))),
    };
    let kind = match &statement {
        DfStatement::Statement(s) if selects_into(s) => Some("SELECT INTO".to_owned()),
        DfStatement::Statement(s) if matches!(**s, Statement::Query(_)) => None,
        DfStatement::Statement(s) => Some(leading_keywords(&s.to_string())),
        DfStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE".to_owned()),
        DfStatement::CopyTo(_) => Some("COPY".to_owned()),
        DfStatement::Explain(_) => Some("EXPLAIN".to_owned()),
        DfStatement::Reset(_) => Some("RESET".to_owned()),
    };
    if let Some(kind) = kind {
        return Err(reject(Reason::NotAQuery(kind)));
    }
    if let DfStatement::Statement(s) = &statement {
        let mut depth = Depth { now: 0, limit: config.max_expr_depth };
        if s.visit(&mut depth).is_break() {
            return Err(reject(Reason::TooDeep { limit: config.max_expr_depth }));
        }
    }
    Ok(statement)
}

/// Measures expression depth, stopping as soon as it passes the limit.
struct Depth {
    now: usize,
    limit: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now += 1;
        if self.now > self.limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

/// `SELECT ... INTO t` creates a table.
fn selects_into(statement: &Statement) -> bool {
    match statement {
        Statement::Query(q) => matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some()),
        _ => false,
    }
}

/// `CREATE TABLE`, `INSERT INTO`, `SET` ...: the statement's opening keywords, for messages.
fn leading_keywords(statement: &str) -> String {
    let words: Vec<&str> = statement
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() { "a non-query statement".to_owned() } else { words.join(" ") }
}
