//! The image tests' harness against the real docker-registry 2.8: images built by `image_builder` and pushed with
//! skopeo or byte for byte, and each behaviour of `registry_front` as curl and skopeo (run inside the test's network
//! namespace) see it. Fast; runs in CI (root, docker-registry, skopeo, curl installed by hack/install-deps).

use polis_integration::containerd::{REGISTRY, Registry, RegistryOptions};
use polis_integration::image_builder::{
    Compression, Image, Layer, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
    MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_ZSTD, OciLayout, SkopeoPush,
    sha256_digest,
};
use polis_integration::registry_front::{
    Answer, CannedResponse, InterruptMode, Listener, RegistryFront,
};
use polis_integration::{
    NetNs, Output, Value, eventually, eventually_some, missing_peer, run_command, temp_dir,
};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// docker-registry, skopeo and curl are all there (else skip, or fail under CI).
fn peers() -> bool {
    for p in [REGISTRY, "/usr/bin/skopeo", "/usr/bin/curl"] {
        if !Path::new(p).exists() {
            return missing_peer::<()>(p).is_some();
        }
    }
    true
}

/// A test's namespace, registry, layout and scratch dir.
struct World {
    scratch: tempfile::TempDir,
    layout: OciLayout,
    registry: Registry,
    netns: NetNs,
}

impl World {
    fn new(tag: &str) -> World {
        let scratch = temp_dir("polis-it-harness-");
        let layout = OciLayout::create(&scratch.path().join("layout"));
        let netns = NetNs::new(tag);
        let registry = Registry::start(&netns);
        World {
            scratch,
            layout,
            registry,
            netns,
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.netns.command(program);
        cmd.args(args);
        run_command(cmd, self.scratch.path(), TIMEOUT)
    }

    /// `curl -sS` with `args`, printing the response head and then `<status>` on a last line (the body goes to
    /// /dev/null unless `args` has `-o`).
    fn curl(&self, args: &[&str]) -> Output {
        let mut a = vec!["-sS", "-D", "-", "-w", "%{http_code}\n"];
        if !args.contains(&"-o") {
            a.extend_from_slice(&["-o", "/dev/null"]);
        }
        a.extend_from_slice(args);
        self.run("curl", &a)
    }

    fn path(&self, name: &str) -> String {
        self.scratch.path().join(name).display().to_string()
    }
}

/// Status code curl printed last (`-w %{http_code}`).
fn status(out: &Output) -> u16 {
    out.stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no status in curl output: {out}"))
}

/// The value of response header `name` in curl's `-D -` output.
fn curl_header(out: &Output, name: &str) -> Option<String> {
    out.stdout.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn small_image(label: &str) -> Image {
    Image::new()
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/motd", format!("{label}\n")),
        )
        .cmd(["/bin/sh"])
        .label("polis.test", label)
}

/// A process killed and reaped on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A built image reaches the registry both ways: `skopeo copy` (which gzips the uncompressed layer, and converts to
/// Docker schema 2 with `--format v2s2`, to zstd with `--dest-compress-format zstd`) and `push_exact` (these very
/// digests, uncompressed and zstd layers and a three-platform index included), and `skopeo inspect docker://`
/// reads each back.
#[test]
fn built_images_reach_the_registry_and_skopeo_inspects_them() {
    if !peers() {
        return;
    }
    let w = World::new("harness-push");
    let reg = w.registry.address().to_string();
    let image = small_image("pushed")
        .layer(Layer::random("data", 1, 42).compression(Compression::None))
        .layer(
            Layer::new()
                .compression(Compression::Zstd)
                .file("z", "zstd layer"),
        );
    let built = w.layout.write_image(&image, "v1");

    // skopeo, as is: OCI manifest, layers recompressed where skopeo chooses.
    w.layout
        .push_with_skopeo(
            &w.netns,
            "v1",
            &format!("{reg}/polis/app:v1"),
            &SkopeoPush::default(),
        )
        .ok();
    let inspect = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/app:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(inspect["Labels"]["polis.test"], "pushed");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);

