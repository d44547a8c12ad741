//! Residents (`persons`) and their social insurance contributions (`social_insurance`).
//!
//! The people are drawn once, in order, into a compact table ([`Person`]): ID numbers need a
//! sequence number unique within (region, birth date, sex), which only a single pass can hand
//! out. Everything else about a person is drawn per chunk from the chunk's own random stream, so
//! the chunks' contents do not depend on how they are scheduled.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Decimal128Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

use crate::city::{self, DISTRICTS, OTHER_REGIONS};
use crate::firms::Firm;
use crate::{Seed, date_parts, ids, spec};

/// The day all ages are taken at: 2025-12-31, days since 1970-01-01.
pub(crate) const REFERENCE_DAY: i32 = 20_453;
/// The earliest birth date drawn (ages up to 96).
const FIRST_DAY: i32 = REFERENCE_DAY - 96 * 366;
const DAYS: usize = (REFERENCE_DAY - FIRST_DAY + 1) as usize;

/// Share of residents per 5-year age group, 0–4 to 90–94 (per mille, roughly a northern Chinese
/// city in 2025).
const AGE_GROUPS: [u32; 19] = [35, 48, 52, 48, 50, 58, 80, 76, 68, 75, 85, 80, 65, 58, 45, 28, 18, 9, 3];

#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) id: [u8; 18],
    /// Days since 1970-01-01.
    pub(crate) birth: i32,
    pub(crate) district: u8,
    pub(crate) female: bool,
    pub(crate) local: bool,
    pub(crate) rural: bool,
}

impl Person {
    pub(crate) fn id(&self) -> &str {
        std::str::from_utf8(&self.id).expect("ASCII")
    }

    pub(crate) fn age(&self) -> i32 {
        ((REFERENCE_DAY - self.birth) as f64 / 365.25) as i32
    }
}

/// Draws `n` residents in order. Their ID numbers are unique and carry valid check digits.
pub(crate) fn draw_people(seed: &Seed, n: u64) -> Vec<Person> {
    let mut rng = seed.rng("persons-core", 0);
    let district_weights = WeightedIndex::new(DISTRICTS.iter().map(|d| d.population)).expect("weights");
    let age_weights = WeightedIndex::new(AGE_GROUPS).expect("weights");
    let regions = DISTRICTS.len() + OTHER_REGIONS.len();
    // Sequence numbers handed out per (region, birth date, sex).
    let mut issued = vec![0u16; regions * DAYS * 2];

    let mut people = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let district = district_weights.sample(&mut rng);
        let local = rng.random_bool(0.85);
        let rural = rng.random_bool(f64::from(DISTRICTS[district].rural) / 100.0);
        let region = match local {
            true if rng.random_bool(0.9) => district,
            true => district_weights.sample(&mut rng),
            false => DISTRICTS.len() + rng.random_range(0..OTHER_REGIONS.len()),
        };
        let female = rng.random_bool(0.49);
        let group = age_weights.sample(&mut rng) as f64;
        let age_days = (group * 5.0 * 365.25 + rng.random_range(0.0..5.0 * 365.25)) as i32;
        let mut birth = REFERENCE_DAY - age_days;

        // Odd sequences (1..=999) are men's, even ones (2..=998) women's. A full day moves the
        // birth date on by one, which no realistic scale reaches.
        let capacity: u16 = if female { 499 } else { 500 };
        let slot = loop {
            let bucket = (region * DAYS + (birth - FIRST_DAY) as usize) * 2 + usize::from(female);
            if issued[bucket] < capacity {
                issued[bucket] += 1;
                // Spread the slots over the range, as real sequence numbers are.
                break (u32::from(issued[bucket] - 1) * 197 + bucket as u32) % u32::from(capacity);
            }
            birth = if birth < REFERENCE_DAY { birth + 1 } else { FIRST_DAY };
        };
        let sequence = if female { 2 * slot + 2 } else { 2 * slot + 1 } as u16;
        let region_code =
            if region < DISTRICTS.len() { DISTRICTS[region].code } else { OTHER_REGIONS[region - DISTRICTS.len()] };
        let (y, m, d) = date_parts(birth);
        let id = ids::citizen_id(region_code, y, m, d, sequence);
        people.push(Person {
            id: id.as_bytes().try_into().expect("18 characters"),
            birth,
            district: district as u8,
            female,
            local,
            rural,
        });
    }
    people
}

const MOBILE_PREFIXES: [&str; 24] = [
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159",
    "166", "177", "180", "183", "186", "187", "189", "199",
];

