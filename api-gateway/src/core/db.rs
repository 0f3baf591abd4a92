//! polisd's state in SQLite (WAL, synchronous=FULL: a committed change survives a crash of polisd or of the
//! machine). A container is one row: its ID, its unique name and its record as JSON.

use super::error::{Error, Result};
use super::health::Health;
use super::networks::{EndpointRecord, NetworkRecord};
use super::record::ContainerRecord;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

pub struct Db {
    inner: Mutex<Inner>,
}

/// The connection, and every container's record parsed once: container reads are answered from memory (`docker
/// ps`, metrics and alerts read all of them often), and each write goes to the database and then, once it has
/// succeeded, to the map, under one lock. polisd is the database's only writer.
struct Inner {
    conn: Connection,
    containers: HashMap<String, ContainerRecord>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    record  TEXT NOT NULL
);
";

/// Networks (one row each, as containers), and endpoints: a container's membership of a network, one row per
/// pair, its record holding the aliases asked for and, while the container runs, its addresses.
const NETWORK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    network     TEXT NOT NULL,
    container   TEXT NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (network, container)
);
";

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(|e| Error::failed(path.display(), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(NETWORK_SCHEMA)?;
        let texts: Vec<String> = {
            let mut stmt = conn.prepare("SELECT record FROM containers")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?
        };
        let containers = texts
            .iter()
            .map(|t| from_json(t).map(|r| (r.id.clone(), r)))
            .collect::<Result<_>>()?;
        Ok(Db {
            inner: Mutex::new(Inner { conn, containers }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a container; a name already taken is a conflict naming the container that has it.
    pub fn insert(&self, record: &ContainerRecord) -> Result<()> {
        let mut db = self.lock();
        if let Some(other) = db.id_of_name(&record.name) {
            return Err(name_conflict(&record.name, other));
        }
        db.conn.execute(
            "INSERT INTO containers (id, name, record) VALUES (?1, ?2, ?3)",
            params![record.id, record.name, to_json(record)?],
        )?;
        db.containers.insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Writes a container's record. Its health-check state is the health checker's alone
    /// ([`Db::modify_health`]): the stored one is kept, so that an operation that read the record before a check
    /// finished never writes back an older health.
    pub fn update(&self, record: &ContainerRecord) -> Result<()> {
        let mut db = self.lock();
        let Some(stored) = db.containers.get(&record.id) else {
            return Err(Error::NotFound(format!("No such container: {}", record.id)));
        };
        if let Some(other) = db.id_of_name(&record.name)
            && other != record.id
        {
            return Err(name_conflict(&record.name, other));
        }
        let mut kept = record.clone();
        kept.state.health = stored.state.health.clone();
        db.conn.execute(
            "UPDATE containers SET name = ?2, record = ?3 WHERE id = ?1",
            params![kept.id, kept.name, to_json(&kept)?],
        )?;
        db.containers.insert(kept.id.clone(), kept);
        Ok(())
    }

    /// Changes a container's health-check state in one step (read and written under the database's lock); `f`
    /// sees the stored record. None when the container is gone.
    pub fn modify_health<T>(
        &self,
        id: &str,
        f: impl FnOnce(&ContainerRecord, &mut Option<Health>) -> T,
    ) -> Result<Option<T>> {
        let mut db = self.lock();
        let Some(stored) = db.containers.get(id) else {
            return Ok(None);
        };
        let mut record = stored.clone();
        let mut health = record.state.health.take();
        let out = f(&record, &mut health);
        record.state.health = health;
        db.conn.execute(
            "UPDATE containers SET record = ?2 WHERE id = ?1",
            params![id, to_json(&record)?],
        )?;
        db.containers.insert(id.to_string(), record);
        Ok(Some(out))
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let mut db = self.lock();
        db.conn
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?;
        db.containers.remove(id);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<ContainerRecord>> {
        Ok(self.lock().containers.get(id).cloned())
    }

    /// The container a user names: its full ID, its name, or an unambiguous prefix of its ID (as Docker looks
    /// them up, in that order).
    pub fn lookup(&self, reference: &str) -> Result<ContainerRecord> {
        let not_found = || Error::NotFound(format!("No such container: {reference}"));
        if reference.is_empty() {
            return Err(not_found());
        }
        let db = self.lock();
        if let Some(r) = db.containers.get(reference) {
            return Ok(r.clone());
        }
        let name = reference.strip_prefix('/').unwrap_or(reference);
        if let Some(id) = db.id_of_name(name) {
            return Ok(db.containers[id].clone());
        }
        if !reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut found = db
            .containers
            .values()
            .filter(|r| r.id.starts_with(reference));
        match (found.next(), found.next()) {
            (Some(r), None) => Ok(r.clone()),
            (None, _) => Err(not_found()),
            _ => Err(Error::Invalid(format!(
                "multiple IDs found with provided prefix: {reference}"
            ))),
        }
    }

    /// Every container, oldest first.
    pub fn all(&self) -> Result<Vec<ContainerRecord>> {
        let mut all: Vec<ContainerRecord> = self.lock().containers.values().cloned().collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }
}

impl Inner {
    /// The ID of the container with this name.
    fn id_of_name(&self, name: &str) -> Option<&str> {
        self.containers
            .values()
            .find(|r| r.name == name)
            .map(|r| r.id.as_str())
    }
}

/// Networks and endpoints.
impl Db {
    /// Adds a network; a name already taken is a conflict.
    pub fn insert_network(&self, network: &NetworkRecord) -> Result<()> {
        let n = self.lock().conn.execute(
            "INSERT INTO networks (id, name, record) VALUES (?1, ?2, ?3)",
            params![network.id, network.name, encode(network, "network")?],
        );
        match n {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::AlreadyExists(format!(
                    "network with name {} already exists",
                    network.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn update_network(&self, network: &NetworkRecord) -> Result<()> {
        self.lock().conn.execute(
            "UPDATE networks SET record = ?2 WHERE id = ?1",
            params![network.id, encode(network, "network")?],
        )?;
        Ok(())
    }

    /// Removes a network. The endpoints of stopped containers stay: such a container joins a network of the same
    /// name when it starts again, or fails to start naming the network (as with dockerd).
    pub fn remove_network(&self, id: &str) -> Result<()> {
        self.lock()
            .conn
            .execute("DELETE FROM networks WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn network(&self, id: &str) -> Result<Option<NetworkRecord>> {
        let text: Option<String> = self
            .lock()
            .conn
            .query_row(
                "SELECT record FROM networks WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| decode(&t, "network")).transpose()
    }

    /// The network a user names: its full ID, its name, or an unambiguous prefix of its ID (Docker's order).
    pub fn lookup_network(&self, reference: &str) -> Result<NetworkRecord> {
        let not_found = || Error::NotFound(format!("network {reference} not found"));
        if reference.is_empty() {
            return Err(not_found());
        }
        if let Some(n) = self.network(reference)? {
            return Ok(n);
        }
        let by_name: Option<String> = self
            .lock()
            .conn
            .query_row(
                "SELECT record FROM networks WHERE name = ?1",
                params![reference],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(t) = by_name {
            return decode(&t, "network");
        }
        if !reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let texts: Vec<String> = {
            let db = self.lock();
            let conn = &db.conn;
            let mut stmt =
                conn.prepare_cached("SELECT record FROM networks WHERE id LIKE ?1 || '%'")?;
            stmt.query_map(params![reference], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?
        };
        match texts.as_slice() {
            [t] => decode(t, "network"),
            [] => Err(not_found()),
            _ => Err(Error::Invalid(format!(
                "network {reference} is ambiguous ({} matches found based on ID prefix)",
                texts.len()
            ))),
        }
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let texts: Vec<String> = {
            let db = self.lock();
            let conn = &db.conn;
            let mut stmt = conn.prepare_cached("SELECT record FROM networks ORDER BY rowid")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?
        };
        texts.iter().map(|t| decode(t, "network")).collect()
    }

    /// Adds or replaces an endpoint.
    pub fn put_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
        self.lock().conn.execute(
            "INSERT INTO endpoints (network, container, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (network, container) DO UPDATE SET record = excluded.record",
            params![
                endpoint.network_id,
                endpoint.container_id,
                encode(endpoint, "endpoint")?
            ],
        )?;
        Ok(())
    }

    pub fn remove_endpoint(&self, network: &str, container: &str) -> Result<()> {
        self.lock().conn.execute(
            "DELETE FROM endpoints WHERE network = ?1 AND container = ?2",
            params![network, container],
        )?;
        Ok(())
    }

    pub fn remove_endpoints_of(&self, container: &str) -> Result<()> {
        self.lock().conn.execute(
            "DELETE FROM endpoints WHERE container = ?1",
            params![container],
        )?;
        Ok(())
    }

    /// A container's endpoints, in the order they were made.
    pub fn endpoints_of(&self, container: &str) -> Result<Vec<EndpointRecord>> {
        self.endpoints_where(Some(("container", container)))
    }

    /// A network's endpoints, in the order they were made.
    pub fn endpoints_in(&self, network: &str) -> Result<Vec<EndpointRecord>> {
        self.endpoints_where(Some(("network", network)))
    }

    pub fn all_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        self.endpoints_where(None)
    }

    /// The endpoints whose `column` is `value` (all of them for None).
    fn endpoints_where(&self, filter: Option<(&str, &str)>) -> Result<Vec<EndpointRecord>> {
        let texts: Vec<String> = {
            let db = self.lock();
            let conn = &db.conn;
            match filter {
                Some((column, value)) => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT record FROM endpoints WHERE {column} = ?1 ORDER BY rowid"
                    ))?;
                    stmt.query_map(params![value], |r| r.get(0))?
                        .collect::<std::result::Result<_, _>>()?
                }
                None => {
                    let mut stmt =
                        conn.prepare_cached("SELECT record FROM endpoints ORDER BY rowid")?;
                    stmt.query_map([], |r| r.get(0))?
                        .collect::<std::result::Result<_, _>>()?
                }
            }
        };
        texts.iter().map(|t| decode(t, "endpoint")).collect()
    }
}

fn encode(value: &impl serde::Serialize, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::failed(format!("encode {what} record"), e))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::failed(format!("decode {what} record"), e))
}

fn name_conflict(name: &str, other: &str) -> Error {
    Error::AlreadyExists(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

fn to_json(record: &ContainerRecord) -> Result<String> {
    serde_json::to_string(record).map_err(|e| Error::failed("encode container record", e))
}

fn from_json(text: &str) -> Result<ContainerRecord> {
    serde_json::from_str(text).map_err(|e| Error::failed("decode container record", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn containers_are_found_by_id_name_and_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.db")).unwrap();
        db.insert(&record("abc123", "web")).unwrap();
        db.insert(&record("abd456", "db")).unwrap();
        assert_eq!(db.lookup("abc123").unwrap().name, "web");
        assert_eq!(db.lookup("/db").unwrap().id, "abd456");
        assert_eq!(db.lookup("abc").unwrap().id, "abc123");
        assert!(matches!(db.lookup("ab"), Err(Error::Invalid(_))));
        assert!(matches!(db.lookup("zz"), Err(Error::NotFound(_))));
        assert!(matches!(db.lookup(""), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_taken_name_is_a_conflict_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.db")).unwrap();
        db.insert(&record("a1", "web")).unwrap();
        let e = db.insert(&record("b2", "web")).unwrap_err();
        assert!(
            matches!(&e, Error::AlreadyExists(m) if m.contains("a1")),
            "{e}"
        );
        db.insert(&record("b2", "api")).unwrap();
        let e = db.update(&record("b2", "web")).unwrap_err();
        assert!(matches!(e, Error::AlreadyExists(_)));
        db.remove("a1").unwrap();
        db.update(&record("b2", "web")).unwrap();
        assert_eq!(db.all().unwrap().len(), 1);
    }

    #[test]
    fn health_is_written_by_the_checker_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.db")).unwrap();
        db.insert(&record("a1", "web")).unwrap();
        let stale = db.get("a1").unwrap().unwrap();
        db.modify_health("a1", |_, h| {
            *h = Some(Health {
                failing_streak: 2,
                ..Default::default()
            })
        })
        .unwrap()
        .unwrap();
        db.update(&stale).unwrap();
        let health = db.get("a1").unwrap().unwrap().state.health.unwrap();
        assert_eq!(health.failing_streak, 2, "an older read never writes back");
        assert!(db.modify_health("zz", |_, _| ()).unwrap().is_none());
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        Db::open(&path)
            .unwrap()
            .insert(&record("a1", "web"))
            .unwrap();
        assert_eq!(Db::open(&path).unwrap().lookup("web").unwrap().id, "a1");
    }

    #[test]
    fn memory_and_database_agree_after_writes_and_a_refused_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let db = Db::open(&path).unwrap();
        db.insert(&record("a1", "web")).unwrap();
        db.insert(&record("b2", "api")).unwrap();
        let mut renamed = db.get("a1").unwrap().unwrap();
        renamed.name = "front".into();
        renamed.restart_count = 3;
        db.update(&renamed).unwrap();
        let mut clash = db.get("b2").unwrap().unwrap();
        clash.name = "front".into();
        assert!(matches!(db.update(&clash), Err(Error::AlreadyExists(_))));
        db.remove("zz").unwrap();
        let names = |db: &Db| -> Vec<(String, String, i64)> {
            let mut v: Vec<_> = db
                .all()
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.name, r.restart_count))
                .collect();
            v.sort();
            v
        };
        let want = vec![
            ("a1".to_string(), "front".to_string(), 3),
            ("b2".to_string(), "api".to_string(), 0),
        ];
        assert_eq!(names(&db), want);
        drop(db);
        assert_eq!(
            names(&Db::open(&path).unwrap()),
            want,
            "the database holds what memory held"
        );
    }
}
