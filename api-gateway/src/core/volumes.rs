//! Volumes (Docker's `local` driver): a directory `<root>/volumes/<name>/_data` and its metadata `volume.json`
//! beside it, written atomically, so volumes and their data are kept across restarts of polisd and of the machine.
//! Also the mounts of a container: binds, named and anonymous volumes, as the create request and the image ask.

use super::error::{Error, Result};
use super::record::ContainerRecord;
use super::{Core, logs};
use bollard_stubs::models::{ContainerConfig, EventMessageTypeEnum, HostConfig, MountType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub created_at: String,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
    /// Made for a container's `Config.Volumes` entry without a name: removed with the container by `rm -v`.
    pub anonymous: bool,
}

/// One mount of a container besides the files Docker provides and tmpfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountSpec {
    /// "bind" or "volume".
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    /// Propagation word for binds (rprivate unless asked).
    pub propagation: String,
}

/// Volume names as Docker takes them: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so never `..` or a path).
pub fn check_volume_name(name: &str) -> Result<()> {
    if super::docker_name_ok(name, 2, 255) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

/// The volume drivers polisd has: only `local` (an empty name is the default, `local`); another is a plugin that is
/// not there, as dockerd answers for a plugin it cannot find.
pub fn check_volume_driver(driver: &str) -> Result<()> {
    if driver.is_empty() || driver == "local" {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
        )))
    }
}

/// Which volumes a list returns (`docker volume ls` filters, polis.v1's VolumeFilter): each non-empty list must
/// match one of its values; `dangling`: only volumes no container uses, or only used ones.
#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    /// Substrings of names.
    pub names: Vec<String>,
    /// `KEY` or `KEY=VALUE`.
    pub labels: Vec<String>,
    /// Drivers: only "local" matches.
    pub drivers: Vec<String>,
    pub dangling: Option<bool>,
}

/// Which unused volumes a prune removes.
#[derive(Debug, Clone, Default)]
pub struct VolumePruneFilter {
    /// Named volumes too (API 1.41's prune, and 1.42's `all`); else only anonymous ones.
    pub all: bool,
    /// Only volumes with every one of these labels (`KEY` or `KEY=VALUE`).
    pub labels: Vec<String>,
}

