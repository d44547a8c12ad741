//! Example module 3: the average pension contribution in a month by the employer's industry.
//!
//! Contributions name the employer by a pseudonymized USCC; enterprises carry the same
//! pseudonym (one key per licence), so the two join without either identifier being seen.

use sandbox_sdk::{Analysis, Error, Params};

struct Contributions;

impl Analysis for Contributions {
    fn run(params: &Params) -> Result<(), Error> {
        let year = params.integer("year")?;
        let month = params.integer("month")?;
        let sql = format!(
            "SELECT e.industry,
                    count(DISTINCT s.person_id) AS insured,
                    avg(s.amount) AS mean_contribution
             FROM social_insurance s JOIN enterprises e ON s.employer_uscc = e.uscc
             WHERE s.month = '{year:04}-{month:02}'
             GROUP BY e.industry"
        );
        sandbox_sdk::emit_query("contributions", sandbox_sdk::query(&sql)?)
    }
}

sandbox_sdk::analysis!(Contributions);
