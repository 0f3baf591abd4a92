//! The on-disk store of one network's allocations (this module touches the host's filesystem only under the
//! configured `dataDir`).
//!
//! Layout of `<dataDir>/<network>/` (host-local's, so it reads the same to an operator):
//! - `<address>` (e.g. `198.18.0.10`, `fd00:198:18::2`): one file per allocated address, holding the container ID, a
//!   newline and the interface name. It is written to a temporary file, fsynced, then hard-linked to its name
//!   (which fails if the name exists: the exclusive create) and the directory fsynced before the allocation is
//!   reported, so after a crash an address file is either absent or complete.
//! - `last_reserved_ip.<range set index>`: the last address handed out dynamically in that range set, where the
//!   round-robin search resumes. A hint only: missing or unreadable means "start at the beginning".
//! - `.owner.<hash>.<range set index>`: a symlink to the address an attachment holds in that range set, where
//!   `<hash>` is the first 16 hex digits of SHA-256 of "container ID, newline, interface name". ADD and DEL find
//!   an attachment's addresses through it without listing the directory, so they cost the same however many
//!   containers the network holds. It counts only while the address file names the same owner. An attachment
//!   without one (its allocation written by host-local) is found by reading every allocation, on DEL and CHECK;
//!   GC removes links whose address is gone or someone else's.
//! - `lock`: every read and change happens under an exclusive `flock` on it, taken by each operation on a fresh open
//!   file description, so concurrent plugin processes (and threads) serialize.
//! - `.tmp.*`: leftovers of a crash between writing and linking; ignored by readers, removed under the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result, io};

const LOCK_FILE: &str = "lock";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const TEMP_PREFIX: &str = ".tmp.";
const OWNER_PREFIX: &str = ".owner.";

/// The owner part of an owner link's name (see the module's documentation).
fn owner_hash(container_id: &str, ifname: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{container_id}\n{ifname}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn owner_link_name(container_id: &str, ifname: &str, set: usize) -> String {
    format!("{OWNER_PREFIX}{}.{set}", owner_hash(container_id, ifname))
}

/// Who holds an address: the attachment (container ID, interface name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub container_id: String,
    /// Empty for a file in host-local's old one-line format: then it matches any interface of the container.
    pub ifname: String,
}

impl Owner {
    pub fn new(container_id: &str, ifname: &str) -> Owner {
        Owner {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }

    pub fn matches(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && (self.ifname.is_empty() || self.ifname == ifname)
    }

    fn parse(content: &str) -> Option<Owner> {
        let mut lines = content.lines().map(str::trim);
        let container_id = lines.next().filter(|l| !l.is_empty())?;
        let ifname = lines.next().unwrap_or("");
        Some(Owner {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        })
    }
}

/// The allocations of the store: address -> owner, `None` for a file whose content cannot be read as an owner
/// (written by something else): its address stays taken until garbage collection removes it.
pub(crate) type Entries = BTreeMap<IpAddr, Option<Owner>>;

/// The allocated addresses, from the directory listing alone.
pub(crate) type Listing = BTreeSet<IpAddr>;

/// One network's store directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// The store under its exclusive lock: the only way to read or change it. Dropping it unlocks.
pub(crate) struct LockedStore<'a> {
    dir: &'a Path,
    _lock: Flock<File>,
}

/// A written allocation file not yet linked to an address (see [`LockedStore::pending`]).
pub(crate) struct Pending<'s> {
    store: &'s LockedStore<'s>,
    temp: PathBuf,
}

