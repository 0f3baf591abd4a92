//! Streams of container output: `attach` (the hijacked connection `docker run` and `docker attach` use: HTTP
//! upgrade to a raw TCP stream, stdin in, output out) and `logs`. Without a terminal, output is in Docker's
//! multiplexed framing (logs.rs `frame`); with one, it is raw.

use super::openapi::ErrorBody;
use super::params::{Query, flag, int};
use super::{ApiError, ApiResult};
use crate::core::logs::{Chunk, Entry, LogFilter, OutputEvent, Stream, frame, read_entries};
use crate::core::record::Status;
use crate::core::{Core, Error};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

fn encode(tty: bool, stream: Stream, data: &[u8]) -> Vec<u8> {
    if tty {
        data.to_vec()
    } else {
        frame(stream.frame_byte(), data)
    }
}

fn entry_bytes(tty: bool, timestamps: bool, e: &Entry) -> Vec<u8> {
    let text = if timestamps {
        format!("{} {}", e.time, e.log)
    } else {
        e.log.clone()
    };
    encode(tty, e.stream, text.as_bytes())
}

fn media_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// `POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1[&logs=1]`.
#[utoipa::path(
    post,
    path = "/containers/{id}/attach",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("stream" = Option<bool>, Query, description = "stream output"),
        ("stdin" = Option<bool>, Query, description = "attach stdin"),
        ("stdout" = Option<bool>, Query, description = "attach stdout"),
        ("stderr" = Option<bool>, Query, description = "attach stderr"),
        ("logs" = Option<bool>, Query, description = "replay the logs first"),
        ("detachKeys" = Option<String>, Query, description = "the detach sequence"),
    ),
    responses(
        (status = 101, description = "hijacked: the connection carries the raw or multiplexed stream"),
        (status = 200, description = "the raw or multiplexed stream", body = String, content_type = "application/vnd.docker.raw-stream"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container has exited", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn attach(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
    mut req: Request,
) -> ApiResult<Response> {
    let record = core.db.lookup(&id)?;
    if matches!(record.state.status, Status::Exited | Status::Dead) && !flag(&q, "logs") {
        return Err(ApiError(Error::Conflict(
            "You cannot attach to a stopped container, start it first".into(),
        )));
    }
    let h = core.handle(&record);
    let tty = record.tty();
    let want_stdout = flag(&q, "stdout");
    let want_stderr = flag(&q, "stderr");
    let want_stdin = flag(&q, "stdin") && record.open_stdin();
    // Subscribed before answering: nothing the container writes after the client is told it is attached is lost.
    let rx = h.output.tx.subscribe();
    let backlog: Vec<Entry> = if flag(&q, "logs") {
        read_entries(
            &record.log_path,
            core.config.logs.max_files,
            &LogFilter {
                stdout: want_stdout,
                stderr: want_stderr,
                ..Default::default()
            },
        )
    } else {
        Vec::new()
    };
    let live = record.state.status.is_live() || record.state.status == Status::Created;
    let upgrade = hyper::upgrade::on(&mut req);
    let starts_before = *h.starts.borrow();
    let stdin_once = record.config.stdin_once.unwrap_or(false);
    let container_id = record.id.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "attach: upgrade");
                return;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        if want_stdin {
            let (core, h) = (core.clone(), h.clone());
            tokio::spawn(async move {
                // The stdin of the run this attach waits for: a client attaches before `start`.
                let mut starts = h.starts.subscribe();
                let running = record.state.status.is_live();
                if !running && starts.wait_for(|n| *n > starts_before).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut stdin = h.stdin.lock().await;
                    let Some(w) = stdin.as_mut() else { break };
                    if w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                if stdin_once {
                    core.close_stdin(&container_id).await;
                }
            });
        }
        for e in &backlog {
            if writer.write_all(&entry_bytes(tty, false, e)).await.is_err() {
                return;
            }
        }
        if live {
            forward(rx, &mut writer, tty, want_stdout, want_stderr).await;
        }
        let _ = writer.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, media_type(tty))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .map_err(|e| ApiError(Error::failed("attach", e)))
}

async fn forward(
    mut rx: broadcast::Receiver<OutputEvent>,
    writer: &mut (impl AsyncWriteExt + Unpin),
    tty: bool,
    stdout: bool,
    stderr: bool,
) {
    loop {
        match rx.recv().await {
            Ok(OutputEvent::Data(Chunk { stream, data })) => {
                let wanted = match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                if wanted && writer.write_all(&encode(tty, stream, &data)).await.is_err() {
                    return;
                }
                let _ = writer.flush().await;
            }
            Ok(OutputEvent::End) => return,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn time_param(
    q: &std::collections::HashMap<String, String>,
    key: &str,
) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    let Some(v) = q.get(key).filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    // Docker sends Unix seconds with an optional fraction.
    let secs: f64 = v
        .parse()
        .map_err(|_| ApiError(Error::Invalid(format!("invalid value for {key}: {v:?}"))))?;
    Ok(chrono::DateTime::from_timestamp(
        secs.trunc() as i64,
        (secs.fract() * 1e9) as u32,
    ))
}

/// `GET /containers/{id}/logs?stdout&stderr&follow&timestamps&tail&since&until`.
#[utoipa::path(
    get,
    path = "/containers/{id}/logs",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("follow" = Option<bool>, Query, description = "keep streaming"),
        ("stdout" = Option<bool>, Query, description = "stdout"),
        ("stderr" = Option<bool>, Query, description = "stderr"),
        ("since" = Option<String>, Query, description = "Unix time to show logs from"),
        ("until" = Option<String>, Query, description = "Unix time to show logs until"),
        ("timestamps" = Option<bool>, Query, description = "prefix lines with timestamps"),
        ("tail" = Option<String>, Query, description = "number of lines from the end, or all"),
    ),
    responses(
        (status = 200, description = "the logs, raw (TTY) or multiplexed", body = String, content_type = "application/vnd.docker.raw-stream"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn logs(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let record = core.db.lookup(&id)?;
    let stdout = flag(&q, "stdout");
    let stderr = flag(&q, "stderr");
    if !stdout && !stderr {
        return Err(ApiError(Error::Invalid(
            "Bad parameters: you must choose at least one stream".into(),
        )));
    }
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(_) => Some(int(&q, "tail")?.unwrap_or(0).max(0) as usize),
    };
    let filter = LogFilter {
        stdout,
        stderr,
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
        tail,
    };
    let tty = record.tty();
    let timestamps = flag(&q, "timestamps");
    let follow = flag(&q, "follow") && record.state.status.is_live() && filter.until.is_none();
    let (entries, live) = crate::core::logs::read_and_follow(&core, &record, &filter, follow);
    let mut head: Vec<u8> = Vec::new();
    for e in &entries {
        head.extend(entry_bytes(tty, timestamps, e));
    }
    let head_stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
    use futures_util::StreamExt;
    let live = live.map(move |Chunk { stream, data }| {
        let bytes = if timestamps {
            let mut b = format!("{} ", crate::core::logs::now()).into_bytes();
            b.extend_from_slice(&data);
            encode(tty, stream, &b)
        } else {
            encode(tty, stream, &data)
        };
        Ok::<_, std::io::Error>(bytes)
    });
    let body = Body::from_stream(head_stream.chain(live));
    Ok(([(header::CONTENT_TYPE, media_type(tty))], body).into_response())
}
