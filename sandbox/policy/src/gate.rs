//! The SQL gate: admits the text of exactly one query and plans it, nothing else.
//!
//! DDL, DML, COPY, SET, EXPLAIN and every other statement are refused before planning. What the
//! planned query may read and do is the checker's business; the gate only makes sure there is
//! one query to check, of bounded size and nesting.

use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::rejection::{Reason, Rejection};
use crate::{PolicyConfig, PolicyError};

pub(crate) async fn plan(state: &SessionState, sql: &str, config: &PolicyConfig) -> Result<LogicalPlan, PolicyError> {
    let reject = |reason| PolicyError::Rejected(Rejection::new(reason));
    if sql.len() > config.max_sql_bytes {
        return Err(reject(Reason::TooLong { bytes: sql.len(), limit: config.max_sql_bytes }));
    }
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
    state.statement_to_plan(statement).await.map_err(|e| PolicyError::InvalidSql(e.strip_backtrace()))
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
