//! Work inside another network namespace: a fresh thread enters it (setns(2) with `CLONE_NEWNET`) and ends with the
//! work, so the calling thread, and every other thread of the process, stays where it was.

use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result, io};

/// Opens the network namespace file at `path` (`CNI_NETNS`, a bind mount such as `/run/netns/NAME` or
/// `/proc/PID/ns/net`). A missing path is [`Error::UnknownContainer`] (CNI code 3) naming the path.
pub(crate) fn open_netns(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| match source.raw_os_error() {
        Some(libc::ENOENT) => Error::UnknownContainer {
            container: path.display().to_string(),
            reason: "the network namespace does not exist".into(),
        },
        _ => Error::Io {
            op: "open network namespace",
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Enters the network namespace `netns` (from [`open_netns`]) on the calling thread. Only for a thread that ends
/// with the work it does there.
fn enter_netns(netns: &File, path: &Path) -> Result<()> {
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
        // setns(2): EINVAL when the file is not a namespace of that type, e.g. a leftover mount point whose
        // namespace has been unmounted, which is as gone as a missing path.
        Errno::EINVAL => Error::UnknownContainer {
            container: path.display().to_string(),
            reason: "not a network namespace".into(),
        },
        errno => io("enter network namespace", path)(errno.into()),
    })
}

/// Runs `work` on a new thread inside the network namespace at `path` and returns its result; netlink sockets and
/// other sockets it opens belong to that namespace (and stay there when handed back). The calling thread does not
/// move. A missing path, or one that is not a network namespace, is [`Error::UnknownContainer`] naming the path:
/// CNI code 3 on ADD, and "already gone" for DEL. A panic in `work` is resumed on the caller.
pub fn in_netns<T, F>(path: &Path, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send,
    T: Send,
{
    let netns = open_netns(path)?;
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("netplug-netns".into())
            .spawn_scoped(scope, move || {
                let _span = span.enter();
                enter_netns(&netns, path)?;
                drop(netns);
                work()
            })
            .map_err(io("start a thread for network namespace", path))?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::testutil::TestNetns;

    fn current_netns() -> std::path::PathBuf {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    }

    #[test]
    fn in_netns_runs_inside_and_leaves_the_caller_where_it_was() {
        let netns = TestNetns::new();
        let before = current_netns();
        let inside = in_netns(netns.path(), || Ok(current_netns())).unwrap();
        assert_ne!(inside, before);
        assert_eq!(current_netns(), before);
    }

    #[test]
    fn in_netns_on_a_missing_path_is_an_unknown_container() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let error = in_netns(&missing, || Ok(())).unwrap_err();
        match &error {
            Error::UnknownContainer { container, .. } => {
                assert_eq!(container, &missing.display().to_string())
            }
            other => panic!("expected UnknownContainer, got {other:?}"),
        }
        assert_eq!(error.cni_code(), 3);
        assert!(
            error.to_string().contains(&*missing.to_string_lossy()),
            "{error}"
        );

        // A file that is not (or no longer) a network namespace, like a mount point left after `ip netns del`.
        let not_a_netns = dir.path().join("file");
        std::fs::write(&not_a_netns, b"").unwrap();
        let error = in_netns(&not_a_netns, || Ok(())).unwrap_err();
        assert!(matches!(error, Error::UnknownContainer { .. }), "{error:?}");
    }

    #[test]
    fn in_netns_passes_errors_and_panics_back() {
        let netns = TestNetns::new();
        let error = in_netns(netns.path(), || -> Result<()> {
            Err(Error::TryAgain {
                reason: "inside".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(error, Error::TryAgain { .. }));
        let panic = std::panic::catch_unwind(|| {
            in_netns(netns.path(), || -> Result<()> { panic!("inside") })
        });
        assert!(panic.is_err());
    }
}
