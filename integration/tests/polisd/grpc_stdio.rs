//! polis.v1 Attach and Exec (bidirectional streams, tty resize) and Stats through polis-client.

use super::grpc::{connect, within};
use polis_client::{Client, Error, Stream, proto};
use polis_integration::eventually;
use polis_integration::polisd::{IMAGE, Polisd};
use std::time::Duration;

fn spec(command: &[&str]) -> proto::ContainerSpec {
    proto::ContainerSpec {
        image: IMAGE.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Creates and starts a container; its ID.
async fn run(client: &Client, name: &str, command: &[&str]) -> String {
    let id = client.create_container(name, spec(command)).await.unwrap();
    client.start_container(&id).await.unwrap();
    id
}

/// Reads an attach stream to its end: stdout, stderr, and the exit code (the last message).
async fn attach_to_end(stream: &mut Stream<proto::AttachOutput>) -> (String, String, i64) {
    use proto::attach_output::Kind;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let message = within("the attach stream", stream.next())
            .await
            .unwrap()
            .expect("the stream ends with the exit code");
        match message.kind.expect("a message carries something") {
            Kind::Output(e) if e.stream == proto::OutputStream::Stderr as i32 => {
                err.extend_from_slice(&e.data)
            }
            Kind::Output(e) => out.extend_from_slice(&e.data),
            Kind::ExitCode(code) => {
                let after = within("the attach stream's end", stream.next()).await;
                assert!(
                    matches!(after, Ok(None)),
                    "nothing after the exit code: {after:?}"
                );
                let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                return (text(out), text(err), code);
            }
        }
    }
}

/// The first message of an exec stream: the exec's ID.
async fn read_exec_id(stream: &mut Stream<proto::ExecOutput>) -> String {
    let first = within("the exec stream", stream.next())
        .await
        .unwrap()
        .and_then(|m| m.kind);
    let Some(proto::exec_output::Kind::ExecId(exec_id)) = first else {
        panic!("the exec stream starts with the exec's ID: {first:?}");
    };
    exec_id
}

/// Reads an exec stream to its end: the exec's ID (the first message), stdout, stderr and the exit code (the last).
async fn exec_to_end(stream: &mut Stream<proto::ExecOutput>) -> (String, String, String, i64) {
    let exec_id = read_exec_id(stream).await;
    let (out, err, code) = exec_rest(stream).await;
    (exec_id, out, err, code)
}

/// Reads the rest of an exec stream: stdout, stderr and the exit code (the last message).
async fn exec_rest(stream: &mut Stream<proto::ExecOutput>) -> (String, String, i64) {
    use proto::exec_output::Kind;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let message = within("the exec stream", stream.next())
            .await
            .unwrap()
            .expect("the stream ends with the exit code");
        match message.kind.expect("a message carries something") {
            Kind::Output(e) if e.stream == proto::OutputStream::Stderr as i32 => {
                err.extend_from_slice(&e.data)
            }
            Kind::Output(e) => out.extend_from_slice(&e.data),
            Kind::ExitCode(code) => {
                assert!(matches!(stream.next().await, Ok(None)));
                let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                return (text(out), text(err), code);
            }
            Kind::ExecId(id) => panic!("a second exec ID: {id}"),
        }
    }
}

