//! How long each stage of a run took and, when asked, the most memory the process held
//! during it: `goalpost run --timings`, and the benchmark.

use serde::Serialize;
use std::time::Instant;

/// One stage of a run: `plan`, `load`, `checks`, `indicators` or `publish`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageTiming {
    pub stage: &'static str,
    /// Wall time.
    pub seconds: f64,
    /// The process's peak resident memory during the stage, in bytes (Linux only, and only
    /// when measured: see [`crate::RunOptions::measure_memory`]).
    pub peak_rss_bytes: Option<u64>,
}

/// Times consecutive stages. With memory measured, the kernel's peak-RSS mark is reset as
/// each stage starts, so each stage's figure is the most the process held during it.
pub(crate) struct Stopwatch {
    memory: bool,
    current: Option<(&'static str, Instant)>,
    done: Vec<StageTiming>,
}

impl Stopwatch {
    pub(crate) fn new(memory: bool) -> Self {
        Self {
            memory,
            current: None,
            done: Vec::new(),
        }
    }

    /// End the stage under way, if any, and start `stage`.
    pub(crate) fn start(&mut self, stage: &'static str) {
        self.stop();
        if self.memory {
            reset_peak_rss();
        }
        self.current = Some((stage, Instant::now()));
    }

    /// End the stage under way.
    pub(crate) fn stop(&mut self) {
        if let Some((stage, began)) = self.current.take() {
            let seconds = began.elapsed().as_secs_f64();
            let peak_rss_bytes = if self.memory { peak_rss() } else { None };
            tracing::debug!(stage, seconds, peak_rss_bytes, "stage finished");
            self.done.push(StageTiming {
                stage,
                seconds,
                peak_rss_bytes,
            });
        }
    }

    pub(crate) fn finish(mut self) -> Vec<StageTiming> {
        self.stop();
        self.done
    }
}

/// Reset the peak-RSS mark (`VmHWM`) to the current RSS: writing 5 to `clear_refs`.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::debug!(error = %e, "could not reset the peak memory mark");
    }
}

/// `VmHWM` of this process, in bytes.
fn peak_rss() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_each_other_and_memory_peaks_are_per_stage() {
        let mut w = Stopwatch::new(true);
        w.start("big");
        // Touch 64 MiB, so it is resident, then free it.
        let mut big = vec![0u8; 64 << 20];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        std::hint::black_box(&big);
        drop(big);
        w.start("small");
        let t = w.finish();
        assert_eq!(
            t.iter().map(|s| s.stage).collect::<Vec<_>>(),
            ["big", "small"]
        );
        let (big, small) = (t[0].peak_rss_bytes, t[1].peak_rss_bytes);
        if let (Some(big), Some(small)) = (big, small) {
            // The second stage's mark was reset after the 64 MiB were freed.
            assert!(big >= small + (48 << 20), "big {big}, small {small}");
        }
        assert!(t.iter().all(|s| s.seconds >= 0.0));
    }
}
