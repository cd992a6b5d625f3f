//! News-flash rules (`[[news]]`): which goal events become short public announcements, for
//! how long they are shown, and their text.

use serde::Deserialize;
use serde_spanned::Spanned;
use std::time::Duration;

/// An event that can be announced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NewsEvent {
    /// A goal's status became `met`.
    GoalMet,
    /// A goal's status differs from the one published before.
    StatusChanged,
    /// The latest judged figure is better than every earlier one.
    NewBest,
    /// The latest judged figure is worse than every earlier one.
    NewWorst,
    /// The latest judged figure crossed `threshold` (from the period before).
    ThresholdCrossed,
    /// The dataset missed its expected refresh (its freshness check did not pass).
    DataStale,
}

impl NewsEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GoalMet => "goal_met",
            Self::StatusChanged => "status_changed",
            Self::NewBest => "new_best",
            Self::NewWorst => "new_worst",
            Self::ThresholdCrossed => "threshold_crossed",
            Self::DataStale => "data_stale",
        }
    }
}

/// One `[[news]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsRule {
    /// The events announced.
    pub on: Vec<Spanned<NewsEvent>>,
    /// Only these goals (ids); default every goal of the pipeline.
    #[serde(default)]
    pub goals: Vec<Spanned<String>>,
    /// Category shown with the item, e.g. "Public Safety"; default the pipeline's department.
    pub category: Option<String>,
    /// How long an item is shown before it is archived (it is never deleted).
    #[serde(
        default = "default_publish_for",
        deserialize_with = "crate::source::duration"
    )]
    pub publish_for: Duration,
    /// Keep new items as drafts until `goalpost news approve <id>`.
    #[serde(default)]
    pub review: bool,
    /// threshold_crossed: the value whose crossing is announced.
    pub threshold: Option<f64>,
    /// Title template (minijinja); default one per event.
    pub title: Option<Spanned<String>>,
    /// Body template (minijinja), with `goal` (title, id), `value`, `unit`, `period`,
    /// `target`, `target_by`, `status`, `previous_status`, `change`, `threshold`, `dataset`.
    /// Default one per event.
    pub template: Option<Spanned<String>>,
}

fn default_publish_for() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
