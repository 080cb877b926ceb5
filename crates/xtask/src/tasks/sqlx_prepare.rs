//! `cargo xtask sqlx-prepare [--check]`: the offline cache of the api's compile-time checked
//! queries (`.sqlx/`), made the way `cargo sqlx prepare` makes it, without installing sqlx-cli:
//! a throwaway PostgreSQL with `migrations/` applied, then the api compiled with
//! `SQLX_OFFLINE=false` and `SQLX_OFFLINE_DIR` set, so the query macros describe each query
//! against the real schema and write it down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use testkit::services::Postgres;

use crate::flags;
use crate::support::context::{block_on, cargo, work_dir, workspace_root};

/// The root of the one crate with compile-time checked queries, the api's library: a changed
/// file makes cargo recompile the whole crate, so every query macro in it runs again.
const QUERIES: &str = "crates/api/src/lib.rs";

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

/// Checks the api with the query macros online, writing one file per query into `out`. In the
/// workspace's own target folder, with the workspace's feature set: after `cargo clippy
/// --workspace --all-targets` every dependency is already checked, so this re-checks the
/// members alone (a folder of its own rebuilt the tree: 0.4 GB and about 50 s in CI). The api
/// is made stale first, as `cargo sqlx prepare` does it, by setting the time of its root
/// source: cargo does not see the variables that turn the macros online.
fn describe_queries(url: &str, out: &Path) -> Result<()> {
    let _changed = MarkedChanged::mark(&workspace_root().join(QUERIES))?;
    cmd::run(
        Command::new(cargo())
            .current_dir(workspace_root())
            .args([
                "check",
                "--quiet",
                "--workspace",
                "--all-targets",
                "--locked",
            ])
            .env("SQLX_OFFLINE", "false")
            .env("SQLX_OFFLINE_DIR", out)
            .env("DATABASE_URL", url),
    )
}

/// A file marked changed for as long as this lives: its time set to now, and put back when
/// dropped. Left at now, it made every later build of the api stale, the dev build and the
/// deployables' release builds too (CI checks the queries beside the deploy test, whose
/// redeploy would then recompile the api). A file changed meanwhile, by an editor say, keeps
/// its new time.
#[derive(Debug)]
struct MarkedChanged {
    file: std::fs::File,
    path: PathBuf,
    was: SystemTime,
    set: SystemTime,
}

impl MarkedChanged {
    fn mark(path: &Path) -> Result<Self> {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let was = file.metadata()?.modified()?;
        let set = SystemTime::now();
        file.set_modified(set)
            .with_context(|| format!("cannot mark {} changed", path.display()))?;
        // The time as the file system keeps it (it may round), to recognise it on drop.
        let set = file.metadata()?.modified()?;
        Ok(Self {
            file,
            path: path.to_owned(),
            was,
            set,
        })
    }
}

impl Drop for MarkedChanged {
    fn drop(&mut self) {
        let now = std::fs::metadata(&self.path).and_then(|m| m.modified());
        if now.is_ok_and(|now| now == self.set)
            && let Err(e) = self.file.set_modified(self.was)
        {
            eprintln!(
                "· cannot put back the time of {}: {e} (the next build of it compiles it anew)",
                self.path.display()
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_marked_changed_gets_its_time_back_unless_it_changed_meanwhile() {
        let dir = std::env::temp_dir().join(format!("tollgate-mark-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let time = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        let set_time = |path: &Path, at: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(at))
                .expect("set mtime")
        };

        let untouched = dir.join("untouched.rs");
        std::fs::write(&untouched, "// a root").expect("write");
        set_time(&untouched, old);
        let mark = MarkedChanged::mark(&untouched).expect("mark");
        assert!(
            time(&untouched) > old,
            "marked changed: cargo must see it stale"
        );
        drop(mark);
        assert_eq!(time(&untouched), old, "its own time again once done");

        let edited = dir.join("edited.rs");
        std::fs::write(&edited, "// a root").expect("write");
        set_time(&edited, old);
        let mark = MarkedChanged::mark(&edited).expect("mark");
        let saved = SystemTime::now() + std::time::Duration::from_secs(5);
        set_time(&edited, saved);
        drop(mark);
        assert_eq!(time(&edited), saved, "an edit meanwhile keeps its time");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Only the crate `QUERIES` roots is made stale: a query macro in another crate would not
    /// be described, and `--check` would call `.sqlx/` stale for no change of the user's.
    #[test]
    fn only_the_crate_made_stale_has_checked_queries() {
        let root = workspace_root();
        let owner = root.join(QUERIES);
        let owner = owner.parent().expect("src/");
        let mut stack = vec![root.join("crates")];
        let mut outside = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read crates/").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.starts_with(owner)
                    && std::fs::read_to_string(&path).is_ok_and(|text| {
                        ["query!(", "query_as!(", "query_scalar!(", "query_file"]
                            .iter()
                            .any(|m| text.contains(&format!("sqlx::{m}")))
                    })
                {
                    outside.push(path);
                }
            }
        }
        assert!(
            outside.is_empty(),
            "compile-time checked queries outside {}: {outside:?}; make `sqlx-prepare` mark \
             their crate stale too",
            owner.display()
        );
    }
}
