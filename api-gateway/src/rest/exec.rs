//! Exec endpoints: create, start, inspect, resize. A start that is not detached hijacks the connection as `attach`
//! does (HTTP upgrade to a raw stream: the client's bytes go to the process's stdin, its output comes back, framed
//! as Docker's multiplexed stream unless the start asked for a terminal), and ends once the process exited and its
//! output is drained. Errors after the upgrade are written to the stream, as dockerd writes them.

use super::openapi::ErrorBody;
use super::params::{Query, json, terminal_size};
use super::{ApiError, ApiResult};
use crate::core::exec::{Claim, DetachScanner};
use crate::core::logs::{Chunk, Stream, frame};
use crate::core::{Core, Error};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// dockerd answers every exec stream of API 1.41 with this type, framed or not.
const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

/// `POST /containers/{id}/exec`.
#[utoipa::path(
    post,
    path = "/containers/{id}/exec",
    params(
        ("id" = String, Path, description = "container ID or name"),
    ),
    request_body(content = Object, content_type = "application/json", description = "the exec configuration (Docker's ExecConfig)"),
    responses(
        (status = 201, description = "created: `{Id}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is paused or not running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Exec"
)]
pub async fn create(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let config: ExecConfig = json(&body)?;
    let exec_id = core.exec_create(&id, config)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "Id": exec_id })),
    )
        .into_response())
}

/// `GET /exec/{id}/json`: ExitCode is null until the process exited, as dockerd has it.
#[utoipa::path(
    get,
    path = "/exec/{id}/json",
    params(
        ("id" = String, Path, description = "exec instance ID"),
    ),
    responses(
        (status = 200, description = "the exec instance", body = Object, content_type = "application/json"),
        (status = 404, description = "no such exec instance", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Exec"
)]
pub async fn inspect(State(core): State<Arc<Core>>, Path(id): Path<String>) -> ApiResult<Response> {
    let info = core.exec_inspect(&id)?;
    let mut value =
        serde_json::to_value(&info).map_err(|e| ApiError(Error::failed("encode exec", e)))?;
    if let Some(o) = value.as_object_mut() {
        o.entry("ExitCode").or_insert(serde_json::Value::Null);
    }
    Ok(axum::Json(value).into_response())
}

/// `POST /exec/{id}/resize?h=&w=`.
#[utoipa::path(
    post,
    path = "/exec/{id}/resize",
    params(
        ("id" = String, Path, description = "exec instance ID"),
        ("h" = Option<i64>, Query, description = "height"),
        ("w" = Option<i64>, Query, description = "width"),
    ),
    responses(
        (status = 200, description = "resized"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such exec instance", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Exec"
)]
pub async fn resize(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let (w, h) = terminal_size(&q)?;
    core.exec_resize(&id, w, h).await?;
    Ok(StatusCode::OK)
}

/// `POST /exec/{id}/start` with `{"Detach": bool, "Tty": bool}`.
#[utoipa::path(
    post,
    path = "/exec/{id}/start",
    params(
        ("id" = String, Path, description = "exec instance ID"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`{Detach, Tty}`"),
    responses(
        (status = 101, description = "hijacked: the connection carries the raw or multiplexed stream"),
        (status = 200, description = "the output, raw or multiplexed (empty when detached)", body = String, content_type = "application/vnd.docker.raw-stream"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such exec instance", body = ErrorBody),
        (status = 409, description = "the container is not running, or the exec instance is already running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Exec"
)]
pub async fn start(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrading = req.headers().contains_key(header::UPGRADE);
    let upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError(Error::Invalid(format!("read the request: {e}"))))?;
    let start: ExecStartConfig = json(&body)?;
    // dockerd frames the stream by the start request's Tty, not the instance's.
    let tty = start.tty.unwrap_or(false);
    let claim = core.exec_claim(&id)?;
    if start.detach.unwrap_or(false) {
        core.exec_start(claim, false).await?;
        return Ok(StatusCode::OK.into_response());
    }
    if upgrading {
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let (reader, writer) = tokio::io::split(TokioIo::new(upgraded));
                    session(core, claim, Some(reader), writer, tty).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "exec start: upgrade");
                    core.exec_unclaim(claim);
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONTENT_TYPE, RAW_STREAM)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .body(Body::empty())
            .map_err(|e| ApiError(Error::failed("exec start", e)));
    }
    // Without an upgrade the output is the response's body; there is no way to send stdin.
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(session(core, claim, None::<tokio::io::Empty>, server, tty));
    let body = futures_util::stream::unfold(client, |mut client| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), client))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, RAW_STREAM)],
        Body::from_stream(body),
    )
        .into_response())
}

fn encode(tty: bool, stream: Stream, data: &[u8]) -> Vec<u8> {
    if tty {
        data.to_vec()
    } else {
        frame(stream.frame_byte(), data)
    }
}

/// Starts the process and serves its streams on the connection until it exited and its output is drained, or the
/// client detached (the detach keys, on a terminal).
async fn session<R, W>(core: Arc<Core>, claim: Claim, reader: Option<R>, mut writer: W, tty: bool)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let session = match core.exec_start(claim, true).await {
        Ok(s) => s,
        Err(e) => {
            let text = format!("{e}\r\n");
            let _ = writer
                .write_all(&encode(tty, Stream::Stdout, text.as_bytes()))
                .await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    let exec = session.exec.clone();
    let detached = Arc::new(Notify::new());
    if let (Some(mut reader), Some(mut stdin)) = (reader, session.stdin) {
        let terminal = exec.tty();
        let keys = if terminal {
            exec.detach_keys.clone()
        } else {
            Vec::new()
        };
        let detached = detached.clone();
        tokio::spawn(async move {
            let mut scanner = DetachScanner::new(&keys);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (data, detach) = scanner.feed(&buf[..n]);
                if !data.is_empty() && stdin.write_all(&data).await.is_err() {
                    break;
                }
                if detach {
                    detached.notify_one();
                    return;
                }
            }
            if terminal {
                // dockerd ends a terminal's session when its client's input ends, leaving the process running.
                detached.notify_one();
            } else {
                stdin.close().await;
            }
        });
    }
    if let Some(mut rx) = session.output {
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(Chunk { stream, data }) => {
                        if writer.write_all(&encode(tty, stream, &data)).await.is_err() {
                            return;
                        }
                        let _ = writer.flush().await;
                    }
                    None => break,
                },
                _ = detached.notified() => {
                    let _ = writer.shutdown().await;
                    return;
                }
            }
        }
    }
    // The client reads the exit code next: it is recorded before the stream ends.
    tokio::select! {
        _ = exec.exit_code() => {}
        _ = detached.notified() => {}
    }
    let _ = writer.shutdown().await;
}