/// The `persons` rows of one chunk of people.
pub(crate) fn persons_batch(seed: &Seed, chunk: u64, people: &[Person]) -> RecordBatch {
    let mut rng = seed.rng("persons", chunk);
    let surnames = WeightedIndex::new(city::SURNAMES.iter().map(|s| s.1)).expect("weights");
    let given: Vec<char> = city::GIVEN_NAME_CHARS.chars().collect();

    let n = people.len();
    let mut id = StringBuilder::with_capacity(n, n * 18);
    let mut name = StringBuilder::with_capacity(n, n * 9);
    let mut gender = StringBuilder::with_capacity(n, n * 3);
    let mut birth = Date32Builder::with_capacity(n);
    let mut district = StringBuilder::with_capacity(n, n * 6);
    let mut hukou = StringBuilder::with_capacity(n, n * 12);
    let mut education = StringBuilder::with_capacity(n, n * 9);
    let mut mobile = StringBuilder::with_capacity(n, n * 11);
    let mut buf = String::new();
    for p in people {
        id.append_value(p.id());
        buf.clear();
        buf.push_str(city::SURNAMES[surnames.sample(&mut rng)].0);
        for _ in 0..rng.random_range(1..=2) {
            buf.push(given[rng.random_range(0..given.len())]);
        }
        name.append_value(&buf);
        gender.append_value(if p.female { "女" } else { "男" });
        birth.append_value(p.birth);
        district.append_value(DISTRICTS[p.district as usize].code);
        hukou.append_value(match (p.local, p.rural) {
            (true, false) => city::HUKOU_LOCAL_URBAN,
            (true, true) => city::HUKOU_LOCAL_RURAL,
            (false, false) => city::HUKOU_OTHER_URBAN,
            (false, true) => city::HUKOU_OTHER_RURAL,
        });
        education.append_value(city::EDUCATION[education_level(&mut rng, p.age())]);
        buf.clear();
        buf.push_str(MOBILE_PREFIXES[rng.random_range(0..MOBILE_PREFIXES.len())]);
        buf.push_str(&format!("{:08}", rng.random_range(0..100_000_000u32)));
        mobile.append_value(&buf);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(name.finish()),
        Arc::new(gender.finish()),
        Arc::new(birth.finish()),
        Arc::new(district.finish()),
        Arc::new(hukou.finish()),
        Arc::new(education.finish()),
        Arc::new(mobile.finish()),
    ];
    RecordBatch::try_new(spec::PERSONS.schema(), columns).expect("schema matches")
}

/// An index into [`city::EDUCATION`], plausible for the age.
fn education_level(rng: &mut impl Rng, age: i32) -> usize {
    let weights: &[u32; 7] = match age {
        ..=5 => return 0,
        6..=11 => return 1,
        12..=14 => return 2,
        15..=17 => &[0, 0, 30, 70, 0, 0, 0],
        18..=22 => &[0, 2, 12, 30, 24, 32, 0],
        23..=40 => &[0, 3, 20, 24, 20, 28, 5],
        41..=60 => &[1, 10, 36, 30, 11, 10, 2],
        _ => &[6, 36, 30, 18, 6, 4, 0],
    };
    WeightedIndex::new(weights).expect("weights").sample(rng)
}

/// Pension contributions (16 % employer + 8 % employee) over a contribution base clamped to the
/// region's floor and ceiling (approximately those of Inner Mongolia in 2025).
const CONTRIBUTION_RATE: f64 = 0.24;
const BASE_FLOOR: f64 = 4_494.0;
const BASE_CEILING: f64 = 22_470.0;

/// The `social_insurance` rows of one chunk of people: the employed ones, a row per month of 2025
/// they contributed in.
pub(crate) fn social_insurance_batch(
    seed: &Seed,
    chunk: u64,
    people: &[Person],
    firms: &[Firm],
    employers: &WeightedIndex<f64>,
) -> RecordBatch {
    let mut rng = seed.rng("social_insurance", chunk);
    let capacity = people.len() * 5;
    let mut person = StringBuilder::with_capacity(capacity, capacity * 18);
    let mut employer = StringBuilder::with_capacity(capacity, capacity * 18);
    let mut month = StringBuilder::with_capacity(capacity, capacity * 7);
    let decimal = || Decimal128Builder::with_capacity(capacity).with_precision_and_scale(12, 2).expect("valid");
    let (mut base, mut amount) = (decimal(), decimal());
    for p in people {
        let age = p.age();
        let retirement = if p.female { 55 } else { 60 };
        let employment = if p.rural { 0.45 } else { 0.68 };
        if !(18..retirement).contains(&age) || !rng.random_bool(employment) {
            continue;
        }
        let firm = &firms[employers.sample(&mut rng)];
        let premium = match firm.industry {
            "B" | "D" | "J" => 0.35,
            "C" | "I" => 0.15,
            "H" | "O" | "A" => -0.15,
            _ => 0.0,
        };
        let wage = (5_600f64.ln() + premium + 0.45 * crate::normal(&mut rng)).exp();
        let monthly_base = wage.clamp(BASE_FLOOR, BASE_CEILING).round();
        let cents = |yuan: f64| (yuan * 100.0).round() as i128;
        let first_month = if rng.random_bool(0.8) { 1 } else { rng.random_range(2..=12) };
        for m in first_month..=12 {
            person.append_value(p.id());
            employer.append_value(&firm.uscc);
            month.append_value(format!("2025-{m:02}"));
            base.append_value(cents(monthly_base));
            amount.append_value(cents(monthly_base * CONTRIBUTION_RATE));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(person.finish()),
        Arc::new(employer.finish()),
        Arc::new(month.finish()),
        Arc::new(base.finish()),
        Arc::new(amount.finish()),
    ];
    RecordBatch::try_new(spec::SOCIAL_INSURANCE.schema(), columns).expect("schema matches")
}