impl Core {
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.config.volumes_dir().join(name)
    }

    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    /// Creates a volume (an existing one of that name is returned as it is, as Docker does).
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: HashMap<String, String>,
        options: HashMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeMeta> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => super::containers::random_id()?,
        };
        check_volume_name(&name)?;
        if let Ok(existing) = self.volume(&name) {
            return Ok(existing);
        }
        if !options.is_empty() {
            return Err(Error::Invalid(format!(
                "create {name}: driver options are not supported by the local driver of polisd: {:?}",
                options.keys().collect::<Vec<_>>()
            )));
        }
        let dir = self.volume_dir(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data).map_err(|e| Error::failed(data.display(), e))?;
        let meta = VolumeMeta {
            name: name.clone(),
            created_at: logs::now(),
            labels,
            options,
            anonymous,
        };
        let text = serde_json::to_vec(&meta).map_err(|e| Error::failed("encode volume", e))?;
        polis_host::atomic::write_atomic(&dir.join("volume.json"), &text)
            .map_err(|e| Error::failed(dir.display(), e))?;
        self.events.publish(
            EventMessageTypeEnum::VOLUME,
            "create",
            &name,
            [("driver".to_string(), "local".to_string())].into(),
        );
        Ok(meta)
    }

    pub fn volume(&self, name: &str) -> Result<VolumeMeta> {
        let not_found = || Error::NotFound(format!("get {name}: no such volume"));
        if check_volume_name(name).is_err() {
            return Err(not_found());
        }
        let path = self.volume_dir(name).join("volume.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(Error::failed(path.display(), e)),
        };
        serde_json::from_slice(&text).map_err(|e| Error::failed(path.display(), e))
    }

    pub fn volumes(&self) -> Result<Vec<VolumeMeta>> {
        let dir = self.config.volumes_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::failed(dir.display(), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str()
                && let Ok(meta) = self.volume(name)
            {
                out.push(meta);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The volumes that pass `filter` (`GET /volumes`, polis.v1 Volumes/List), by name.
    pub fn list_volumes(&self, filter: &VolumeFilter) -> Result<Vec<VolumeMeta>> {
        let any = |values: &[String], pass: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| pass(v))
        };
        let mut out = Vec::new();
        for v in self.volumes()? {
            let pass = any(&filter.names, &|x| v.name.contains(x))
                && any(&filter.labels, &|x| super::label_matches(&v.labels, x))
                && any(&filter.drivers, &|x| x == "local");
            if !pass {
                continue;
            }
            if let Some(wanted) = filter.dangling
                && self.volume_users(&v.name)?.is_empty() != wanted
            {
                continue;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The containers whose mounts use the volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .db
            .all()?
            .into_iter()
            .filter(|r| r.mounts.iter().any(|m| m.name.as_deref() == Some(name)))
            .map(|r| r.id)
            .collect())
    }

    /// Removes a volume and its data; one a container uses is refused, even with `force` (as dockerd does: its
    /// force only makes a missing volume no error).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        match self.volume(name) {
            Err(Error::NotFound(_)) if force => return Ok(()),
            other => other?,
        };
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let dir = self.volume_dir(name);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::failed(dir.display(), e))?;
        self.events.publish(
            EventMessageTypeEnum::VOLUME,
            "destroy",
            name,
            [("driver".to_string(), "local".to_string())].into(),
        );
        Ok(())
    }

    /// Removes the volumes no container uses that `filter` selects (`POST /volumes/prune`, polis.v1
    /// Volumes/Prune); their names and the bytes freed.
    pub fn prune_volumes(&self, filter: &VolumePruneFilter) -> Result<(Vec<String>, u64)> {
        let mut deleted = Vec::new();
        let mut bytes = 0;
        for v in self.volumes()? {
            let selected = (filter.all || v.anonymous)
                && filter
                    .labels
                    .iter()
                    .all(|l| super::label_matches(&v.labels, l));
            if !selected || !self.volume_users(&v.name)?.is_empty() {
                continue;
            }
            let size = dir_size(&self.volume_data(&v.name));
            if self.remove_volume(&v.name, false).is_ok() {
                bytes += size;
                deleted.push(v.name);
            }
        }
        Ok((deleted, bytes))
    }

    /// The mounts a create request asks for: `Binds` (host paths and named volumes), `Mounts` of type bind and
    /// volume, and an anonymous volume for each `Config.Volumes` path no other mount covers. Volumes that do not
    /// exist are made; the names of those made are returned too, so that a failed create removes them again.
    pub fn resolve_mounts(
        &self,
        config: &ContainerConfig,
        host: &HostConfig,
    ) -> Result<(Vec<MountSpec>, Vec<String>)> {
        let mut mounts: Vec<MountSpec> = Vec::new();
        let mut made: Vec<String> = Vec::new();
        let result = (|| {
            for bind in host.binds.clone().unwrap_or_default() {
                let (source, destination, options) = split_bind(&bind)?;
                let mut m = parse_options(&bind, &options)?;
                m.destination = destination;
                if source.starts_with('/') {
                    if !Path::new(&source).exists() {
                        return Err(Error::Invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                        )));
                    }
                    m.kind = "bind".into();
                    m.source = source.into();
                } else {
                    self.use_volume(&source, false, &mut m, &mut made)?;
                }
                mounts.push(m);
            }
            for mount in host.mounts.clone().unwrap_or_default() {
                let target = mount.target.clone().unwrap_or_default();
                let mut m = MountSpec {
                    destination: target.clone(),
                    rw: !mount.read_only.unwrap_or(false),
                    propagation: "rprivate".into(),
                    ..Default::default()
                };
                check_destination(&target)?;
                match mount.typ {
                    Some(MountType::BIND) => {
                        let source = mount.source.clone().unwrap_or_default();
                        if !source.starts_with('/') || !Path::new(&source).exists() {
                            return Err(Error::Invalid(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                            )));
                        }
                        m.kind = "bind".into();
                        m.source = source.into();
                    }
                    Some(MountType::VOLUME) => {
                        let source = mount.source.clone().unwrap_or_default();
                        if source.is_empty() {
                            self.use_volume("", true, &mut m, &mut made)?;
                        } else {
                            self.use_volume(&source, false, &mut m, &mut made)?;
                        }
                    }
                    // tmpfs through Mounts: handled with HostConfig.Tmpfs's rules.
                    Some(MountType::TMPFS) => continue,
                    other => {
                        return Err(Error::Invalid(format!(
                            "mount type {other:?} is not supported by polisd"
                        )));
                    }
                }
                mounts.push(m);
            }
            for path in config.volumes.clone().unwrap_or_default() {
                check_destination(&path)?;
                if mounts.iter().any(|m| m.destination == path) {
                    continue;
                }
                let mut m = MountSpec {
                    destination: path,
                    rw: true,
                    propagation: "rprivate".into(),
                    ..Default::default()
                };
                self.use_volume("", true, &mut m, &mut made)?;
                mounts.push(m);
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok((mounts, made)),
            Err(e) => {
                self.discard_volumes(&made);
                Err(e)
            }
        }
    }

    fn use_volume(
        &self,
        name: &str,
        anonymous: bool,
        m: &mut MountSpec,
        made: &mut Vec<String>,
    ) -> Result<()> {
        let existed = !name.is_empty() && self.volume(name).is_ok();
        let meta = self.create_volume(
            Some(name).filter(|n| !n.is_empty()),
            HashMap::new(),
            HashMap::new(),
            anonymous,
        )?;
        if !existed {
            made.push(meta.name.clone());
        }
        m.kind = "volume".into();
        m.source = self.volume_data(&meta.name);
        m.name = Some(meta.name);
        Ok(())
    }

    /// Removes volumes a failed create made (best effort: the create's error is what matters).
    pub fn discard_volumes(&self, names: &[String]) {
        for n in names {
            let _ = std::fs::remove_dir_all(self.volume_dir(n));
        }
    }

    /// After a container is removed with `v`: its anonymous volumes go too.
    pub fn remove_anonymous_volumes(&self, record: &ContainerRecord) {
        for m in &record.mounts {
            if let Some(name) = &m.name
                && self.volume(name).is_ok_and(|v| v.anonymous)
                && let Err(e) = self.remove_volume(name, false)
            {
                tracing::warn!(volume = name, error = %e, "remove anonymous volume");
            }
        }
    }
}

