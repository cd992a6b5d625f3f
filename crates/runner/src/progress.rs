//! Progress of a run's fetching, for whoever watches: a progress bar on a terminal, log
//! lines otherwise. The runner reports; the front end decides how to show it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub trait Progress: Send + Sync {
    /// A source is about to be read.
    fn source_started(&self, source: &str);
    /// A page of `rows` rows arrived.
    fn page(&self, rows: u64);
    /// A source is exhausted after `rows` rows.
    fn source_done(&self, source: &str, rows: u64);
}

/// Progress as log lines, at most one every `every` while pages arrive.
pub struct LogProgress {
    every: Duration,
    state: Mutex<(Instant, Instant, u64)>,
}

impl LogProgress {
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            every,
            state: Mutex::new((now, now, 0)),
        }
    }
}

impl Default for LogProgress {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl Progress for LogProgress {
    fn source_started(&self, source: &str) {
        let now = Instant::now();
        *self.state.lock().expect("progress lock") = (now, now, 0);
        tracing::info!(source, "fetching");
    }

    fn page(&self, rows: u64) {
        let mut s = self.state.lock().expect("progress lock");
        s.2 += rows;
        if s.1.elapsed() >= self.every {
            s.1 = Instant::now();
            let secs = s.0.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                rows = s.2,
                rows_per_s = (s.2 as f64 / secs).round(),
                "fetching"
            );
        }
    }

    fn source_done(&self, _source: &str, _rows: u64) {}
}
