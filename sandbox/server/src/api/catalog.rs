use sandbox_proto::v1 as pb;
use sandbox_proto::v1::catalog_server::Catalog;
use tonic::Request;

use super::{Api, Reply};

#[tonic::async_trait]
impl Catalog for Api {
    async fn list_datasets(&self, request: Request<pb::Empty>) -> Reply<pb::DatasetList> {
        self.call("Catalog.ListDatasets", request, |s, caller, _| async move {
            let datasets = s.datasets(&caller)?.into_iter().map(|d| pb::Dataset {
                id: d.id,
                title: d.title,
                level: d.level,
                provider: d.provider,
                version: d.version.unwrap_or_default(),
                privacy_unit: d.privacy_unit,
            });
            Ok(pb::DatasetList { datasets: datasets.collect() })
        })
        .await
    }
}
