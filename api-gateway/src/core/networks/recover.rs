//! Recovery at polisd's start: networks and attachments of containers that exited or vanished while polisd was away.

use super::dns::remove_own_resolver;
use super::netplug::mark_internal;
use super::*;

impl Core {
    /// After the containers are recovered at start: namespaces and attachments of containers that do not run any
    /// more are removed, and polis-netplug forgets every attachment no running container has (CNI GC).
    pub async fn recover_networks(&self) {
        let live = |id: &str| {
            self.db
                .get(id)
                .ok()
                .flatten()
                .is_some_and(|c| c.state.status.is_live())
        };
        let mut stale: Vec<String> = self
            .db
            .all_endpoints()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.attached.is_some() && !live(&e.container_id))
            .map(|e| e.container_id)
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.config.netns_dir()) {
            for e in entries.filter_map(|e| e.ok()) {
                let id = e.file_name().to_string_lossy().into_owned();
                if !live(&id) {
                    stale.push(id);
                }
            }
        }
        stale.sort();
        stale.dedup();
        for id in stale {
            tracing::info!(
                container = id,
                "remove the network state of a container that exited"
            );
            self.network_down(&id).await;
        }
        let networks = self.db.networks().unwrap_or_default();
        let endpoints = self.db.all_endpoints().unwrap_or_default();
        let data_dir = self.netplug_dir();
        let runner = self.cni();
        let mut work = Vec::new();
        for n in networks.into_iter().filter(|n| n.driver == Driver::Bridge) {
            if !data_dir.join(&n.name).is_dir() {
                continue;
            }
            let valid: Vec<polis_netplug::cni::Attachment> = endpoints
                .iter()
                .filter(|e| e.network_id == n.id && e.attached.is_some() && live(&e.container_id))
                .map(|e| polis_netplug::cni::Attachment {
                    container_id: e.container_id.clone(),
                    ifname: e.ifname.clone(),
                })
                .collect();
            work.push((n, valid));
        }
        // Internal networks with running containers keep their firewall marks, also when the ruleset was
        // flushed while polisd was away.
        let internal: Vec<String> = work
            .iter()
            .filter(|(n, valid)| n.internal && !valid.is_empty())
            .map(|(n, _)| n.bridge.clone())
            .collect();
        let _ = blocking(move || {
            for (n, valid) in work {
                let gc = n.list().and_then(|list| {
                    runner
                        .gc(&list, &valid)
                        .map_err(|e| Error::Failed(e.to_string()))
                });
                if let Err(error) = gc {
                    tracing::warn!(network = n.name, %error, "CNI GC");
                }
            }
            if let Err(error) = mark_internal(&data_dir, &internal) {
                tracing::warn!(%error, "isolate the internal networks");
            }
            Ok(())
        })
        .await;
        // Own resolvers of containers that do not run any more; the others answer the names as they are now.
        let views = self.own_resolvers_dir();
        let gone: Vec<String> = std::fs::read_dir(&views)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|id| !live(id))
                    .collect()
            })
            .unwrap_or_default();
        if !gone.is_empty() {
            let _ = blocking(move || {
                for id in gone {
                    remove_own_resolver(&views, &id);
                }
                Ok(())
            })
            .await;
        }
        self.sync_own_resolvers();
    }
}
