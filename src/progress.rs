//! Fetch progress on the terminal: a spinner line with rows and rows/s per source when stderr
//! is a terminal, the runner's periodic log lines otherwise.

use goalpost_runner::{LogProgress, Progress};
use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn for_stderr() -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Bar {
            bar: Mutex::new(None),
        })
    } else {
        Arc::new(LogProgress::default())
    }
}

struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn source_started(&self, source: &str) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg}: {human_pos} rows ({rate} rows/s) {elapsed}",
            )
            .expect("static template")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", HumanCount(state.per_sec() as u64));
                },
            ),
        );
        bar.set_message(source.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn page(&self, rows: u64) {
        if let Some(bar) = &*self.bar.lock().expect("progress lock") {
            bar.inc(rows);
        }
    }

    fn source_done(&self, _source: &str, _rows: u64) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}
