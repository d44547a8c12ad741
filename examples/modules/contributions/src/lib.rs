//! Example module 3: the average pension contribution in a month by the employer's industry.
//!
//! Contributions name the employer by a pseudonymized USCC; enterprises carry the same
//! pseudonym (one key per licence), so the two join without either identifier being seen.

use sandbox_sdk::{Analysis, Error, Params};

struct Contributions;

impl Analysis for Contributions {
    fn run(params: &Params) -> Result<(), Error> {
        let month = params.text("month")?;
        let valid = month.len() == 7
            && month.as_bytes()[4] == b'-'
            && month[..4].parse::<u16>().is_ok()
            && month[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
        if !valid {
            return Err(Error::Host(sandbox_sdk::ErrorCode::InvalidParameter));
        }
        let sql = format!(
            "SELECT e.industry,
                    count(DISTINCT s.person_id) AS insured,
                    avg(s.amount) AS mean_contribution
             FROM social_insurance s JOIN enterprises e ON s.employer_uscc = e.uscc
             WHERE s.month = '{month}'
             GROUP BY e.industry"
        );
        sandbox_sdk::emit_query("contributions", sandbox_sdk::query(&sql)?)
    }
}

sandbox_sdk::analysis!(Contributions);
