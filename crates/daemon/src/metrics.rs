//! `/metrics`: the daemon's counters in the Prometheus text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

type Labels = Vec<(String, String)>;

fn pipeline(id: &str) -> Labels {
    vec![("pipeline".to_string(), id.to_string())]
}

pub struct Metrics {
    registry: Mutex<Registry>,
    runs: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    rows_fetched: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge>,
    data_age: Family<Labels, Gauge>,
    news: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("goalpost");
        let runs = Family::<Labels, Counter>::default();
        registry.register(
            "runs",
            "Pipeline runs by outcome (succeeded, failed, interrupted)",
            runs.clone(),
        );
        let skipped = Family::<Labels, Counter>::default();
        registry.register(
            "runs_skipped",
            "Scheduled or requested runs not started: overlap (the pipeline was still running), locked (another process was running it)",
            skipped.clone(),
        );
        let duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.5 s to about 2.3 hours.
            Histogram::new(exponential_buckets(0.5, 2.0, 15))
        });
        registry.register(
            "run_duration_seconds",
            "Wall time of pipeline runs",
            duration.clone(),
        );
        let rows_fetched = Family::<Labels, Counter>::default();
        registry.register(
            "rows_fetched",
            "Rows fetched from sources by successful runs",
            rows_fetched.clone(),
        );
        let last_success = Family::<Labels, Gauge>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "When the pipeline's newest successful run finished (Unix time)",
            last_success.clone(),
        );
        let data_age = Family::<Labels, Gauge>::default();
        registry.register(
            "data_age_seconds",
            "Seconds since the pipeline's newest successful run finished",
            data_age.clone(),
        );
        let news = Family::<Labels, Gauge>::default();
        registry.register(
            "news_items",
            "News-flash items in the ledger by status (published, draft, rejected)",
            news.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            runs,
            skipped,
            duration,
            rows_fetched,
            last_success,
            data_age,
            news,
        }
    }
}

impl Metrics {
    pub fn run_finished(&self, id: &str, outcome: &str, seconds: f64, rows_fetched: u64) {
        let mut l = pipeline(id);
        l.push(("outcome".to_string(), outcome.to_string()));
        self.runs.get_or_create(&l).inc();
        self.duration.get_or_create(&pipeline(id)).observe(seconds);
        self.rows_fetched
            .get_or_create(&pipeline(id))
            .inc_by(rows_fetched);
    }

    pub fn run_skipped(&self, id: &str, reason: &str) {
        let mut l = pipeline(id);
        l.push(("reason".to_string(), reason.to_string()));
        self.skipped.get_or_create(&l).inc();
    }

    /// Set the gauges read from the state store at scrape time.
    pub fn freshness(&self, id: &str, last_success: Option<i64>, age: Option<i64>) {
        if let Some(t) = last_success {
            self.last_success.get_or_create(&pipeline(id)).set(t);
        }
        if let Some(a) = age {
            self.data_age.get_or_create(&pipeline(id)).set(a);
        }
    }

    pub fn news_items(&self, status: &str, n: i64) {
        self.news
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .set(n);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry");
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let m = Metrics::default();
        m.run_finished("nyc-311", "succeeded", 3.0, 120);
        m.run_finished("nyc-311", "succeeded", 1.0, 5);
        m.run_finished("nyc-311", "failed", 0.2, 0);
        m.run_skipped("nyc-311", "overlap");
        m.freshness("nyc-311", Some(1_700_000_000), Some(42));
        m.news_items("published", 3);
        let text = m.render();
        for line in [
            "# TYPE goalpost_runs counter",
            "goalpost_runs_total{pipeline=\"nyc-311\",outcome=\"succeeded\"} 2",
            "goalpost_runs_total{pipeline=\"nyc-311\",outcome=\"failed\"} 1",
            "goalpost_runs_skipped_total{pipeline=\"nyc-311\",reason=\"overlap\"} 1",
            "goalpost_run_duration_seconds_count{pipeline=\"nyc-311\"} 3",
            "goalpost_run_duration_seconds_sum{pipeline=\"nyc-311\"} 4.2",
            "goalpost_rows_fetched_total{pipeline=\"nyc-311\"} 125",
            "goalpost_last_success_timestamp_seconds{pipeline=\"nyc-311\"} 1700000000",
            "goalpost_data_age_seconds{pipeline=\"nyc-311\"} 42",
            "goalpost_news_items{status=\"published\"} 3",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
