//! What each generated dataset is: its catalog attributes and columns. The Parquet schema and the
//! catalog entry are both derived from here, so they cannot disagree.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_schema::{Field, Schema};
use sandbox_catalog::{ColumnType, Constraint, Grain, Level, Openness, Sharing, UpdateFrequency};

pub(crate) struct DatasetSpec {
    pub(crate) id: &'static str,
    pub(crate) title: (&'static str, &'static str),
    pub(crate) provider: (&'static str, &'static str),
    pub(crate) level: Level,
    pub(crate) sub_level: Option<u8>,
    pub(crate) sharing: Sharing,
    pub(crate) open: Openness,
    pub(crate) update_frequency: UpdateFrequency,
    pub(crate) privacy_unit: &'static str,
    pub(crate) columns: &'static [ColumnSpec],
}

pub(crate) struct ColumnSpec {
    pub(crate) name: &'static str,
    pub(crate) data_type: ColumnType,
    pub(crate) constraint: Constraint,
    pub(crate) zh: &'static str,
    pub(crate) en: &'static str,
    /// 公开分类: where output contracts may band or filter the column.
    pub(crate) classification: Option<Published>,
}

/// A published classification, in a form constants can hold (the catalog's `Classification`
/// owns its lists).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Published {
    Grains(&'static [Grain]),
    Edges(&'static [f64]),
}

const fn col(
    name: &'static str,
    data_type: ColumnType,
    constraint: Constraint,
    zh: &'static str,
    en: &'static str,
) -> ColumnSpec {
    ColumnSpec { name, data_type, constraint, zh, en, classification: None }
}

impl ColumnSpec {
    const fn grains(self, grains: &'static [Grain]) -> ColumnSpec {
        ColumnSpec { classification: Some(Published::Grains(grains)), ..self }
    }

    const fn edges(self, edges: &'static [f64]) -> ColumnSpec {
        ColumnSpec { classification: Some(Published::Edges(edges)), ..self }
    }
}

/// Dates are published by year, quarter and month.
const CALENDAR: &[Grain] = &[Grain::Year, Grain::Quarter, Grain::Month];

use ColumnType::{Date, Float64, String as Str};
use Constraint::{AggregateOnly, CompareOnly, Forbidden, GroupByOnly, Plaintext, Pseudonymized};

pub(crate) const MONEY: ColumnType = ColumnType::Decimal { precision: 12, scale: 2 };
pub(crate) const CAPITAL: ColumnType = ColumnType::Decimal { precision: 18, scale: 2 };

pub(crate) const PERSONS: DatasetSpec = DatasetSpec {
    id: "persons",
    title: ("居民基本信息", "Resident population register"),
    provider: ("包头市公安局", "Baotou Municipal Public Security Bureau"),
    level: Level::Important,
    sub_level: None,
    sharing: Sharing::Conditional,
    open: Openness::None,
    update_frequency: UpdateFrequency::Monthly,
    privacy_unit: "citizen_id",
    columns: &[
        col("citizen_id", Str, Pseudonymized, "公民身份号码（GB 11643）", "Citizen ID number (GB 11643)"),
        col("name", Str, Pseudonymized, "姓名", "Name"),
        col("gender", Str, GroupByOnly, "性别（男/女）", "Gender (男 male / 女 female)"),
        col("birth_date", Date, GroupByOnly, "出生日期", "Date of birth").grains(CALENDAR),
        col("district", Str, GroupByOnly, "居住地行政区划代码（GB/T 2260）", "District of residence (GB/T 2260 code)"),
        col("hukou_type", Str, GroupByOnly, "户籍类型", "Household registration type"),
        col("education", Str, GroupByOnly, "学历", "Education"),
        col("mobile", Str, Forbidden, "手机号码", "Mobile phone number"),
    ],
};

pub(crate) const ENTERPRISES: DatasetSpec = DatasetSpec {
    id: "enterprises",
    title: ("法人单位基本信息", "Registered legal entities"),
    provider: ("包头市市场监督管理局", "Baotou Municipal Administration for Market Regulation"),
    level: Level::General,
    sub_level: Some(2),
    sharing: Sharing::Unconditional,
    open: Openness::Conditional,
    update_frequency: UpdateFrequency::Daily,
    privacy_unit: "uscc",
    columns: &[
        col("uscc", Str, Pseudonymized, "统一社会信用代码（GB 32100）", "Unified social credit code (GB 32100)"),
        col("name", Str, Pseudonymized, "单位名称", "Registered name"),
        col("industry", Str, GroupByOnly, "行业门类（GB/T 4754）", "Industry section (GB/T 4754)"),
        col("registered_capital", CAPITAL, AggregateOnly, "注册资本（万元）", "Registered capital (10,000 yuan)")
            .edges(&[10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0]),
        col("established", Date, CompareOnly, "成立日期", "Date of establishment").grains(CALENDAR),
        col(
            "district",
            Str,
            GroupByOnly,
            "注册地行政区划代码（GB/T 2260）",
            "District of registration (GB/T 2260 code)",
        ),
        col("status", Str, Plaintext, "登记状态", "Registration status"),
    ],
};

pub(crate) const SOCIAL_INSURANCE: DatasetSpec = DatasetSpec {
    id: "social_insurance",
    title: ("社会保险缴费记录", "Social insurance contributions"),
    provider: ("包头市人力资源和社会保障局", "Baotou Municipal Human Resources and Social Security Bureau"),
    level: Level::Important,
    sub_level: None,
    sharing: Sharing::Conditional,
    open: Openness::None,
    update_frequency: UpdateFrequency::Monthly,
    privacy_unit: "person_id",
    columns: &[
        col("person_id", Str, Pseudonymized, "参保人公民身份号码", "Insured person's citizen ID number"),
        col("employer_uscc", Str, Pseudonymized, "缴费单位统一社会信用代码", "Employer's unified social credit code"),
        col("month", Str, Plaintext, "费款所属期（YYYY-MM）", "Contribution month (YYYY-MM)"),
        // The base is clamped to 4 494–22 470 yuan (`people.rs`) and the amount is 24 % of it: no
        // band below the floor, which would always be empty.
        col("contribution_base", MONEY, AggregateOnly, "缴费基数（元）", "Contribution base (yuan)")
            .edges(&[5_000.0, 6_000.0, 8_000.0, 12_000.0, 20_000.0]),
        col(
            "amount",
            MONEY,
            AggregateOnly,
            "养老保险缴费额（元，单位与个人合计）",
            "Pension contribution, employer and employee (yuan)",
        )
        .edges(&[1_200.0, 1_500.0, 2_000.0, 3_000.0, 5_000.0]),
    ],
};

pub(crate) const UTILITY_USAGE: DatasetSpec = DatasetSpec {
    id: "utility_usage",
    title: ("居民水电气用量", "Household water, electricity and gas use"),
    provider: ("包头市住房和城乡建设局", "Baotou Municipal Housing and Urban-Rural Development Bureau"),
    level: Level::General,
    sub_level: Some(3),
    sharing: Sharing::Conditional,
    open: Openness::None,
    update_frequency: UpdateFrequency::Monthly,
    privacy_unit: "household_key",
    columns: &[
        col("household_key", Str, Pseudonymized, "户号（地址编码）", "Household (address) key"),
        col("district", Str, GroupByOnly, "行政区划代码（GB/T 2260）", "District (GB/T 2260 code)"),
        col("month", Str, Plaintext, "账期（YYYY-MM）", "Billing month (YYYY-MM)"),
        // An occupied home's month (`homes.rs`) uses about 2–13 m³ of water, 80–360 kWh and
        // 10–52 m³ of gas (5th–95th percentiles, medians 6, 180 and 24); the lowest bands also
        // hold the empty homes.
        col("water_m3", Float64, AggregateOnly, "用水量（立方米）", "Water (m³)").edges(&[2.0, 5.0, 10.0, 15.0, 20.0]),
        col("electricity_kwh", Float64, AggregateOnly, "用电量（千瓦时）", "Electricity (kWh)")
            .edges(&[100.0, 200.0, 300.0, 400.0, 500.0]),
        col("gas_m3", Float64, AggregateOnly, "用气量（立方米）", "Gas (m³)").edges(&[10.0, 20.0, 30.0, 50.0, 80.0]),
    ],
};

impl DatasetSpec {
    pub(crate) fn schema(&self) -> Arc<Schema> {
        let fields: Vec<Field> =
            self.columns.iter().map(|c| Field::new(c.name, c.data_type.to_arrow(), true)).collect();
        Arc::new(Schema::new(fields))
    }

    /// The catalog entry, as TOML with comments in both languages.
    pub(crate) fn entry(&self, scale: u64, seed: u64, file: &str, twin: &str) -> String {
        let mut s = String::new();
        let q = |v: &str| toml_string(v);
        let _ = writeln!(s, "# {} — {}", self.title.0, self.title.1);
        let _ = writeln!(
            s,
            "# 由 sandbox datagen 生成的合成数据 / synthetic data from `sandbox datagen --scale {scale} --seed {seed}`"
        );
        let _ = writeln!(s, "id = {}", q(self.id));
        let _ = writeln!(s, "title = {{ zh = {}, en = {} }}", q(self.title.0), q(self.title.1));
        let _ = writeln!(s, "provider = {{ zh = {}, en = {} }}  # 数源部门", q(self.provider.0), q(self.provider.1));
        let _ = writeln!(s, "level = {}  # {}", q(self.level.code()), self.level.zh());
        if let Some(sub) = self.sub_level {
            let _ = writeln!(s, "sub_level = {sub}");
        }
        let _ = writeln!(s, "sharing = {}  # {}", q(self.sharing.code()), self.sharing.zh());
        let _ = writeln!(s, "open = {}  # {}", q(self.open.code()), self.open.zh());
        let _ = writeln!(s, "update_frequency = {}  # {}", q(self.update_frequency.code()), self.update_frequency.zh());
        let _ = writeln!(
            s,
            "privacy_unit = {}  # 隐私单元 / whose privacy the output audit protects",
            q(self.privacy_unit)
        );
        let _ = writeln!(s, "format = \"parquet\"");
        let _ = writeln!(s, "files = [{}]", q(file));
        let _ = writeln!(s, "twin_files = [{}]  # 合成孪生数据 / synthetic twin for development runs", q(twin));
        for c in self.columns {
            let _ = writeln!(s);
            let _ = writeln!(s, "[[columns]]");
            let _ = writeln!(s, "name = {}", q(c.name));
            let _ = writeln!(s, "type = {}", q(&c.data_type.to_string()));
            let _ = writeln!(s, "constraint = {}  # {}", q(c.constraint.as_str()), c.constraint.zh());
            let _ = writeln!(s, "description = {{ zh = {}, en = {} }}", q(c.zh), q(c.en));
            match c.classification {
                Some(Published::Grains(grains)) => {
                    let codes: Vec<String> = grains.iter().map(|g| q(g.as_str())).collect();
                    let zh: Vec<&str> = grains.iter().map(|g| g.zh()).collect();
                    let en: Vec<&str> = grains.iter().map(|g| g.as_str()).collect();
                    let _ = writeln!(
                        s,
                        "classification = {{ grains = [{}] }}  # 公开分类：按{}发布 / published by {}",
                        codes.join(", "),
                        zh.join("、"),
                        en.join(", ")
                    );
                }
                Some(Published::Edges(edges)) => {
                    let edges: Vec<String> = edges.iter().map(|&e| toml_number(e)).collect();
                    let _ = writeln!(
                        s,
                        "classification = {{ edges = [{}] }}  # 公开分类：分段边界 / published band edges",
                        edges.join(", ")
                    );
                }
                None => {}
            }
        }
        s
    }
}

/// Whole numbers without a fraction, as people write edges; others as TOML floats.
fn toml_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { toml::Value::Float(v).to_string() }
}

fn toml_string(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}
