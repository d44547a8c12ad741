//! Integration tests of the catalog: every class of problem an entry or its files can have, where
//! it is reported, published classifications, twins that are real data, and the dataset version.

mod classification;
mod problems;
mod twin;
mod version;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use sandbox_catalog::Variant;

/// A valid entry for a Parquet dataset of three columns, `data/shops.parquet`.
pub(crate) const ENTRY: &str = r#"# 商户 — test fixture
id = "shops"
title = { zh = "商户", en = "Shops" }
provider = { zh = "市场监督管理局", en = "Market regulation" }
level = "general"
sub_level = 2
sharing = "conditional"
open = "none"
update_frequency = "monthly"
privacy_unit = "shop_id"
format = "parquet"
files = ["data/shops.parquet"]
twin_files = ["twin/shops.parquet"]

[[columns]]
name = "shop_id"
type = "string"
constraint = "pseudonymized"
description = { zh = "编号", en = "Shop id" }

[[columns]]
name = "district"
type = "string"
constraint = "group_by_only"
description = { zh = "区", en = "District" }

[[columns]]
name = "turnover"
type = "int64"
constraint = "aggregate_only"
description = { zh = "营业额", en = "Turnover" }
"#;

/// A catalog folder holding [`ENTRY`] (with `edit` applied) and valid data for it: a twin with
/// other numbers than the real data.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new(edit: impl FnOnce(&str) -> String) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (sub, variant) in [("data", Variant::Real), ("twin", Variant::Twin)] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            write_shops(&dir.path().join(sub).join("shops.parquet"), DataType::Int64, variant);
        }
        std::fs::write(dir.path().join("shops.toml"), edit(ENTRY)).unwrap();
        Fixture { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn problems(&self) -> Vec<sandbox_catalog::Problem> {
        sandbox_catalog::check(self.dir.path()).unwrap().problems
    }
}

/// Writes three shops, with `turnover` stored as `turnover_type`; the twin's turnovers differ.
pub(crate) fn write_shops(path: &Path, turnover_type: DataType, variant: Variant) {
    let values = match variant {
        Variant::Real => [10, 20, 30],
        Variant::Twin => [12, 17, 33],
    };
    let turnover: ArrayRef = match turnover_type {
        DataType::Int32 => Arc::new(Int32Array::from(values.to_vec())),
        _ => Arc::new(Int64Array::from(values.map(i64::from).to_vec())),
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("shop_id", DataType::Utf8, true),
        Field::new("district", DataType::Utf8, true),
        Field::new("turnover", turnover_type, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["s1", "s2", "s3"])),
        Arc::new(StringArray::from(vec!["150202", "150202", "150203"])),
        turnover,
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}