/// Docker fills a new, empty volume with what the image has at the mount point. Only when no component of that
/// path in the rootfs is a symlink (which could lead out of the rootfs); `cp -a` copies symlinks inside as links.
pub fn copy_up(rootfs: &Path, m: &MountSpec) {
    if m.kind != "volume" {
        return;
    }
    let empty = std::fs::read_dir(&m.source).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return;
    }
    let mut path = rootfs.to_path_buf();
    for component in m.destination.split('/').filter(|c| !c.is_empty()) {
        path.push(component);
        match path.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    if !path.is_dir() {
        return;
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(path.join("."))
        .arg(&m.source)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        tracing::warn!(volume = ?m.name, "copy the image's files into the new volume");
    }
}

fn check_destination(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::Invalid(format!(
            "invalid mount config: mount path {path:?} must be absolute and must not contain '..'"
        )));
    }
    Ok(())
}

/// `SOURCE:DEST[:OPTIONS]`.
fn split_bind(bind: &str) -> Result<(String, String, String)> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (s, d, o) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(Error::Invalid(format!(
                "invalid volume specification: '{bind}'"
            )));
        }
    };
    if s.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid volume specification: '{bind}'"
        )));
    }
    check_destination(d).map_err(|_| {
        Error::Invalid(format!(
            "invalid volume specification: '{bind}': mount path must be absolute"
        ))
    })?;
    if !s.starts_with('/') {
        check_volume_name(s)?;
    }
    Ok((s.to_string(), d.to_string(), o.to_string()))
}

fn parse_options(bind: &str, options: &str) -> Result<MountSpec> {
    let mut m = MountSpec {
        rw: true,
        propagation: "rprivate".into(),
        ..Default::default()
    };
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            "z" | "Z" | "nocopy" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                m.propagation = o.into()
            }
            other => {
                return Err(Error::Invalid(format!(
                    "invalid volume specification: '{bind}': unknown option {other:?}"
                )));
            }
        }
    }
    Ok(m)
}

pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        total += if meta.is_dir() {
            dir_size(&e.path())
        } else {
            meta.len()
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_never_paths() {
        for bad in ["", "a", "..", "../x", "a/b", "/abs", ".hidden"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
        check_volume_name("data_1.v-2").unwrap();
    }

    #[test]
    fn binds_split_into_source_destination_and_options() {
        assert_eq!(
            split_bind("data:/srv:ro").unwrap(),
            ("data".into(), "/srv".into(), "ro".into())
        );
        assert!(split_bind("/h:rel").is_err());
        assert!(split_bind("../x:/srv").is_err());
        assert!(split_bind("a:/x/../y").is_err());
        let m = parse_options("x", "ro,rshared").unwrap();
        assert!(!m.rw);
        assert_eq!(m.propagation, "rshared");
        assert!(parse_options("x", "bogus").is_err());
    }
}
