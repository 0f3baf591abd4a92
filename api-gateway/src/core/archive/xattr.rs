//! Extended attributes read from descriptors into PAX `SCHILY.xattr.*` records.

use super::write::pax_records;
use super::*;

/// The path through which a descriptor's own inode is reached by path-based calls (an O_PATH descriptor cannot
/// be given to the f*xattr calls).
pub(super) fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Calls a size-then-fill xattr call (`listxattr`, `getxattr`) until the buffer holds the whole value.
pub(super) fn xattr_buffer(
    mut call: impl FnMut(*mut libc::c_void, usize) -> isize,
) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let size = call(std::ptr::null_mut(), 0);
        if size <= 0 {
            return (size == 0).then(Vec::new);
        }
        let mut buf = vec![0u8; size as usize];
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        // ERANGE: it grew since it was measured.
        if Errno::last() != Errno::ERANGE {
            return None;
        }
    }
    None
}

/// The extended attributes an archive carries for a file or directory, as PAX records: `security.capability`,
/// as dockerd's pkg/archive `ReadSecurityXattrToTarHeader` reads it (a version 3 value, whose root UID means
/// nothing outside the container, made version 2), and the `user.*` attributes, which dockerd leaves out and
/// `docker cp` applies when it extracts.
pub(super) fn xattr_pax(fd: &OwnedFd) -> Vec<u8> {
    const CAPABILITY: &[u8] = b"security.capability";
    let path = fd_path(fd);
    // SAFETY: listxattr writes at most `size` bytes into the buffer it is given (none for a null one).
    let Some(list) =
        xattr_buffer(|buf, size| unsafe { libc::listxattr(path.as_ptr(), buf.cast(), size) })
    else {
        return Vec::new();
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == CAPABILITY) {
            continue;
        }
        let (Ok(text), Ok(c_name)) = (std::str::from_utf8(name), CString::new(name)) else {
            continue;
        };
        // SAFETY: getxattr writes at most `size` bytes into the buffer it is given (none for a null one).
        let Some(mut value) = xattr_buffer(|buf, size| unsafe {
            libc::getxattr(path.as_ptr(), c_name.as_ptr(), buf, size)
        }) else {
            continue;
        };
        if name == CAPABILITY && value.len() > 20 && value[3] == 3 {
            // VFS_CAP_REVISION_3 -> VFS_CAP_REVISION_2 (linux/capability.h): the 20 bytes without the root UID.
            value[3] = 2;
            value.truncate(20);
        }
        records.push((format!("SCHILY.xattr.{text}"), value));
    }
    records.sort();
    let borrowed: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    pax_records(&borrowed)
}
