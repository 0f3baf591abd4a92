//! What the shim checks and undoes in a container's bundle and names: IDs that become file names, and the rootfs
//! containerd's snapshot mounted. Both the serving shim (`service`) and its lifecycle (`lifecycle`) use them.

use std::path::Path;

const MAX_ID_LEN: usize = 1024;

/// Container and exec IDs become file names: refuse what could name another place.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the ID is empty".to_string());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("the ID is longer than {MAX_ID_LEN} bytes"));
    }
    if id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(format!("the ID {id:?} is not a valid name"));
    }
    Ok(())
}

/// Unmounts everything containerd's snapshot mounted at `<bundle>/rootfs` (deepest first, lazily at last).
pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Err(e) = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH) {
        containerd_shim::warn!("unmount {}: {}", rootfs.display(), e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_name_another_path_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id(&"a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("web-1.exec_2").is_ok());
    }
}
