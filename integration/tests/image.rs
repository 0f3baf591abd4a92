//! polis-image against a real registry (Debian's docker-registry 2.8 in a network namespace of the test's own),
//! through a programmable front where the protocol's corners need one (token auth, 429, redirects, broken
//! downloads). Each test reads like a user's session: pull, look at the store, make a bundle, run it.
//!
//! Clauses cited: distribution-spec ("Pulling manifests", "Pulling blobs", Range), image-spec (manifest.md,
//! image-index.md, image-layout.md, layer.md, config.md, conversion.md), Docker's token authentication spec.

use polis_integration::containerd::{Registry, RegistryOptions};
use polis_integration::image_builder::{Compression, Entry, Image, Layer, OciLayout, SkopeoPush};
use polis_integration::registry_front::{CannedResponse, InterruptMode, RegistryFront};
use polis_integration::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn polis_image_path() -> PathBuf {
    workspace_binary("POLIS_IMAGE", "polis-image")
}

/// A registry in a namespace of its own, a store, and a scratch directory; all removed on drop: the registry first,
/// then the namespace (with any polis-image a failed test left running in it), then the directory.
struct Env {
    registry: Registry,
    netns: NetNs,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(tag: &str) -> Option<Env> {
        for (what, path) in [
            ("polis-image (make build)", polis_image_path()),
            (
                "docker-registry",
                PathBuf::from(polis_integration::containerd::REGISTRY),
            ),
            ("skopeo", PathBuf::from("/usr/bin/skopeo")),
            ("umoci", PathBuf::from("/usr/bin/umoci")),
        ] {
            if !path.exists() {
                return missing_peer(what);
            }
        }
        let netns = NetNs::new(tag);
        let registry = Registry::start(&netns);
        Some(Env {
            registry,
            netns,
            dir: temp_dir("polis-it-image-"),
        })
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn layout(&self) -> OciLayout {
        OciLayout::create(&self.dir.path().join("layout"))
    }

    /// `polis-image --root STORE --insecure-registry ... ARGS` inside the namespace, NDJSON progress on stderr.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.netns.command(polis_image_path().to_str().unwrap());
        cmd.arg("--root")
            .arg(self.store())
            .args([
                "--progress",
                "json",
                "--insecure-registry",
                self.registry.address(),
            ])
            .args(args);
        cmd
    }

    fn pi(&self, args: &[&str]) -> Output {
        self.run(self.command(args))
    }

    fn run(&self, cmd: Command) -> Output {
        run_command(cmd, self.dir.path(), TIMEOUT)
    }

    /// Pushes a layout image byte for byte to `REGISTRY/NAME:TAG` and returns that reference.
    fn push(&self, layout: &OciLayout, ref_name: &str, name: &str) -> String {
        let dest = format!("{}/{name}", self.registry.address());
        layout.push_exact(&self.netns, ref_name, &dest, None);
        dest
    }

    fn index_names(&self) -> Vec<String> {
        let index: Value =
            serde_json::from_slice(&fs::read(self.store().join("layout/index.json")).unwrap())
                .unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn blobs(&self) -> Vec<String> {
        dir_names(&self.store().join("layout/blobs/sha256"))
    }

    /// The bundle directory `name`, unbundled on drop.
    fn bundle(&self, image: &str, name: &str, args: &[&str]) -> BundleDir<'_> {
        let dir = self.dir.path().join(name);
        let mut a = vec!["bundle", image, dir.to_str().unwrap()];
        if !args.is_empty() {
            a.push("--");
            a.extend_from_slice(args);
        }
        self.pi(&a).ok();
        BundleDir { env: self, dir }
    }
}

struct BundleDir<'a> {
    env: &'a Env,
    dir: PathBuf,
}

impl BundleDir<'_> {
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn config(&self) -> Value {
        serde_json::from_slice(&fs::read(self.dir.join("config.json")).unwrap()).unwrap()
    }
}

impl Drop for BundleDir<'_> {
    fn drop(&mut self) {
        let mut cmd = Command::new(polis_image_path());
        cmd.arg("--root")
            .arg(self.env.store())
            .arg("unbundle")
            .arg(&self.dir);
        let _ = try_run_command(cmd, self.env.dir.path(), TIMEOUT);
        unmount_below(&self.dir);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A test that failed half-way may leave bundles mounted under the scratch dir.
        unmount_below(self.dir.path());
    }
}

fn unmount_below(dir: &Path) {
    polis_integration::containerd::unmount_below(dir);
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The NDJSON progress events polis-image wrote on stderr.
fn events(out: &Output) -> Vec<Value> {
    out.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect()
}

/// A layer holding Debian's busybox-static as /bin/busybox with its applets, and /etc/passwd and /etc/group.
fn busybox_layer(dir: &Path) -> Layer {
    let rootfs = dir.join("busybox-rootfs");
    make_rootfs(&rootfs);
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/polis:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1001:\nstaff:x:50:app\n",
    )
    .unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar the busybox rootfs");
    Layer::verbatim(out.stdout).compression(Compression::Gzip)
}

fn polis_runc_run(env: &Env, bundle: &BundleDir, id: &str) -> Output {
    let root = env.dir.path().join("runc-root");
    let mut cmd = Command::new(polis_runc_path());
    cmd.arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&bundle.dir)
        .arg(id);
    let out = env.run(cmd);
    let mut del = Command::new(polis_runc_path());
    del.arg("--root").arg(&root).args(["delete", "--force", id]);
    let _ = try_run_command(del, env.dir.path(), TIMEOUT);
    out
}

