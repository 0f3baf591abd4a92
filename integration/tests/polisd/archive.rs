//! `docker cp` (Engine API v1.41: `HEAD`, `GET` and `PUT /containers/{id}/archive`) through a container's mounts
//! and with extended attributes, as the docker CLI user meets it. The docker cp reference
//! (https://docs.docker.com/reference/cli/docker/container/cp/) says a container's paths are its own: a path under
//! a volume or bind is the volume's or bind's file, for a running or a stopped container, and a symlink is
//! resolved as if the container's root were the host's `/`. Each test drives its own polisd and looks at what a
//! user sees: files copied out, what another container reads, what lands in a bind's host directory, and the
//! extended attributes of what `docker cp` writes on the host.

use super::{assert_nothing_left, run_detached};
use polis_integration::eventually;
use polis_integration::polisd::{IMAGE, Polisd};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A file in the test's scratch dir holding `text`.
fn host_file(d: &Polisd, name: &str, text: &str) -> PathBuf {
    let p = d.scratch().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `docker cp SRC DST`, which must succeed (else the panic shows polisd's log too).
#[track_caller]
fn cp(d: &Polisd, src: &str, dst: &str) {
    let out = d.docker(&["cp", src, dst]);
    assert!(out.success(), "{out}\npolisd's log:\n{}", d.log());
}

/// The text of a file `docker cp` copied out of a container (to a new path in the scratch dir).
#[track_caller]
fn copied_out(d: &Polisd, container_path: &str, args: &[&str]) -> String {
    let out = d.scratch().join(format!("out-{}", unique()));
    let mut a = vec!["cp"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[container_path, s(&out)]);
    d.docker(&a).ok();
    std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("docker cp {container_path} wrote no file at {out:?}: {e}"))
}

fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Stops a container the way a crash would (`docker kill`) and waits for it to have exited (`docker wait`).
#[track_caller]
fn stop(d: &Polisd, name: &str) {
    d.docker(&["kill", name]).ok();
    d.docker(&["wait", name]).ok();
    assert_eq!(d.inspect(name, "{{.State.Status}}"), "exited");
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// setxattr(2) on a host file, which must succeed.
#[track_caller]
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings and a value with its own length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {path:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// getxattr(2) of a host file: None when it has no such attribute.
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: getxattr writes at most buf.len() bytes into buf, which lives across the call.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

/// A named volume written through one container's path is the volume: `docker cp` into `/data` of a running and
/// of a created (never started) container lands in the volume, which another container mounting it reads; an
/// anonymous volume (`-v /anon`) is written the same way, and what `docker cp` copies out of a stopped
/// container's volume, a file or the whole directory, is the volume's content, not the empty rootfs directory
/// under it.
#[test]
fn cp_reaches_named_and_anonymous_volumes() {
    let d = Polisd::start("pd-cp-vol");
    d.pull();
    d.docker(&["volume", "create", "shared"]).ok();
    run_detached(
        &d,
        &[
            "--name",
            "runner",
            "-v",
            "shared:/data",
            "-v",
            "/anon",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let running = host_file(&d, "running.txt", "from the running container\n");
    cp(&d, s(&running), "runner:/data/running.txt");
    let read = d.docker(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        IMAGE,
        "cat",
        "/data/running.txt",
    ]);
    read.ok();
    assert_eq!(read.stdout, "from the running container\n", "{read}");
    cp(&d, s(&running), "runner:/anon/");
    let read = d.docker(&["exec", "runner", "cat", "/anon/running.txt"]);
    read.ok();
    assert_eq!(read.stdout, "from the running container\n", "{read}");
    d.docker(&["rm", "-f", "runner"]).ok();

    // A container that never ran: the same volume, and an anonymous one its command reads.
    d.docker(&[
        "create",
        "--name",
        "idle",
        "-v",
        "shared:/data",
        "-v",
        "/anon2",
        IMAGE,
        "cat",
        "/anon2/note",
    ])
    .ok();
    let stopped = host_file(&d, "stopped.txt", "from the stopped container\n");
    cp(&d, s(&stopped), "idle:/data/stopped.txt");
    let read = d.docker(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        IMAGE,
        "cat",
        "/data/stopped.txt",
    ]);
    read.ok();
    assert_eq!(read.stdout, "from the stopped container\n", "{read}");
    let note = host_file(&d, "note", "a note for the anonymous volume\n");
    cp(&d, s(&note), "idle:/anon2/note");
    let started = d.docker(&["start", "-a", "idle"]);
    started.ok();
    assert_eq!(
        started.stdout, "a note for the anonymous volume\n",
        "{started}"
    );

    // Out of the (now exited) container's volume: one file, and the directory with both.
    assert_eq!(
        copied_out(&d, "idle:/data/running.txt", &[]),
        "from the running container\n"
    );
    let dir = d.scratch().join("data-copy");
    cp(&d, "idle:/data", s(&dir));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["running.txt", "stopped.txt"], "{dir:?}");

    d.docker(&["rm", "-f", "idle"]).ok();
    assert_nothing_left(&d);
    // The views of stopped containers leave no mount point behind.
    let views: Vec<_> = std::fs::read_dir(d.exec_root().join("mnt"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(views.is_empty(), "left under the exec root: {views:?}");
}

/// Binds: `docker cp` out of a read-only bind reads the host directory's files, running or stopped, and a copy
/// into it is refused ("mounted volume is marked read-only", Engine API: 403 when "the volume or container rootfs
/// is marked as read-only") without touching the host directory; a copy into a writable bind of a stopped
/// container lands in the host directory. With `--read-only`, a volume and a tmpfs mount (`--tmpfs`) of the
/// running container are still written, the rootfs is not, and /proc is not the container's files (the docker cp
/// reference: "It isn't possible to copy certain system files such as resources under /proc, /sys, /dev").
#[test]
fn cp_through_binds_tmpfs_and_a_read_only_rootfs() {
    let d = Polisd::start("pd-cp-bind");
    d.pull();
    let host_dir = d.scratch().join("bind-src");
    std::fs::create_dir_all(host_dir.join("sub")).unwrap();
    std::fs::write(host_dir.join("hello.txt"), "hello from the host\n").unwrap();
    std::fs::write(host_dir.join("sub/deep.txt"), "deep\n").unwrap();
    let bind = format!("{}:/srv:ro", host_dir.display());
    run_detached(
        &d,
        &["--name", "binder", "-v", &bind, IMAGE, "sleep", "300"],
    );
    assert_eq!(
        copied_out(&d, "binder:/srv/hello.txt", &[]),
        "hello from the host\n"
    );
    let tree = d.scratch().join("srv-copy");
    cp(&d, "binder:/srv", s(&tree));
    assert_eq!(
        std::fs::read_to_string(tree.join("sub/deep.txt")).unwrap(),
        "deep\n"
    );
    let incoming = host_file(&d, "incoming.txt", "incoming\n");
    d.docker(&["cp", s(&incoming), "binder:/srv/"])
        .fails()
        .stderr_mentions("read-only");
    assert!(
        !host_dir.join("incoming.txt").exists(),
        "a refused copy must not reach the bind's host directory"
    );
    stop(&d, "binder");
    assert_eq!(copied_out(&d, "binder:/srv/sub/deep.txt", &[]), "deep\n");
    d.docker(&["cp", s(&incoming), "binder:/srv/"])
        .fails()
        .stderr_mentions("read-only");

    let rw_dir = d.scratch().join("bind-rw");
    std::fs::create_dir_all(&rw_dir).unwrap();
    let rw = format!("{}:/mnt/rw", rw_dir.display());
    d.docker(&["create", "--name", "rwbind", "-v", &rw, IMAGE, "true"])
        .ok();
    cp(&d, s(&incoming), "rwbind:/mnt/rw/");
    assert_eq!(
        std::fs::read_to_string(rw_dir.join("incoming.txt")).unwrap(),
        "incoming\n"
    );

    run_detached(
        &d,
        &[
            "--name",
            "locked",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "-v",
            "lockvol:/data",
            IMAGE,
            "sh",
            "-c",
            "echo made in tmpfs > /scratch/made; sleep 300",
        ],
    );
    cp(&d, s(&incoming), "locked:/data/");
    cp(&d, s(&incoming), "locked:/scratch/");
    for path in ["/data/incoming.txt", "/scratch/incoming.txt"] {
        let read = d.docker(&["exec", "locked", "cat", path]);
        read.ok();
        assert_eq!(read.stdout, "incoming\n", "{read}");
    }
    eventually(
        "docker cp copies a file the container wrote to its tmpfs",
        Duration::from_secs(20),
        || {
            d.docker(&["exec", "locked", "cat", "/scratch/made"])
                .success()
        },
    );
    assert_eq!(
        copied_out(&d, "locked:/scratch/made", &[]),
        "made in tmpfs\n"
    );
    d.docker(&["cp", s(&incoming), "locked:/etc/"])
        .fails()
        .stderr_mentions("read-only");
    d.docker(&[
        "cp",
        "locked:/proc/cpuinfo",
        s(&d.scratch().join("cpuinfo")),
    ])
    .fails()
    .stderr_mentions("Could not find the file");

    d.docker(&["rm", "-f", "binder", "rwbind", "locked"]).ok();
    assert_nothing_left(&d);
}

/// A symlink in a volume is resolved in the container, never on the host: to `/etc/shadow`, through `../` past
/// the volume's root, or to `/`, it leads to the container's /etc/shadow, for a running and a stopped container
/// (`docker cp -L` follows the link the stat header's `linkTarget` names; without `-L` the link itself is
/// copied), and a copy into a path through such a link writes into the container.
#[test]
fn cp_never_follows_a_symlink_out_of_the_container() {
    let d = Polisd::start("pd-cp-link");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "holder",
            "-v",
            "linked:/data",
            IMAGE,
            "sh",
            "-c",
            "echo container-shadow > /etc/shadow && ln -s /etc/shadow /data/abs \
             && ln -s ../../../../../../../../../../etc/shadow /data/rel && ln -s / /data/root \
             && touch /data/ready && sleep 300",
        ],
    );
    eventually(
        "the container made its links",
        Duration::from_secs(20),
        || {
            d.docker(&["exec", "holder", "cat", "/data/ready"])
                .success()
        },
    );
    let host_shadow = std::fs::read_to_string("/etc/shadow").ok();
    let escape_name = format!("polis-cp-escape-{}.txt", std::process::id());
    let escape = host_file(&d, &escape_name, "must stay in the container\n");
    for state in ["running", "stopped"] {
        for (path, args) in [
            ("holder:/data/abs", &["-L"][..]),
            ("holder:/data/rel", &["-L"][..]),
            ("holder:/data/root/etc/shadow", &[][..]),
        ] {
            let text = copied_out(&d, path, args);
            assert_eq!(
                text, "container-shadow\n",
                "{state}: docker cp {args:?} {path}"
            );
            if let Some(host) = &host_shadow {
                assert_ne!(&text, host, "{state}: {path} read the host's /etc/shadow");
            }
        }
        let link = d.scratch().join(format!("link-{state}"));
        cp(&d, "holder:/data/abs", s(&link));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/etc/shadow"),
            "without -L the link itself is copied"
        );
        cp(&d, s(&escape), "holder:/data/root/tmp/");
        assert!(
            !Path::new("/tmp").join(&escape_name).exists(),
            "{state}: a copy through the volume's link to / wrote the host's /tmp"
        );
        if state == "running" {
            let read = d.docker(&["exec", "holder", "cat", &format!("/tmp/{escape_name}")]);
            read.ok();
            assert_eq!(read.stdout, "must stay in the container\n", "{read}");
            stop(&d, "holder");
        }
    }
    d.docker(&["rm", "-f", "holder"]).ok();
    assert_nothing_left(&d);
}

/// Extended attributes (PAX `SCHILY.xattr.*` records): a `user.*` attribute in an archive given to `docker cp -`
/// (GNU tar's `--xattrs`) is set on the file in the container, and archives of the container's files carry it
/// back, so `docker cp` out sets it on the host; a file's `security.capability`, which the docker CLI sends
/// itself, survives the round trip byte for byte, a newline byte in it included (CAP_DAC_OVERRIDE and
/// CAP_FOWNER are 0x0a); both are kept by a stopped container too.
#[test]
fn cp_carries_extended_attributes_in_and_out() {
    let d = Polisd::start("pd-cp-xattr");
    d.pull();
    run_detached(&d, &["--name", "tags", IMAGE, "sleep", "300"]);
    let src = d.scratch().join("xattr-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("tagged"), "tagged\n").unwrap();
    set_xattr(&src.join("tagged"), "user.polis", b"x");
    let archive = d.scratch().join("tagged.tar");
    let tar = Command::new("tar")
        .args(["--xattrs", "-C", s(&src), "-cf", s(&archive), "tagged"])
        .status()
        .expect("run tar");
    assert!(tar.success(), "tar --xattrs failed: {tar}");
    d.docker_with_input(&["cp", "-", "tags:/tmp"], &std::fs::read(&archive).unwrap())
        .ok();
    // VFS_CAP_REVISION_2 with the effective bit; permitted = CAP_DAC_OVERRIDE | CAP_FOWNER (0x0a).
    let capability: Vec<u8> = vec![
        1, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let capped = host_file(&d, "capped", "capped\n");
    set_xattr(&capped, "security.capability", &capability);
    cp(&d, s(&capped), "tags:/tmp/capped");
    let read = d.docker(&["exec", "tags", "cat", "/tmp/tagged", "/tmp/capped"]);
    read.ok();
    assert_eq!(read.stdout, "tagged\ncapped\n", "{read}");

    for state in ["running", "stopped"] {
        let out = d.scratch().join(format!("xattr-out-{state}"));
        std::fs::create_dir_all(&out).unwrap();
        cp(&d, "tags:/tmp/tagged", &format!("{}/", out.display()));
        cp(&d, "tags:/tmp/capped", &format!("{}/", out.display()));
        assert_eq!(
            std::fs::read_to_string(out.join("tagged")).unwrap(),
            "tagged\n"
        );
        assert_eq!(
            get_xattr(&out.join("tagged"), "user.polis").as_deref(),
            Some(&b"x"[..]),
            "{state}: the user.polis attribute copied in and out"
        );
        assert_eq!(
            get_xattr(&out.join("capped"), "security.capability"),
            Some(capability.clone()),
            "{state}: the file capability copied in and out"
        );
        if state == "running" {
            stop(&d, "tags");
        }
    }
    d.docker(&["rm", "-f", "tags"]).ok();
    assert_nothing_left(&d);
}