    // skopeo --format v2s2 (zstd layers cannot be Docker schema 2: use a gzip-only image).
    let gz = w.layout.write_image(&small_image("v2s2"), "gz");
    let v2s2 = SkopeoPush {
        format: Some("v2s2".into()),
        ..SkopeoPush::default()
    };
    w.layout
        .push_with_skopeo(&w.netns, "gz", &format!("{reg}/polis/docker:v1"), &v2s2)
        .ok();
    let raw = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/docker:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(raw["mediaType"], MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(
        raw["layers"][0]["digest"],
        gz.layers[0].digest.as_str(),
        "a gzip layer is kept as is"
    );

    // skopeo --dest-compress-format zstd from a plain oci: source.
    let zstd = SkopeoPush {
        compress: Some(Compression::Zstd),
        ..SkopeoPush::default()
    };
    w.layout
        .push_with_skopeo(&w.netns, "gz", &format!("{reg}/polis/zstd:v1"), &zstd)
        .ok();
    let raw = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/zstd:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(raw["layers"][0]["mediaType"], MEDIA_TYPE_LAYER_ZSTD);

    // Byte for byte: the registry serves the layout's own manifest digest and media types.
    let top = w
        .layout
        .push_exact(&w.netns, "v1", &format!("{reg}/polis/exact:v1"), None);
    assert_eq!(top.digest, built.manifest.digest);
    let inspect = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/exact:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(inspect["Digest"], built.manifest.digest.as_str());
    let layers: Vec<&str> = built.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(layers));
    assert_eq!(built.layers[1].media_type, MEDIA_TYPE_LAYER);

    // A multi-platform index, byte for byte; skopeo picks the arm64/v8 member by platform.
    let platforms = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];
    let images: Vec<Image> = platforms
        .iter()
        .map(|p| small_image(p).platform(p))
        .collect();
    let index = w.layout.write_index(&images, "multi");
    let top = w
        .layout
        .push_exact(&w.netns, "multi", &format!("{reg}/polis/multi:v1"), None);
    assert_eq!(top.digest, index.index.digest);
    let raw = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/multi:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(raw["mediaType"], MEDIA_TYPE_INDEX);
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 3);
    let arm = w
        .run(
            "skopeo",
            &[
                "--override-arch=arm64",
                "--override-variant=v8",
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/multi:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(arm["Labels"]["polis.test"], "linux/arm64/v8");
    assert_eq!(
        arm["Digest"],
        index.index.digest.as_str(),
        "skopeo inspect names the index's digest"
    );

    // skopeo copies a whole index from an oci: layout with --all.
    let all = SkopeoPush {
        all: true,
        ..SkopeoPush::default()
    };
    w.layout
        .push_with_skopeo(
            &w.netns,
            "multi",
            &format!("{reg}/polis/multi-skopeo:v1"),
            &all,
        )
        .ok();
    let raw = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reg}/polis/multi-skopeo:v1"),
            ],
        )
        .ok()
        .json();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 3);
}

