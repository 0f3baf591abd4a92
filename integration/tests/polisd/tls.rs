//! Both APIs over TCP, which polisd serves only when configured and then only with mutual TLS, as dockerd's
//! `--tlsverify`: the Docker Engine API (`[tcp]`) for the docker CLI's `--tlsverify --tlscacert --tlscert --tlskey`,
//! and polis.v1 (`[grpc_tcp]`) for polis-client's `Client::connect_tls`. A client without a certificate from the
//! configured CA gets nothing. The certificates are made by `openssl` for the test; the addresses are on the
//! loopback of the test's network namespace.

use polis_client::{Client, TlsFiles};
use polis_integration::pki::{self, pem};
use polis_integration::polisd::{Polisd, docker_cli};
use std::path::{Path, PathBuf};

const REST_ADDRESS: &str = "127.0.0.1:2376";
const GRPC_ADDRESS: &str = "127.0.0.1:2377";

/// `[tcp]` and `[grpc_tcp]` of polisd.toml, with the `good` PKI's server certificate and CA.
fn tcp_config(dir: &Path) -> String {
    pki::polisd_listener("tcp", REST_ADDRESS, dir, "good")
        + &pki::polisd_listener("grpc_tcp", GRPC_ADDRESS, dir, "good")
}

/// The docker CLI in polisd's network namespace, against the TCP address with `tls_args`.
fn docker_over_tcp(d: &Polisd, tls_args: &[String], args: &[&str]) -> polis_integration::Output {
    let mut cmd = d.netns().command(docker_cli().to_str().unwrap());
    for var in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .args(["-H", &format!("tcp://{REST_ADDRESS}")])
        .args(tls_args)
        .args(args);
    polis_integration::run_command(cmd, &d.scratch(), std::time::Duration::from_secs(60))
}

/// Runs `f` on a thread of its own in polisd's network namespace (setns changes only the calling thread), with a
/// tokio runtime of its own.
fn in_netns<T: Send + 'static>(
    d: &Polisd,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let ns = std::fs::File::open(d.netns().path()).expect("open the netns");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on an open namespace file; it changes only this thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), f()).await })
            .expect("the gRPC calls took over 60 s")
    })
    .join()
    .expect("the netns thread")
}

/// With `[tcp]` and `[grpc_tcp]` configured: `docker --tlsverify` with a client certificate of the CA runs
/// `version` and sees a container made over the unix socket; without a client certificate, or with one of another
/// CA, it is refused. polis-client's `connect_tls` lists the same container over gRPC; with a certificate of
/// another CA its calls fail.
#[test]
fn tcp_apis_are_served_only_to_clients_with_a_certificate_of_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    pki::make(certs.path(), "good");
    pki::make(certs.path(), "rogue");
    let d = Polisd::start_with_config("pd-tls", &tcp_config(certs.path()));
    d.pull();
    d.docker(&[
        "create",
        "--name",
        "over-tcp",
        polis_integration::polisd::IMAGE,
        "true",
    ])
    .ok();

    let dir = certs.path();
    let good = vec![
        "--tlsverify".to_string(),
        format!("--tlscacert={}", pem(dir, "good-ca")),
        format!("--tlscert={}", pem(dir, "good-client")),
        format!("--tlskey={}", pem(dir, "good-client-key")),
    ];
    let out = docker_over_tcp(&d, &good, &["ps", "-a", "--format", "{{.Names}}"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "over-tcp", "{out}");

    let no_cert = vec![
        "--tlsverify".to_string(),
        format!("--tlscacert={}", pem(dir, "good-ca")),
    ];
    let out = docker_over_tcp(&d, &no_cert, &["ps", "-a"]);
    assert_ne!(
        out.code,
        Some(0),
        "no client certificate must be refused: {out}"
    );
    assert!(!out.stdout.contains("over-tcp"), "{out}");
    let rogue = vec![
        "--tlsverify".to_string(),
        format!("--tlscacert={}", pem(dir, "good-ca")),
        format!("--tlscert={}", pem(dir, "rogue-client")),
        format!("--tlskey={}", pem(dir, "rogue-client-key")),
    ];
    let out = docker_over_tcp(&d, &rogue, &["ps", "-a"]);
    assert_ne!(
        out.code,
        Some(0),
        "another CA's client must be refused: {out}"
    );
    assert!(!out.stdout.contains("over-tcp"), "{out}");

    let files = |client: &str| TlsFiles {
        ca: PathBuf::from(pem(dir, "good-ca")),
        cert: PathBuf::from(pem(dir, &format!("{client}-client"))),
        key: PathBuf::from(pem(dir, &format!("{client}-client-key"))),
    };
    let (good_files, rogue_files) = (files("good"), files("rogue"));
    let names = in_netns(&d, move || {
        Box::pin(async move {
            let client = Client::connect_tls(GRPC_ADDRESS, &good_files)
                .await
                .unwrap_or_else(|e| panic!("connect_tls with the CA's certificate: {e}"));
            let list = client.list_containers(true).await.expect("list over TLS");
            list.into_iter().map(|c| c.name).collect::<Vec<_>>()
        })
    });
    assert_eq!(names, vec!["over-tcp".to_string()], "{}", d.log());
    let refused = in_netns(&d, move || {
        Box::pin(async move {
            match Client::connect_tls(GRPC_ADDRESS, &rogue_files).await {
                Err(e) => Err(e.to_string()),
                Ok(client) => client
                    .version()
                    .await
                    .map(|v| v.version)
                    .map_err(|e| e.to_string()),
            }
        })
    });
    assert!(
        refused.is_err(),
        "another CA's client got an answer: {refused:?}"
    );
    d.docker(&["rm", "over-tcp"]).ok();
}
