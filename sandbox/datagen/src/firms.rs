//! Legal entities (`enterprises`): a long tail of small firms and individual businesses, and a few
//! planted giants that dominate their industry × district cells in capital and employment.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Decimal128Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

use crate::city::{DISTRICTS, DOMINANT_FIRMS, INDUSTRIES, NAME_WORDS};
use crate::{Seed, ids, people::REFERENCE_DAY, spec};

#[derive(Debug, Clone)]
pub(crate) struct Firm {
    pub(crate) uscc: String,
    pub(crate) name: String,
    pub(crate) industry: &'static str,
    pub(crate) district: &'static str,
    /// 万元, in cents.
    pub(crate) capital: i128,
    pub(crate) established: i32,
    pub(crate) status: &'static str,
    /// Relative number of employees, for drawing employers.
    pub(crate) employees: f64,
}

const STATUSES: [(&str, u32); 5] = [("存续", 70), ("在业", 15), ("吊销", 5), ("注销", 8), ("迁出", 2)];

/// How many legal entities a city of `people` residents has (about one per 15 residents).
pub(crate) fn firm_count(people: u64) -> u64 {
    (people / 15).max(DOMINANT_FIRMS.len() as u64 + 54)
}

/// Draws the city's legal entities in order; the planted giants come first.
pub(crate) fn draw_firms(seed: &Seed, n: u64) -> Vec<Firm> {
    let mut rng = seed.rng("enterprises", 0);
    let mut firms = Vec::with_capacity(n as usize);
    // Organization code serials: a fixed stride through 10^8 codes, so every firm's is distinct.
    let serial = |index: usize| ((index as u64 * 7_919 + 10_000_019) % 100_000_000) as u32;

    for (i, giant) in DOMINANT_FIRMS.iter().enumerate() {
        firms.push(Firm {
            uscc: ids::uscc(b'1', giant.district, serial(i)),
            name: giant.name.to_owned(),
            industry: giant.industry,
            district: giant.district,
            capital: i128::from(giant.capital) * 100,
            established: rng.random_range(7_300..9_500), // 1990–1995
            status: "存续",
            employees: 0.0, // set below, as a share of everyone else's
        });
    }

    let district_weights = WeightedIndex::new(DISTRICTS.iter().map(|d| d.population)).expect("weights");
    let statuses = WeightedIndex::new(STATUSES.iter().map(|s| s.1)).expect("weights");
    for i in firms.len()..n as usize {
        let district = &DISTRICTS[district_weights.sample(&mut rng)];
        // Mining concentrates in the mining district, manufacturing in the steel and machinery
        // districts, farming in the counties.
        let industry_weights = INDUSTRIES.iter().map(|&(code, _, w)| {
            w * match (code, district.code) {
                ("B", "150206") => 40,
                ("C", "150203" | "150204") => 3,
                ("A", "150221" | "150222" | "150223") => 4,
                _ => 1,
            }
        });
        let industry = INDUSTRIES[WeightedIndex::new(industry_weights).expect("weights").sample(&mut rng)];
        let kind = match industry.0 {
            "F" | "H" | "O" if rng.random_bool(0.45) => b'2', // 个体工商户
            "A" if rng.random_bool(0.3) => b'3',              // 农民专业合作社
            _ => b'1',
        };
        let median = if kind == b'1' { 80.0f64 } else { 5.0 };
        let capital_wan = (median.ln() + 1.5 * crate::normal(&mut rng)).exp().clamp(0.1, 900_000.0);
        let capital = (capital_wan * 100.0).round() as i128;
        // More firms were founded in recent years.
        let age_days = (rng.random::<f64>().powf(2.0) * 35.0 * 365.25) as i32;
        let status = STATUSES[statuses.sample(&mut rng)].0;
        let active = matches!(status, "存续" | "在业");
        let employees = match kind {
            _ if !active => 0.0,
            b'1' => capital_wan.sqrt().max(0.5),
            _ => 0.3,
        };
        let word = NAME_WORDS[rng.random_range(0..NAME_WORDS.len())];
        let name = match kind {
            b'2' => format!("{}{}{}经营部", district.name, word, short_industry(industry.0)),
            b'3' => format!("{}{}农牧业专业合作社", district.name, word),
            _ => format!("包头市{}{}有限公司", word, short_industry(industry.0)),
        };
        firms.push(Firm {
            uscc: ids::uscc(kind, district.code, serial(i)),
            name,
            industry: industry.0,
            district: district.code,
            capital,
            established: REFERENCE_DAY - age_days,
            status,
            employees,
        });
    }

    let others: f64 = firms.iter().map(|f| f.employees).sum();
    let planted: f64 = DOMINANT_FIRMS.iter().map(|g| f64::from(g.employee_share) / 1000.0).sum();
    for (firm, giant) in firms.iter_mut().zip(&DOMINANT_FIRMS) {
        firm.employees = others * f64::from(giant.employee_share) / 1000.0 / (1.0 - planted);
    }
    firms
}

fn short_industry(section: &str) -> &'static str {
    match section {
        "A" => "农牧",
        "B" => "矿业",
        "C" => "制造",
        "D" => "能源",
        "E" => "建设工程",
        "F" => "商贸",
        "G" => "物流",
        "H" => "餐饮管理",
        "I" => "信息技术",
        "J" => "投资",
        "K" => "置业",
        "L" => "商务服务",
        "M" => "科技",
        "N" => "环境工程",
        "O" => "家政服务",
        "P" => "教育咨询",
        "Q" => "健康管理",
        "R" => "文化传媒",
        _ => "服务",
    }
}

/// Relative employee counts, for drawing each employed person's employer.
pub(crate) fn employer_weights(firms: &[Firm]) -> WeightedIndex<f64> {
    WeightedIndex::new(firms.iter().map(|f| f.employees)).expect("some firm employs people")
}

pub(crate) fn enterprises_batch(firms: &[Firm]) -> RecordBatch {
    let n = firms.len();
    let mut uscc = StringBuilder::with_capacity(n, n * 18);
    let mut name = StringBuilder::with_capacity(n, n * 30);
    let mut industry = StringBuilder::with_capacity(n, n);
    let mut capital = Decimal128Builder::with_capacity(n).with_precision_and_scale(18, 2).expect("valid");
    let mut established = Date32Builder::with_capacity(n);
    let mut district = StringBuilder::with_capacity(n, n * 6);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    for f in firms {
        uscc.append_value(&f.uscc);
        name.append_value(&f.name);
        industry.append_value(f.industry);
        capital.append_value(f.capital);
        established.append_value(f.established);
        district.append_value(f.district);
        status.append_value(f.status);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uscc.finish()),
        Arc::new(name.finish()),
        Arc::new(industry.finish()),
        Arc::new(capital.finish()),
        Arc::new(established.finish()),
        Arc::new(district.finish()),
        Arc::new(status.finish()),
    ];
    RecordBatch::try_new(spec::ENTERPRISES.schema(), columns).expect("schema matches")
}