/// Docker token auth (distribution spec "Token Authentication"): without a token `/v2/` answers 401 with a Bearer
/// challenge naming the realm, service and repository scope; `/token` requires the Basic credentials and issues a
/// token per scope; the token opens only its repository; revoked tokens are refused; skopeo does the whole dance.
#[test]
fn bearer_front_requires_a_token_from_its_token_endpoint() {
    if !peers() {
        return;
    }
    let w = World::new("harness-bearer");
    let reg = w.registry.address().to_string();
    w.layout.write_image(&small_image("auth"), "v1");
    w.layout
        .push_exact(&w.netns, "v1", &format!("{reg}/polis/app:v1"), None);
    let front = RegistryFront::start(&w.netns, &reg);
    front.require_bearer(Some(("alice", "s3cret")));
    let url = format!("http://{}/v2/polis/app/manifests/v1", front.address());
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";

    let denied = w.curl(&["-H", accept, &url]);
    assert_eq!(status(&denied), 401);
    let challenge = curl_header(&denied, "www-authenticate").expect("a challenge");
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}\",service=\"polis-test\",scope=\"repository:polis/app:pull\"",
            front.token_realm()
        )
    );
    let base = w.curl(&[&format!("http://{}/v2/", front.address())]);
    assert_eq!(status(&base), 401);
    assert!(
        !curl_header(&base, "www-authenticate")
            .unwrap()
            .contains("scope=")
    );

    let token_url = format!(
        "{}?service=polis-test&scope=repository:polis/app:pull",
        front.token_realm()
    );
    assert_eq!(
        status(&w.curl(&[&token_url])),
        401,
        "/token requires Basic credentials"
    );
    let out = w
        .run("curl", &["-sS", "-u", "alice:s3cret", &token_url])
        .ok()
        .clone();
    let body: Value = serde_json::from_str(&out.stdout).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], token.as_str());
    assert_eq!(body["expires_in"], 300);

    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(status(&w.curl(&["-H", accept, "-H", &bearer, &url])), 200);
    let other = format!("http://{}/v2/polis/other/manifests/v1", front.address());
    assert_eq!(
        status(&w.curl(&["-H", &bearer, &other])),
        401,
        "a token opens only its scope"
    );

    let requests = front.token_requests();
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].basic_sent() && !requests[0].granted);
    assert_eq!(requests[1].basic_user.as_deref(), Some("alice"));
    assert_eq!(requests[1].scopes, ["repository:polis/app:pull"]);

    front.revoke_tokens();
    assert_eq!(
        status(&w.curl(&["-H", accept, "-H", &bearer, &url])),
        401,
        "revoked"
    );

    // skopeo follows the challenge to /token with the credentials.
    let inspect = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--creds=alice:s3cret",
                &format!("docker://{}/polis/app:v1", front.address()),
            ],
        )
        .ok()
        .json();
    assert_eq!(inspect["Labels"]["polis.test"], "auth");
    assert!(front.token_requests().len() > 2);
    assert!(
        front.requests().iter().any(|r| r.answer == Answer::Upstream
            && r.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer "))),
        "skopeo's requests carried the token"
    );
}

/// 429 Too Many Requests with Retry-After (RFC 6585, RFC 9110 §10.2.3) for the first K matching requests, each
/// logged with its time; then requests pass. A canned schema1 manifest is served with its own media type.
#[test]
fn throttle_answers_429_and_canned_serves_schema1() {
    if !peers() {
        return;
    }
    let w = World::new("harness-429");
    let reg = w.registry.address().to_string();
    w.layout.write_image(&small_image("throttled"), "v1");
    w.layout
        .push_exact(&w.netns, "v1", &format!("{reg}/polis/app:v1"), None);
    let front = RegistryFront::start(&w.netns, &reg);
    front.throttle("/manifests/", 2, 3);
    let url = format!("http://{}/v2/polis/app/manifests/v1", front.address());
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";

    let first = w.curl(&["-H", accept, &url]);
    assert_eq!(status(&first), 429);
    assert_eq!(curl_header(&first, "retry-after").as_deref(), Some("3"));
    assert_eq!(status(&w.curl(&["-H", accept, &url])), 429);
    assert_eq!(status(&w.curl(&["-H", accept, &url])), 200);
    assert_eq!(
        status(&w.curl(&[&format!("http://{}/v2/", front.address())])),
        200,
        "other paths pass"
    );
    assert_eq!(front.request_times("/manifests/").len(), 3);
    let answers: Vec<Answer> = front.requests().iter().map(|r| r.answer).collect();
    assert_eq!(
        answers[..3],
        [Answer::Throttled, Answer::Throttled, Answer::Upstream]
    );
    assert_eq!(front.count("GET", "/manifests/v1"), 3);

    let path = "/v2/polis/old/manifests/v1";
    front.canned(path, CannedResponse::schema1_manifest("polis/old", "v1"));
    let out = w.curl(&[&format!("http://{}{path}", front.address())]);
    assert_eq!(status(&out), 200);
    assert_eq!(
        curl_header(&out, "content-type").as_deref(),
        Some(MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED)
    );
}

