//! Example module 5: registered legal entities and their registered capital by industry and
//! district. An honest table that meets the output audit: two districts are small, so many of
//! their cells have fewer than ten firms (threshold), and a few planted giants hold nearly all
//! the capital of their industry in their district (dominance). The audit withholds those
//! cells, names the rule for each in the released report, and releases the rest — the host's
//! own figures, rounded.

use sandbox_sdk::{Analysis, Error, Params};

struct Capital;

impl Analysis for Capital {
    fn run(_params: &Params) -> Result<(), Error> {
        let sql = "SELECT industry, district, count(*) AS firms, sum(registered_capital) AS capital
                   FROM enterprises
                   GROUP BY industry, district";
        sandbox_sdk::emit_query("capital", sandbox_sdk::query(sql)?)
    }
}

sandbox_sdk::analysis!(Capital);
