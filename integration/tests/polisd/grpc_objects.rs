//! polis.v1 Networks, Volumes, Images (inspect, tag, prune) and System DiskUsage through polis-client. Both APIs are
//! layers over one core, so what gRPC makes the docker CLI sees (and the other way round), and each test checks it
//! where a user would: `docker network ls`/`inspect`, pings between containers, a volume's file read by a second
//! container, `docker images`, `docker system df`.

use super::grpc::{connect, within};
use super::{lines, run_detached};
use polis_client::{Error, proto};
use polis_integration::eventually;
use polis_integration::polisd::{IMAGE, Polisd};
use std::time::Duration;

/// How long a network change may take to show (a loaded 2-core machine included).
const SETTLE: Duration = Duration::from_secs(20);

/// Waits until container `from` pings `target` (busybox's ping through `busybox`: the image links its applets only
/// in part).
#[track_caller]
fn wait_until_pings(d: &Polisd, from: &str, target: &str) {
    eventually(&format!("{from} pings {target}"), SETTLE, || {
        d.docker(&["exec", from, "busybox", "ping", "-c1", "-W2", target])
            .success()
    });
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, Error>, names: &str) {
    match result {
        Err(Error::NotFound(m)) => assert!(m.contains(names), "{m:?} should name {names}"),
        other => panic!("NOT_FOUND naming {names} expected: {other:?}"),
    }
}

#[track_caller]
fn assert_failed_precondition<T: std::fmt::Debug>(result: Result<T, Error>, mentions: &str) {
    match result {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains(mentions), "{m:?}"),
        other => panic!("FAILED_PRECONDITION mentioning {mentions} expected: {other:?}"),
    }
}

