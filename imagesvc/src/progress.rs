//! What a pull tells the person or program waiting for it: a progress bar per layer on a terminal, NDJSON events
//! otherwise (one JSON object per line, for the API to relay).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullEvent {
    /// The manifest to pull is known.
    Resolved {
        reference: String,
        digest: String,
        platform: String,
        layers: usize,
    },
    /// A layer download starts (`offset` > 0: resumed from a partial download).
    LayerStart {
        layer: String,
        size: u64,
        offset: u64,
    },
    LayerProgress {
        layer: String,
        downloaded: u64,
        size: u64,
    },
    /// The layer blob is in the store, verified (`cached`: it already was).
    LayerDownloaded {
        layer: String,
        size: u64,
        cached: bool,
    },
    /// The layer is unpacked and its DiffID verified (`cached`: it already was).
    LayerUnpacked {
        layer: String,
        chain_id: String,
        cached: bool,
    },
    Done {
        reference: String,
        digest: String,
    },
}

pub trait Progress: Sync {
    fn event(&self, event: PullEvent);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: PullEvent) {}
}

/// NDJSON on a writer; `layer_progress` events at most every 200 ms per layer.
pub struct JsonProgress<W: Write + Send> {
    out: Mutex<W>,
    last: Mutex<HashMap<String, Instant>>,
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(out: W) -> Self {
        JsonProgress {
            out: Mutex::new(out),
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl<W: Write + Send> Progress for JsonProgress<W> {
    fn event(&self, event: PullEvent) {
        if let PullEvent::LayerProgress { layer, .. } = &event {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last
                .get(layer)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(200))
            {
                return;
            }
            last.insert(layer.clone(), now);
        }
        let Ok(line) = serde_json::to_string(&event) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // Progress is advisory: a closed reader must not fail the pull.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A bar per layer on stderr.
pub struct TerminalProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        TerminalProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl Progress for TerminalProgress {
    fn event(&self, event: PullEvent) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let style = ProgressStyle::with_template(
            "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar_for = |bars: &mut HashMap<String, ProgressBar>, layer: &str, size: u64| {
            bars.entry(layer.to_string())
                .or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(size));
                    bar.set_style(style.clone());
                    bar.set_prefix(short(layer).to_string());
                    bar
                })
                .clone()
        };
        match event {
            PullEvent::Resolved {
                reference, digest, ..
            } => {
                let _ = self.multi.println(format!("{reference}: {digest}"));
            }
            PullEvent::LayerStart {
                layer,
                size,
                offset,
            } => {
                let bar = bar_for(&mut bars, &layer, size);
                bar.set_position(offset);
                bar.set_message(if offset > 0 {
                    "resuming"
                } else {
                    "downloading"
                });
            }
            PullEvent::LayerProgress {
                layer,
                downloaded,
                size,
            } => bar_for(&mut bars, &layer, size).set_position(downloaded),
            PullEvent::LayerDownloaded {
                layer,
                size,
                cached,
            } => {
                let bar = bar_for(&mut bars, &layer, size);
                bar.set_position(size);
                bar.set_message(if cached { "in store" } else { "downloaded" });
            }
            PullEvent::LayerUnpacked { layer, .. } => {
                let bar = bar_for(&mut bars, &layer, 0);
                bar.set_message("unpacked");
                bar.finish();
            }
            PullEvent::Done { .. } => {
                for bar in bars.values() {
                    bar.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_events_are_one_object_per_line_and_progress_is_throttled() {
        let p = JsonProgress::new(Vec::new());
        p.event(PullEvent::LayerStart {
            layer: "sha256:aa".into(),
            size: 10,
            offset: 0,
        });
        for downloaded in 1..=5 {
            p.event(PullEvent::LayerProgress {
                layer: "sha256:aa".into(),
                downloaded,
                size: 10,
            });
        }
        let out = String::from_utf8(p.out.into_inner().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["event"], "layer_start");
        assert_eq!(lines[1]["event"], "layer_progress");
        assert_eq!(lines[1]["downloaded"], 1);
    }
}
