//! Example module 1: residents by district × age band × gender.
//!
//! Ages are whole years at `reference_date`; the bands match the manifest's banding of
//! `persons.birth_date`. Groups under the threshold never reach the module: the host drops them.

use sandbox_sdk::{Analysis, Error, Params};

struct Population;

impl Analysis for Population {
    fn run(params: &Params) -> Result<(), Error> {
        let at = params.text("reference_date")?;
        // Born after `at - 18 years` means younger than 18 on `at`, and so on up the bands.
        let sql = format!(
            "SELECT district,
                    CASE WHEN birth_date > DATE '{at}' - INTERVAL '18 years' THEN '0-17'
                         WHEN birth_date > DATE '{at}' - INTERVAL '35 years' THEN '18-34'
                         WHEN birth_date > DATE '{at}' - INTERVAL '60 years' THEN '35-59'
                         ELSE '60+' END AS age_band,
                    gender,
                    count(*) AS residents
             FROM persons
             GROUP BY 1, 2, 3"
        );
        sandbox_sdk::emit_query("population", sandbox_sdk::query(&sql)?)
    }
}

sandbox_sdk::analysis!(Population);
