//! The harness's one network namespace type: [`NetNs`], a namespace of the test's own made with `ip netns add`
//! (`/run/netns/NAME`), its loopback up, and removed with everything in it when dropped, also when the test fails
//! half-way. Every test that needs a network namespace uses it: the conformance tests (a namespace a container
//! joins by path), the registry and image tests (docker-registry and polis-image inside it), the plugin tests (a
//! "host" namespace for polis-netplug and polis-cnitool and one per container) and the CRI test (containerd in it).

use crate::{poll_until, process_namespace, unique};
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A network namespace of the test's own (`ip netns add`), with its loopback up.
///
/// Dropping it kills the processes still in it (a daemon a failed test left, such as polis-netplug's DNS resolver
/// or a busybox `nc`), deletes its interfaces (deleting one end of a veth pair deletes the other end too, wherever
/// it is, so nothing the namespace's links reach from other namespaces stays behind even while something else
/// still holds a reference to the namespace) and then the namespace itself.
///
/// Declare it before whatever runs inside it (a struct's field after the fields of its daemons, a `let` before
/// theirs), so that their own cleanup runs first: fields drop in declaration order, locals in reverse order.
pub struct NetNs {
    /// `polis-TAG-PID-N`, unique among the tests of every test binary running at once.
    pub name: String,
}

impl NetNs {
    /// A new namespace named `polis-TAG-PID-N`; `tag` says which test made it (for leftovers of a crashed run).
    pub fn new(tag: &str) -> NetNs {
        let name = unique(&format!("polis-{tag}"));
        // A namespace of this name left by a crashed run (same pid); usually there is none, and `ip` says so on
        // stderr.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        let ns = NetNs { name };
        let st = Command::new("ip")
            .args(["-n", &ns.name, "link", "set", "lo", "up"])
            .status()
            .expect("run ip link set lo up");
        assert!(st.success(), "bring up lo in {}", ns.name);
        ns
    }

    /// `/run/netns/NAME`, as `CNI_NETNS`, `nsenter --net=` and a container's `linux.namespaces[].path` take it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The namespace link of this netns, as /proc/PID/ns/net of a process in it reads (`net:[INODE]`).
    pub fn link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata(self.path()).map(|m| m.ino()).unwrap_or(0);
        format!("net:[{ino}]")
    }

    /// `program` run inside the namespace (network only: mounts, pids and the rest are the host's).
    pub fn command(&self, program: &str) -> Command {
        command_in(&self.name, program)
    }

    /// PIDs of the processes in this namespace, other than the calling process.
    fn processes(&self) -> Vec<i32> {
        let link = self.link();
        let me = std::process::id() as i32;
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != me && process_namespace(pid, "net") == link)
            .collect()
    }

    /// Names of the namespace's interfaces other than `lo` (`ip -o link show`: "2: veth0@if3: <...> ...").
    fn interfaces(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show"])
            .stderr(Stdio::null())
            .output();
        let Ok(out) = out else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n != "lo" && !n.is_empty())
            .collect()
    }
}

/// `program` run inside the network namespace `/run/netns/NAME`, for code that keeps only the name (a daemon
/// started in a [`NetNs`] it does not own).
pub fn command_in(name: &str, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{name}")).arg(program);
    c
}

impl Drop for NetNs {
    /// Never panics (a panic while a failing test unwinds aborts the test binary).
    fn drop(&mut self) {
        if fs::metadata(self.path()).is_err() {
            return;
        }
        // Only processes a test started are in this namespace: nothing else knows it.
        let left = self.processes();
        for &pid in &left {
            // SAFETY: signalling a process in this test's own network namespace (see above).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !left.is_empty() {
            // A killed process leaves the namespace in its exit, before anyone reaps it.
            let _ = poll_until(Duration::from_secs(5), || {
                self.processes().is_empty().then_some(())
            });
        }
        for dev in self.interfaces() {
            let _ = Command::new("ip")
                .args(["-n", &self.name, "link", "del", &dev])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