/// Reads a stream's output until `text` appeared in it.
async fn exec_output_until(stream: &mut Stream<proto::ExecOutput>, text: &str) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(text) {
        let message = within(&format!("{text:?} in the output"), stream.next())
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the stream ended before {text:?}: {:?}",
                    String::from_utf8_lossy(&seen)
                )
            });
        if let Some(proto::exec_output::Kind::Output(e)) = message.kind {
            seen.extend_from_slice(&e.data);
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The open file descriptors of a process.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `polis run -i` as polis-client does it: create with open_stdin, Attach with stdin, Start. What the container
/// writes at once after its start reaches the client, the typed commands run, and the stream ends with the exit
/// code. With a tty (`-it`): a resize reaches the container's terminal (`stty size`), and the typed line comes
/// back as the terminal's echo. Attaching to an exited container is FAILED_PRECONDITION naming it.
#[tokio::test(flavor = "current_thread")]
async fn grpc_attach_runs_an_interactive_shell() {
    let d = Polisd::start("pd-grpc-attach");
    d.pull();
    let client = connect(&d).await;

    let id = client
        .create_container(
            "g-run-i",
            proto::ContainerSpec {
                open_stdin: true,
                ..spec(&["sh", "-c", "echo started; exec sh"])
            },
        )
        .await
        .unwrap();
    let (input, mut output) = client
        .attach(proto::AttachStart {
            id: "g-run-i".into(),
            stdin: true,
            ..Default::default()
        })
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();
    input.stdin(b"echo hi; exit 7\n".to_vec()).await.unwrap();
    let (out, err, code) = attach_to_end(&mut output).await;
    assert_eq!((out.as_str(), err.as_str(), code), ("started\nhi\n", "", 7));
    // The stream is over: the input says so instead of panicking.
    drop(output);
    // The request stream is dropped when the RPC's end reaches the client's connection task: poll for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut ended = None;
    while std::time::Instant::now() < deadline {
        match within("a late send", input.stdin(b"late\n".to_vec())).await {
            Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(ended, Some(Error::Protocol(_))),
        "sending after the end: {ended:?}"
    );

    // Attaching to an exited container: FAILED_PRECONDITION, naming it.
    match client
        .attach(proto::AttachStart {
            id: "g-run-i".into(),
            ..Default::default()
        })
        .await
    {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("g-run-i"), "{m}"),
        other => panic!("{:?}", other.map(|_| "attached")),
    }
    client.remove_container(&id, false).await.unwrap();

    // -it: the terminal is resized before the typed line runs.
    let id = client
        .create_container(
            "g-run-it",
            proto::ContainerSpec {
                open_stdin: true,
                tty: true,
                ..spec(&["sh"])
            },
        )
        .await
        .unwrap();
    let (input, mut output) = client
        .attach(proto::AttachStart {
            id: id[..12].into(),
            stdin: true,
            ..Default::default()
        })
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();
    input.resize(123, 45).await.unwrap();
    input.stdin(b"stty size; exit 3\n".to_vec()).await.unwrap();
    let (out, err, code) = attach_to_end(&mut output).await;
    assert_eq!(code, 3, "{out}");
    assert_eq!(err, "", "a terminal's output is all stdout");
    assert!(out.contains("stty size; exit 3"), "the tty's echo: {out:?}");
    assert!(
        out.lines().any(|l| l.trim() == "45 123"),
        "the new size: {out:?}"
    );
    client.remove_container(&id, false).await.unwrap();
    assert!(client.list_containers(true).await.unwrap().is_empty());
}

/// Exec through gRPC as `docker exec`: stdin in and closed (`cat` gives it back, the exit code is the process's),
/// a terminal sized at the start and resized later, a missing command's exit code 127 (or 126) with the reason on
/// stderr. The docker CLI's exec still works beside it; clients that go away mid-way leave polisd with no more
/// open files than before; an exec in a stopped container is FAILED_PRECONDITION.
#[tokio::test(flavor = "current_thread")]
async fn grpc_exec_runs_processes_like_docker_exec() {
    let d = Polisd::start("pd-grpc-exec");
    d.pull();
    let client = connect(&d).await;
    let id = run(&client, "g-exec", &["sleep", "300"]).await;
    let exec = |command: &[&str]| proto::ExecStart {
        container_id: "g-exec".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };

    let (input, mut output) = client
        .exec(proto::ExecStart {
            stdin: true,
            ..exec(&["sh", "-c", "cat; exit 3"])
        })
        .await
        .unwrap();
    let sent = "line one\nline two\n";
    input.stdin(sent.as_bytes().to_vec()).await.unwrap();
    input.close_stdin().await.unwrap();
    let (exec_id, out, err, code) = exec_to_end(&mut output).await;
    assert_eq!(exec_id.len(), 64, "{exec_id}");
    assert_eq!((out.as_str(), err.as_str(), code), (sent, "", 3));

    let (input, mut output) = client
        .exec(proto::ExecStart {
            stdin: true,
            tty: true,
            size: Some(proto::TerminalSize {
                width: 77,
                height: 22,
            }),
            ..exec(&["sh"])
        })
        .await
        .unwrap();
    read_exec_id(&mut output).await;
    input.stdin(b"stty size\n".to_vec()).await.unwrap();
    exec_output_until(&mut output, "22 77").await;
    input.resize(99, 33).await.unwrap();
    input.stdin(b"stty size; exit 4\n".to_vec()).await.unwrap();
    let (out, _, code) = exec_rest(&mut output).await;
    assert_eq!(code, 4, "{out}");
    assert!(out.lines().any(|l| l.trim() == "33 99"), "{out:?}");

    let (_input, mut output) = client.exec(exec(&["no-such-command"])).await.unwrap();
    let (_, out, err, code) = exec_to_end(&mut output).await;
    assert!(code == 127 || code == 126, "{code}: {out} {err}");
    assert!(
        err.contains("no-such-command"),
        "the reason on stderr: {err:?}"
    );

    // The docker CLI's exec beside it.
    let docker = d.docker(&["exec", "g-exec", "echo", "via docker"]);
    docker.ok();
    assert_eq!(docker.stdout.trim(), "via docker");
    let docker = d.docker_with_input(
        &["exec", "-i", "g-exec", "sh", "-c", "cat; exit 5"],
        b"in\n",
    );
    assert_eq!(docker.code, Some(5), "{docker}");
    assert_eq!(docker.stdout, "in\n", "{docker}");

    // Clients that go away in the middle: an attach and an exec whose stdin is then closed, so `cat` ends.
    let polisd = d.pid().expect("polisd runs");
    let before = open_fds(polisd);
    let attached = client
        .attach(proto::AttachStart {
            id: "g-exec".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (input, mut output) = client
        .exec(proto::ExecStart {
            stdin: true,
            ..exec(&["cat"])
        })
        .await
        .unwrap();
    read_exec_id(&mut output).await;
    input.stdin(b"still here\n".to_vec()).await.unwrap();
    exec_output_until(&mut output, "still here\n").await;
    drop((attached, input, output));
    // Off the runtime's thread, which the client's connection needs to tell polisd.
    tokio::task::spawn_blocking(move || {
        eventually(
            "polisd has no more open files than before the clients came",
            Duration::from_secs(20),
            || open_fds(polisd) <= before,
        )
    })
    .await
    .unwrap();
    let top = d.docker(&["top", "g-exec"]);
    top.ok();
    assert!(
        !top.stdout.contains("cat"),
        "cat ended with its stdin: {top}"
    );

    client.stop_container(&id, Some(1)).await.unwrap();
    match client.exec(exec(&["true"])).await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains(&id), "{m}"),
        other => panic!("{:?}", other.map(|_| "started")),
    }
    client.remove_container(&id, false).await.unwrap();
}

/// Stats of a running container: one sample with its memory, processes and limit; a stream whose CPU time rises
/// between two samples of a busy container and which ends when the container stops; a stopped container is
/// FAILED_PRECONDITION.
#[tokio::test(flavor = "current_thread")]
async fn grpc_stats_samples_a_running_container() {
    let d = Polisd::start("pd-grpc-stats");
    d.pull();
    let client = connect(&d).await;
    let id = run(&client, "g-busy", &["sh", "-c", "while :; do :; done"]).await;

    let one = client
        .stats("g-busy", false)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    let s = &one[0];
    assert!(s.memory_usage_bytes > 0, "{s:?}");
    assert!(s.memory_limit_bytes >= s.memory_usage_bytes, "{s:?}");
    assert!(s.pids >= 1, "{s:?}");
    assert!(s.online_cpus >= 1, "{s:?}");
    assert!(s.time_unix_nano > 0, "{s:?}");

    let mut stream = client.stats(&id[..12], true).await.unwrap();
    let mut sample = async || {
        within("a stats sample", stream.next())
            .await
            .unwrap()
            .expect("the stream goes on while the container runs")
    };
    let first = sample().await;
    let second = sample().await;
    assert!(
        second.cpu_usage_nanos > first.cpu_usage_nanos,
        "{first:?} {second:?}"
    );
    assert!(second.time_unix_nano > first.time_unix_nano);
    assert!(second.system_cpu_usage_nanos > first.system_cpu_usage_nanos);

    client.kill_container(&id, "").await.unwrap();
    within("wait", client.wait_container(&id)).await.unwrap();
    // The stream ends with the container.
    loop {
        match within("the end of the stats stream", stream.next()).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => panic!("{e}"),
        }
    }
    match client.stats("g-busy", false).await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("g-busy"), "{m}"),
        other => panic!("{:?}", other.map(|_| "a sample")),
    }
    client.remove_container(&id, false).await.unwrap();
}
