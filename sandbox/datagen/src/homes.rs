//! Households' monthly water, electricity and gas use (`utility_usage`).
//!
//! About one household per 2.6 residents. Some stand empty (zero use all year) and a few meter
//! readings are missing (null): both exercise the audit's zero and missing-value rules.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

use crate::city::DISTRICTS;
use crate::{Seed, spec};

pub(crate) fn household_count(people: u64) -> u64 {
    (people * 10).div_ceil(26)
}

/// The rows of households `first..first + count`: twelve months each.
pub(crate) fn utility_batch(seed: &Seed, chunk: u64, first: u64, count: u64) -> RecordBatch {
    let mut rng = seed.rng("utility_usage", chunk);
    let districts = WeightedIndex::new(DISTRICTS.iter().map(|d| d.population)).expect("weights");
    let rows = count as usize * 12;
    let mut key = StringBuilder::with_capacity(rows, rows * 15);
    let mut district = StringBuilder::with_capacity(rows, rows * 6);
    let mut month = StringBuilder::with_capacity(rows, rows * 7);
    let (mut water, mut power, mut gas) =
        (Float64Builder::with_capacity(rows), Float64Builder::with_capacity(rows), Float64Builder::with_capacity(rows));
    let reading = |b: &mut Float64Builder, rng: &mut rand_chacha::ChaCha8Rng, value: f64| {
        if rng.random_bool(0.003) {
            b.append_null();
        } else {
            b.append_value((value.max(0.0) * 10.0).round() / 10.0);
        }
    };
    for h in first..first + count {
        let d = DISTRICTS[districts.sample(&mut rng)].code;
        let household_key = format!("{d}-{h:08}");
        let vacant = rng.random_bool(0.05);
        let residents = f64::from(1 + rng.random_range(0..4u8) + u8::from(rng.random_bool(0.2)));
        let thrift = (0.25 * crate::normal(&mut rng)).exp();
        for m in 1..=12u32 {
            key.append_value(&household_key);
            district.append_value(d);
            month.append_value(format!("2025-{m:02}"));
            let winter = matches!(m, 1 | 2 | 11 | 12);
            let summer = matches!(m, 6..=8);
            let noise = |rng: &mut rand_chacha::ChaCha8Rng| 1.0 + 0.1 * crate::normal(rng);
            let (w, e, g) = if vacant {
                (0.0, 0.0, 0.0)
            } else {
                let w = residents * 2.3 * if summer { 1.15 } else { 1.0 };
                let e = (40.0 + residents * 45.0)
                    * if winter {
                        1.25
                    } else if summer {
                        1.3
                    } else {
                        1.0
                    };
                let g = (5.0 + residents * 6.0) * if winter { 1.6 } else { 1.0 };
                (w * thrift * noise(&mut rng), e * thrift * noise(&mut rng), g * thrift * noise(&mut rng))
            };
            reading(&mut water, &mut rng, w);
            reading(&mut power, &mut rng, e);
            reading(&mut gas, &mut rng, g);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(district.finish()),
        Arc::new(month.finish()),
        Arc::new(water.finish()),
        Arc::new(power.finish()),
        Arc::new(gas.finish()),
    ];
    RecordBatch::try_new(spec::UTILITY_USAGE.schema(), columns).expect("schema matches")
}
