//! Scratch PostgreSQL databases for tests: each test gets a database of its own
//! (created on the server named by `ONAIR_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped again when the handle
//! is dropped, so tests running in parallel never share state.
//!
//! If that server cannot be reached, [`ScratchPostgres::create`] says so loudly on
//! stderr and returns `None` (the caller skips its PostgreSQL half) — unless
//! `ONAIR_REQUIRE_POSTGRES` is set (CI), where it panics instead.
//!
//! Compiled for this crate's own tests and, with the `test-util` feature, for other
//! crates' tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

/// The server tests create their databases on, unless `ONAIR_TEST_POSTGRES` says otherwise.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of one's own; dropped (best effort) with this handle.
#[derive(Debug)]
pub struct ScratchPostgres {
    /// `postgres://…/onair_t_…`: what `[store] url` should be.
    pub url: String,
    name: String,
    admin_url: String,
}

/// The admin URL with its database part replaced by `db`.
fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl ScratchPostgres {
    /// Creates a fresh, empty database, or `None` (after a loud message) if the
    /// PostgreSQL server is unreachable and `ONAIR_REQUIRE_POSTGRES` is not set.
    pub async fn create() -> Option<ScratchPostgres> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("ONAIR_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await {
            Ok(Ok(conn)) => conn,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out after 5 s".to_owned(),
                };
                if std::env::var_os("ONAIR_REQUIRE_POSTGRES").is_some() {
                    panic!("PostgreSQL at {admin_url} is required (ONAIR_REQUIRE_POSTGRES) but unreachable: {why}");
                }
                eprintln!(
                    "\n!!!!! SKIPPING the PostgreSQL half of this test: {admin_url} is unreachable ({why}).\n\
                     !!!!! Start PostgreSQL, or point ONAIR_TEST_POSTGRES at one, to test that backend.\n"
                );
                return None;
            }
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!(
            "onair_t_{}_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // The name is made here of digits and `onair_t_`: nothing to inject.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        Some(ScratchPostgres { url: with_database(&admin_url, &name), name, admin_url })
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread
        // with a runtime of its own drops the database (FORCE ends the connections
        // a store may still hold).
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(Ok(mut conn)) =
                    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
                else {
                    return;
                };
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
                    eprintln!("could not drop scratch database {name}: {e}");
                }
                let _ = conn.close().await;
            });
        });
        let _ = dropper.join();
    }
}

/// One database for a store unit test: the SQLite file in a temp dir, or a scratch
/// PostgreSQL database. `open` can be called again to reopen the same data.
#[cfg(test)]
pub(crate) struct TestDb {
    dir: tempfile::TempDir,
    pg: Option<ScratchPostgres>,
}

#[cfg(test)]
impl TestDb {
    /// Opens (or reopens) the store on this database.
    pub(crate) async fn open(&self) -> crate::Store {
        let url = self.pg.as_ref().map_or("", |pg| pg.url.as_str());
        crate::Store::connect(url, self.dir.path()).await.expect("open store")
    }

    /// `sqlite` or `postgres`.
    pub(crate) fn backend(&self) -> &'static str {
        if self.pg.is_some() { "postgres" } else { "sqlite" }
    }
}

/// Runs a store test once on SQLite and once on a fresh PostgreSQL database (the
/// latter skipped, loudly, only when PostgreSQL is unreachable; see the module doc).
#[cfg(test)]
pub(crate) async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut dbs = vec![TestDb { dir: tempfile::tempdir().expect("tempdir"), pg: None }];
    if let Some(pg) = ScratchPostgres::create().await {
        dbs.push(TestDb { dir: tempfile::tempdir().expect("tempdir"), pg: Some(pg) });
    }
    for db in dbs {
        // Shown with a failing test's output: which backend failed.
        let backend = db.backend();
        eprintln!("--- on {backend}");
        let started = std::time::Instant::now();
        test(db).await;
        eprintln!("--- {backend} done in {:?}", started.elapsed());
    }
}

#[cfg(test)]
impl crate::Store {
    /// Runs one statement as is (tests corrupt rows with it).
    pub(crate) async fn exec_raw(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        crate::db::on_pool!(&self.db, pool => Ok(sqlx::query(sql).execute(pool).await?.rows_affected()))
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_part_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
