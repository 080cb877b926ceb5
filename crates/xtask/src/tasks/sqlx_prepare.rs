//! `cargo xtask sqlx-prepare [--check]`: the offline cache of the api's compile-time checked
//! queries (`.sqlx/`), made the way `cargo sqlx prepare` makes it, without installing sqlx-cli:
//! a throwaway PostgreSQL with `migrations/` applied, then the api compiled with
//! `SQLX_OFFLINE=false` and `SQLX_OFFLINE_DIR` set, so the query macros describe each query
//! against the real schema and write it down.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use testkit::cmd;
use testkit::services::Postgres;

use crate::flags;
use crate::support::context::{block_on, cargo, work_dir, workspace_root};

impl flags::SqlxPrepare {
    pub fn run(self) -> Result<()> {
        let root = workspace_root();
        let pg = Postgres::start()?;
        block_on(apply_migrations(&pg.url(), &root.join("migrations")))?;
        let fresh = work_dir().join("sqlx-prepare");
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh)?;
        }
        std::fs::create_dir_all(&fresh)?;
        describe_queries(&pg.url(), &fresh)?;
        let committed = root.join(".sqlx");
        let (old, new) = (read_cache(&committed)?, read_cache(&fresh)?);
        if old == new {
            eprintln!("· .sqlx/ is up to date ({} queries)", new.len());
            return Ok(());
        }
        if self.check {
            bail!(
                ".sqlx/ is stale ({} cached, {} described now, or their schemas differ): \
                 run `cargo xtask sqlx-prepare` and commit .sqlx/",
                old.len(),
                new.len()
            );
        }
        if committed.exists() {
            std::fs::remove_dir_all(&committed)?;
        }
        std::fs::create_dir_all(&committed)?;
        for (name, text) in &new {
            std::fs::write(committed.join(name), text)?;
        }
        eprintln!("· .sqlx/ refreshed: {} queries; commit it", new.len());
        Ok(())
    }
}

async fn apply_migrations(url: &str, dir: &Path) -> Result<()> {
    let db = sqlx::PgPool::connect(url).await?;
    sqlx::migrate::Migrator::new(dir)
        .await?
        .run(&db)
        .await
        .context("cannot apply migrations/")?;
    Ok(())
}

/// Compiles the api with the query macros online, writing one file per query into `out`.
/// Its own target folder, so the workspace's offline build is not invalidated.
fn describe_queries(url: &str, out: &Path) -> Result<()> {
    let target = work_dir().join("sqlx-target");
    cmd::run(
        Command::new(cargo())
            .current_dir(workspace_root())
            .args(["clean", "--quiet", "--package", "api", "--target-dir"])
            .arg(&target),
    )?;
    cmd::run(
        Command::new(cargo())
            .current_dir(workspace_root())
            .args([
                "check",
                "--quiet",
                "--package",
                "api",
                "--lib",
                "--target-dir",
            ])
            .arg(&target)
            .env("SQLX_OFFLINE", "false")
            .env("SQLX_OFFLINE_DIR", out)
            .env("DATABASE_URL", url),
    )
}

/// The cache's files, name → content.
fn read_cache(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(files);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            files.insert(name.to_owned(), std::fs::read_to_string(&path)?);
        }
    }
    Ok(files)
}
