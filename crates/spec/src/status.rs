//! The verdicts a goal can get, shared by the judge (indicators) and the renderers (publish).

use serde::{Deserialize, Serialize};

/// A goal's standing; serialized as `met`, `on_track`, `at_risk`, `off_track`, `no_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GoalStatus {
    Met,
    OnTrack,
    AtRisk,
    OffTrack,
    NoData,
}

impl GoalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::OnTrack => "on_track",
            Self::AtRisk => "at_risk",
            Self::OffTrack => "off_track",
            Self::NoData => "no_data",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Met => "Met",
            Self::OnTrack => "On track",
            Self::AtRisk => "At risk",
            Self::OffTrack => "Off track",
            Self::NoData => "No data",
        }
    }
}
