//! A pull's progress: on a terminal, a line per layer redrawn in place with a bar ("a1b2c3d4e5f6: Downloading
//! [=====>      ] 1.2MB/4.5MB"); elsewhere, plain lines, one per change of a layer's status (no byte counts).
//! Both end with the pulled image's name.

use crate::error::{Failure, Result};
use crate::format::decimal_size;
use polis_client::{Stream, proto};
use std::io::Write;

/// Where the progress goes (stdout for `pull`, stderr for `run`'s pull).
pub enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    fn write(&self, text: &str) {
        match self {
            Sink::Stdout => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(text.as_bytes());
                let _ = o.flush();
            }
            Sink::Stderr => {
                let mut o = std::io::stderr().lock();
                let _ = o.write_all(text.as_bytes());
                let _ = o.flush();
            }
        }
    }
}

/// The lines shown so far and which of them belongs to which layer.
pub struct Progress {
    sink: Sink,
    terminal: bool,
    /// Every line printed, in order (on a terminal, layer lines are redrawn where they are).
    lines: Vec<String>,
    /// The layer of each line, if it is a layer's.
    layers: Vec<Option<String>>,
    /// The last status printed for each layer (plain output prints a layer's line when its status changes).
    last_status: std::collections::HashMap<String, String>,
}

impl Progress {
    pub fn new(sink: Sink, terminal: bool) -> Progress {
        Progress {
            sink,
            terminal,
            lines: Vec::new(),
            layers: Vec::new(),
            last_status: Default::default(),
        }
    }

    /// Shows one progress message.
    pub fn show(&mut self, p: &proto::PullProgress) {
        if p.layer.is_empty() {
            self.push(p.status.clone(), None);
            return;
        }
        if self.terminal {
            let line = layer_line(p);
            match self
                .layers
                .iter()
                .position(|l| l.as_deref() == Some(&p.layer))
            {
                Some(i) => self.redraw(i, line),
                None => self.push(line, Some(p.layer.clone())),
            }
        } else if self.last_status.get(&p.layer) != Some(&p.status) {
            self.last_status.insert(p.layer.clone(), p.status.clone());
            self.push(format!("{}: {}", p.layer, p.status), Some(p.layer.clone()));
        }
    }

    fn push(&mut self, line: String, layer: Option<String>) {
        self.sink.write(&format!("{line}\n"));
        self.lines.push(line);
        self.layers.push(layer);
    }

    /// Rewrites line `i` in place: up to it, clear it, write it, back down.
    fn redraw(&mut self, i: usize, line: String) {
        let up = self.lines.len() - i;
        self.sink
            .write(&format!("\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r"));
        self.lines[i] = line;
    }
}

/// A layer's line on a terminal: its status, and while it downloads, a bar and the byte counts.
fn layer_line(p: &proto::PullProgress) -> String {
    if p.total_bytes == 0 {
        return format!("{}: {}", p.layer, p.status);
    }
    const WIDTH: usize = 50;
    let done = ((p.current_bytes.min(p.total_bytes) as f64 / p.total_bytes as f64) * WIDTH as f64)
        as usize;
    let bar = if done >= WIDTH {
        "=".repeat(WIDTH)
    } else {
        format!("{}>{}", "=".repeat(done), " ".repeat(WIDTH - done - 1))
    };
    format!(
        "{}: {} [{bar}] {}/{}",
        p.layer,
        p.status,
        decimal_size(p.current_bytes as f64),
        decimal_size(p.total_bytes as f64)
    )
}

/// Reads a pull to its end, showing its progress (unless `quiet`); the pulled image.
pub async fn follow(
    mut pull: Stream<proto::PullImageEvent>,
    mut progress: Option<Progress>,
) -> Result<proto::Image> {
    while let Some(event) = pull.next().await? {
        match event.event {
            Some(proto::pull_image_event::Event::Progress(p)) => {
                if let Some(progress) = progress.as_mut() {
                    progress.show(&p);
                }
            }
            Some(proto::pull_image_event::Event::Image(image)) => return Ok(image),
            None => {}
        }
    }
    Err(Failure::new("the pull ended without the image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downloading_layer_has_a_bar() {
        let line = layer_line(&proto::PullProgress {
            status: "Downloading".into(),
            layer: "0123456789ab".into(),
            current_bytes: 500,
            total_bytes: 1000,
        });
        assert!(
            line.starts_with("0123456789ab: Downloading [=========================>"),
            "{line}"
        );
        assert!(line.ends_with("] 500B/1kB"), "{line}");
        let line = layer_line(&proto::PullProgress {
            status: "Pull complete".into(),
            layer: "0123456789ab".into(),
            ..Default::default()
        });
        assert_eq!(line, "0123456789ab: Pull complete");
    }
}
