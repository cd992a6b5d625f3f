//! Where each pipeline stands: its last run, when it runs next and how old its data is.
//! Shared by `goalpost status` and `GET /api/pipelines`.

use chrono::{DateTime, Utc};
use goalpost_spec::{CatchUp, LoadedPipelines, Schedule};
use goalpost_state::{LockHolder, RunRecord, RunStatus, StateError, StateStore};
use serde::Serialize;

/// One pipeline's standing.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub id: String,
    pub title: Option<String>,
    /// The cron expression, with seconds.
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub catch_up: Option<CatchUp>,
    /// When the schedule next fires.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<RunSummary>,
    /// When the newest successful run finished: the age of the published data.
    pub last_success: Option<DateTime<Utc>>,
    pub data_age_seconds: Option<i64>,
    /// The run holding the pipeline's run lock, if one is running.
    pub running: Option<LockHolder>,
    /// The pipeline file's problems, when it does not load (it is not scheduled).
    pub load_error: Option<String>,
}

/// A run, in brief.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub error: Option<String>,
}

impl From<&RunRecord> for RunSummary {
    fn from(r: &RunRecord) -> Self {
        Self {
            id: r.id.clone(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            status: r.status,
            error: r.error.clone(),
        }
    }
}

/// Every configured pipeline's standing at `now`, in file-name order.
pub fn statuses(
    loaded: &LoadedPipelines,
    state: &StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<PipelineStatus>, StateError> {
    let locks = state.pipeline_locks()?;
    let mut out = Vec::new();
    let mut ids: Vec<(&str, Option<&goalpost_spec::Pipeline>, Option<String>)> = loaded
        .pipelines
        .iter()
        .map(|p| (p.id.as_str(), Some(p), None))
        .chain(
            loaded
                .failed
                .iter()
                .map(|(id, e)| (id.as_str(), None, Some(e.to_string()))),
        )
        .collect();
    ids.sort_by(|a, b| a.0.cmp(b.0));
    for (id, pipeline, load_error) in ids {
        let last = state.runs(Some(id), 1)?;
        let last_success = state.last_success(id)?;
        let schedule = pipeline.and_then(|p| p.schedule.as_ref());
        out.push(PipelineStatus {
            id: id.to_string(),
            title: pipeline.map(|p| p.spec.title.clone()),
            schedule: schedule.map(|s| s.text().to_string()),
            timezone: pipeline.map(|p| p.tz.name().to_string()),
            catch_up: pipeline.map(|p| p.spec.catch_up),
            next_run: schedule.and_then(|s| s.next_after(now)),
            last_run: last.first().map(RunSummary::from),
            last_success,
            data_age_seconds: last_success.map(|t| (now - t).num_seconds().max(0)),
            running: locks.iter().find(|l| l.pipeline == id).cloned(),
            load_error,
        });
    }
    Ok(out)
}

/// The scheduled run a daemon starting at `now` missed, if it should make it up: with
/// `catch_up = "once"`, when the schedule fired after the pipeline's last run started (or
/// it never ran). Several missed runs are made up once.
pub fn missed(
    schedule: &Schedule,
    catch_up: CatchUp,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if catch_up == CatchUp::Skip {
        return false;
    }
    match last_started {
        None => true,
        Some(t) => schedule.next_after(t).is_some_and(|due| due <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_missed_schedule_is_made_up_once_or_skipped() {
        let s = Schedule::parse("0 15 6 * * *", chrono_tz::America::New_York).unwrap();
        // 06:15 EST = 11:15 UTC. Last run at 11:15 on 1 Jan; the daemon was down until
        // 3 Jan 09:00 UTC: the runs of 2 Jan (and only those) were missed.
        let last = Utc.with_ymd_and_hms(2026, 1, 1, 11, 15, 0).unwrap();
        let back = Utc.with_ymd_and_hms(2026, 1, 3, 9, 0, 0).unwrap();
        assert!(missed(&s, CatchUp::Once, Some(last), back));
        assert!(!missed(&s, CatchUp::Skip, Some(last), back));
        // Down only from 12:00 to 23:00 on 1 Jan: nothing was due.
        let evening = Utc.with_ymd_and_hms(2026, 1, 1, 23, 0, 0).unwrap();
        assert!(!missed(&s, CatchUp::Once, Some(last), evening));
        // Exactly at the next fire time: due.
        let due = Utc.with_ymd_and_hms(2026, 1, 2, 11, 15, 0).unwrap();
        assert!(missed(&s, CatchUp::Once, Some(last), due));
        // Never ran: run it once.
        assert!(missed(&s, CatchUp::Once, None, back));
        assert!(!missed(&s, CatchUp::Skip, None, back));
    }
}
