//! Several uid/gid mapping ranges.
//!
//! The kernel takes a whole uid_map or gid_map in one write. libcontainer 0.7 writes a single
//! range itself but hands several to `newuidmap`/`newgidmap` from PATH, the setuid helpers for
//! unprivileged users, which refuse ranges that /etc/subuid does not grant. polis-runc runs as
//! root and needs no helper: for such containers it puts its own `newuidmap` and `newgidmap`
//! first in PATH, links to its own binary, which then writes the ranges directly.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// True when this process was started as the mapping helper.
pub fn invoked_as_map_helper(argv0: &str) -> Option<&'static str> {
    match Path::new(argv0).file_name()?.to_str()? {
        "newuidmap" => Some("uid_map"),
        "newgidmap" => Some("gid_map"),
        _ => None,
    }
}

/// `newuidmap PID ID HOSTID COUNT [ID HOSTID COUNT]...`: writes the ranges in one write.
pub fn write_mappings(file: &str, args: &[String]) -> Result<()> {
    let [pid, ranges @ ..] = args else {
        return Err(Error::Invalid(
            "usage: newuidmap PID ID HOSTID COUNT...".into(),
        ));
    };
    if ranges.is_empty() || ranges.len() % 3 != 0 {
        return Err(Error::Invalid(format!(
            "mappings must come in triples: {ranges:?}"
        )));
    }
    let mut text = String::new();
    for r in ranges.chunks(3) {
        for n in r {
            n.parse::<u32>()
                .map_err(|_| Error::Invalid(format!("invalid id {n:?} in mapping")))?;
        }
        text.push_str(&format!("{} {} {}\n", r[0], r[1], r[2]));
    }
    let pid: u32 = pid
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid pid {pid:?}")))?;
    let path = format!("/proc/{pid}/{file}");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", &path, e))
}

/// Puts links named newuidmap and newgidmap to this process's binary first in PATH.
pub fn install_map_helpers(dir: &Path) -> Result<()> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| Error::io("create", &bin, e))?;
    let exe = format!("/proc/{}/exe", std::process::id());
    for name in ["newuidmap", "newgidmap"] {
        let link = bin.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link).map_err(|e| Error::io("link", &link, e))?;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    // SAFETY: no other thread reads the environment: the only other one, the cgroup
    // migration primer (cgroups.rs), makes nothing but system calls.
    unsafe { std::env::set_var("PATH", format!("{}:{path}", bin.display())) };
    Ok(())
}
