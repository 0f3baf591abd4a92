//! Users and groups of a rootfs: `user`, `uid`, `user:group`, `uid:gid`, ... resolved through the rootfs's own
//! /etc/passwd and /etc/group, as Docker and runc resolve them. Every path is resolved inside the rootfs
//! (openat2(2) with `RESOLVE_IN_ROOT`), so a symbolic link planted in an image or a running container (say
//! /etc/passwd -> /etc/shadow, or -> ../../../host/file) reads the rootfs's own file or nothing, never the host's.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// A resolved user: the process's uid, gid and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Reads a file of the rootfs with every path resolved inside it (RESOLVE_IN_ROOT), so an image whose /etc/passwd
/// is a symlink to an absolute path reads its own file or nothing, never the host's. None when it does not exist.
pub fn read_in_root(rootfs: &Path, path: &str) -> std::result::Result<Option<String>, String> {
    let root =
        std::fs::File::open(rootfs).map_err(|e| format!("opening {}: {e}", rootfs.display()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = match openat2(std::os::fd::AsRawFd::as_raw_fd(&root), path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("opening the rootfs's {path}: {e}")),
    };
    // SAFETY: openat2 returned a new fd that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    file.take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the rootfs's {path}: {e}"))?;
    Ok(Some(text))
}

/// Resolves an rootfs's `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) as Docker does: names through the
/// rootfs's /etc/passwd and /etc/group; without a group, the user's primary group from /etc/passwd (0 for a uid
/// it does not list); supplementary groups are the /etc/group entries that list the user.
pub fn resolve_user(rootfs: &Path, user: &str) -> std::result::Result<User, String> {
    let passwd = read_in_root(rootfs, "/etc/passwd")?.unwrap_or_default();
    let group = read_in_root(rootfs, "/etc/group")?.unwrap_or_default();
    resolve_user_from(user, &passwd, &group)
}

pub fn resolve_user_from(
    user: &str,
    passwd: &str,
    group: &str,
) -> std::result::Result<User, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    // name:password:uid:gid:gecos:home:shell
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let found = entries
        .iter()
        .find(|f| f[0] == user_part || (user_part.parse::<u32>().is_ok() && f[2] == user_part));
    let (name, uid, primary) = match (found, user_part.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2]
                .parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd line for {}", f[0]))?;
            let gid = f[3]
                .parse::<u32>()
                .map_err(|_| format!("bad gid in /etc/passwd line for {}", f[0]))?;
            (Some(f[0]), uid, gid)
        }
        (None, Ok(uid)) => (None, uid, 0),
        (None, Err(_)) => {
            return Err(format!(
                "user {user_part:?} is not in the rootfs's /etc/passwd"
            ));
        }
    };
    // name:password:gid:member,member
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let gid = match group_part {
        None | Some("") => primary,
        Some(g) => match groups.iter().find(|f| f[0] == g) {
            Some(f) => f[2]
                .parse::<u32>()
                .map_err(|_| format!("bad gid in /etc/group line for {g}"))?,
            None => g
                .parse::<u32>()
                .map_err(|_| format!("group {g:?} is not in the rootfs's /etc/group"))?,
        },
    };
    let mut additional_gids: Vec<u32> = Vec::new();
    if let Some(name) = name {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
                && !additional_gids.contains(&g)
            {
                additional_gids.push(g);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nappgrp:x:1001:\nstaff:x:50:app,other\naudio:x:29:app\n";

    fn user(spec: &str) -> std::result::Result<User, String> {
        resolve_user_from(spec, PASSWD, GROUP)
    }

    /// image-spec config.md "User": "user, uid, user:group, uid:gid, uid:group, user:gid"; names resolve through
    /// the rootfs's /etc/passwd and /etc/group.
    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let u = |uid, gid, extra: &[u32]| User {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        };
        assert_eq!(user("").unwrap(), u(0, 0, &[]));
        assert_eq!(user("app").unwrap(), u(1000, 1001, &[50, 29]));
        assert_eq!(user("1000").unwrap(), u(1000, 1001, &[50, 29]));
        assert_eq!(user("app:staff").unwrap(), u(1000, 50, &[29]));
        assert_eq!(user("app:77").unwrap(), u(1000, 77, &[50, 29]));
        assert_eq!(user("4242").unwrap(), u(4242, 0, &[]));
        assert_eq!(user("4242:4343").unwrap(), u(4242, 4343, &[]));
        assert!(user("nobody").unwrap_err().contains("nobody"));
        assert!(user("app:nogroup").unwrap_err().contains("nogroup"));
    }

    /// A /etc/passwd that is a symlink to an absolute path reads the rootfs's own file, not the host's.
    #[test]
    fn passwd_is_read_inside_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::create_dir_all(tmp.path().join("other")).unwrap();
        std::fs::write(
            tmp.path().join("other/passwd"),
            "polisonly:x:4321:4321::/:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/other/passwd", tmp.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(tmp.path(), "polisonly").unwrap().uid, 4321);
        assert!(
            resolve_user(tmp.path(), "root").is_err(),
            "the host's root must not be found"
        );
        std::fs::remove_file(tmp.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/passwd",
            tmp.path().join("etc/passwd"),
        )
        .unwrap();
        assert!(
            resolve_user(tmp.path(), "root").is_err(),
            "a relative link must not leave the rootfs"
        );
    }
}
