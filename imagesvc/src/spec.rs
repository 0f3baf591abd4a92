//! The runtime config.json of an image (image-spec conversion.md "Translating an image's configuration into a
//! runtime config"): polis-runc's default container (mounts, namespaces, masked and read-only paths) with the
//! image's process (Entrypoint + Cmd, Env, WorkingDir, User resolved through the image's own /etc/passwd and
//! /etc/group), the image's annotations, Docker's default capabilities, no-new-privileges, a default seccomp
//! profile, and no rlimit above what the caller holds (raising a hard limit needs CAP_SYS_RESOURCE).

use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Docker's and containerd's default capability set for containers.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The file-descriptor limit containers get (Docker's default), lowered to the caller's hard limit.
const NOFILE: u64 = 1 << 20;

/// The parts of an image config (image-spec config.md) a runtime config is made from.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    pub variant: Option<String>,
    #[serde(rename = "os.version")]
    pub os_version: Option<String>,
    pub author: Option<String>,
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub user: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    pub env: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
}

/// Builds config.json for an image whose rootfs is `rootfs` (mounted; /etc/passwd and /etc/group are read from
/// it, confined to it). `args`, when not empty, replaces the image's Cmd (as `docker run IMAGE ARGS` does).
pub fn runtime_config(
    image: &ImageConfig,
    rootfs: &Path,
    args: &[String],
    bundle: &Path,
) -> Result<Value> {
    let bundle_err = |reason: String| Error::Bundle {
        dir: bundle.to_path_buf(),
        reason,
    };
    let empty = ContainerConfig::default();
    let c = image.config.as_ref().unwrap_or(&empty);
    let mut process_args: Vec<String> = c.entrypoint.clone().unwrap_or_default();
    if args.is_empty() {
        process_args.extend(c.cmd.clone().unwrap_or_default());
    } else {
        process_args.extend(args.iter().cloned());
    }
    if process_args.is_empty() {
        return Err(bundle_err(
            "the image has no Entrypoint or Cmd: give the command to run after the directory"
                .into(),
        ));
    }
    let mut env = c.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let user = polis_host::users::resolve_user(rootfs, c.user.as_deref().unwrap_or(""))
        .map_err(bundle_err)?;
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(bundle_err(format!(
            "the image's WorkingDir {cwd:?} is not absolute"
        )));
    }

    let mut spec = polis_host::spec::default_spec(&process_args);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["env"] = json!(env);
    spec["process"]["cwd"] = json!(cwd);
    spec["process"]["user"] = json!({
        "uid": user.uid,
        "gid": user.gid,
        "additionalGids": user.additional_gids,
    });
    spec["process"]["capabilities"] = json!({
        "bounding": DEFAULT_CAPABILITIES,
        "effective": DEFAULT_CAPABILITIES,
        "permitted": DEFAULT_CAPABILITIES,
    });
    let nofile = caller_nofile_limit().min(NOFILE);
    spec["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile }]);
    spec["process"]["noNewPrivileges"] = json!(true);
    spec["root"] = json!({ "path": "rootfs", "readonly": false });
    spec["linux"]["seccomp"] = crate::seccomp::default_profile();
    spec["annotations"] = json!(annotations(image));
    Ok(spec)
}

/// conversion.md: Labels become annotations; then the image-spec keys, which win over a label of the same name.
fn annotations(image: &ImageConfig) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    let c = image.config.as_ref();
    if let Some(labels) = c.and_then(|c| c.labels.as_ref()) {
        a.extend(labels.clone());
    }
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            a.insert(format!("org.opencontainers.image.{key}"), v);
        }
    };
    put("os", Some(image.os.clone()));
    put("architecture", Some(image.architecture.clone()));
    put("variant", image.variant.clone());
    put("os.version", image.os_version.clone());
    put("author", image.author.clone());
    put("created", image.created.clone());
    put("stopSignal", c.and_then(|c| c.stop_signal.clone()));
    put(
        "exposedPorts",
        c.and_then(|c| c.exposed_ports.as_ref())
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(",")),
    );
    a
}

fn caller_nofile_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) if hard != nix::sys::resource::RLIM_INFINITY => hard,
        Ok(_) => NOFILE,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nappgrp:x:1001:\nstaff:x:50:app,other\naudio:x:29:app\n";

    /// conversion.md: Entrypoint + Cmd are the args, Env and WorkingDir carry over, Labels, StopSignal and
    /// ExposedPorts become annotations.
    #[test]
    fn the_image_config_becomes_the_process() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(tmp.path().join("etc/group"), GROUP).unwrap();
        let image: ImageConfig = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "User": "app", "Env": ["A=1"], "Entrypoint": ["/bin/app"], "Cmd": ["--serve"],
                "WorkingDir": "/srv", "Labels": {"team": "polis"}, "StopSignal": "SIGQUIT",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let spec = runtime_config(&image, tmp.path(), &[], tmp.path()).unwrap();
        assert_eq!(spec["process"]["args"], json!(["/bin/app", "--serve"]));
        assert_eq!(spec["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(spec["process"]["env"][1], "A=1");
        assert_eq!(spec["process"]["cwd"], "/srv");
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [50, 29]})
        );
        assert_eq!(spec["annotations"]["team"], "polis");
        assert_eq!(
            spec["annotations"]["org.opencontainers.image.stopSignal"],
            "SIGQUIT"
        );
        assert_eq!(
            spec["annotations"]["org.opencontainers.image.exposedPorts"],
            "53/udp,80/tcp"
        );
        assert_eq!(spec["annotations"]["org.opencontainers.image.os"], "linux");
        let override_args =
            runtime_config(&image, tmp.path(), &["--check".into()], tmp.path()).unwrap();
        assert_eq!(
            override_args["process"]["args"],
            json!(["/bin/app", "--check"])
        );
        let rl = &spec["process"]["rlimits"][0];
        assert!(rl["hard"].as_u64().unwrap() <= caller_nofile_limit());
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
        assert!(parsed.linux().as_ref().unwrap().seccomp().is_some());
    }

    /// The image's User goes through its own /etc/passwd (polis_host::users, which reads it inside the rootfs),
    /// and an image without a command is refused.
    #[test]
    fn passwd_is_read_inside_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "polisonly:x:4321:4321::/:/bin/sh\n",
        )
        .unwrap();
        let image: ImageConfig =
            serde_json::from_value(json!({"config": {"User": "polisonly", "Cmd": ["true"]}}))
                .unwrap();
        let spec = runtime_config(&image, tmp.path(), &[], tmp.path()).unwrap();
        assert_eq!(spec["process"]["user"]["uid"], 4321);
        let empty: ImageConfig = serde_json::from_value(json!({"config": {}})).unwrap();
        let err = runtime_config(&empty, tmp.path(), &[], tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no Entrypoint or Cmd"), "{err}");
    }
}
