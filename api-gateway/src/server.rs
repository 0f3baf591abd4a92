//! Running polisd: the state, the shims' events endpoint, recovery of running containers, and the REST API on its
//! unix socket (root and the configured group only, mode 0660), until SIGTERM or SIGINT.

use crate::config::Config;
use crate::core::Core;
use crate::rest;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tower::Layer;

/// Listens on an API socket (REST or gRPC): root and `group` only (mode 0660, like docker.sock), replacing a stale
/// socket file.
pub fn bind_api_socket(socket: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    if let Some(name) = group {
        let g = nix::unistd::Group::from_name(name)
            .with_context(|| format!("look up group {name}"))?
            .with_context(|| format!("socket_group {name:?}: no such group"))?;
        nix::unistd::chown(socket, None, Some(g.gid))
            .with_context(|| format!("chown {}", socket.display()))?;
    }
    Ok(listener)
}

pub async fn run(config: Config) -> Result<()> {
    let socket = config.socket.clone();
    let group = config.socket_group.clone();
    let tcp = config.tcp.clone();
    let core = Core::open(config)?;
    let _events = crate::core::task_events::serve(&core).await?;
    core.remove_leftovers().await?;
    core.recover().await?;
    core.start_by_policy().await;
    let alerts = tokio::spawn(crate::alerts::run(core.clone()));
    let listener = bind_api_socket(&socket, group.as_deref())?;
    tracing::info!(socket = %socket.display(), "polisd serves the Docker Engine API");
    tokio::spawn(return_freed_memory());
    let _grpc = crate::grpc::serve(&core).await?;
    let app = axum::middleware::map_request(version_prefix).layer(rest::router(core.clone()));
    let tcp_server = match tcp {
        Some(tcp) => {
            // Checked before serving: a bad certificate stops polisd at start, naming the file.
            crate::tls::server_config(&tcp)?;
            let app = app.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = crate::tls::serve(tcp, app).await {
                    tracing::error!(error = %format!("{e:#}"), "TCP API");
                }
            }))
        }
        None => None,
    };
    let metrics_server = match core.config.metrics.address {
        Some(address) => Some(crate::metrics::serve(address, app.clone()).await?),
        None => None,
    };
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .context("serve the API")?;
    for t in [tcp_server, metrics_server].into_iter().flatten() {
        t.abort();
    }
    alerts.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

async fn version_prefix(
    req: axum::extract::Request,
) -> std::result::Result<axum::extract::Request, rest::ApiError> {
    rest::strip_version(req)
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("polisd stops; running containers keep running under their shims");
}

/// Gives memory freed after a burst (a pull's buffers, a hundred containers removed) back to the kernel: glibc keeps
/// freed pages in its heaps otherwise, and polisd's RSS would stay at its peak.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
