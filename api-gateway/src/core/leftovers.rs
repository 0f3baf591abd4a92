//! What a polisd killed in the middle of an operation leaves, found and removed when it starts again: container
//! directories without a database row (a create that did not finish), shims of tasks that never became a running
//! container (a start that did not finish), fifos of containers that are not running, anonymous volumes no container
//! uses, and rows whose bundle is gone (a remove that did not finish).

use super::Core;
use super::record::Status;
use super::shim::Shim;
use std::collections::HashSet;

impl Core {
    pub async fn remove_leftovers(&self) -> super::Result<()> {
        let records = self.db.all()?;
        let known: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        let dir = self.config.containers_dir();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::info!(
                        container = name,
                        "removing the files of a create that did not finish"
                    );
                    let path = entry.path();
                    let bundle = path.join("bundle");
                    let _ = tokio::task::spawn_blocking(move || {
                        super::containers::remove_container_files(&path, &bundle)
                    })
                    .await;
                }
            }
        }
        for record in &records {
            if record.state.status.is_live() {
                continue;
            }
            // A start that did not finish may have left its shim, with or without a task.
            let address_file = record.bundle.join("address");
            if let Ok(address) = std::fs::read_to_string(&address_file) {
                if let Ok(shim) = Shim::connect(address.trim()).await {
                    let id = &record.id;
                    tracing::info!(
                        container = id,
                        "ending the shim of a start that did not finish"
                    );
                    // The task is deleted once it has exited: a Delete of a running task fails and would leave
                    // the runtime's state of the container behind (its next create then finds it "already
                    // exists").
                    if shim
                        .kill(id, nix::sys::signal::Signal::SIGKILL as u32)
                        .await
                        .is_ok()
                    {
                        let waited =
                            tokio::time::timeout(std::time::Duration::from_secs(10), shim.wait(id));
                        if !matches!(waited.await, Ok(Ok(_))) {
                            tracing::warn!(container = id, "the killed task did not exit in 10 s");
                        }
                    }
                    let _ = shim.delete_and_shutdown(id).await;
                }
                let _ = std::fs::remove_file(&address_file);
            }
            let _ = std::fs::remove_dir_all(self.config.fifo_dir(&record.id));
            if !record.bundle.exists() && record.state.status != Status::Dead {
                let mut r = record.clone();
                r.state.status = Status::Dead;
                r.state.error = "the container's files are gone (a remove did not finish)".into();
                let _ = self.db.update(&r);
            }
        }
        let used: HashSet<String> = records
            .iter()
            .flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone()))
            .collect();
        for v in self.volumes()? {
            if v.anonymous && !used.contains(&v.name) {
                tracing::info!(
                    volume = v.name,
                    "removing an anonymous volume no container uses"
                );
                self.discard_volumes(std::slice::from_ref(&v.name));
            }
        }
        Ok(())
    }
}
