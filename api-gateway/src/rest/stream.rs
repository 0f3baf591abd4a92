//! Streams of container output: `attach` (the hijacked connection `docker run` and `docker attach` use: HTTP
//! upgrade to a raw TCP stream, stdin in, output out) and `logs`. Without a terminal, output is in Docker's
//! multiplexed framing (logs.rs `frame`); with one, it is raw.

use super::openapi::ErrorBody;
use super::params::{Query, flag, int};
use super::{ApiError, ApiResult};
use crate::core::containers::AttachOptions;
use crate::core::logs::{Chunk, Entry, LogFilter, Stream, frame};
use crate::core::{Core, Error};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    // Subscribed before answering: nothing the container writes after the client is told it is attached is lost.
    let mut attachment = core.attach(
        &id,
        AttachOptions {
            logs: flag(&q, "logs"),
            stdout: flag(&q, "stdout"),
            stderr: flag(&q, "stderr"),
            stdin: flag(&q, "stdin"),
        },
    )?;
    let tty = attachment.tty;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "attach: upgrade");
                return;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        if let Some(mut input) = attachment.input().filter(|i| i.has_stdin()) {
            tokio::spawn(async move {
                // The stdin of the run this attach waits for: a client attaches before `start`.
                if !input.started().await {
                    return;
                }
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if !input.write(&buf[..n]).await {
                        break;
                    }
                }
                input.end().await;
            });
        }
        for e in &attachment.backlog {
            if writer.write_all(&entry_bytes(tty, false, e)).await.is_err() {
                return;
            }
        }
        let mut live = std::pin::pin!(attachment.output());
        while let Some(Chunk { stream, data }) = live.next().await {
            if writer.write_all(&encode(tty, stream, &data)).await.is_err() {
                return;
            }
            let _ = writer.flush().await;
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
