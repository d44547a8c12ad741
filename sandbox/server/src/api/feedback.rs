use sandbox_proto::v1 as pb;
use sandbox_proto::v1::feedback_server::Feedback;
use tonic::Request;

use super::{Api, Reply};

#[tonic::async_trait]
impl Feedback for Api {
    async fn submit(&self, request: Request<pb::FeedbackRequest>) -> Reply<pb::FeedbackReceipt> {
        self.call("Feedback.Submit", request, |s, caller, r| async move {
            let receipt = s.submit_feedback(&caller, &r.release, r.rating, &r.comment).await?;
            Ok(pb::FeedbackReceipt { id: receipt.id, log_index: receipt.log_index })
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::FeedbackList> {
        self.call("Feedback.List", request, |s, caller, _| async move {
            let items = s.feedback(&caller)?.into_iter().map(|f| pb::FeedbackItem {
                comment_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(f.comment.as_bytes())),
                id: f.id,
                release: f.release,
                application_unit: f.application_unit,
                rating: f.rating,
                comment: f.comment,
                at: f.at,
            });
            Ok(pb::FeedbackList { items: items.collect() })
        })
        .await
    }

    async fn rate_operator(&self, request: Request<pb::OperatorRating>) -> Reply<pb::FeedbackReceipt> {
        self.call("Feedback.RateOperator", request, |s, caller, r| async move {
            let receipt = s.rate_operator(&caller, &r.operator, r.score, &r.comment).await?;
            Ok(pb::FeedbackReceipt { id: receipt.id, log_index: receipt.log_index })
        })
        .await
    }

    async fn list_ratings(&self, request: Request<pb::Empty>) -> Reply<pb::RatingList> {
        self.call("Feedback.ListRatings", request, |s, caller, _| async move {
            let items = s.ratings(&caller)?.into_iter().map(|r| pb::RatingItem {
                id: r.id,
                provider: r.provider,
                operator: r.operator,
                year: r.year,
                score: r.score,
                comment: r.comment,
                at: r.at,
            });
            Ok(pb::RatingList { items: items.collect() })
        })
        .await
    }
}
