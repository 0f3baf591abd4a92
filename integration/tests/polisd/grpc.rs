//! polisd's own API, `polis.v1` over gRPC on its `grpc_socket`, through the polis-client library: the same
//! containers and images as the Docker Engine API (both are layers over one core), gRPC status codes for errors,
//! and the standard health service.

use polis_client::{Client, Error, proto};
use polis_integration::polisd::{IMAGE, Polisd};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

pub(crate) fn grpc_socket(d: &Polisd) -> std::path::PathBuf {
    d.exec_root().join("polis-grpc.sock")
}

pub(crate) async fn connect(d: &Polisd) -> Client {
    Client::connect(grpc_socket(d))
        .await
        .unwrap_or_else(|e| panic!("connect to polisd's gRPC socket: {e}\n{}", d.log()))
}

pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {LIMIT:?}"))
}

/// Version and Info; a pull whose progress stream ends with the image; a container created, started, its line
/// streamed by Logs, its exit code given by Wait, inspected and removed; NOT_FOUND naming a missing container; the
/// health service SERVING for polisd and its services; server reflection listing every service; the socket root's
/// and its group's only (0660).
#[tokio::test(flavor = "current_thread")]
async fn grpc_pulls_runs_streams_logs_waits_and_removes() {
    use std::os::unix::fs::PermissionsExt;

    let d = Polisd::start("pd-grpc-run");
    let mode = std::fs::metadata(grpc_socket(&d))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let client = connect(&d).await;

    let version = client.version().await.unwrap();
    assert_eq!(version.api_version, "v1", "{version:?}");
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"), "{version:?}");
    assert_eq!(version.os, "linux");
    let info = client.info().await.unwrap();
    assert_eq!(info.containers, 0, "{info:?}");
    assert_eq!(info.images, 0, "{info:?}");
    assert_eq!(info.root_dir, d.root().display().to_string());

    let mut pull = client.pull(IMAGE).await.unwrap();
    let mut progress = Vec::new();
    let mut pulled = None;
    while let Some(event) = within("the pull", pull.next()).await.unwrap() {
        assert!(pulled.is_none(), "a message after the image: {event:?}");
        match event.event.expect("an event") {
            proto::pull_image_event::Event::Progress(p) => progress.push(p.status),
            proto::pull_image_event::Event::Image(i) => pulled = Some(i),
        }
    }
    let image = pulled.expect("the pull stream ends with the image");
    assert_eq!(image.name, IMAGE);
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert!(image.size_bytes > 0, "{image:?}");
    assert!(
        progress.iter().any(|s| s.starts_with("Pulling from")),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|s| s.starts_with("Status: ")),
        "{progress:?}"
    );
    let images = client.list_images().await.unwrap();
    assert!(images.iter().any(|i| i.id == image.id), "{images:?}");
    assert_eq!(client.info().await.unwrap().images, 1);

    let id = client
        .create_container(
            "grpc-hello",
            proto::ContainerSpec {
                image: IMAGE.into(),
                command: ["sh", "-c", "echo hello over grpc; sleep 1; exit 7"]
                    .map(String::from)
                    .to_vec(),
                labels: [("made-by".to_string(), "grpc".to_string())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(id.len(), 64, "{id}");
    let created = client.inspect_container("grpc-hello").await.unwrap();
    assert_eq!(created.id, id);
    assert_eq!(
        created.state.as_ref().unwrap().status,
        proto::ContainerStatus::Created as i32
    );
    assert_eq!(
        created.labels.get("made-by").map(String::as_str),
        Some("grpc")
    );
    // The name is taken: ALREADY_EXISTS, naming it.
    match client
        .create_container(
            "grpc-hello",
            proto::ContainerSpec {
                image: IMAGE.into(),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::AlreadyExists(m)) => assert!(m.contains("grpc-hello"), "{m}"),
        other => panic!("{other:?}"),
    }

    client.start_container(&id).await.unwrap();
    let mut logs = client.logs(&id, true).await.unwrap();
    let mut output = Vec::new();
    while let Some(entry) = within("the logs", logs.next()).await.unwrap() {
        assert_eq!(
            entry.stream,
            proto::OutputStream::Stdout as i32,
            "{entry:?}"
        );
        assert!(entry.time_unix_nano > 0, "{entry:?}");
        output.extend_from_slice(&entry.data);
    }
    assert_eq!(String::from_utf8_lossy(&output), "hello over grpc\n");
    let code = within("wait", client.wait_container(&id)).await.unwrap();
    assert_eq!(code, 7);
    let exited = client.inspect_container(&id[..12]).await.unwrap();
    let state = exited.state.unwrap();
    assert_eq!(state.status, proto::ContainerStatus::Exited as i32);
    assert_eq!(state.exit_code, 7);
    assert!(state.finished_at_unix_nano >= state.started_at_unix_nano);
    // The log, read again without following, holds the line.
    let again = client
        .logs(&id, false)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");

    client.remove_container(&id, false).await.unwrap();
    assert!(client.list_containers(true).await.unwrap().is_empty());

    // A missing container: NOT_FOUND, naming it.
    for e in [
        client.inspect_container("no-such-box").await.err(),
        client.start_container("no-such-box").await.err(),
        client.remove_container("no-such-box", true).await.err(),
    ] {
        match e {
            Some(Error::NotFound(m)) => assert!(m.contains("no-such-box"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // Server reflection lists every service.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(client.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = within("reflection", answers.message())
        .await
        .unwrap()
        .expect("an answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in [
        "polis.v1.Containers",
        "polis.v1.Images",
        "polis.v1.Networks",
        "polis.v1.System",
        "polis.v1.Volumes",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&wanted), "{wanted} not in {services:?}");
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
    for service in [
        "",
        "polis.v1.Containers",
        "polis.v1.Images",
        "polis.v1.Networks",
        "polis.v1.System",
        "polis.v1.Volumes",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

/// One set of containers under both APIs: a container created through gRPC is in `docker ps -a`; one made by
/// `docker create` is listed by gRPC (with its filters) and removed by it, and is then gone for docker too. Events
/// of both reach a gRPC Events stream.
#[tokio::test(flavor = "current_thread")]
async fn grpc_and_the_docker_api_share_their_containers() {
    let d = Polisd::start("pd-grpc-rest");
    d.pull();
    let client = connect(&d).await;
    let mut events = client
        .events(proto::EventsRequest {
            filter: Some(proto::EventFilter {
                kinds: vec![proto::ObjectKind::Container as i32],
                actions: vec!["create".into(), "destroy".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let from_grpc = client
        .create_container(
            "made-by-grpc",
            proto::ContainerSpec {
                image: IMAGE.into(),
                command: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ps = d.docker(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
    ps.ok();
    assert!(
        ps.stdout.contains(&format!("{from_grpc} made-by-grpc")),
        "{ps}"
    );

    let out = d.docker(&[
        "create",
        "--name",
        "made-by-docker",
        "--label",
        "via=cli",
        IMAGE,
        "true",
    ]);
    out.ok();
    let from_docker = out.stdout.trim().to_string();
    let listed = client.list_containers(true).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["made-by-docker", "made-by-grpc"], "newest first");
    assert_eq!(listed[0].id, from_docker);
    assert_eq!(listed[0].labels.get("via").map(String::as_str), Some("cli"));
    // Not running: only with `all`.
    assert!(client.list_containers(false).await.unwrap().is_empty());
    let filtered = client
        .list_containers_with(proto::ListContainersRequest {
            all: true,
            filter: Some(proto::ContainerFilter {
                labels: vec!["via=cli".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0].id, from_docker);

    client
        .remove_container("made-by-docker", false)
        .await
        .unwrap();
    let ps = d.docker(&["ps", "-a", "--format", "{{.Names}}"]);
    ps.ok();
    assert_eq!(ps.stdout.trim(), "made-by-grpc", "{ps}");
    d.docker(&["rm", "made-by-grpc"]).ok();

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = within("the events", events.next())
            .await
            .unwrap()
            .expect("the events stream goes on");
        seen.push((e.action, e.id));
    }
    assert_eq!(
        seen,
        [
            ("create".to_string(), from_grpc.clone()),
            ("create".to_string(), from_docker.clone()),
            ("destroy".to_string(), from_docker),
            ("destroy".to_string(), from_grpc),
        ]
    );
}
