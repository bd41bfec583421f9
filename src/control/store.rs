//! The management API's state: an embedded SQLite database in the state dir (WAL mode, so a
//! SIGKILL at any moment leaves the last committed state), with its schema migrated by version
//! in the code. Resources are kept as their JSON bodies beside the columns queries need.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// Schema changes, applied in order; `PRAGMA user_version` records how many have been.
const MIGRATIONS: &[&str] = &[
    // 1: models, versions, operations, jobs.
    "CREATE TABLE models (
        name TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE versions (
        model TEXT NOT NULL,
        name TEXT NOT NULL,
        number INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (model, name)
    );
    CREATE TABLE operations (
        name TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        done INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL
    );",
    // 2: the highest directory number each model has handed out, so that a deleted version's
    // number is never served again by another version (a client pinned to it gets a 404).
    "CREATE TABLE version_numbers (
        model TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    );
    INSERT INTO version_numbers (model, last)
        SELECT model, MAX(number) FROM versions GROUP BY model;",
];

/// A kind of resource and the table that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Model,
    Operation,
    Job,
}

impl Kind {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Kind::Model => ("models", "name"),
            Kind::Operation => ("operations", "name"),
            Kind::Job => ("jobs", "job_id"),
        }
    }
}

pub struct Store {
    conn: Mutex<Connection>,
}

fn json(text: String) -> Result<Value> {
    serde_json::from_str(&text).context("a stored resource is not JSON")
}