/// A blob GET is redirected (307) to storage on another host (127.0.0.2), which serves the blob; a well-behaved
/// client (curl) does not carry the registry's Authorization header across hosts, and the storage listener records
/// that.
#[test]
fn blob_redirect_goes_to_a_second_host_without_authorization() {
    if !peers() {
        return;
    }
    let w = World::new("harness-redirect");
    let reg = w.registry.address().to_string();
    let built = w.layout.write_image(&small_image("redirected"), "v1");
    w.layout
        .push_exact(&w.netns, "v1", &format!("{reg}/polis/app:v1"), None);
    let front = RegistryFront::start(&w.netns, &reg);
    front.redirect_blobs(true);
    let layer = &built.layers[0];
    let url = format!(
        "http://{}/v2/polis/app/blobs/{}",
        front.address(),
        layer.digest
    );

    let first = w.curl(&[&url]);
    assert_eq!(status(&first), 307);
    let location = curl_header(&first, "location").unwrap();
    assert!(
        location.starts_with(&format!("http://{}/", front.redirect_address())),
        "{location}"
    );

    let file = w.path("blob");
    w.run(
        "curl",
        &[
            "-sS",
            "-f",
            "-L",
            "-H",
            "Authorization: Bearer secret",
            "-o",
            &file,
            &url,
        ],
    )
    .ok();
    assert_eq!(sha256_digest(&std::fs::read(&file).unwrap()), layer.digest);
    let stored = front.redirected_requests();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, 200);
    assert_eq!(
        stored[0].authorization, None,
        "curl dropped Authorization on the other host"
    );
    assert!(
        front
            .requests()
            .iter()
            .any(|r| r.listener == Listener::Front && r.authorization.is_some() && r.status == 307)
    );
}

/// An interrupted blob download (the registry's full Content-Length, then only N bytes): closed at once, curl reports
/// a partial transfer and `curl -r N-` fetches the rest with a Range request (docker-registry 2.8 answers 206);
/// stalled, the connection hangs until `release()`, and dropping the front unblocks a stalled client too.
#[test]
fn interrupted_blob_closes_or_stalls_and_resumes_with_range() {
    if !peers() {
        return;
    }
    let w = World::new("harness-interrupt");
    let reg = w.registry.address().to_string();
    let built = w.layout.write_image(
        &Image::new().layer(Layer::random("data", 1, 7).compression(Compression::None)),
        "v1",
    );
    w.layout
        .push_exact(&w.netns, "v1", &format!("{reg}/polis/app:v1"), None);
    let layer = &built.layers[0];
    let front = RegistryFront::start(&w.netns, &reg);
    let url = format!(
        "http://{}/v2/polis/app/blobs/{}",
        front.address(),
        layer.digest
    );
    let cut = 10_000u64;

    // Close at once.
    front.interrupt_blob(&layer.digest, cut, InterruptMode::Close);
    let head = w.path("head");
    let out = w.run("curl", &["-sS", "-o", &head, &url]);
    assert_eq!(out.code, Some(18), "curl: partial file: {out}");
    assert_eq!(std::fs::metadata(&head).unwrap().len(), cut);
    let tail = w.path("tail");
    let out = w.curl(&["-r", &format!("{cut}-"), "-o", &tail, &url]);
    assert_eq!(status(&out), 206);
    let mut whole = std::fs::read(&head).unwrap();
    whole.extend(std::fs::read(&tail).unwrap());
    assert_eq!(sha256_digest(&whole), layer.digest);
    let gets: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(
        (gets[0].answer, gets[0].status, gets[0].body_bytes),
        (Answer::Interrupted, 200, cut)
    );
    assert_eq!(gets[1].range.as_deref(), Some("bytes=10000-"));
    assert_eq!(gets[1].body_bytes, layer.size - cut);

    // Stall until released.
    front.interrupt_blob(&layer.digest, cut, InterruptMode::StallUntilRelease);
    let stalled_file = w.path("stalled");
    let mut curl = Background(
        w.netns
            .command("curl")
            // -N: curl writes what it receives at once (no stdio buffer), so the file shows what it has read.
            .args(["-sS", "-N", "-o", &stalled_file, &url])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    front.wait_stalled(1, TIMEOUT);
    // curl has read every byte the front sent and waits for the rest, which never comes until the release.
    eventually(
        "curl has read the bytes sent before the stall",
        TIMEOUT,
        || std::fs::metadata(&stalled_file).is_ok_and(|m| m.len() == cut),
    );
    assert!(
        curl.0.try_wait().unwrap().is_none(),
        "curl waits while the connection stalls"
    );
    front.release();
    let st = wait_exit(&mut curl.0);
    assert_eq!(st.code(), Some(18));
    assert_eq!(std::fs::metadata(&stalled_file).unwrap().len(), cut);
    assert_eq!(front.stalled(), 0);

    // Dropping the front while a connection stalls closes it and returns promptly.
    front.interrupt_blob(&layer.digest, cut, InterruptMode::StallUntilRelease);
    let mut curl = Background(
        w.netns
            .command("curl")
            .args(["-sS", "-o", "/dev/null", &url])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    front.wait_stalled(1, TIMEOUT);
    let started = Instant::now();
    drop(front);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        started.elapsed()
    );
    assert_eq!(wait_exit(&mut curl.0).code(), Some(18));
}

#[track_caller]
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    eventually_some("the process exits", TIMEOUT, || child.try_wait().unwrap())
}