/// Networks (networks.proto): Create makes a bridge network with the asked subnet, which `docker network ls` and
/// `docker network inspect` show (one core under both APIs); a taken name is ALREADY_EXISTS (Docker: 409 "network
/// with name ... already exists"); List applies NetworkFilter ("each non-empty list must match"); Connect with
/// aliases makes the container answer to its name and the aliases on the network (Docker's network-scoped aliases:
/// two containers on a user network reach each other by name); Inspect lists the running containers with their
/// addresses; Disconnect takes the container off; Remove is refused while a running container is on the network
/// (Docker: "has active endpoints") and NOT_FOUND names a missing network; Prune removes unused user networks.
#[tokio::test(flavor = "current_thread")]
async fn grpc_networks_connect_containers_that_reach_each_other_by_name() {
    let d = Polisd::start("pd-grpc-net");
    d.pull();
    let client = connect(&d).await;

    let made = client
        .create_network(proto::CreateNetworkRequest {
            name: "grpcnet".into(),
            ipam: vec![proto::IpamConfig {
                subnet: "198.18.91.0/24".into(),
                ..Default::default()
            }],
            labels: [("made-by".to_string(), "grpc".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(made.name, "grpcnet");
    assert_eq!(made.driver, "bridge");
    assert_eq!(made.ipam.len(), 1, "{made:?}");
    assert_eq!(made.ipam[0].subnet, "198.18.91.0/24");
    assert_eq!(
        made.ipam[0].gateway, "198.18.91.1",
        "the subnet's first address"
    );
    assert!(made.created_unix_nano > 0, "{made:?}");
    let ls = d.docker(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        "label=made-by=grpc",
        "--format",
        "{{.ID}} {{.Name}}",
    ]);
    ls.ok();
    assert_eq!(lines(&ls), [format!("{} grpcnet", made.id)], "{ls}");
    let subnet = d.docker(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Subnet}}",
        "grpcnet",
    ]);
    subnet.ok();
    assert_eq!(subnet.stdout.trim(), "198.18.91.0/24", "{subnet}");

    // The name is taken: ALREADY_EXISTS, naming it.
    match client
        .create_network(proto::CreateNetworkRequest {
            name: "grpcnet".into(),
            ..Default::default()
        })
        .await
    {
        Err(Error::AlreadyExists(m)) => assert!(m.contains("grpcnet"), "{m}"),
        other => panic!("{other:?}"),
    }

    let names = |networks: Vec<proto::Network>| -> Vec<String> {
        let mut n: Vec<String> = networks.into_iter().map(|n| n.name).collect();
        n.sort();
        n
    };
    let filtered = |filter: proto::NetworkFilter| {
        client.list_networks(proto::ListNetworksRequest {
            filter: Some(filter),
        })
    };
    assert_eq!(
        names(
            client
                .list_networks(proto::ListNetworksRequest::default())
                .await
                .unwrap()
        ),
        ["bridge", "grpcnet", "host", "none"]
    );
    assert_eq!(
        names(
            filtered(proto::NetworkFilter {
                labels: vec!["made-by=grpc".into()],
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        ["grpcnet"]
    );
    assert_eq!(
        names(
            filtered(proto::NetworkFilter {
                ids: vec![made.id[..12].to_string()],
                names: vec!["grpc".into()],
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        ["grpcnet"]
    );
    assert_eq!(
        names(
            filtered(proto::NetworkFilter {
                drivers: vec!["null".into(), "host".into()],
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        ["host", "none"]
    );

    // One container on the network from the start, one on the default bridge connected by gRPC with an alias.
    run_detached(
        &d,
        &[
            "--name",
            "server",
            "--network",
            "grpcnet",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    run_detached(&d, &["--name", "client", IMAGE, "sleep", "300"]);
    client
        .connect_network("grpcnet", "client", vec!["buddy".into()])
        .await
        .unwrap();
    wait_until_pings(&d, "server", "client");
    wait_until_pings(&d, "server", "buddy");
    wait_until_pings(&d, "client", "server");

    let inspected = client.inspect_network(&made.id[..12]).await.unwrap();
    assert_eq!(inspected.id, made.id);
    let mut endpoints = inspected.endpoints.clone();
    endpoints.sort_by(|a, b| a.container_name.cmp(&b.container_name));
    let seen: Vec<(&str, &[String])> = endpoints
        .iter()
        .map(|e| (e.container_name.as_str(), e.aliases.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [("client", &["buddy".to_string()][..]), ("server", &[][..])],
        "{inspected:?}"
    );
    for e in &endpoints {
        assert!(e.ipv4_address.starts_with("198.18.91."), "{e:?}");
        assert!(e.ipv4_address.ends_with("/24"), "CIDR form: {e:?}");
        assert_eq!(e.container_id.len(), 64, "{e:?}");
    }
    // Docker's view of the same endpoint.
    let ip = d.inspect(
        "client",
        "{{(index .NetworkSettings.Networks \"grpcnet\").IPAddress}}",
    );
    assert_eq!(format!("{ip}/24"), endpoints[0].ipv4_address);

    // A running container is on it: Remove is refused.
    assert_failed_precondition(client.remove_network("grpcnet").await, "active endpoints");

    client
        .disconnect_network("grpcnet", "client", false)
        .await
        .unwrap();
    let left = client.inspect_network("grpcnet").await.unwrap();
    let on: Vec<&str> = left
        .endpoints
        .iter()
        .map(|e| e.container_name.as_str())
        .collect();
    assert_eq!(on, ["server"], "{left:?}");
    let networks = d.inspect(
        "client",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert_eq!(
        networks.trim(),
        "bridge",
        "docker inspect no longer shows grpcnet"
    );
    // Not connected any more: refused, naming the network.
    assert_failed_precondition(
        client.disconnect_network("grpcnet", "client", false).await,
        "grpcnet",
    );

    d.docker(&["rm", "-f", "server", "client"]).ok();
    client.remove_network("grpcnet").await.unwrap();
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    ls.ok();
    assert!(!lines(&ls).contains(&"grpcnet".to_string()), "{ls}");
    assert_not_found(client.inspect_network("grpcnet").await, "grpcnet");
    assert_not_found(client.remove_network("grpcnet").await, "grpcnet");
    assert_not_found(
        client
            .connect_network("grpcnet", "nobody", Vec::new())
            .await,
        "grpcnet",
    );

    // Prune: the unused user network goes, the predefined ones stay.
    d.docker(&["network", "create", "--subnet", "198.18.92.0/24", "spare"])
        .ok();
    let pruned = client.prune_networks().await.unwrap();
    assert_eq!(pruned.removed, ["spare"]);
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    ls.ok();
    let mut left = lines(&ls);
    left.sort();
    assert_eq!(left, ["bridge", "host", "none"], "{ls}");
}

/// Volumes (volumes.proto): Create makes a named volume of the local driver that `docker volume ls`/`inspect` show;
/// a container writes into it and a second one, after the first is removed, reads the file (the data is the volume's,
/// not a container's); List applies VolumeFilter (labels, `dangling`: used by no container); Remove of a volume a
/// container uses is FAILED_PRECONDITION naming it, also with `force` (dockerd: 409 "volume is in use"), whose only
/// effect is that a missing volume is no error; NOT_FOUND names a missing volume; Prune removes only anonymous volumes
/// unless `all`, and only unused ones with the asked labels, and says what it freed.
#[tokio::test(flavor = "current_thread")]
async fn grpc_volumes_keep_data_between_containers_and_are_pruned() {
    let d = Polisd::start("pd-grpc-vol");
    d.pull();
    let client = connect(&d).await;

    let v = client
        .create_volume(proto::CreateVolumeRequest {
            name: "grpcdata".into(),
            labels: [("tier".to_string(), "db".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((v.name.as_str(), v.driver.as_str()), ("grpcdata", "local"));
    assert!(!v.anonymous, "{v:?}");
    assert!(v.created_unix_nano > 0, "{v:?}");
    let mountpoint = d.docker(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}} {{.Labels.tier}}",
        "grpcdata",
    ]);
    mountpoint.ok();
    assert_eq!(
        mountpoint.stdout.trim(),
        format!("{} db", v.mountpoint),
        "{mountpoint}"
    );
    assert!(
        v.mountpoint.starts_with(&d.root().display().to_string()),
        "{v:?}"
    );
    d.docker(&["volume", "create", "other"]).ok();
    let ls = d.docker(&["volume", "ls", "--format", "{{.Name}}"]);
    ls.ok();
    assert_eq!(lines(&ls), ["grpcdata", "other"], "{ls}");

    d.docker(&[
        "run",
        "--name",
        "writer",
        "-v",
        "grpcdata:/data",
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data/f",
    ])
    .ok();
    d.docker(&["rm", "writer"]).ok();
    let read = d.docker(&[
        "run",
        "--rm",
        "-v",
        "grpcdata:/data",
        IMAGE,
        "cat",
        "/data/f",
    ]);
    read.ok();
    assert_eq!(read.stdout, "kept\n", "{read}");

    let listed = |filter: proto::VolumeFilter| {
        client.list_volumes(proto::ListVolumesRequest {
            filter: Some(filter),
        })
    };
    let names = |volumes: Vec<proto::Volume>| -> Vec<String> {
        volumes.into_iter().map(|v| v.name).collect()
    };
    let by_label = listed(proto::VolumeFilter {
        labels: vec!["tier=db".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(by_label.len(), 1, "{by_label:?}");
    assert_eq!(
        by_label[0].labels.get("tier").map(String::as_str),
        Some("db")
    );
    assert_eq!(by_label[0].mountpoint, v.mountpoint);

    // A container (not running) uses the volume: it is not dangling, and cannot be removed.
    d.docker(&[
        "create",
        "--name",
        "user",
        "-v",
        "grpcdata:/data",
        IMAGE,
        "true",
    ])
    .ok();
    let used = listed(proto::VolumeFilter {
        dangling: Some(false),
        ..Default::default()
    });
    assert_eq!(names(used.await.unwrap()), ["grpcdata"]);
    let unused = listed(proto::VolumeFilter {
        dangling: Some(true),
        ..Default::default()
    });
    assert_eq!(names(unused.await.unwrap()), ["other"]);
    assert_failed_precondition(client.remove_volume("grpcdata", false).await, "grpcdata");
    assert_failed_precondition(client.remove_volume("grpcdata", true).await, "grpcdata");
    d.docker(&["rm", "user"]).ok();

    assert_not_found(client.inspect_volume("nosuchvol").await, "nosuchvol");
    assert_not_found(client.remove_volume("nosuchvol", false).await, "nosuchvol");
    client.remove_volume("nosuchvol", true).await.unwrap();
    // The same core under `DELETE /volumes/{name}?force=1` (`docker volume rm -f`).
    d.docker(&["volume", "rm", "nosuchvol"])
        .fails()
        .stderr_mentions("nosuchvol");
    d.docker(&["volume", "rm", "-f", "nosuchvol"]).ok();

    // Prune: an anonymous volume (made without a name) goes, named ones stay unless `all`.
    let anonymous = client
        .create_volume(proto::CreateVolumeRequest::default())
        .await
        .unwrap();
    assert!(anonymous.anonymous, "{anonymous:?}");
    assert_eq!(anonymous.name.len(), 64, "a generated name: {anonymous:?}");
    let pruned = client.prune_volumes().await.unwrap();
    assert_eq!(pruned.removed, [anonymous.name.as_str()]);
    let ls = d.docker(&["volume", "ls", "--format", "{{.Name}}"]);
    ls.ok();
    assert_eq!(lines(&ls), ["grpcdata", "other"], "{ls}");
    let mut volumes = proto::volumes_client::VolumesClient::new(client.channel());
    let pruned = within(
        "prune all",
        volumes.prune(proto::PruneVolumesRequest {
            all: true,
            labels: vec!["tier=db".into()],
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(pruned.removed, ["grpcdata"]);
    assert_eq!(pruned.space_reclaimed_bytes, "kept\n".len() as u64);
    client.remove_volume("other", false).await.unwrap();
    let ls = d.docker(&["volume", "ls", "-q"]);
    ls.ok();
    assert!(lines(&ls).is_empty(), "{ls}");
    assert!(
        client
            .list_volumes(proto::ListVolumesRequest::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Images and disk usage (images.proto, system.proto): Inspect gives what `docker image inspect` shows (config,
/// DiffIDs, size), also by an ID prefix; Tag gives the image a second name, which List and `docker images` show for
/// the same ID (a digest target is INVALID_ARGUMENT, as dockerd refuses "a tag with a digest reference"); DiskUsage
/// counts as `docker system df` does (one image under two names is one image; a container that does not run is not
/// active and its writable layer is reclaimable; a volume no container mounts is not active) with the sizes of
/// `GET /system/df`; Prune removes no image a container uses, and with `all` the unused ones, under every name.
#[tokio::test(flavor = "current_thread")]
async fn grpc_images_inspect_tag_disk_usage_and_prune() {
    let d = Polisd::start("pd-grpc-img");
    d.pull();
    let client = connect(&d).await;

    let details = client.inspect_image(IMAGE).await.unwrap();
    let image = details.image.clone().expect("the image");
    assert_eq!(image.name, IMAGE);
    let docker_view = d
        .docker(&["image", "inspect", "--format", "{{json .}}", IMAGE])
        .json();
    assert_eq!(docker_view["Id"], image.id.as_str());
    assert_eq!(docker_view["Size"], image.size_bytes, "{docker_view}");
    assert!(image.size_bytes > 0);
    assert_eq!(docker_view["Architecture"], details.architecture.as_str());
    assert_eq!(details.os, "linux");
    assert_eq!(
        docker_view["RootFS"]["Layers"],
        serde_json::json!(details.layers)
    );
    assert!(!details.layers.is_empty(), "{details:?}");
    assert!(
        details.layers.iter().all(|l| l.starts_with("sha256:")),
        "{details:?}"
    );
    assert_eq!(
        docker_view["Config"]["Cmd"],
        serde_json::json!(details.command)
    );
    assert!(!details.command.is_empty(), "{details:?}");
    let by_id = client.inspect_image(&image.id[7..19]).await.unwrap();
    assert_eq!(by_id.image.unwrap().id, image.id);
    assert_not_found(client.inspect_image("nosuch:1").await, "nosuch:1");

    client.tag_image(IMAGE, "polis-test/app:2").await.unwrap();
    let mut listed: Vec<(String, String)> = client
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.id))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (IMAGE.to_string(), image.id.clone()),
            ("polis-test/app:2".to_string(), image.id.clone())
        ]
    );
    let images = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    images.ok();
    let mut shown = lines(&images);
    shown.sort();
    assert_eq!(shown, [IMAGE, "polis-test/app:2"], "{images}");
    let id = d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "polis-test/app:2",
    ]);
    assert_eq!(id.stdout.trim(), image.id, "{id}");
    match client
        .tag_image(IMAGE, &format!("polis-test/app@{}", image.id))
        .await
    {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("digest"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_not_found(
        client.tag_image("nosuch:1", "polis-test/x:1").await,
        "nosuch:1",
    );

    // A stopped container with 64 KiB in its writable layer, a volume with 3 bytes no container mounts.
    d.docker(&[
        "run",
        "--name",
        "df-user",
        IMAGE,
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1024",
        "count=64",
    ])
    .ok();
    d.docker(&["volume", "create", "dfvol"]).ok();
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "dfvol:/v",
        IMAGE,
        "sh",
        "-c",
        "echo hi > /v/x",
    ])
    .ok();
    let usage = client.disk_usage().await.unwrap();
    assert_eq!((usage.images, usage.images_active), (1, 1), "{usage:?}");
    assert_eq!(
        (usage.containers, usage.containers_active),
        (1, 0),
        "{usage:?}"
    );
    assert_eq!((usage.volumes, usage.volumes_active), (1, 0), "{usage:?}");
    assert_eq!(usage.images_bytes, image.size_bytes, "{usage:?}");
    assert_eq!(
        usage.reclaimable_images_bytes, 0,
        "the image is used: {usage:?}"
    );
    assert!(usage.containers_bytes >= 64 * 1024, "{usage:?}");
    assert_eq!(usage.reclaimable_containers_bytes, usage.containers_bytes);
    assert_eq!(usage.volumes_bytes, 3, "{usage:?}");
    assert_eq!(usage.reclaimable_volumes_bytes, 3, "{usage:?}");
    // The docker CLI's view: its counts (TYPE TOTAL ACTIVE) and the sizes of /system/df.
    let df = d.docker(&[
        "system",
        "df",
        "--format",
        "{{.Type}}={{.TotalCount}}/{{.Active}}",
    ]);
    df.ok();
    let df = lines(&df);
    for wanted in ["Images=1/1", "Containers=1/0", "Local Volumes=1/0"] {
        assert!(df.contains(&wanted.to_string()), "{wanted} not in {df:?}");
    }
    let raw = d.http("GET", "/v1.41/system/df", None).json();
    assert_eq!(raw["LayersSize"], usage.images_bytes, "{raw}");
    assert_eq!(raw["Images"][0]["Containers"], 1, "{raw}");
    assert_eq!(
        raw["Containers"][0]["SizeRw"], usage.containers_bytes,
        "{raw}"
    );
    assert_eq!(
        raw["Volumes"][0]["UsageData"]["Size"], usage.volumes_bytes,
        "{raw}"
    );

    // Prune: no image without a name exists; with `all`, the image is still used by df-user.
    assert!(client.prune_images(false).await.unwrap().deleted.is_empty());
    assert!(client.prune_images(true).await.unwrap().deleted.is_empty());
    assert_eq!(client.list_images().await.unwrap().len(), 2);
    d.docker(&["rm", "df-user"]).ok();
    d.docker(&["volume", "rm", "dfvol"]).ok();
    let pruned = client.prune_images(true).await.unwrap();
    assert_eq!(pruned.deleted, [image.id.as_str()]);
    assert_eq!(pruned.space_reclaimed_bytes, image.size_bytes);
    assert!(client.list_images().await.unwrap().is_empty());
    let images = d.docker(&["images", "-q"]);
    images.ok();
    assert!(lines(&images).is_empty(), "{images}");
    let usage = client.disk_usage().await.unwrap();
    assert_eq!(
        (usage.images, usage.containers, usage.volumes),
        (0, 0, 0),
        "{usage:?}"
    );
}
