//! Example module 2: enterprises established in each quarter of a year, by industry, with the
//! sum of their registered capital.
//!
//! `established` is `compare_only`: it may be compared with constants but not grouped by, so
//! each quarter is its own branch of a UNION ALL with a constant label. Sums of registered capital
//! meet the planted dominant firms: the output audit decides what of it may leave.

use sandbox_sdk::{Analysis, Error, Params};

struct NewEnterprises;

impl Analysis for NewEnterprises {
    fn run(params: &Params) -> Result<(), Error> {
        let year = params.integer("year")?;
        let quarter = |q: i64| {
            let (start, end) = match q {
                1 => (format!("{year}-01-01"), format!("{year}-04-01")),
                2 => (format!("{year}-04-01"), format!("{year}-07-01")),
                3 => (format!("{year}-07-01"), format!("{year}-10-01")),
                _ => (format!("{year}-10-01"), format!("{}-01-01", year + 1)),
            };
            format!(
                "SELECT industry, '{year}Q{q}' AS quarter, count(*) AS new_enterprises,
                        sum(registered_capital) AS registered_capital
                 FROM enterprises
                 WHERE established >= DATE '{start}' AND established < DATE '{end}'
                 GROUP BY industry"
            )
        };
        let sql = (1..=4).map(quarter).collect::<Vec<_>>().join("\nUNION ALL\n");
        sandbox_sdk::emit_query("new_enterprises", sandbox_sdk::query(&sql)?)
    }
}

sandbox_sdk::analysis!(NewEnterprises);
