//! Policy views: what analysis SQL sees instead of the datasets.
//!
//! Each view is a [`PolicyView`]: a table provider holding a logical plan over a `ListingTable`
//! of the dataset's files. The listing table is never registered, so SQL cannot name it, and the
//! view is opaque to the SQL planner (unlike DataFusion's `ViewTable`, which the planner inlines),
//! so the checker sees each view as one relation and analysis plans never mention the files. The
//! view's plan replaces `pseudonymized` columns by their pseudonyms and `forbidden` columns by
//! typed NULLs, so that even a query the checker wrongly admitted could not read either; the
//! other constraints are the checker's to enforce.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableSource, cast, ident, lit};
use datafusion::logical_expr::{LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use sandbox_catalog::{Classification, Constraint, Dataset, FileFormat as CatalogFormat, Level, Sharing, Variant};

use crate::PolicyError;
use crate::pseudonym::{self, PseudonymKey};

/// The name of the privacy unit's id in [`View::units`].
pub(crate) const UNIT: &str = "__sandbox_unit";

pub(crate) struct View {
    pub(crate) name: String,
    pub(crate) provider: Arc<dyn TableProvider>,
    /// The same view with one more column, [`UNIT`]: a 64-bit id of each row's privacy unit,
    /// taken from the raw value. Only the threshold rewrite scans it, after the checker, and
    /// counts its values; no session registers it. With it, counting units costs no
    /// pseudonymization: a query that never reads a pseudonymized column computes no pseudonym.
    pub(crate) units: Arc<dyn TableProvider>,
    constraints: HashMap<String, Constraint>,
    /// The published classifications (公开分类) of the columns that have one.
    classifications: HashMap<String, Classification>,
}

impl View {
    /// A column's constraint. A name the catalog does not declare is treated as forbidden.
    pub(crate) fn constraint(&self, column: &str) -> Constraint {
        self.constraints.get(column).copied().unwrap_or(Constraint::Forbidden)
    }

    /// A column's published classification, if the catalog publishes one.
    pub(crate) fn classification(&self, column: &str) -> Option<&Classification> {
        self.classifications.get(column)
    }
}

/// The views of one licence.
#[derive(Default)]
pub(crate) struct Views {
    pub(crate) views: Vec<View>,
}

impl Views {
    /// The view a plan's table scan reads, if it is one of ours (by identity, not by name).
    pub(crate) fn find(&self, source: &Arc<dyn TableSource>) -> Option<&View> {
        let provider = source_as_provider(source).ok()?;
        let address = Arc::as_ptr(&provider) as *const ();
        self.views.iter().find(|v| Arc::as_ptr(&v.provider) as *const () == address)
    }

    /// The published classification of a view's column, by the names lineage carries.
    pub(crate) fn classification(&self, view: &str, column: &str) -> Option<&Classification> {
        self.views.iter().find(|v| v.name == view)?.classification(column)
    }
}

/// Builds the view of one dataset.
pub(crate) fn view(dataset: &Dataset, variant: Variant, key: Option<&PseudonymKey>) -> Result<View, PolicyError> {
    let refuse = |reason: &str| PolicyError::Dataset { dataset: dataset.id.clone(), reason: reason.to_owned() };
    if dataset.level == Level::Core {
        return Err(refuse("core data (核心数据) is never admitted"));
    }
    if dataset.sharing == Sharing::None {
        return Err(refuse("its sharing type is 不予共享 (no sharing): it cannot be licensed"));
    }
    let raw = files_table(dataset, variant)?;

    let pseudonymize = pseudonym::udf(key.cloned());
    let columns: Vec<Expr> = dataset
        .columns
        .iter()
        .map(|c| match c.constraint {
            Constraint::Pseudonymized => pseudonymize.call(vec![cast(ident(&c.name), DataType::Utf8)]).alias(&c.name),
            Constraint::Forbidden => {
                lit(ScalarValue::try_from(&c.data_type.to_arrow()).unwrap_or(ScalarValue::Null)).alias(&c.name)
            }
            _ => ident(&c.name),
        })
        .collect();
    let mut with_unit = columns.clone();
    let raw_unit = cast(ident(&dataset.privacy_unit), DataType::Utf8);
    with_unit.push(crate::threshold::unit_udf().call(vec![raw_unit]).alias(UNIT));
    let source = provider_as_source(raw);
    let build = |columns: Vec<Expr>| {
        LogicalPlanBuilder::scan(format!("{}__files", dataset.id), Arc::clone(&source), None)
            .and_then(|b| b.project(columns))
            .and_then(|b| b.alias(dataset.id.as_str()))
            .and_then(|b| b.build())
            .map(|plan| {
                let schema = Arc::clone(plan.schema().inner());
                Arc::new(PolicyView { plan, schema }) as Arc<dyn TableProvider>
            })
            .map_err(|e| refuse(&e.to_string()))
    };
    let provider = build(columns)?;
    let units = build(with_unit)?;
    let constraints = dataset.columns.iter().map(|c| (c.name.clone(), c.constraint)).collect();
    let classifications =
        dataset.columns.iter().filter_map(|c| Some((c.name.clone(), c.classification.clone()?))).collect();
    Ok(View { name: dataset.id.clone(), provider, units, constraints, classifications })
}

/// The dataset's files as one table, with every column as it is: raw identifiers included.
/// For the host's own evidence queries (the output audit) only; never registered in a session
/// that runs analysis SQL. Refuses twin files that are the real data (the same file or a copy):
/// every view and every rehearsal opens its files here.
pub fn files_table(dataset: &Dataset, variant: Variant) -> Result<Arc<dyn TableProvider>, PolicyError> {
    let refuse = |reason: &str| PolicyError::Dataset { dataset: dataset.id.clone(), reason: reason.to_owned() };
    let files = dataset.files(variant);
    if files.is_empty() {
        let missing = match variant {
            Variant::Real => "it has no data files",
            Variant::Twin => "it has no synthetic twin files for development runs",
        };
        return Err(refuse(missing));
    }
    // A development run shows its operator everything, unaudited: its twin must not be the real
    // data. Checked at every opening, since files can change after the catalog was checked.
    if variant == Variant::Twin {
        match dataset.twin_is_real() {
            Ok(None) => {}
            Ok(Some(twin)) => return Err(refuse(&format!("{twin} / {}", twin.zh()))),
            Err(e) => return Err(refuse(&format!("cannot compare its twin files with its real files: {e}"))),
        }
    }
    let format: Arc<dyn FileFormat> = match dataset.format {
        CatalogFormat::Parquet => Arc::new(ParquetFormat::default()),
        CatalogFormat::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
    };
    let mut urls = Vec::new();
    for file in files {
        let path =
            std::path::absolute(&file.path).map_err(|e| refuse(&format!("cannot resolve {}: {e}", file.name)))?;
        let url = ListingTableUrl::parse(path.to_string_lossy()).map_err(|e| refuse(&e.to_string()))?;
        urls.push(url);
    }
    let config = ListingTableConfig::new_with_multi_paths(urls)
        // The entry names each file, so no extension filter: "" matches them all.
        .with_listing_options(ListingOptions::new(format).with_file_extension(""))
        .with_schema(Arc::new(dataset.arrow_schema()));
    Ok(Arc::new(ListingTable::try_new(config).map_err(|e| refuse(&e.to_string()))?))
}

/// A view as one relation: planned from its hidden logical plan only when a query runs.
#[derive(Debug)]
struct PolicyView {
    plan: LogicalPlan,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for PolicyView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    /// Filters are applied on top of the view (and pushed further down by the optimizer); they
    /// are inexact so that DataFusion applies them again above the scan.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut plan = LogicalPlanBuilder::from(self.plan.clone());
        if let Some(filter) = conjunction(unnormalize_cols(filters.iter().cloned())) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let schema = self.plan.schema();
            plan = plan.project(projection.iter().map(|&i| Expr::Column(Column::from(schema.qualified_field(i)))))?;
        }
        if let Some(limit) = limit {
            plan = plan.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}
