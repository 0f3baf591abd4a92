//! `stats`: containers' resource usage as docker's table. On a terminal the table is redrawn in place every second
//! until the containers stop (or an interrupt); elsewhere a table is printed per second; `--no-stream` prints one.
//! CPU % needs two samples: the first row of a container shows 0.00% until its second sample.

use crate::args::{Format, StatsArgs};
use crate::error::{Failure, Result};
use crate::format::{Table, binary_size, decimal_size, json_line, print_out, short_id, to_json};
use crate::tty;
use polis_client::{Client, proto};
use std::time::Duration;
use tokio::sync::mpsc;

/// One container's row: its last two samples.
struct Row {
    id: String,
    name: String,
    previous: Option<proto::ContainerStats>,
    last: Option<proto::ContainerStats>,
    ended: bool,
}

impl Row {
    /// docker's columns after CONTAINER ID and NAME.
    fn cells(&self) -> Vec<String> {
        let mut cells = vec![short_id(&self.id, false), self.name.clone()];
        let Some(s) = &self.last else {
            cells.extend(["--", "-- / --", "--", "--", "--", "--"].map(String::from));
            return cells;
        };
        let memory_percent = if s.memory_limit_bytes > 0 {
            s.memory_usage_bytes as f64 / s.memory_limit_bytes as f64 * 100.0
        } else {
            0.0
        };
        cells.extend([
            format!("{:.2}%", cpu_percent(self.previous.as_ref(), s)),
            format!(
                "{} / {}",
                binary_size(s.memory_usage_bytes as f64),
                binary_size(s.memory_limit_bytes as f64)
            ),
            format!("{memory_percent:.2}%"),
            format!(
                "{} / {}",
                decimal_size(s.network_rx_bytes as f64),
                decimal_size(s.network_tx_bytes as f64)
            ),
            format!(
                "{} / {}",
                decimal_size(s.block_read_bytes as f64),
                decimal_size(s.block_write_bytes as f64)
            ),
            s.pids.to_string(),
        ]);
        cells
    }
}

/// The container's share of the host's CPU time between two samples, times the CPUs (docker's CPU %).
pub fn cpu_percent(previous: Option<&proto::ContainerStats>, s: &proto::ContainerStats) -> f64 {
    let Some(p) = previous else { return 0.0 };
    let cpu = s.cpu_usage_nanos.saturating_sub(p.cpu_usage_nanos) as f64;
    let system = s
        .system_cpu_usage_nanos
        .saturating_sub(p.system_cpu_usage_nanos) as f64;
    if system <= 0.0 || cpu <= 0.0 {
        return 0.0;
    }
    cpu / system * f64::from(s.online_cpus.max(1)) * 100.0
}

fn table(rows: &[Row]) -> String {
    let mut t = Table::new(&[
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]);
    for r in rows {
        t.row(r.cells());
    }
    t.render()
}

/// A sample as JSON: the message with the container's ID and name.
fn sample_json(row: &Row, s: &proto::ContainerStats) -> serde_json::Value {
    let mut v = to_json(s);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), row.id.clone().into());
        o.insert("name".into(), row.name.clone().into());
        o.insert(
            "cpu_percent".into(),
            cpu_percent(row.previous.as_ref(), s).into(),
        );
    }
    v
}

pub async fn stats(client: &Client, a: StatsArgs) -> Result<()> {
    let mut rows = Vec::new();
    if a.containers.is_empty() {
        for c in client.list_containers(a.all).await? {
            rows.push(Row {
                id: c.id,
                name: c.name,
                previous: None,
                last: None,
                ended: false,
            });
        }
    } else {
        for name in &a.containers {
            let c = client.inspect_container(name).await?;
            rows.push(Row {
                id: c.id,
                name: c.name,
                previous: None,
                last: None,
                ended: false,
            });
        }
    }
    // One task per container streams its samples here; None: its stream ended.
    let (tx, mut rx) = mpsc::channel::<(usize, Option<proto::ContainerStats>)>(64);
    for (i, row) in rows.iter().enumerate() {
        let (client, id, tx) = (client.clone(), row.id.clone(), tx.clone());
        tokio::spawn(async move {
            if let Ok(mut samples) = client.stats(&id, true).await {
                while let Ok(Some(s)) = samples.next().await {
                    if tx.send((i, Some(s))).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send((i, None)).await;
        });
    }
    drop(tx);
    let live = !a.no_stream;
    let redraw = live && a.format == Format::Table && tty::stdout_is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        // Without streaming: done once every container has two samples (or no more).
        let complete = rows.iter().all(|r| r.ended || r.previous.is_some());
        if rows.iter().all(|r| r.ended) || (!live && complete) {
            break;
        }
        tokio::select! {
            got = rx.recv() => match got {
                Some((i, Some(s))) => {
                    let row = &mut rows[i];
                    row.previous = row.last.replace(s);
                    if live && a.format == Format::Json {
                        let s = row.last.as_ref().expect("just set");
                        json_line(&sample_json(row, s));
                    }
                }
                Some((i, None)) => rows[i].ended = true,
                None => break,
            },
            _ = tick.tick(), if live && a.format == Format::Table => {
                if redraw {
                    print_out(&format!("\x1b[2J\x1b[H{}", table(&rows)));
                } else {
                    print_out(&table(&rows));
                }
            }
        }
    }
    if !live {
        match a.format {
            Format::Json => {
                for row in &rows {
                    if let Some(s) = &row.last {
                        json_line(&sample_json(row, s));
                    }
                }
            }
            Format::Table => print_out(&table(&rows)),
        }
    } else if a.format == Format::Table {
        print_out(&table(&rows));
    }
    if rows.iter().any(|r| r.last.is_none()) && !a.containers.is_empty() {
        return Err(Failure::new(
            "no statistics for some containers (not running?)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_between_two_samples() {
        let s = |cpu, system| proto::ContainerStats {
            cpu_usage_nanos: cpu,
            system_cpu_usage_nanos: system,
            online_cpus: 2,
            ..Default::default()
        };
        assert_eq!(cpu_percent(None, &s(5, 10)), 0.0);
        assert_eq!(cpu_percent(Some(&s(0, 0)), &s(250, 1000)), 50.0);
    }
}