impl Pending<'_> {
    /// Links the file to `address` unless the address is taken (then `false`): the exclusive create that reserves
    /// it. Durable only after [`LockedStore::sync`].
    pub fn claim(&self, address: IpAddr) -> Result<bool> {
        let path = self.store.dir.join(address.to_string());
        match fs::hard_link(&self.temp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("link allocation", &path)(e)),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.temp);
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/<network>`. The network name must already be validated as a file name.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        let dir = data_dir.join(network);
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(io("create address store directory", &dir))?;
            sync_dir(data_dir)?;
        }
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive lock, waiting at most `timeout` (then [`Error::TryAgain`]).
    pub fn lock(&self, timeout: Duration) -> Result<LockedStore<'_>> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io("open lock file", &path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, Errno::EWOULDBLOCK)) => wait_for_lock(file, &path, timeout)?,
            Err((_, errno)) => return Err(io("lock", &path)(errno.into())),
        };
        Ok(LockedStore {
            dir: &self.dir,
            _lock: lock,
        })
    }
}

/// Waits for the lock on a helper thread, so the wait can time out while still being a plain blocking `flock`
/// (woken by the kernel, no polling). If we give up first, the thread drops the lock as soon as it gets it.
fn wait_for_lock(file: File, path: &Path, timeout: Duration) -> Result<Flock<File>> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ipam-lock-wait".into())
        .spawn(move || {
            let mut file = file;
            let result = loop {
                match Flock::lock(file, FlockArg::LockExclusive) {
                    Ok(lock) => break Ok(lock),
                    Err((f, Errno::EINTR)) => file = f,
                    Err((_, errno)) => break Err(errno),
                }
            };
            // The receiver is gone if the caller timed out: then the lock is dropped (released) right here.
            let _ = tx.send(result);
        })
        .map_err(io("start a thread to wait for the lock", path))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(errno)) => Err(io("lock", path)(errno.into())),
        Err(_) => Err(Error::TryAgain {
            reason: format!(
                "the address store lock {} has been held by another process for more than {timeout:?}",
                path.display()
            ),
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

fn remove_if_present(path: &Path, op: &'static str) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io(op, path)(e)),
        _ => Ok(()),
    }
}

impl LockedStore<'_> {
    /// The allocated addresses, from the directory listing. Removes crash leftovers (`.tmp.*`) on the way.
    pub fn list(&self) -> Result<Listing> {
        self.list_but(None)
    }

    /// [`Self::list`], keeping the allocation file that `pending` is still linking.
    pub fn list_but(&self, pending: Option<&Pending<'_>>) -> Result<Listing> {
        let mut listing = Listing::new();
        let list = fs::read_dir(self.dir).map_err(io("list address store", self.dir))?;
        for dirent in list {
            let dirent = dirent.map_err(io("list address store", self.dir))?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                let path = dirent.path();
                if pending.is_some_and(|p| p.temp == path) {
                    continue;
                }
                tracing::info!(path = %path.display(), "removing a partly written allocation left by a crash");
                remove_if_present(&path, "remove leftover temporary file")?;
            } else if let Ok(address) = name.parse::<IpAddr>() {
                listing.insert(address);
            }
        }
        Ok(listing)
    }

    /// Who holds `address`, read from its file (`None` when it is free or its content is not an owner).
    pub fn owner(&self, address: IpAddr) -> Option<Owner> {
        let bytes = fs::read(self.dir.join(address.to_string())).ok()?;
        Owner::parse(&String::from_utf8(bytes).ok()?)
    }

    /// The address (`container_id`, `ifname`) holds in range set `set`, through its owner link.
    pub fn owned(&self, container_id: &str, ifname: &str, set: usize) -> Option<IpAddr> {
        let target =
            fs::read_link(self.dir.join(owner_link_name(container_id, ifname, set))).ok()?;
        let address: IpAddr = target.to_str()?.parse().ok()?;
        self.owner(address)
            .is_some_and(|o| o.matches(container_id, ifname))
            .then_some(address)
    }

    /// The addresses (`container_id`, `ifname`) holds in range sets `0..sets`, in order: through its owner links,
    /// or, when it has none, by reading every allocation (one written by host-local).
    pub fn held_by(&self, container_id: &str, ifname: &str, sets: usize) -> Result<Vec<IpAddr>> {
        let mut held: Vec<IpAddr> = (0..sets)
            .filter_map(|set| self.owned(container_id, ifname, set))
            .collect();
        if held.is_empty() {
            held = self
                .entries()?
                .into_iter()
                .filter(|(_, o)| o.as_ref().is_some_and(|o| o.matches(container_id, ifname)))
                .map(|(a, _)| a)
                .collect();
        }
        held.sort();
        held.dedup();
        Ok(held)
    }

    /// Points the owner link of (`container_id`, `ifname`) in range set `set` at `address`.
    pub fn link_owner(
        &self,
        container_id: &str,
        ifname: &str,
        set: usize,
        address: IpAddr,
    ) -> Result<()> {
        let link = self.dir.join(owner_link_name(container_id, ifname, set));
        remove_if_present(&link, "remove a stale owner link")?;
        std::os::unix::fs::symlink(address.to_string(), &link)
            .map_err(io("link allocation owner", &link))
    }

    /// Removes the owner links of (`container_id`, `ifname`) in range sets `0..sets`.
    pub fn unlink_owner(&self, container_id: &str, ifname: &str, sets: usize) -> Result<()> {
        (0..sets).try_for_each(|set| {
            remove_if_present(
                &self.dir.join(owner_link_name(container_id, ifname, set)),
                "remove owner link",
            )
        })
    }

    /// Every allocation with its owner, read from the directory (for GC, and attachments without owner links).
    pub fn entries(&self) -> Result<Entries> {
        let mut entries = Entries::new();
        for address in self.list()? {
            let path = self.dir.join(address.to_string());
            let owner = match fs::read(&path) {
                Ok(bytes) => String::from_utf8(bytes).ok().and_then(|s| Owner::parse(&s)),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("read allocation", path)(e)),
            };
            entries.insert(address, owner);
        }
        Ok(entries)
    }

    /// Removes owner links whose address file is gone or belongs to someone else now.
    pub fn remove_dangling_links(&self) -> Result<()> {
        let list = fs::read_dir(self.dir).map_err(io("list address store", self.dir))?;
        for dirent in list.filter_map(|d| d.ok()) {
            let name = dirent.file_name();
            let Some(hash) = name
                .to_str()
                .and_then(|n| n.strip_prefix(OWNER_PREFIX))
                .and_then(|rest| rest.split_once('.'))
                .map(|(hash, _)| hash.to_string())
            else {
                continue;
            };
            let live = fs::read_link(dirent.path())
                .ok()
                .and_then(|t| t.to_str()?.parse::<IpAddr>().ok())
                .and_then(|a| self.owner(a))
                .is_some_and(|o| owner_hash(&o.container_id, &o.ifname) == hash);
            if !live {
                remove_if_present(&dirent.path(), "remove a dangling owner link")?;
            }
        }
        Ok(())
    }

    /// An allocation file for (`container_id`, `ifname`), written and fsynced, to be linked to the addresses tried
    /// ([`Pending::claim`]); removed when dropped.
    pub fn pending(&self, container_id: &str, ifname: &str) -> Result<Pending<'_>> {
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", owner_hash(container_id, ifname)));
        remove_if_present(&temp, "remove leftover temporary file")?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .map_err(io("create allocation", &temp))?;
        file.write_all(format!("{container_id}\n{ifname}").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write allocation", &temp))?;
        Ok(Pending { store: self, temp })
    }

    /// Removes the allocation of `address` (absent is fine). Durable only after [`Self::sync`].
    pub fn remove(&self, address: IpAddr) -> Result<()> {
        remove_if_present(&self.dir.join(address.to_string()), "remove allocation")
    }

    /// The last address handed out dynamically in range set `set`, if recorded and readable.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Records the last address handed out dynamically in range set `set`. The file is rewritten in place, not
    /// replaced: creating a file costs half a millisecond on some filesystems, and a torn hint only restarts the
    /// search at the beginning.
    pub fn set_last_reserved(&self, set: usize, address: IpAddr) -> Result<()> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        fs::write(&path, address.to_string()).map_err(io("write", &path))
    }

    /// Makes the changes so far durable (fsync of the directory; the files were fsynced when written).
    pub fn sync(&self) -> Result<()> {
        sync_dir(self.dir)
    }
}