/// The `(number, body)` rows a statement selects, bodies parsed.
fn keyed_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(i64, Value)>> {
    let rows = stmt.query_map(params, |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (n, body) = row?;
        Ok((n, json(body)?))
    })
    .collect()
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every committed transaction is on disk before the answer that reports it goes out.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(done) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)
                .with_context(|| format!("state database migration {} failed", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` in one transaction: all of its writes land, or none.
    pub fn transaction<T>(&self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        // A panic inside a transaction rolled it back as it unwound (the transaction's drop),
        // so the connection a poisoned lock guards is consistent: one failed call must not
        // turn the whole management API off.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = conn.transaction()?;
        let out = f(&Tx { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    pub fn get(&self, kind: Kind, key: &str) -> Result<Option<Value>> {
        self.transaction(|tx| tx.get(kind, key))
    }

    /// Stores a new resource; false, and nothing written, when the key is taken.
    pub fn insert_new(&self, kind: Kind, key: &str, project: &str, value: &Value) -> Result<bool> {
        self.transaction(|tx| {
            if tx.get(kind, key)?.is_some() {
                return Ok(false);
            }
            tx.put(kind, key, project, value)?;
            Ok(true)
        })
    }

    pub fn project(&self, kind: Kind, key: &str) -> Result<Option<String>> {
        self.transaction(|tx| tx.project(kind, key))
    }

    /// Every resource of a kind in a project, oldest first.
    pub fn list(&self, kind: Kind, project: &str) -> Result<Vec<Value>> {
        self.transaction(|tx| tx.list(kind, project))
    }

    /// Every resource of a kind in a project with its row id (which an update keeps), oldest
    /// first.
    pub fn list_keyed(&self, kind: Kind, project: &str) -> Result<Vec<(i64, Value)>> {
        self.transaction(|tx| {
            let (table, _) = kind.table();
            let mut stmt = tx.tx.prepare(&format!(
                "SELECT rowid, body FROM {table} WHERE project = ?1 ORDER BY rowid"
            ))?;
            keyed_rows(&mut stmt, params![project])
        })
    }

    pub fn versions(&self, model: &str) -> Result<Vec<(i64, Value)>> {
        self.transaction(|tx| tx.versions(model))
    }

    pub fn version(&self, model: &str, name: &str) -> Result<Option<(i64, Value)>> {
        self.transaction(|tx| tx.version(model, name))
    }

    /// Every operation not yet done, and every job in one of `states`.
    pub fn unfinished(&self, job_states: &[&str]) -> Result<(Vec<Value>, Vec<Value>)> {
        self.transaction(|tx| {
            let mut ops = Vec::new();
            let mut stmt = tx
                .tx
                .prepare("SELECT body FROM operations WHERE done = 0 ORDER BY rowid")?;
            for body in stmt.query_map([], |r| r.get::<_, String>(0))? {
                ops.push(json(body?)?);
            }
            let mut jobs = Vec::new();
            let mut stmt = tx
                .tx
                .prepare("SELECT state, body FROM jobs ORDER BY rowid")?;
            for row in
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            {
                let (state, body) = row?;
                if job_states.contains(&state.as_str()) {
                    jobs.push(json(body)?);
                }
            }
            Ok((ops, jobs))
        })
    }

    /// Every model, of every project.
    pub fn all_models(&self) -> Result<Vec<Value>> {
        self.transaction(|tx| {
            let mut stmt = tx.tx.prepare("SELECT body FROM models ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|b| json(b?)).collect()
        })
    }
}

/// Reads and writes inside one transaction.
pub struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    pub fn get(&self, kind: Kind, key: &str) -> Result<Option<Value>> {
        let (table, column) = kind.table();
        let body: Option<String> = self
            .tx
            .query_row(
                &format!("SELECT body FROM {table} WHERE {column} = ?1"),
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        body.map(json).transpose()
    }

    /// The project a model, operation or job belongs to.
    pub fn project(&self, kind: Kind, key: &str) -> Result<Option<String>> {
        let (table, column) = kind.table();
        Ok(self
            .tx
            .query_row(
                &format!("SELECT project FROM {table} WHERE {column} = ?1"),
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn list(&self, kind: Kind, project: &str) -> Result<Vec<Value>> {
        let (table, _) = kind.table();
        let mut stmt = self.tx.prepare(&format!(
            "SELECT body FROM {table} WHERE project = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map(params![project], |r| r.get::<_, String>(0))?;
        rows.map(|b| json(b?)).collect()
    }

    /// Inserts or replaces a model, operation or job.
    pub fn put(&self, kind: Kind, key: &str, project: &str, body: &Value) -> Result<()> {
        let text = body.to_string();
        match kind {
            Kind::Model => self.tx.execute(
                "INSERT INTO models (name, project, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                params![key, project, text],
            )?,
            Kind::Operation => {
                let done = body.get("done").and_then(Value::as_bool).unwrap_or(false);
                self.tx.execute(
                    "INSERT INTO operations (name, project, done, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(name) DO UPDATE SET done = excluded.done, body = excluded.body",
                    params![key, project, done, text],
                )?
            }
            Kind::Job => {
                let state = body
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("QUEUED");
                self.tx.execute(
                    "INSERT INTO jobs (job_id, project, state, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(job_id) DO UPDATE SET state = excluded.state, body = excluded.body",
                    params![key, project, state, text],
                )?
            }
        };
        Ok(())
    }

    pub fn delete(&self, kind: Kind, key: &str) -> Result<()> {
        let (table, column) = kind.table();
        self.tx.execute(
            &format!("DELETE FROM {table} WHERE {column} = ?1"),
            params![key],
        )?;
        Ok(())
    }

    /// A model's versions with their directory numbers, oldest first.
    pub fn versions(&self, model: &str) -> Result<Vec<(i64, Value)>> {
        let mut stmt = self
            .tx
            .prepare("SELECT number, body FROM versions WHERE model = ?1 ORDER BY number")?;
        keyed_rows(&mut stmt, params![model])
    }

    pub fn version(&self, model: &str, name: &str) -> Result<Option<(i64, Value)>> {
        let row: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT number, body FROM versions WHERE model = ?1 AND name = ?2",
                params![model, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(n, body)| Ok((n, json(body)?))).transpose()
    }

    /// The next free directory number of a model's versions, taken: numbers are never reused,
    /// not even those of deleted versions or of a deleted model of the same name.
    pub fn next_number(&self, model: &str) -> Result<i64> {
        let last: Option<i64> = self
            .tx
            .query_row(
                "SELECT MAX(n) FROM (
                    SELECT last AS n FROM version_numbers WHERE model = ?1
                    UNION ALL SELECT MAX(number) FROM versions WHERE model = ?1)",
                params![model],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let next = last.unwrap_or(0) + 1;
        self.tx.execute(
            "INSERT INTO version_numbers (model, last) VALUES (?1, ?2)
             ON CONFLICT(model) DO UPDATE SET last = excluded.last",
            params![model, next],
        )?;
        Ok(next)
    }

    pub fn put_version(&self, model: &str, name: &str, number: i64, body: &Value) -> Result<()> {
        self.tx.execute(
            "INSERT INTO versions (model, name, number, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(model, name) DO UPDATE SET body = excluded.body",
            params![model, name, number, body.to_string()],
        )?;
        Ok(())
    }

    pub fn delete_version(&self, model: &str, name: &str) -> Result<()> {
        self.tx.execute(
            "DELETE FROM versions WHERE model = ?1 AND name = ?2",
            params![model, name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_survive_a_reopen_and_transactions_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .transaction(|tx| {
                    tx.put(
                        Kind::Model,
                        "census",
                        "p",
                        &json!({"name": "projects/p/models/census"}),
                    )?;
                    let n = tx.next_number("census")?;
                    tx.put_version("census", "v1", n, &json!({"state": "READY"}))
                })
                .unwrap();
            let failed: Result<()> = store.transaction(|tx| {
                tx.put(Kind::Job, "j1", "p", &json!({"state": "QUEUED"}))?;
                anyhow::bail!("boom")
            });
            assert!(failed.is_err());
        }
        let store = Store::open(&path).unwrap();
        assert!(store.get(Kind::Model, "census").unwrap().is_some());
        assert_eq!(store.versions("census").unwrap()[0].0, 1);
        assert!(store.get(Kind::Job, "j1").unwrap().is_none());
        assert_eq!(store.list(Kind::Model, "p").unwrap().len(), 1);
        assert_eq!(store.list(Kind::Model, "other").unwrap().len(), 0);
    }

    #[test]
    fn a_deleted_versions_number_is_never_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let take = |store: &Store, name: &str| {
            store
                .transaction(|tx| {
                    let n = tx.next_number("census")?;
                    tx.put_version("census", name, n, &json!({}))?;
                    Ok(n)
                })
                .unwrap()
        };
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(take(&store, "v1"), 1);
            assert_eq!(take(&store, "v2"), 2);
            store
                .transaction(|tx| tx.delete_version("census", "v2"))
                .unwrap();
            assert_eq!(take(&store, "v3"), 3);
            store
                .transaction(|tx| tx.delete_version("census", "v3"))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(take(&store, "v4"), 4);
    }

    #[test]
    fn a_panic_inside_a_transaction_rolls_it_back_and_leaves_the_store_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<()> = store.transaction(|tx| {
                tx.put(Kind::Job, "j1", "p", &json!({}))?;
                panic!("a handler's bug");
            });
        }));
        assert!(panicked.is_err());
        assert!(store.get(Kind::Job, "j1").unwrap().is_none());
        store
            .transaction(|tx| tx.put(Kind::Job, "j2", "p", &json!({})))
            .unwrap();
        assert!(store.get(Kind::Job, "j2").unwrap().is_some());
    }
}
