//! From announcements to the news ledger, and from the ledger to the digest.

use chrono::{DateTime, Utc};
use goalpost_publish::news::Announcement;
use goalpost_publish::{Attached, NewsItem};
use goalpost_state::NewsRecord;

/// Ledger entries for this run's announcements: published now for their window, or drafts
/// awaiting review.
pub(crate) fn records(
    announced: &[Announcement],
    run_id: &str,
    now: DateTime<Utc>,
) -> Vec<NewsRecord> {
    announced
        .iter()
        .map(|a| {
            let until = now + chrono::Duration::seconds(a.window_secs as i64);
            NewsRecord {
                id: a.id.clone(),
                pipeline: a.pipeline.clone(),
                goal: a.goal.clone(),
                event: a.event.as_str().to_string(),
                category: a.category.clone(),
                title: a.title.clone(),
                body: a.body.clone(),
                created_at: now,
                run_id: run_id.to_string(),
                status: if a.review { "draft" } else { "published" }.to_string(),
                publish_from: (!a.review).then_some(now),
                publish_until: (!a.review).then_some(until),
                window_secs: a.window_secs,
            }
        })
        .collect()
}

/// The digest's news: every published item, current ones first, newest first within each;
/// an item whose window has ended by `now` is archived.
pub(crate) fn digest_items(published: &[NewsRecord], now: DateTime<Utc>) -> Vec<NewsItem> {
    let mut items: Vec<NewsItem> = published
        .iter()
        .filter_map(|n| {
            let (posted, until) = (n.publish_from?, n.publish_until?);
            Some(NewsItem {
                id: n.id.clone(),
                category: n.category.clone(),
                title: n.title.clone(),
                body: n.body.clone(),
                pipeline: n.pipeline.clone(),
                goal: n.goal.clone(),
                event: n.event.clone(),
                posted,
                until,
                archived: now >= until,
            })
        })
        .collect();
    items.sort_by(|a, b| {
        a.archived
            .cmp(&b.archived)
            .then(b.posted.cmp(&a.posted))
            .then(a.id.cmp(&b.id))
    });
    items
}

impl crate::Runner {
    /// The news ledger, newest first; `status` filters (draft, published, rejected).
    pub fn news(&self, status: Option<&str>) -> Result<Vec<NewsRecord>, crate::RunError> {
        Ok(self.state()?.news(status)?)
    }

    /// Approve (publish now, for its window) or reject a draft, then publish the current
    /// digest again with the news as the ledger now has it. Returns the item and the new
    /// published version (none when nothing was published yet).
    pub async fn review_news(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<(NewsRecord, Option<String>), crate::RunError> {
        let now = self.clock.now();
        let item = self.state()?.review_news(id, approve, now)?;
        // A rejected draft was never shown: nothing published changes.
        let version = if approve {
            self.republish(now).await?
        } else {
            None
        };
        Ok((item, version))
    }

    /// Publish the current digest again as a new version, with the news brought up to date
    /// (items whose window has ended become archived). Nothing else changes.
    pub async fn republish(&self, now: DateTime<Utc>) -> Result<Option<String>, crate::RunError> {
        let publisher = self.publisher()?;
        let lock = publisher.lock().await?;
        let Some(mut digest) = publisher.current_digest().await? else {
            return Ok(None);
        };
        let current = digest.version.clone();
        digest.version = self.new_run_id("news", now);
        digest.schema_version = goalpost_publish::DIGEST_SCHEMA_VERSION;
        digest.generated_at = now;
        digest.news = digest_items(&self.state()?.news(Some("published"))?, now);
        // The data files of the current version are linked into the new one; one that is
        // missing is no longer offered.
        let mut files: Vec<(String, Attached)> = Vec::new();
        for p in &mut digest.pipelines {
            if let Some(d) = p.table.download.clone() {
                if publisher.version_has(&current, &d).await? {
                    let from = Attached::Published {
                        version: current.clone(),
                        path: d.clone(),
                    };
                    files.push((d, from));
                } else {
                    p.table.download = None;
                }
            }
        }
        publisher.publish_with(&lock, &digest, &files).await?;
        lock.release().await;
        Ok(Some(digest.version))
    }
}
