//! The shim's own lifecycle as containerd drives it: `start` (spawn the serving shim, or reuse the one of the
//! container's pod), serving the Task API, and `delete` (clean up after a shim that died).

use crate::bundle::unmount_rootfs;
use crate::events::start_publisher;
use crate::runc::{CommandIo, Runc};
use crate::service::Service;
use crate::settings::Settings;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, ExitSignal, Flags, StartOpts, api};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The annotation containerd's CRI puts on every container of a pod: one shim serves the whole pod.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// What `delete` reports for a task whose shim died: killed (128 + SIGKILL), as containerd's runc shim does.
const KILLED_EXIT_STATUS: u32 = 128 + 9;
pub struct PolisShim {
    namespace: String,
    id: String,
    /// The ttrpc socket this shim serves (`-socket`, `unix://PATH`), removed when it ends.
    socket: String,
    /// containerd's address (`-address`), from which the socket of a container's shim is derived.
    containerd_address: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for PolisShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        PolisShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: args.socket.clone(),
            containerd_address: args.address.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        disarm_signal_handlers();
        let grouping = sandbox_id(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        // Another container of the pod: its shim already serves this address. Answer with it, as containerd's
        // runc shim does, instead of starting a shim that would find the address taken and exit at once.
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        if std::os::unix::net::UnixStream::connect(socket_path(&address)).is_ok() {
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        }
        let (pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        // containerd sends the runtime options on stdin; only containerd.runc.v1.Options can name a shim cgroup.
        let mut options = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut options);
        if let Some(cgroup) = shim_cgroup(&options) {
            containerd_shim::cgroup::add_task_to_cgroup(&cgroup, pid)?;
        }
        containerd_shim::cgroup::adjust_oom_score(pid)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<api::DeleteResponse, Error> {
        let bundle =
            std::env::current_dir().map_err(|e| Error::Other(format!("bundle directory: {e}")))?;
        self.remove_dead_socket(&bundle);
        let settings =
            Settings::load(&bundle, &self.namespace).map_err(|e| Error::Other(e.to_string()))?;
        let runc = Runc::new(&settings, &bundle);
        // containerd runs `delete` after every task, also after a clean Delete: when polis-runc has no state for
        // the container any more there is nothing to delete, and one runtime start (about 5 ms) is saved.
        let has_state = settings.root.join(&self.id).exists();
        if !has_state {
            unmount_rootfs(&bundle);
            return Ok(killed_response());
        }
        if let Err(e) = runc.run(
            &["delete".into(), "--force".into(), self.id.clone().into()],
            CommandIo::Captured,
            None,
        ) {
            if e.kind() != crate::runc::FailureKind::NotFound {
                containerd_shim::warn!("delete {}: {}", self.id, e);
            }
        }
        unmount_rootfs(&bundle);
        Ok(killed_response())
    }

    fn wait(&mut self) {
        self.exit.wait();
        // containerd-shim removes the socket it finds in the bundle's `address` file, but containerd has removed
        // the bundle by now: remove it here, or every shim would leave its socket in /run/containerd/s.
        let path = socket_path(&self.socket);
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Events go through our own connection (crate::events); this one is closed.
        drop(publisher);
        let events = start_publisher(self.namespace.clone());
        Service::new(&self.namespace, events, Arc::clone(&self.exit))
    }
}

impl PolisShim {
    /// After a shim died (containerd runs `delete` then), its socket stays behind: remove it. A pod's socket is
    /// kept while a shim still answers on it (the pod's shim serving other containers). A container's own socket
    /// is removed without asking: the killed shim's listener can outlive the disconnection that made containerd
    /// run `delete` by a moment, and a connection accepted then would keep a dead socket for ever.
    fn remove_dead_socket(&self, bundle: &Path) {
        let grouping = sandbox_id(&bundle.join("config.json")).unwrap_or_else(|| self.id.clone());
        let address =
            containerd_shim::socket_address(&self.containerd_address, &self.namespace, &grouping);
        let path = socket_path(&address);
        let shared = grouping != self.id;
        if Path::new(path).exists()
            && (!shared || std::os::unix::net::UnixStream::connect(path).is_err())
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Keeps containerd-shim's signal handlers from running in the `start` process. containerd-shim registers SIGCHLD
/// and SIGPIPE with signal-hook for every subcommand, and `start` drops the receiving end of signal-hook's pipe
/// while the handlers stay installed: a SIGCHLD then (the spawned shim exiting early, say because another shim
/// already serves the pod) makes the handler's write fail with EPIPE, which raises SIGPIPE, whose handler writes to
/// the same pipe: `start` spins for ever and containerd waits on it (seen as CRI StartContainer hanging).
/// `start` waits for no child, so SIGCHLD goes back to its default and SIGPIPE is ignored. The signals are not
/// blocked instead: a blocked mask is inherited by the shim that `start` spawns, which then never reaps a child.
fn disarm_signal_handlers() {
    // SAFETY: resetting two signal dispositions of this single-threaded process.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// What `delete` answers: the task is gone as if killed (128 + SIGKILL), as containerd's runc shim answers.
fn killed_response() -> api::DeleteResponse {
    api::DeleteResponse {
        pid: 0,
        exit_status: KILLED_EXIT_STATUS,
        exited_at: MessageField::from_option(containerd_shim::util::timestamp().ok()),
        ..Default::default()
    }
}

/// The file of a shim's ttrpc address (`unix://PATH`).
fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// The pod a container belongs to, from its bundle's config.json annotations.
fn sandbox_id(config: &Path) -> Option<String> {
    let data = std::fs::read(config).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&data).ok()?;
    spec.get("annotations")?
        .get(SANDBOX_ID_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn shim_cgroup(options: &[u8]) -> Option<String> {
    let any = Any::parse_from_bytes(options).ok()?;
    if !any.type_url.ends_with("containerd.runc.v1.Options") {
        return None;
    }
    let opts = api::Options::parse_from_bytes(&any.value).ok()?;
    Some(opts.shim_cgroup).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_pod_group_by_sandbox_id() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"ociVersion":"1.2.0","annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(sandbox_id(&config).as_deref(), Some("pod1"));
        std::fs::write(&config, r#"{"ociVersion":"1.2.0"}"#).unwrap();
        assert_eq!(sandbox_id(&config), None);
    }
}