/// The user's path end to end: an image pulled by polis-image (with progress events), stored in an OCI layout
/// that skopeo and umoci read (image-layout.md), bundled with its config translated (conversion.md: Entrypoint +
/// Cmd, Env, WorkingDir, User through the image's /etc/passwd and /etc/group) and run by polis-runc.
#[test]
fn a_pulled_image_runs_under_polis_runc() {
    let Some(env) = Env::new("img-run") else {
        return;
    };
    let layout = env.layout();
    let image = Image::new()
        .layer(busybox_layer(env.dir.path()))
        .layer(
            Layer::new()
                .dir("srv")
                .file("srv/greeting", "hello from layer two\n"),
        )
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["id; pwd; echo $GREETING; cat greeting"])
        .env("GREETING=env-ok")
        .working_dir("/srv")
        .user("app");
    let built = layout.write_image(&image, "v1");
    let reference = env.push(&layout, "v1", "polis/app:v1");

    let out = env.pi(&["pull", &reference]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        format!("{reference} {}", built.manifest.digest)
    );
    let kinds: Vec<String> = events(&out)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "resolved",
        "layer_start",
        "layer_downloaded",
        "layer_unpacked",
        "done",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event in {kinds:?}"
        );
    }

    let ls = env.pi(&["ls", "--quiet"]);
    assert_eq!(ls.ok().stdout.trim(), reference);
    let inspect = env.pi(&["inspect", &reference]).ok().json();
    assert_eq!(inspect["digest"], built.manifest.digest);
    assert_eq!(inspect["layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["layers"][1]["diffId"], built.true_diff_ids[1]);

    // image-layout.md: other tools read the store.
    let oci = format!("oci:{}:{reference}", env.store().join("layout").display());
    let mut skopeo = Command::new("skopeo");
    skopeo.args(["inspect", &oci]);
    let s = env.run(skopeo);
    assert_eq!(s.ok().json()["Digest"], built.manifest.digest);
    let mut umoci = Command::new("umoci");
    umoci
        .args(["unpack", "--image"])
        .arg(format!(
            "{}:{reference}",
            env.store().join("layout").display()
        ))
        .arg(env.dir.path().join("umoci-bundle"));
    env.run(umoci).ok();
    assert_eq!(
        fs::read_to_string(env.dir.path().join("umoci-bundle/rootfs/srv/greeting")).unwrap(),
        "hello from layer two\n"
    );

    let bundle = env.bundle(&reference, "bundle", &[]);
    let config = bundle.config();
    assert_eq!(
        config["process"]["user"],
        json!({"uid": 1000, "gid": 1001, "additionalGids": [50]})
    );
    let run = polis_runc_run(
        &env,
        &bundle,
        &format!("polis-img-run-{}", std::process::id()),
    );
    run.ok();
    assert!(
        run.stdout
            .contains("uid=1000(app) gid=1001(app) groups=50(staff)"),
        "{run}"
    );
    assert!(
        run.stdout.contains("/srv\nenv-ok\nhello from layer two"),
        "{run}"
    );
}

/// layer.md: whiteouts hide lower files, opaque whiteouts hide a lower directory's contents but not the same
/// layer's, hard links, symlinks, modes with setuid, owners, xattrs and device nodes all arrive as written; the
/// merged rootfs of the bundle is what the container sees.
#[test]
fn layers_combine_by_the_image_spec_rules() {
    let Some(env) = Env::new("img-rules") else {
        return;
    };
    let layout = env.layout();
    let image = Image::new()
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/gone", "lower")
                .dir("opaque")
                .file("opaque/lower-only", "lower")
                .file("keep", "kept")
                .compression(Compression::Gzip),
        )
        .layer(
            Layer::new()
                .whiteout("etc/gone")
                .dir("opaque")
                .file("opaque/upper", "same layer")
                .opaque_whiteout("opaque")
                .entry(Entry::file("bin-suid", "x").mode(0o4755).owner(0, 0))
                .entry(Entry::file("owned", "o").mode(0o640).owner(1234, 4321))
                .entry(Entry::file("with-xattr", "x").xattr("user.polis", "yes"))
                .file("keep-copy", "linked")
                .hard_link("hard", "keep-copy")
                .symlink("abs-link", "/etc/passwd")
                .char_device("dev-null", 1, 3)
                .fifo("pipe")
                .compression(Compression::Zstd),
        )
        .cmd(["/bin/true"]);
    layout.write_image(&image, "rules");
    let reference = env.push(&layout, "rules", "polis/rules:1");
    env.pi(&["pull", &reference]).ok();
    let bundle = env.bundle(&reference, "bundle", &[]);
    let root = bundle.rootfs();
    assert!(
        !root.join("etc/gone").exists(),
        "a whiteout hides the lower file"
    );
    assert_eq!(
        dir_names(&root.join("opaque")),
        ["upper"],
        "opaque hides only the lower layer's entries"
    );
    assert_eq!(fs::read_to_string(root.join("keep")).unwrap(), "kept");
    let suid = fs::metadata(root.join("bin-suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    let owned = fs::metadata(root.join("owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o777),
        (1234, 4321, 0o640)
    );
    assert_eq!(
        xattr(&root.join("with-xattr"), "user.polis"),
        Some(b"yes".to_vec())
    );
    let (a, b) = (
        fs::metadata(root.join("hard")).unwrap(),
        fs::metadata(root.join("keep-copy")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "a hard link is the same file");
    assert_eq!(
        fs::read_link(root.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    let dev = fs::symlink_metadata(root.join("dev-null")).unwrap();
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(root.join("pipe")).unwrap().file_type()
    ));
}

/// manifest.md and Docker's schema 2: OCI and Docker manifests, gzip, zstd and uncompressed layers are pulled and
/// give the same files.
#[test]
fn docker_schema2_zstd_and_uncompressed_images_pull() {
    let Some(env) = Env::new("img-formats") else {
        return;
    };
    let layout = env.layout();
    for (tag, compression) in [("plain", Compression::None), ("zstd", Compression::Zstd)] {
        let image = Image::new()
            .layer(
                Layer::new()
                    .file("hello", format!("hello {tag}\n"))
                    .compression(compression),
            )
            .cmd(["/hello"]);
        layout.write_image(&image, tag);
        env.push(&layout, tag, &format!("polis/formats:{tag}"));
    }
    let docker = Image::new()
        .layer(
            Layer::new()
                .file("hello", "hello docker\n")
                .compression(Compression::Gzip),
        )
        .cmd(["/hello"]);
    layout.write_image(&docker, "docker");
    let dest = format!("{}/polis/formats:docker", env.registry.address());
    let push = SkopeoPush {
        format: Some("v2s2".into()),
        ..SkopeoPush::default()
    };
    layout
        .push_with_skopeo(&env.netns, "docker", &dest, &push)
        .ok();
    for tag in ["plain", "zstd", "docker"] {
        let reference = format!("{}/polis/formats:{tag}", env.registry.address());
        env.pi(&["pull", &reference]).ok();
        let inspect = env.pi(&["inspect", &reference]).ok().json();
        let want_type = if tag == "docker" {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        };
        assert_eq!(inspect["mediaType"], want_type, "{tag}");
        let bundle = env.bundle(&reference, &format!("bundle-{tag}"), &[]);
        assert_eq!(
            fs::read_to_string(bundle.rootfs().join("hello")).unwrap(),
            format!("hello {tag}\n")
        );
    }
}

/// image-index.md: the manifest of the asked platform (os, architecture, variant) is chosen from an index; the
/// host's by default; a platform the index lacks is an error that lists what it has.
#[test]
fn the_platform_is_chosen_from_an_index() {
    let Some(env) = Env::new("img-index") else {
        return;
    };
    let layout = env.layout();
    let images = Image::per_platform(&["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    let built = layout.write_index(&images, "multi");
    let reference = env.push(&layout, "multi", "polis/multi:1");

    env.pi(&["pull", &reference]).ok();
    let inspect = env.pi(&["inspect", &reference]).ok().json();
    assert_eq!(
        inspect["digest"],
        built.for_platform("linux/amd64").unwrap().manifest.digest
    );
    assert_eq!(
        inspect["config"]["config"]["Labels"]["platform"],
        "linux/amd64"
    );

    env.pi(&["pull", "--platform", "linux/arm/v7", &reference])
        .ok();
    let inspect = env.pi(&["inspect", &reference]).ok().json();
    assert_eq!(
        inspect["config"]["config"]["Labels"]["platform"],
        "linux/arm/v7"
    );
    assert_eq!(inspect["platform"]["variant"], "v7");

    let out = env.pi(&["pull", "--platform", "linux/s390x", &reference]);
    out.fails().stderr_mentions("linux/s390x");
    out.stderr_mentions("linux/arm64/v8");
}

/// distribution-spec: the client verifies every digest. A blob whose bytes do not match its digest, and a layer
/// whose content does not match its config DiffID (config.md "rootfs"), fail the pull with the digest named, and
/// the store keeps no image, no bad blob and no unpacked layer of it.
#[test]
fn bad_digests_and_diff_ids_are_refused() {
    let Some(env) = Env::new("img-digest") else {
        return;
    };
    let layout = env.layout();
    let image = Image::new()
        .layer(Layer::new().file("a", "real content"))
        .cmd(["/a"]);
    let built = layout.write_image(&image, "tampered");
    let reference = env.push(&layout, "tampered", "polis/tampered:1");
    let front = RegistryFront::start(&env.netns, env.registry.address());
    let layer = &built.layers[0];
    let fake = vec![b'x'; layer.size as usize];
    front.canned(
        &format!("/v2/polis/tampered/blobs/{}", layer.digest),
        CannedResponse::new(200, "application/octet-stream", fake),
    );
    let via_front = reference.replace(env.registry.address(), &front.address());
    let out = env.pi(&["--insecure-registry", &front.address(), "pull", &via_front]);
    out.fails().stderr_mentions(&layer.digest);
    assert!(env.index_names().is_empty());
    assert!(
        !env.blobs().contains(&layer.digest[7..].to_string()),
        "the bad blob is not kept"
    );
    assert!(
        dir_names(&env.store().join("ingest"))
            .iter()
            .all(|n| !n.ends_with(".partial"))
    );

    let corrupt = Image::new()
        .layer(Layer::new().file("b", "b"))
        .corrupt_diff_id(0)
        .cmd(["/b"]);
    let built = layout.write_image(&corrupt, "diffid");
    let reference = env.push(&layout, "diffid", "polis/diffid:1");
    let out = env.pi(&["pull", &reference]);
    out.fails().stderr_mentions("DiffID");
    assert!(env.index_names().is_empty());
    assert!(
        !env.blobs()
            .contains(&built.layers[0].digest[7..].to_string())
    );
    assert!(
        dir_names(&env.store().join("layers"))
            .iter()
            .all(|n| n.ends_with(".lock")),
        "no unpacked layer kept"
    );
}

/// layer.md and docs/ARCHITECTURE.md: hostile layers (`..` and absolute names, a symlink planted and then written through, a
/// hard link to outside, a bare `.wh.`, an entry larger than its header claims) are refused with an error naming
/// the problem, nothing is written outside the layer, and no image or unpacked layer is kept.
#[test]
fn hostile_layers_are_refused_and_write_nothing_outside() {
    let Some(env) = Env::new("img-hostile") else {
        return;
    };
    let layout = env.layout();
    let target = env.dir.path().join("escaped");
    let up = "../".repeat(20);
    let escape = format!(
        "{up}{}",
        target.display().to_string().trim_start_matches('/')
    );
    let cases: Vec<(&str, Layer, &str)> = vec![
        (
            "dotdot",
            Layer::new().raw(tar::EntryType::Regular, escape.as_bytes(), "", "x"),
            "..",
        ),
        (
            "absolute",
            Layer::new().raw(
                tar::EntryType::Regular,
                target.to_str().unwrap().as_bytes(),
                "",
                "x",
            ),
            "absolute",
        ),
        (
            "symlink-through",
            Layer::new()
                .symlink("evil", env.dir.path().to_str().unwrap())
                .file("evil/escaped", "x"),
            "symlink",
        ),
        (
            "hardlink-out",
            Layer::new().raw(tar::EntryType::Link, "link", escape.as_bytes(), ""),
            "..",
        ),
        ("bare-whiteout", Layer::new().file("dir/.wh.", ""), ".wh."),
        (
            "lying-size",
            Layer::new()
                .lying_size("big", 10, vec![b'z'; 5000])
                .file("after", "x"),
            "",
        ),
    ];
    for (tag, layer, needle) in cases {
        let image = Image::new()
            .layer(layer.compression(Compression::Gzip))
            .cmd(["/x"]);
        layout.write_image(&image, tag);
        let reference = env.push(&layout, tag, &format!("polis/hostile:{tag}"));
        let out = env.pi(&["pull", &reference]);
        out.fails();
        assert!(out.stderr.contains("layer"), "{tag}: {out}");
        if !needle.is_empty() {
            out.stderr_mentions(needle);
        }
        assert!(!target.exists(), "{tag} wrote outside the rootfs");
        assert!(env.index_names().is_empty(), "{tag}: no image is kept");
        assert!(
            dir_names(&env.store().join("layers"))
                .iter()
                .all(|n| n.ends_with(".lock")),
            "{tag}: no unpacked layer is kept"
        );
    }
}

/// `args` run as nobody (uid and gid 65534, no supplementary groups), as any unprivileged local user would: a
/// shell already running as nobody executes them (setpriv itself may reach its program before it drops root).
fn as_nobody(env: &Env, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(args);
    env.run(cmd)
}

/// Every path under `dir`, relative and sorted, directories with a `/` after them.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                found.push(format!("{rel}/"));
                stack.push(path);
            } else {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

/// The store's temporary directories and files (`.tmp-` unpackings, write_atomic's `.NAME.tmp-PID`).
fn temporaries(store: &Path) -> Vec<String> {
    tree(store)
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect()
}

/// The directory in the store's `layers/` whose layer holds `file`.
fn layer_holding(store: &Path, file: &str) -> PathBuf {
    dir_names(&store.join("layers"))
        .into_iter()
        .map(|n| store.join("layers").join(n))
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no unpacked layer holds {file}"))
}

/// Issue 12 (1), moby CVE-2021-41091's class: unpacked layers keep what an image ships, here a setuid-root copy of
/// busybox and a world-writable device node, so the store and bundles are root's alone (0700). An unprivileged
/// user (nobody) who can reach the scratch directory around them cannot execute, read, list or open anything under
/// the store or the bundle. A store and a mounted bundle opened up (as polis-image made them before) are made
/// private again by the next start of polis-image. The bundle still runs under polis-runc.
#[test]
fn the_store_and_bundles_are_out_of_reach_of_other_users() {
    let Some(env) = Env::new("img-private") else {
        return;
    };
    let layout = env.layout();
    let hostile = Layer::new()
        .entry(
            Entry::file("bin/busybox-suid", fs::read(BUSYBOX).unwrap())
                .mode(0o4755)
                .owner(0, 0),
        )
        .entry(Entry::char_device("dev/evil", 1, 3).mode(0o666));
    let image = Image::new()
        .layer(busybox_layer(env.dir.path()))
        .layer(hostile)
        .cmd(["/bin/busybox-suid", "id", "-u"]);
    layout.write_image(&image, "suid");
    let reference = env.push(&layout, "suid", "polis/suid:1");
    env.pi(&["pull", &reference]).ok();
    let bundle = env.bundle(&reference, "bundle", &[]);
    let store = env.store();
    let layer = layer_holding(&store, "bin/busybox-suid");
    for (path, mode) in [
        (layer.join("bin/busybox-suid"), 0o104755),
        (bundle.rootfs().join("bin/busybox-suid"), 0o104755),
        (layer.join("dev/evil"), 0o020666),
        (bundle.rootfs().join("dev/evil"), 0o020666),
    ] {
        assert_eq!(
            fs::symlink_metadata(&path).unwrap().mode(),
            mode,
            "{} arrived as the image ships it",
            path.display()
        );
    }
    let run = polis_runc_run(
        &env,
        &bundle,
        &format!("polis-img-private-{}", std::process::id()),
    );
    assert_eq!(run.ok().stdout.trim(), "0", "the bundle runs: {run}");

    // The user can reach the scratch directory: what stops them below is the store's and the bundle's modes.
    let control = env.dir.path().join("busybox-control");
    fs::copy(BUSYBOX, &control).unwrap();
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755)).unwrap();
    let control = control.to_str().unwrap();
    as_nobody(&env, &[control, "true"]).ok();
    as_nobody(&env, &["cat", control]).ok();
    as_nobody(&env, &["ls", env.dir.path().to_str().unwrap()]).ok();

    let refused = |what: &str| {
        let s = |p: PathBuf| p.display().to_string();
        let rootfs = bundle.rootfs();
        let execs = [
            s(layer.join("bin/busybox-suid")),
            s(rootfs.join("bin/busybox-suid")),
        ];
        for exe in &execs {
            as_nobody(&env, &[exe, "id", "-u"])
                .fails()
                .stderr_mentions("Permission denied");
        }
        let reads = [
            execs[0].clone(),
            execs[1].clone(),
            s(store.join("layout/index.json")),
            s(bundle.dir.join("config.json")),
        ];
        for file in &reads {
            as_nobody(&env, &["cat", file])
                .fails()
                .stderr_mentions("Permission denied");
        }
        for dev in [s(layer.join("dev/evil")), s(rootfs.join("dev/evil"))] {
            for redirect in [": > \"$1\"", ": < \"$1\""] {
                as_nobody(&env, &["/bin/sh", "-c", redirect, "sh", &dev])
                    .fails()
                    .stderr_mentions("Permission denied");
            }
        }
        for dir in [
            s(store.clone()),
            s(store.join("layers")),
            s(layer.clone()),
            s(bundle.dir.clone()),
            s(rootfs.clone()),
        ] {
            let out = as_nobody(&env, &["ls", &dir]);
            out.fails().stderr_mentions("Permission denied");
            assert!(out.stdout.is_empty(), "{what}: nobody listed {dir}: {out}");
        }
    };
    for dir in [
        store.clone(),
        store.join("layout"),
        store.join("layout/blobs/sha256"),
        store.join("ingest"),
        store.join("layers"),
        layer.clone(),
        bundle.dir.clone(),
    ] {
        assert_eq!(
            fs::metadata(&dir).unwrap().mode() & 0o7777,
            0o700,
            "{}",
            dir.display()
        );
    }
    refused("new store");

    // A store and bundle as polis-image made them before: every directory 0755. The next start tightens them.
    let opened = [
        store.clone(),
        store.join("layout"),
        store.join("layers"),
        layer.clone(),
        bundle.dir.clone(),
    ];
    for dir in &opened {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Opened up, the probes see through: the escalation the modes prevent.
    as_nobody(
        &env,
        &["cat", &bundle.dir.join("config.json").display().to_string()],
    )
    .ok();
    let exposed = layer.join("bin/busybox-suid").display().to_string();
    as_nobody(&env, &[&exposed, "true"]).ok();
    env.pi(&["ls"]).ok();
    for dir in &opened {
        assert_eq!(
            fs::metadata(dir).unwrap().mode() & 0o7777,
            0o700,
            "{} tightened",
            dir.display()
        );
    }
    refused("tightened store");
}

/// A small gzip layer that unpacks to `mib` MiB of zeros (a decompression bomb in miniature).
fn zeros_layer(name: &str, mib: usize) -> Layer {
    Layer::new()
        .entry(Entry::file(name, vec![0u8; mib << 20]))
        .compression(Compression::Gzip)
}

/// Issue 12 (2): a small gzip layer that unpacks past `--max-layer-size`, and an image whose layers together pass
/// `--max-image-size`, stop the pull with the layer's digest, the limit and the flag that raises it named, and leave
/// the store as it was: no image, blob, unpacked layer, partial download, temporary directory or lock file of
/// theirs. With the default limits both pull.
#[test]
fn layers_and_images_past_their_size_limits_stop_the_pull_and_leave_nothing() {
    let Some(env) = Env::new("img-limits") else {
        return;
    };
    let layout = env.layout();
    layout.write_image(
        &Image::new().layer(Layer::new().file("f", "f")).cmd(["/f"]),
        "small",
    );
    let small = env.push(&layout, "small", "polis/limits:small");
    env.pi(&["pull", &small]).ok();
    let before = tree(&env.store());

    let bomb = layout.write_image(
        &Image::new().layer(zeros_layer("zeros", 8)).cmd(["/x"]),
        "bomb",
    );
    assert!(
        bomb.layers[0].size < 64 << 10,
        "{} bytes",
        bomb.layers[0].size
    );
    let bomb_ref = env.push(&layout, "bomb", "polis/limits:bomb");
    let out = env.pi(&["pull", "--max-layer-size", "1M", &bomb_ref]);
    out.fails()
        .stderr_mentions(&bomb.layers[0].digest)
        .stderr_mentions("1 MiB")
        .stderr_mentions("uncompressed bytes per layer")
        .stderr_mentions("--max-layer-size");
    assert_eq!(tree(&env.store()), before, "nothing of the bomb stays");

    let wide = layout.write_image(
        &Image::new()
            .layer(zeros_layer("one", 3))
            .layer(zeros_layer("two", 3))
            .cmd(["/x"]),
        "wide",
    );
    let wide_ref = env.push(&layout, "wide", "polis/limits:wide");
    let out = env.pi(&["pull", "--max-image-size", "4M", &wide_ref]);
    out.fails()
        .stderr_mentions(&wide.layers[1].digest)
        .stderr_mentions("4 MiB")
        .stderr_mentions("uncompressed bytes per image")
        .stderr_mentions("--max-image-size");
    assert_eq!(
        tree(&env.store()),
        before,
        "nothing of the wide image stays"
    );

    env.pi(&["pull", &bomb_ref]).ok();
    env.pi(&["pull", &wide_ref]).ok();
    assert_eq!(env.index_names(), [small, bomb_ref, wide_ref]);
}

/// Issue 12 (2): the free-space reserve is checked while a pull writes. On a 32 MiB tmpfs store, a tiny gzip blob
/// (the download passes) that unpacks to 24 MiB stops once less than `--min-free-space 16M` is left, naming the
/// layer and the flag, and leaves the store as it was; with a 1 MiB reserve it pulls.
#[test]
fn the_free_space_reserve_stops_a_pull_while_it_writes() {
    let Some(env) = Env::new("img-reserve") else {
        return;
    };
    let store = env.store();
    fs::create_dir_all(&store).unwrap();
    let mut mount = Command::new("mount");
    mount
        .args(["-t", "tmpfs", "-o", "size=32m", "polis-test-store"])
        .arg(&store);
    env.run(mount).ok();
    let layout = env.layout();
    layout.write_image(
        &Image::new().layer(Layer::new().file("f", "f")).cmd(["/f"]),
        "small",
    );
    let small = env.push(&layout, "small", "polis/reserve:small");
    env.pi(&["pull", "--min-free-space", "1M", &small]).ok();
    let before = tree(&store);

    let big = layout.write_image(
        &Image::new().layer(zeros_layer("zeros", 24)).cmd(["/x"]),
        "big",
    );
    let big_ref = env.push(&layout, "big", "polis/reserve:big");
    let out = env.pi(&["pull", "--min-free-space", "16M", &big_ref]);
    out.fails()
        .stderr_mentions(&big.layers[0].digest)
        .stderr_mentions("has only")
        .stderr_mentions("16 MiB kept free")
        .stderr_mentions("--min-free-space");
    assert_eq!(tree(&store), before, "nothing of the stopped pull stays");
    env.pi(&["pull", "--min-free-space", "1M", &big_ref]).ok();
    assert_eq!(env.index_names(), [small, big_ref]);
}

/// Issue 12 (2): a pull stopped by SIGTERM or SIGINT while it downloads and unpacks (its blob stalled by the
/// front) removes its temporary directory before it exits with 128 + the signal; its partial download stays for
/// the next pull, which resumes and finishes.
#[test]
fn a_pull_stopped_by_sigterm_or_sigint_removes_its_temporary_directories() {
    let Some(env) = Env::new("img-signal") else {
        return;
    };
    let layout = env.layout();
    let (reference, layer, _) = big_image(&env, &layout, "signal", 8);
    let front = RegistryFront::start(&env.netns, env.registry.address());
    let via_front = reference.replace(env.registry.address(), &front.address());
    let partial = env
        .store()
        .join("ingest")
        .join(format!("{}.partial", &layer[7..]));
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        front.interrupt_blob(&layer, 2 << 20, InterruptMode::StallUntilRelease);
        let (child, err) = spawn(
            env.command(&["--insecure-registry", &front.address(), "pull", &via_front]),
            env.dir.path(),
        );
        front.wait_stalled(1, Duration::from_secs(30));
        eventually(
            "the pull unpacks into a temporary directory",
            Duration::from_secs(10),
            || !temporaries(&env.store()).is_empty(),
        );
        // SAFETY: kill(2) of our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = wait_child((child, err), env.dir.path());
        assert_eq!(out.code, Some(code), "{out}");
        out.stderr_mentions("stopped by");
        assert_eq!(temporaries(&env.store()), Vec::<String>::new());
        assert!(
            partial.exists(),
            "the partial download stays for the next pull"
        );
        front.release();
        eventually(
            "the stalled connection is gone",
            Duration::from_secs(10),
            || front.stalled() == 0,
        );
    }
    env.pi(&["--insecure-registry", &front.address(), "pull", &via_front])
        .ok();
    assert!(!partial.exists());
    assert_eq!(env.index_names(), [via_front]);
}

/// Issue 12 (2): `prune` after a crash (a pull killed while it unpacked, plus the lone lock file and write_atomic
/// temporaries a crash can leave) removes the partial download, the unfinished unpacking, the temporary files and
/// every lock file no one holds, and reports the disk space that actually freed: the blocks of what went.
#[test]
fn prune_removes_what_a_crash_left_and_reports_the_bytes_freed() {
    let Some(env) = Env::new("img-crash") else {
        return;
    };
    let layout = env.layout();
    layout.write_image(
        &Image::new()
            .layer(Layer::new().file("f", "kept"))
            .cmd(["/f"]),
        "kept",
    );
    let kept = env.push(&layout, "kept", "polis/crash:kept");
    env.pi(&["pull", &kept]).ok();
    let (reference, layer, _) = big_image(&env, &layout, "crash", 8);
    let front = RegistryFront::start(&env.netns, env.registry.address());
    front.interrupt_blob(&layer, 3 << 20, InterruptMode::StallUntilRelease);
    let via_front = reference.replace(env.registry.address(), &front.address());
    let (mut child, _) = spawn(
        env.command(&["--insecure-registry", &front.address(), "pull", &via_front]),
        env.dir.path(),
    );
    front.wait_stalled(1, Duration::from_secs(30));
    let store = env.store();
    let partial = store.join(format!("ingest/{}.partial", &layer[7..]));
    eventually(
        "the pull has the bytes sent and unpacks",
        Duration::from_secs(10),
        || {
            fs::metadata(&partial).is_ok_and(|m| m.len() == 3 << 20)
                && !temporaries(&store).is_empty()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    front.release();
    let ingest = store.join("ingest");
    let hex = "f".repeat(64);
    fs::write(ingest.join(format!("{hex}.lock")), "").unwrap();
    fs::write(
        store.join(format!("layout/blobs/sha256/.{hex}.tmp-99999")),
        vec![1u8; 100 << 10],
    )
    .unwrap();
    fs::write(store.join("layout/.index.json.tmp-99999"), "{}").unwrap();
    let crashed = tree(&store);
    for left in [
        format!("ingest/{}.partial", &layer[7..]),
        format!("ingest/{}.lock", &layer[7..]),
    ] {
        assert!(crashed.contains(&left), "{left} in {crashed:?}");
    }
    assert!(
        crashed.iter().any(|p| p.starts_with("layers/.tmp-")),
        "{crashed:?}"
    );
    let sizes: std::collections::HashMap<String, (u64, u64)> = crashed
        .iter()
        .map(|p| {
            let m = fs::symlink_metadata(store.join(p.trim_end_matches('/'))).unwrap();
            (p.clone(), (m.blocks() * 512, m.nlink()))
        })
        .collect();

    let out = env.pi(&["prune"]);
    out.ok();
    let after = tree(&store);
    let removed: Vec<&String> = crashed.iter().filter(|p| !after.contains(p)).collect();
    // Nothing in the store has a second link: removing an entry frees its blocks.
    let freed: u64 = removed
        .iter()
        .map(|p| {
            let (bytes, links) = sizes[*p];
            assert!(p.ends_with('/') || links == 1, "{p} has {links} links");
            bytes
        })
        .sum();
    assert!(freed >= 3 << 20, "at least the partial download: {freed}");
    assert!(
        out.stdout.contains(&format!("({freed} bytes)")),
        "prune reports {freed} bytes freed: {out}\nremoved: {removed:?}"
    );
    assert!(out.stdout.contains("1 partial downloads"), "{out}");
    assert!(
        out.stdout.contains("3 temporary directories and files"),
        "{out}"
    );
    assert_eq!(temporaries(&store), Vec::<String>::new());
    assert!(
        after
            .iter()
            .filter(|p| p.starts_with("ingest/") || p.starts_with("layers/"))
            .all(|p| !p.ends_with(".lock") && !p.ends_with(".partial")),
        "no lock file or partial download stays (the store's own lock and gc.lock do): {after:?}"
    );
    assert_eq!(env.index_names(), std::slice::from_ref(&kept));
    let bundle = env.bundle(&kept, "bundle", &[]);
    assert_eq!(
        fs::read_to_string(bundle.rootfs().join("f")).unwrap(),
        "kept"
    );
}

/// Issue 12 (4, last sentence): a blob whose length differs from the size the manifest declares (shorter or
/// longer, by the registry's Content-Length) fails the pull at once with exactly that, instead of retrying as if
/// the connection broke; nothing of it is kept.
#[test]
fn a_blob_of_another_size_than_the_manifest_declares_is_named_as_such() {
    let Some(env) = Env::new("img-size") else {
        return;
    };
    let layout = env.layout();
    let built = layout.write_image(
        &Image::new()
            .layer(Layer::new().file("f", "the real content"))
            .cmd(["/f"]),
        "v1",
    );
    let reference = env.push(&layout, "v1", "polis/size:v1");
    let front = RegistryFront::start(&env.netns, env.registry.address());
    let via_front = reference.replace(env.registry.address(), &front.address());
    let layer = &built.layers[0];
    let real = layout.read_blob(&layer.digest);
    let path = format!("/v2/polis/size/blobs/{}", layer.digest);
    let mut longer = real.clone();
    longer.extend_from_slice(b"trailing junk");
    for body in [real[..real.len() - 10].to_vec(), longer] {
        front.clear_log();
        let len = body.len();
        front.canned(
            &path,
            CannedResponse::new(200, "application/octet-stream", body),
        );
        let out = env.pi(&["--insecure-registry", &front.address(), "pull", &via_front]);
        out.fails()
            .stderr_mentions(&layer.digest)
            .stderr_mentions(&format!("the manifest declares {} bytes", layer.size))
            .stderr_mentions(&format!("the registry sends {len} bytes"));
        assert!(!out.stderr.contains("broke off"), "{out}");
        assert_eq!(front.count("GET", &layer.digest[7..]), 1, "no retry");
        assert!(env.index_names().is_empty());
        assert!(temporaries(&env.store()).is_empty());
        assert!(
            dir_names(&env.store().join("ingest"))
                .iter()
                .all(|n| !n.ends_with(".partial")),
            "no partial download kept"
        );
    }
}

/// Docker's config.json `auths` give Basic credentials to a registry that asks for them; without them the error
/// says what is missing.
#[test]
fn basic_auth_uses_the_docker_config() {
    let Some(env) = Env::new("img-basic") else {
        return;
    };
    let secured = Registry::start_with(
        &env.netns,
        RegistryOptions {
            port: 5001,
            htpasswd: Some(("polis".into(), "s3cret".into())),
        },
    );
    let layout = env.layout();
    layout.write_image(
        &Image::new()
            .layer(Layer::new().file("f", "secret"))
            .cmd(["/f"]),
        "v1",
    );
    let dest = format!("{}/polis/private:v1", secured.address());
    layout.push_exact(&env.netns, "v1", &dest, Some(("polis", "s3cret")));

    let docker = env.dir.path().join("docker");
    fs::create_dir_all(&docker).unwrap();
    let mut cmd = env.command(&["--insecure-registry", secured.address(), "pull", &dest]);
    cmd.env("DOCKER_CONFIG", &docker);
    env.run(cmd).fails().stderr_mentions("docker config");

    let auth = base64_encode(b"polis:s3cret");
    fs::write(
        docker.join("config.json"),
        json!({"auths": {secured.address(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let mut cmd = env.command(&["--insecure-registry", secured.address(), "pull", &dest]);
    cmd.env("DOCKER_CONFIG", &docker);
    env.run(cmd).ok();
    assert_eq!(env.index_names(), std::slice::from_ref(&dest));
    env.pi(&["rm", &dest]).ok();

    // `credHelpers`: docker-credential-NAME on PATH answers `get` with the credentials (docker-credential-helpers
    // protocol: the server on stdin, {"Username","Secret"} on stdout).
    let bin = env.dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-polistest");
    fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> \"$0.asked\"\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"polis\",\"Secret\":\"s3cret\"}' \"$server\"\n",
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        docker.join("config.json"),
        json!({"credHelpers": {secured.address(): "polistest"}}).to_string(),
    )
    .unwrap();
    let mut cmd = env.command(&["--insecure-registry", secured.address(), "pull", &dest]);
    cmd.env("DOCKER_CONFIG", &docker).env(
        "PATH",
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    env.run(cmd).ok();
    assert_eq!(env.index_names(), [dest]);
    let asked = fs::read_to_string(bin.join("docker-credential-polistest.asked")).unwrap();
    assert!(asked.contains(secured.address()), "{asked}");
}

/// The value of extended attribute `name` of `path` (lgetxattr(2)), None when it has none.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as we say.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A pushed image of one layer of `mib` MiB of random data, for the download tests.
fn big_image(env: &Env, layout: &OciLayout, tag: &str, mib: u64) -> (String, String, u64) {
    let image = Image::new()
        .layer(Layer::random("data", mib, 7))
        .cmd(["/data"]);
    let built = layout.write_image(&image, tag);
    let reference = env.push(layout, tag, &format!("polis/big:{tag}"));
    (
        reference,
        built.layers[0].digest.clone(),
        built.layers[0].size,
    )
}

/// Docker token spec: a Bearer challenge is answered with a token from the realm (Basic credentials sent to it),
/// one token per scope for the whole pull; when the registry stops accepting it (401) a new one is fetched. The
/// broken download resumes with a Range request (distribution-spec "Pulling blobs", RFC 9110 Range).
#[test]
fn bearer_tokens_are_cached_and_renewed_and_downloads_resume() {
    let Some(env) = Env::new("img-bearer") else {
        return;
    };
    let layout = env.layout();
    let (reference, layer, _) = big_image(&env, &layout, "bearer", 8);
    let front = RegistryFront::start(&env.netns, env.registry.address());
    front.require_bearer(Some(("polis", "tok3n")));
    front.interrupt_blob(&layer, 3 << 20, InterruptMode::StallUntilRelease);
    let docker = env.dir.path().join("docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        json!({"auths": {front.address(): {"auth": base64_encode(b"polis:tok3n")}}}).to_string(),
    )
    .unwrap();
    let via_front = reference.replace(env.registry.address(), &front.address());
    let mut cmd = env.command(&["--insecure-registry", &front.address(), "pull", &via_front]);
    cmd.env("DOCKER_CONFIG", &docker);
    let child = spawn(cmd, env.dir.path());
    front.wait_stalled(1, Duration::from_secs(30));
    let granted_before = front.token_requests().len();
    assert_eq!(
        granted_before,
        1,
        "one token for the one scope: {:?}",
        front.token_requests()
    );
    front.revoke_tokens();
    front.release();
    let out = wait_child(child, env.dir.path());
    assert!(out.success(), "{out}");
    let tokens = front.token_requests();
    assert_eq!(tokens.len(), 2, "renewed once after the 401: {tokens:?}");
    assert!(
        tokens
            .iter()
            .all(|t| t.basic_user.as_deref() == Some("polis") && t.granted)
    );
    assert!(
        tokens[0]
            .scopes
            .iter()
            .any(|s| s == "repository:polis/big:pull"),
        "{tokens:?}"
    );
    let ranges: Vec<String> = front
        .requests()
        .iter()
        .filter_map(|r| r.range.clone())
        .collect();
    assert!(
        ranges
            .iter()
            .any(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "resumed with Range: {ranges:?}"
    );
    assert_eq!(env.index_names(), [via_front]);
}

fn spawn(mut cmd: Command, scratch: &Path) -> (Child, PathBuf) {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let err = scratch.join(format!("spawned-{n}.err"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap());
    (cmd.spawn().expect("spawn polis-image"), err)
}

fn wait_child((mut child, err): (Child, PathBuf), _scratch: &Path) -> Output {
    // A pull that never ends is reported as the failed Output below (with its stderr), not as a panic here.
    let status = poll_until(TIMEOUT, || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Output {
        cmd: "polis-image pull (spawned)".into(),
        code: status.and_then(|s| s.code()),
        signal: None,
        stdout: String::new(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// An interrupted pull (the process killed mid-blob) resumes after a restart from its partial blob with an HTTP
/// Range request, and the digest is checked over the whole blob.
#[test]
fn a_killed_pull_resumes_from_its_partial_blob() {
    let Some(env) = Env::new("img-resume") else {
        return;
    };
    let layout = env.layout();
    let (reference, layer, size) = big_image(&env, &layout, "resume", 8);
    let front = RegistryFront::start(&env.netns, env.registry.address());
    front.interrupt_blob(&layer, 5 << 20, InterruptMode::StallUntilRelease);
    let via_front = reference.replace(env.registry.address(), &front.address());
    let (mut child, _) = spawn(
        env.command(&["--insecure-registry", &front.address(), "pull", &via_front]),
        env.dir.path(),
    );
    front.wait_stalled(1, Duration::from_secs(30));
    let partial = env
        .store()
        .join("ingest")
        .join(format!("{}.partial", &layer[7..]));
    eventually(
        "the partial blob has the bytes sent",
        Duration::from_secs(10),
        || {
            fs::metadata(&partial)
                .map(|m| m.len() == 5 << 20)
                .unwrap_or(false)
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    front.release();
    front.clear_log();
    env.pi(&["--insecure-registry", &front.address(), "pull", &via_front])
        .ok();
    let blob_gets: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&layer[7..]))
        .collect();
    assert_eq!(blob_gets.len(), 1, "{blob_gets:?}");
    assert_eq!(blob_gets[0].range.as_deref(), Some("bytes=5242880-"));
    assert_eq!(
        blob_gets[0].body_bytes,
        size - (5 << 20),
        "only the rest was sent"
    );
    assert!(!partial.exists());
    assert_eq!(env.index_names(), [via_front]);
}

/// Two pulls of the same image at once download each blob once: the second waits for the first's download and
/// uses it.
#[test]
fn concurrent_pulls_download_a_blob_once() {
    let Some(env) = Env::new("img-concurrent") else {
        return;
    };
    let layout = env.layout();
    let (reference, layer, _) = big_image(&env, &layout, "shared", 8);
    let front = RegistryFront::start(&env.netns, env.registry.address());
    front.interrupt_blob(&layer, 2 << 20, InterruptMode::StallUntilRelease);
    let via_front = reference.replace(env.registry.address(), &front.address());
    let args = ["--insecure-registry", &front.address(), "pull", &via_front];
    let first = spawn(env.command(&args), env.dir.path());
    front.wait_stalled(1, Duration::from_secs(30));
    let second = spawn(env.command(&args), env.dir.path());
    // Once the second pull waits for the blob's download lock (the first holds it while its download stalls), let
    // the first one go on (it resumes with Range).
    let lock = env.store().join(format!("ingest/{}.lock", &layer[7..]));
    eventually(
        "the second pull waits for the blob's download lock",
        Duration::from_secs(30),
        || waiting_for_flock(second.0.id() as i32, &lock),
    );
    front.release();
    let (a, b) = (
        wait_child(first, env.dir.path()),
        wait_child(second, env.dir.path()),
    );
    assert!(a.success() && b.success(), "{a}\n{b}");
    let gets = front
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&layer[7..]))
        .count();
    assert_eq!(gets, 2, "the first pull's GET and its resumption only");
}

/// The protocol's other corners: 429 with Retry-After is waited out; a blob redirect to another host does not get
/// the Authorization header; plain HTTP only for registries named insecure; schema 1 refused with a clear message;
/// an unknown image or tag reports the registry's answer.
#[test]
fn throttling_redirects_insecure_and_schema1() {
    let Some(env) = Env::new("img-proto") else {
        return;
    };
    let layout = env.layout();
    layout.write_image(
        &Image::new().layer(Layer::new().file("f", "f")).cmd(["/f"]),
        "v1",
    );
    let reference = env.push(&layout, "v1", "polis/proto:v1");
    let front = RegistryFront::start(&env.netns, env.registry.address());
    let via_front = reference.replace(env.registry.address(), &front.address());
    let front_address = front.address();
    let pull = |extra: &[&str], r: &str| {
        let mut args = vec!["--insecure-registry", front_address.as_str()];
        args.extend_from_slice(extra);
        args.extend(["pull", r]);
        env.pi(&args)
    };

    front.throttle("/manifests/", 1, 2);
    let started = Instant::now();
    pull(&[], &via_front).ok();
    let times = front.request_times("/manifests/");
    assert!(
        times.len() >= 2 && times[1] - times[0] >= Duration::from_secs(2),
        "waited Retry-After"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));

    env.pi(&["rm", &via_front]).ok();
    front.require_bearer(None);
    front.redirect_blobs(true);
    pull(&[], &via_front).ok();
    let redirected = front.redirected_requests();
    assert!(!redirected.is_empty(), "blobs were redirected");
    assert!(
        redirected.iter().all(|r| r.authorization.is_none()),
        "{redirected:?}"
    );

    let mut plain = env.netns.command(polis_image_path().to_str().unwrap());
    plain
        .arg("--root")
        .arg(env.store())
        .args(["pull", &reference]);
    env.run(plain)
        .fails()
        .stderr_mentions("--insecure-registry");

    front.canned(
        "/v2/polis/old/manifests/v1",
        CannedResponse::schema1_manifest("polis/old", "v1"),
    );
    let old = format!("{}/polis/old:v1", front.address());
    pull(&[], &old).fails().stderr_mentions("schema 1");

    let missing = format!("{}/polis/nothing:v1", env.registry.address());
    env.pi(&["pull", &missing])
        .fails()
        .stderr_mentions("MANIFEST_UNKNOWN");
}

/// `rm` removes an image and the content only it used; what another image shares stays. `prune` removes
/// partial downloads. Two bundles of one image share its unpacked layers (overlayfs), and each sees only its own
/// writes.
#[test]
fn rm_prune_and_shared_layers() {
    let Some(env) = Env::new("img-gc") else {
        return;
    };
    let layout = env.layout();
    let base = Layer::new()
        .file("base", "shared base")
        .compression(Compression::Gzip);
    let one = Image::new()
        .layer(base.clone())
        .layer(Layer::new().file("one", "1"))
        .cmd(["/one"]);
    let two = Image::new()
        .layer(base)
        .layer(Layer::new().file("two", "2"))
        .cmd(["/two"]);
    let b1 = layout.write_image(&one, "one");
    let b2 = layout.write_image(&two, "two");
    let r1 = env.push(&layout, "one", "polis/gc:one");
    let r2 = env.push(&layout, "two", "polis/gc:two");
    env.pi(&["pull", &r1]).ok();
    env.pi(&["pull", &r2]).ok();
    assert_eq!(
        dir_names(&env.store().join("layers"))
            .iter()
            .filter(|n| !n.ends_with(".lock"))
            .count(),
        3
    );

    {
        let x = env.bundle(&r1, "x", &[]);
        let y = env.bundle(&r1, "y", &[]);
        fs::write(x.rootfs().join("written"), "only in x").unwrap();
        assert!(!y.rootfs().join("written").exists());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let lower = |dir: &Path| {
            let d = dir.to_str().unwrap().to_string();
            mountinfo
                .lines()
                .find(|l| l.split(' ').nth(4) == Some(&d))
                .and_then(|l| l.split("lowerdir=").nth(1))
                .map(|s| s.split(',').next().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(
            lower(&x.rootfs()),
            lower(&y.rootfs()),
            "both bundles use the same layer directories"
        );
        // A layer a mounted bundle uses survives rm of its image until the bundle is gone.
        env.pi(&["rm", &r1]).ok();
        assert!(fs::read_to_string(x.rootfs().join("one")).is_ok());
    }
    let blobs = env.blobs();
    for gone in [&b1.layers[1].digest, &b1.manifest.digest] {
        assert!(
            !blobs.contains(&gone[7..].to_string()),
            "{gone} removed with its image"
        );
    }
    for kept in [
        &b2.layers[0].digest,
        &b2.layers[1].digest,
        &b2.manifest.digest,
    ] {
        assert!(
            blobs.contains(&kept[7..].to_string()),
            "{kept} is still used by {r2}"
        );
    }
    env.pi(&["prune"]).ok();
    assert_eq!(
        dir_names(&env.store().join("layers"))
            .iter()
            .filter(|n| !n.ends_with(".lock"))
            .count(),
        2
    );
    fs::write(
        env.store()
            .join("ingest")
            .join(format!("{}.partial", "e".repeat(64))),
        "half",
    )
    .unwrap();
    let pruned = env.pi(&["prune"]);
    assert!(
        pruned.ok().stdout.contains("1 partial downloads"),
        "{pruned}"
    );
    assert_eq!(env.index_names(), [r2]);
}

/// Bad input: a malformed reference, an unknown image, a bundle into a non-empty directory and a bad platform are
/// errors that name the problem, exit non-zero and change nothing.
#[test]
fn bad_input_names_the_problem_and_changes_nothing() {
    let Some(env) = Env::new("img-bad") else {
        return;
    };
    env.pi(&["pull", "UPPER/case"])
        .fails()
        .stderr_mentions("invalid image reference");
    env.pi(&["pull", ""])
        .fails()
        .stderr_mentions("invalid image reference");
    env.pi(&["pull", "--platform", "linux", "busybox"])
        .fails()
        .stderr_mentions("OS/ARCH");
    env.pi(&["inspect", "polis/none:1"])
        .fails()
        .stderr_mentions("not in the store");
    env.pi(&["rm", "polis/none:1"])
        .fails()
        .stderr_mentions("not in the store");
    let layout = env.layout();
    layout.write_image(
        &Image::new().layer(Layer::new().file("f", "f")).cmd(["/f"]),
        "v1",
    );
    let reference = env.push(&layout, "v1", "polis/bad:v1");
    env.pi(&["pull", &reference]).ok();
    let full = env.dir.path().join("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("mine"), "keep").unwrap();
    env.pi(&["bundle", &reference, full.to_str().unwrap()])
        .fails()
        .stderr_mentions("not empty");
    assert_eq!(dir_names(&full), ["mine"]);
    env.pi(&["unbundle", full.to_str().unwrap()])
        .fails()
        .stderr_mentions("not a bundle made by");
    assert_eq!(dir_names(&full), ["mine"]);
    let no_cmd = Image::new().layer(Layer::new().file("f", "f"));
    layout.write_image(&no_cmd, "nocmd");
    let reference = env.push(&layout, "nocmd", "polis/bad:nocmd");
    env.pi(&["pull", &reference]).ok();
    let dir = env.dir.path().join("nocmd");
    env.pi(&["bundle", &reference, dir.to_str().unwrap()])
        .fails()
        .stderr_mentions("no Entrypoint or Cmd");
    assert!(!dir.exists(), "a failed bundle leaves nothing");
}

/// Images made by the usual tools: built with umoci, pushed by skopeo as OCI with zstd layers and as a Docker
/// manifest list (`--format v2s2 --all`); pulled by tag and by digest (a reference pinned by digest is stored
/// under that name, distribution-spec "Pulling manifests").
#[test]
fn umoci_built_and_skopeo_pushed_images_pull_by_tag_and_digest() {
    let Some(env) = Env::new("img-umoci") else {
        return;
    };
    let layout_dir = env.dir.path().join("umoci-layout");
    let umoci = |args: &[&str]| {
        let mut cmd = Command::new("umoci");
        cmd.args(args);
        env.run(cmd).ok();
    };
    let image = format!("{}:v1", layout_dir.display());
    umoci(&["init", "--layout", layout_dir.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    let unpacked = env.dir.path().join("umoci-bundle");
    umoci(&["unpack", "--image", &image, unpacked.to_str().unwrap()]);
    fs::write(unpacked.join("rootfs/hello"), "made by umoci\n").unwrap();
    umoci(&["repack", "--image", &image, unpacked.to_str().unwrap()]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/hello",
        "--config.env",
        "MADE_BY=umoci",
    ]);
    let layout = OciLayout::create(&layout_dir);
    let dest = format!("{}/polis/umoci:v1", env.registry.address());
    let push = SkopeoPush {
        format: Some("oci".into()),
        compress: Some(Compression::Zstd),
        ..SkopeoPush::default()
    };
    layout.push_with_skopeo(&env.netns, "v1", &dest, &push).ok();

    let out = env.pi(&["pull", &dest]);
    let digest = out
        .ok()
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let inspect = env.pi(&["inspect", &dest]).ok().json();
    assert_eq!(
        inspect["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(inspect["config"]["config"]["Env"][0], "MADE_BY=umoci");

    let pinned = format!("{}/polis/umoci@{digest}", env.registry.address());
    env.pi(&["pull", &pinned]).ok();
    assert_eq!(env.index_names(), [dest.clone(), pinned.clone()]);
    let bundle = env.bundle(&pinned, "bundle", &[]);
    assert_eq!(
        fs::read_to_string(bundle.rootfs().join("hello")).unwrap(),
        "made by umoci\n"
    );
    let wrong = format!(
        "{}/polis/umoci@sha256:{}",
        env.registry.address(),
        "0".repeat(64)
    );
    env.pi(&["pull", &wrong])
        .fails()
        .stderr_mentions("MANIFEST_UNKNOWN");

    // A Docker manifest list, converted by skopeo from an OCI index.
    let images = Image::per_platform(&["linux/amd64", "linux/arm64/v8"]);
    let built = OciLayout::create(&env.dir.path().join("index-layout"));
    built.write_index(&images, "multi");
    let list = format!("{}/polis/list:v1", env.registry.address());
    let push = SkopeoPush {
        format: Some("v2s2".into()),
        all: true,
        ..SkopeoPush::default()
    };
    built
        .push_with_skopeo(&env.netns, "multi", &list, &push)
        .ok();
    env.pi(&["pull", "--platform", "linux/arm64/v8", &list])
        .ok();
    let inspect = env.pi(&["inspect", &list]).ok().json();
    assert_eq!(
        inspect["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        inspect["config"]["config"]["Labels"]["platform"],
        "linux/arm64/v8"
    );
}

/// On a terminal, a pull shows a progress bar per layer instead of NDJSON events.
#[test]
fn a_terminal_gets_progress_bars() {
    let Some(env) = Env::new("img-tty") else {
        return;
    };
    let layout = env.layout();
    let (reference, layer, _) = big_image(&env, &layout, "tty", 4);
    let line = format!(
        "{} --root {} --insecure-registry {} pull {reference}",
        polis_image_path().display(),
        env.store().display(),
        env.registry.address()
    );
    let mut cmd = env.netns.command("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    let out = env.run(cmd);
    out.ok();
    let screen = out.stdout.replace('\r', "\n");
    assert!(
        screen.contains(&layer[7..19]),
        "a bar names the layer: {screen:?}"
    );
    assert!(screen.contains("unpacked"), "{screen:?}");
    assert!(
        !screen.contains("\"event\""),
        "no NDJSON on a terminal: {screen:?}"
    );
}

/// Garbage collection never takes what a running pull has fetched but not named yet: `prune` waits for the pull,
/// and the image is whole afterwards.
#[test]
fn prune_waits_for_a_running_pull() {
    let Some(env) = Env::new("img-prune-pull") else {
        return;
    };
    let layout = env.layout();
    let image = Image::new()
        .layer(Layer::new().file("small", "first layer"))
        .layer(Layer::random("data", 4, 9))
        .cmd(["/data"]);
    let built = layout.write_image(&image, "v1");
    let reference = env.push(&layout, "v1", "polis/prune:v1");
    let front = RegistryFront::start(&env.netns, env.registry.address());
    front.interrupt_blob(
        &built.layers[1].digest,
        1 << 20,
        InterruptMode::StallUntilRelease,
    );
    let via_front = reference.replace(env.registry.address(), &front.address());
    let pull = spawn(
        env.command(&["--insecure-registry", &front.address(), "pull", &via_front]),
        env.dir.path(),
    );
    front.wait_stalled(1, Duration::from_secs(30));
    let (mut prune, _) = spawn(env.command(&["prune"]), env.dir.path());
    // The pull holds gc.lock shared while it fetches content no image names yet; prune takes it exclusively.
    eventually(
        "prune waits for the running pull's shared gc.lock",
        Duration::from_secs(30),
        || waiting_for_flock(prune.id() as i32, &env.store().join("gc.lock")),
    );
    assert!(
        prune.try_wait().unwrap().is_none(),
        "prune waits while a pull runs"
    );
    front.release();
    let out = wait_child(pull, env.dir.path());
    assert!(out.success(), "{out}");
    assert!(prune.wait().unwrap().success());
    for blob in built.layers.iter().chain([&built.config, &built.manifest]) {
        assert!(
            env.blobs().contains(&blob.digest[7..].to_string()),
            "{} kept",
            blob.digest
        );
    }
    let bundle = env.bundle(&via_front, "bundle", &[]);
    assert_eq!(
        fs::read_to_string(bundle.rootfs().join("small")).unwrap(),
        "first layer"
    );
}

/// One whiteout case of [`whiteouts_and_opaque_directories_match_umoci`]: an image, and paths that the image-spec
/// says its rootfs holds or lacks (checked on umoci's unpack, so that both sides are also checked against the spec).
struct WhiteoutCase {
    name: &'static str,
    image: Image,
    present: &'static [&'static str],
    absent: &'static [&'static str],
}

fn whiteout_cases() -> Vec<WhiteoutCase> {
    let lower = || {
        Layer::new()
            .dir("etc")
            .file("etc/passwd", "root:x:0:0::/:/bin/sh\n")
            .dir("usr")
            .dir("usr/bin")
            .entry(Entry::file("usr/bin/tool", "#!/bin/sh\n").mode(0o755))
            .file("top", "top")
            .symlink("link", "top")
            .fifo("pipe")
    };
    vec![
        // layer.md "Opaque Whiteout" at a layer's root: everything below is hidden; the layer's own entries stay
        // whatever their order around the marker, and the layers above add to it.
        WhiteoutCase {
            name: "root-opaque",
            image: Image::new()
                .layer(lower())
                .layer(
                    Layer::new()
                        .file("before", "listed before the marker")
                        .opaque_whiteout("")
                        .dir("etc")
                        .file("etc/hostname", "opaque\n"),
                )
                .layer(Layer::new().file("above", "a later layer")),
            present: &["before", "etc/hostname", "above"],
            absent: &["etc/passwd", "usr", "top", "link", "pipe"],
        },
        WhiteoutCase {
            name: "root-opaque-twice",
            image: Image::new()
                .layer(lower())
                .layer(
                    Layer::new()
                        .opaque_whiteout("")
                        .file("middle", "hidden again"),
                )
                .layer(
                    Layer::new()
                        .entry(Entry::dir("usr").mode(0o750).owner(7, 7))
                        .file("usr/last", "last")
                        .opaque_whiteout(""),
                ),
            present: &["usr/last"],
            absent: &["middle", "top", "usr/bin"],
        },
        // layer.md "Whiteouts": its example (a/.wh..wh..opq, in both orders); an opaque marker in a directory
        // the layer has no entry for, whose lower owner and mode stay; an opaque directory hides only the lower
        // layers' children.
        WhiteoutCase {
            name: "nested-opaque",
            image: Image::new()
                .layer(
                    Layer::new()
                        .dir("a")
                        .dir("a/b")
                        .dir("a/b/c")
                        .file("a/b/c/bar", "bar")
                        .file("a/keep", "lower")
                        .dir("p")
                        .dir("p/q")
                        .file("p/q/r", "r")
                        .entry(Entry::dir("x").mode(0o750).owner(1000, 1000))
                        .entry(Entry::dir("x/y").mode(0o700).owner(1000, 1000))
                        .file("x/y/old", "old")
                        .file("x/other", "other"),
                )
                .layer(
                    Layer::new()
                        .dir("a")
                        .opaque_whiteout("a")
                        .dir("a/b")
                        .dir("a/b/c")
                        .file("a/b/c/foo", "foo")
                        .dir("p")
                        .dir("p/q")
                        .file("p/q/new", "new")
                        .opaque_whiteout("p")
                        .opaque_whiteout("x/y")
                        .file("x/y/fresh", "fresh"),
                ),
            present: &["a/b/c/foo", "p/q/new", "x/y/fresh", "x/other"],
            absent: &["a/b/c/bar", "a/keep", "p/q/r", "x/y/old"],
        },
        // layer.md "Whiteouts": a whiteout of a lower directory removes it with everything below it; a whiteout in
        // a directory the layer has no entry for leaves that directory's owner and mode as they were.
        WhiteoutCase {
            name: "whiteout-dir",
            image: Image::new()
                .layer(
                    Layer::new()
                        .dir("d")
                        .dir("d/sub")
                        .file("d/sub/deep", "deep")
                        .file("d/file", "file")
                        .symlink("to-d", "d")
                        .entry(Entry::dir("s").mode(0o700).owner(33, 33))
                        .file("s/gone", "gone")
                        .entry(Entry::file("s/kept", "kept").owner(33, 33)),
                )
                .layer(
                    Layer::new()
                        .whiteout("d")
                        .whiteout("s/gone")
                        .whiteout("to-d"),
                ),
            present: &["s/kept"],
            absent: &["d", "to-d", "s/gone"],
        },
        // layer.md "Whiteouts": "Whiteout files MUST only apply to resources in lower/parent layers", so a path the
        // layer makes again after its whiteout (a directory, a directory only implied by an entry in it, a file over
        // a lower directory, a directory over a lower file), or before it, holds this layer's content alone; a path
        // whited out in one layer and made again in a later one is the later one's.
        WhiteoutCase {
            name: "recreate",
            image: Image::new()
                .layer(
                    Layer::new()
                        .dir("d")
                        .file("d/old", "old")
                        .dir("e")
                        .file("e/old", "old")
                        .dir("f")
                        .file("f/x", "x")
                        .file("g", "a file below")
                        .dir("h")
                        .file("h/old", "old")
                        .file("k", "k1")
                        .dir("m")
                        .file("m/old", "old"),
                )
                .layer(
                    Layer::new()
                        .whiteout("d")
                        .entry(Entry::dir("d").mode(0o700).owner(5, 5))
                        .file("d/new", "new")
                        .whiteout("e")
                        .file("e/z", "z")
                        .whiteout("f")
                        .file("f", "now a file")
                        .whiteout("g")
                        .dir("g")
                        .file("g/y", "y")
                        .dir("h")
                        .file("h/kept", "kept")
                        .whiteout("h")
                        .whiteout("k")
                        .whiteout("m"),
                )
                .layer(
                    Layer::new()
                        .entry(Entry::file("k", "k3").mode(0o600))
                        .dir("m")
                        .file("m/new", "new"),
                ),
            present: &["d/new", "e/z", "f", "g/y", "h/kept", "k", "m/new"],
            absent: &["d/old", "e/old", "f/x", "h/old", "m/old"],
        },
        // layer.md "Hardlinks": a link to a file of a lower layer (in a directory the layer has no entry for, whose
        // owner and mode stay), and to one in a directory it does list; a later layer that replaces one name of a
        // hard-linked pair, or whites it out, leaves the other name with the old file.
        WhiteoutCase {
            name: "hardlinks",
            image: Image::new()
                .layer(
                    Layer::new()
                        .dir("bin")
                        .entry(
                            Entry::file("bin/tool", "#!/bin/sh\necho tool\n")
                                .mode(0o4755)
                                .owner(10, 10),
                        )
                        .entry(
                            Entry::dir("lib")
                                .mode(0o750)
                                .owner(2, 2)
                                .xattr("user.polis", "lib"),
                        )
                        .entry(Entry::file("lib/libx.so", "ELF").mode(0o640).owner(2, 2))
                        .file("pair", "pair v1")
                        .hard_link("pair-link", "pair")
                        .file("w1", "w")
                        .hard_link("w2", "w1"),
                )
                .layer(
                    Layer::new()
                        .dir("bin")
                        .hard_link("bin/tool-link", "bin/tool")
                        .hard_link("libx-link", "lib/libx.so")
                        .file("pair", "pair v2")
                        .whiteout("w1"),
                ),
            present: &["bin/tool-link", "libx-link", "pair-link", "w2"],
            absent: &["w1"],
        },
    ]
}

/// What a tree walk sees of every entry below `root` (not `root` itself), never following a symlink: path ->
/// type, mode, owner, then per type size, content, mtime, symlink target or device number, and `user.` xattrs;
/// non-directories that share an inode also list the names they share it with.
fn describe_tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = std::collections::BTreeMap::new();
    let mut inodes: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let rel = rel.join(entry.unwrap().file_name());
            let path = root.join(&rel);
            let key = rel.to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let what = if t.is_dir() {
                dirs.push(rel);
                "dir".to_string()
            } else if t.is_file() {
                let data = fs::read(&path).unwrap();
                let content = if data.len() <= 64 {
                    format!("{:?}", String::from_utf8_lossy(&data))
                } else {
                    polis_integration::image_builder::sha256_digest(&data)
                };
                format!("file size={} {content} mtime={}", m.size(), m.mtime())
            } else if t.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                format!("symlink -> {} mtime={}", target.display(), m.mtime())
            } else if t.is_char_device() || t.is_block_device() {
                format!("device rdev={:#x} mtime={}", m.rdev(), m.mtime())
            } else if t.is_fifo() {
                format!("fifo mtime={}", m.mtime())
            } else {
                format!("other {:?}", t)
            };
            if !t.is_dir() {
                inodes.entry(m.ino()).or_default().push(key.clone());
            }
            let mut names = user_xattrs(&path);
            names.sort();
            out.insert(
                key,
                format!(
                    "{what} mode={:o} owner={}:{} xattrs={names:?}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    for mut group in inodes.into_values().filter(|g| g.len() > 1) {
        group.sort();
        for name in &group {
            let d = out.get_mut(name).unwrap();
            d.push_str(&format!(" linked={group:?}"));
        }
    }
    out
}

/// The `user.` extended attributes of `path` (not followed), as `name=value`.
fn user_xattrs(path: &Path) -> Vec<String> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: a NUL-terminated path and a live buffer of buf.len() bytes.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|name| name.starts_with(b"user."))
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let value = xattr(path, &name).unwrap_or_default();
            format!("{name}={}", String::from_utf8_lossy(&value))
        })
        .collect()
}

/// image-spec layer.md "Whiteouts" and "Opaque Whiteout", differentially: images whose layers white out and
/// make opaque (an opaque whiteout at a layer's root, once and twice; nested opaque directories in both orders
/// the spec shows; a whiteout of a lower directory; paths made again after their whiteout, in the same layer
/// and a later one; hard links to lower layers' files, and hard-linked pairs split by a later layer) are pushed
/// to the registry, pulled and bundled by polis-image, and the mounted bundle rootfs (overlayfs over the store's
/// shared layers) must equal `umoci unpack` of the same image, a tree walk on each: the same paths, types,
/// modes, owners, sizes, contents, mtimes, symlink targets, devices, `user.` xattrs and hard-link groups. umoci
/// 0.4.7 cannot unpack zstd, so the layers are gzip.
#[test]
fn whiteouts_and_opaque_directories_match_umoci() {
    let Some(env) = Env::new("img-whiteouts") else {
        return;
    };
    let layout = env.layout();
    let mut differences = Vec::new();
    for case in whiteout_cases() {
        let name = case.name;
        layout.write_image(&case.image.cmd(["/bin/true"]), name);
        let reference = env.push(&layout, name, &format!("polis/whiteouts:{name}"));
        let pull = env.pi(&["pull", &reference]);
        if !pull.success() {
            differences.push(format!("{name}: the pull failed: {pull}"));
            continue;
        }
        let bundle = env.bundle(&reference, &format!("bundle-{name}"), &[]);
        let ours = describe_tree(&bundle.rootfs());

        // umoci makes the directories a layer implies 0777 less the umask: give it the usual one.
        let umoci_bundle = env.dir.path().join(format!("umoci-{name}"));
        let mut umoci = Command::new("umoci");
        umoci
            .args(["unpack", "--image"])
            .arg(format!("{}:{name}", layout.dir().display()))
            .arg(&umoci_bundle);
        // SAFETY: umask(2) is async-signal-safe and touches nothing else of the forked child.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut umoci, || {
                libc::umask(0o022);
                Ok(())
            });
        }
        env.run(umoci).ok();
        let theirs = describe_tree(&umoci_bundle.join("rootfs"));

        for path in case.present {
            assert!(theirs.contains_key(*path), "{name}: umoci has no {path}");
        }
        for path in case.absent {
            assert!(!theirs.contains_key(*path), "{name}: umoci has {path}");
        }
        let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
        for key in keys {
            let (a, b) = (ours.get(key), theirs.get(key));
            if a != b {
                differences.push(format!(
                    "{name}: {key}\n  polis-image: {a:?}\n  umoci:       {b:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "the bundle rootfs differs from umoci's unpack:\n{}",
        differences.join("\n")
    );
}
