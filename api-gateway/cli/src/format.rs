//! How things are shown: columns padded like docker's tables, sizes (decimal `4.26MB`, binary `1.5MiB`), "5
//! minutes ago", RFC 3339 times, short IDs, and JSON (one object per line for lists, an indented array for
//! inspect).

use serde::Serialize;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Columns separated by at least three spaces, each as wide as its widest cell (docker's tabwriter layout).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 3;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        print_out(&self.render());
    }
}

/// Writes to stdout, ignoring a closed pipe (`polis ps | head -1`).
pub fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// One JSON object on a line (lists with `--format json`).
pub fn json_line(value: &impl Serialize) {
    let line = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    print_out(&format!("{line}\n"));
}

/// An indented JSON array (inspect).
pub fn json_array(values: &[serde_json::Value]) {
    let text = serde_json::to_string_pretty(values).unwrap_or_default();
    print_out(&format!("{text}\n"));
}

/// A value as JSON, for building arrays of different message types.
pub fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The first 12 hex digits of an ID (without `sha256:`), unless `full`.
pub fn short_id(id: &str, full: bool) -> String {
    if full {
        return id.to_string();
    }
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// `text` cut to `max` characters with an ellipsis, as docker shortens commands.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Bytes in decimal units with four significant digits: "648B", "4.26MB" (docker's image sizes and I/O).
pub fn decimal_size(bytes: f64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// Bytes in binary units: "1.5MiB", "1.944GiB" (docker's memory).
pub fn binary_size(bytes: f64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

fn scaled(mut value: f64, base: f64, units: &[&str]) -> String {
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    format!("{}{}", significant(value, 4), units[unit])
}

/// `value` with `digits` significant digits and no trailing zeros (as Go's `%.4g` for values below 10000).
fn significant(value: f64, digits: i32) -> String {
    let int_digits = if value < 1.0 {
        1
    } else {
        value.log10().floor() as i32 + 1
    };
    let decimals = (digits - int_digits).max(0) as usize;
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Now, in Unix nanoseconds.
pub fn now_unix_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A duration as docker words it ("Less than a second", "About a minute", "3 hours", "2 weeks").
pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = minutes / 60;
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// "5 minutes ago" for a time in Unix nanoseconds (empty for 0: never).
pub fn ago(unix_nano: i64) -> String {
    if unix_nano <= 0 {
        return String::new();
    }
    format!(
        "{} ago",
        human_duration((now_unix_nano() - unix_nano) / 1_000_000_000)
    )
}

/// A time in Unix nanoseconds as RFC 3339 in UTC with nanoseconds ("2024-05-01T12:00:00.000000001Z").
pub fn rfc3339(unix_nano: i64) -> String {
    let seconds = unix_nano.div_euclid(1_000_000_000);
    let nanos = unix_nano.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01: the days are split into 400-year eras of
/// 146097 days, each counted from March 1st so that the leap day ends its year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["value".into(), "x".into()]);
        assert_eq!(t.render(), "A       LONGER\nvalue   x\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(decimal_size(648.0), "648B");
        assert_eq!(decimal_size(4_264_000.0), "4.264MB");
        assert_eq!(decimal_size(1_500_000.0), "1.5MB");
        assert_eq!(decimal_size(0.0), "0B");
        assert_eq!(binary_size(1_572_864.0), "1.5MiB");
        assert_eq!(binary_size(2048.0), "2KiB");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339(1_717_243_199_000_000_000),
            "2024-06-01T11:59:59.000000000Z"
        );
    }

    #[test]
    fn enum_fields_are_json_names() {
        use polis_client::proto;
        let state = proto::ContainerState {
            status: proto::ContainerStatus::Running as i32,
            ..Default::default()
        };
        assert_eq!(to_json(&state)["status"], "CONTAINER_STATUS_RUNNING");
        let filter = proto::EventFilter {
            kinds: vec![proto::ObjectKind::Network as i32, 99],
            ..Default::default()
        };
        assert_eq!(
            to_json(&filter)["kinds"],
            serde_json::json!(["OBJECT_KIND_NETWORK", 99])
        );
    }

    #[test]
    fn ids_and_commands() {
        assert_eq!(short_id("sha256:0123456789abcdef", false), "0123456789ab");
        assert_eq!(short_id("0123456789abcdef", true), "0123456789abcdef");
        assert_eq!(ellipsis("sh -c 'while true; do'", 10), "sh -c 'wh…");
        assert_eq!(ellipsis("sh", 10), "sh");
    }
}
