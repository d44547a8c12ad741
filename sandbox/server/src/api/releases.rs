use sandbox_proto::v1 as pb;
use sandbox_proto::v1::releases_server::Releases;
use tonic::Request;

use super::{Api, Reply, release};

#[tonic::async_trait]
impl Releases for Api {
    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::ReleaseList> {
        self.call("Releases.List", request, |s, caller, _| async move {
            Ok(pb::ReleaseList { releases: s.releases(&caller)?.into_iter().map(release).collect() })
        })
        .await
    }

    async fn download(&self, request: Request<pb::ReleaseRef>) -> Reply<pb::ReleaseBundle> {
        self.call("Releases.Download", request, |s, caller, r| async move {
            let bundle = s.download_release(&caller, &r.release).await?;
            let files = bundle.files.into_iter().map(|(path, data)| pb::BundleFile { path, data }).collect();
            Ok(pb::ReleaseBundle { release: Some(release(bundle.release)), files })
        })
        .await
    }
}