/// docker-registry with htpasswd auth on plain HTTP (port 5001, beside the anonymous 5000): 401 with a Basic
/// challenge without credentials, 200 with them; skopeo pushes with `--dest-creds` and reads with credentials from a
/// Docker-format config.json (`auths.HOST.auth`), as the puller's DOCKER_CONFIG tests will.
#[test]
fn htpasswd_registry_refuses_without_credentials() {
    if !peers() {
        return;
    }
    let w = World::new("harness-htpasswd");
    let secured = Registry::start_with(
        &w.netns,
        RegistryOptions {
            port: 5001,
            htpasswd: Some(("bob".into(), "hunter2".into())),
        },
    );
    let addr = secured.address().to_string();
    assert_eq!(addr, "127.0.0.1:5001");
    let base = format!("http://{addr}/v2/");
    let denied = w.curl(&[&base]);
    assert_eq!(status(&denied), 401);
    assert_eq!(
        curl_header(&denied, "www-authenticate").as_deref(),
        Some("Basic realm=\"polis-test\"")
    );
    assert_eq!(status(&w.curl(&["-u", "bob:wrong", &base])), 401);
    assert_eq!(status(&w.curl(&["-u", "bob:hunter2", &base])), 200);
    assert_eq!(
        status(&w.curl(&[&format!("http://{}/v2/", w.registry.address())])),
        200,
        "5000 stays open"
    );

    w.layout.write_image(&small_image("basic"), "v1");
    let dest = format!("{addr}/polis/app:v1");
    let no_creds = w
        .layout
        .push_with_skopeo(&w.netns, "v1", &dest, &SkopeoPush::default());
    no_creds.fails();
    let with_creds = SkopeoPush {
        credentials: Some(("bob".into(), "hunter2".into())),
        ..SkopeoPush::default()
    };
    w.layout
        .push_with_skopeo(&w.netns, "v1", &dest, &with_creds)
        .ok();

    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
    let config_dir = w.scratch.path().join("docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let inspect = w
        .run(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("--authfile={}", config.display()),
                &format!("docker://{dest}"),
            ],
        )
        .ok()
        .json();
    assert_eq!(inspect["Labels"]["polis.test"], "basic");

    // Byte-for-byte pushes carry the credentials too.
    let built = w.layout.write_image(&small_image("exact"), "exact");
    let top = w.layout.push_exact(
        &w.netns,
        "exact",
        &format!("{addr}/polis/exact:v1"),
        secured.credentials(),
    );
    assert_eq!(top.digest, built.manifest.digest);
}
