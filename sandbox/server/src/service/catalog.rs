//! The catalog as principals see it.

use super::{Result, Service};
use crate::auth::Caller;

/// A dataset of the catalog with its registered version.
#[derive(Debug)]
pub(crate) struct DatasetView {
    pub(crate) id: String,
    /// `中文 English`.
    pub(crate) title: String,
    pub(crate) level: String,
    pub(crate) provider: String,
    pub(crate) version: Option<String>,
    pub(crate) privacy_unit: String,
}

impl Service {
    pub(crate) fn datasets(&self, _caller: &Caller) -> Result<Vec<DatasetView>> {
        let view = self.core.view()?;
        let mut datasets = Vec::new();
        for d in &self.core.catalog.datasets {
            datasets.push(DatasetView {
                id: d.id.clone(),
                title: format!("{} {}", d.title.zh, d.title.en),
                level: format!("{} {}", d.level.zh(), d.level.code()),
                provider: format!("{} {}", d.provider.zh, d.provider.en),
                version: view.dataset_version(&d.id)?,
                privacy_unit: d.privacy_unit.clone(),
            });
        }
        Ok(datasets)
    }
}
