//! Where the machine's own tools lie, for `cargo xtask setup` to check and the tasks to use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd;

/// Finds the PostgreSQL server binaries: on PATH, else the newest under
/// /usr/lib/postgresql/*/bin (Debian's layout).
pub fn postgres_binaries() -> Result<PathBuf> {
    if let Some(initdb) = cmd::which("initdb")
        && let Some(dir) = initdb.parent()
        && dir.join("pg_ctl").is_file()
    {
        return Ok(dir.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().context(
        "PostgreSQL server binaries (initdb, pg_ctl) not found.\n  \
         Install them: `apt-get install postgresql` (Debian/Ubuntu), or\n  \
         point the tests at a server you run: DATABASE_URL=postgres://user:password@127.0.0.1:5432/postgres",
    )
}

/// What setup looks for to run arm64 functions: Debian's `libc6-arm64-cross`.
pub const ARM64_LIBC: &str = "aarch64 glibc (libc6-arm64-cross)";

/// What setup looks for to run an arm64 function with its host's clock off: Debian's
/// `libfaketime` for arm64, preloaded into the function under qemu.
pub const ARM64_FAKETIME: &str = "aarch64 libfaketime";

/// The Debian package [`ARM64_FAKETIME`] comes from: its path in Debian's pool and its SHA-256.
/// Another architecture's package is unpacked into the tools folder, never installed, so the
/// machine's package architectures are left as they are.
pub const ARM64_FAKETIME_DEB: (&str, &str) = (
    "pool/main/f/faketime/libfaketime_0.9.10-2.1_arm64.deb",
    "2e09e24e85c77bdc555a04b4a6dd4523092066135d08ef233396e8f984a3daf2",
);

/// Where a package from Debian's pool is unpacked: the tools folder, under its file's name.
pub fn unpacked_dir(pool_path: &str) -> PathBuf {
    let file = Path::new(pool_path)
        .file_stem()
        .map_or_else(|| pool_path.into(), |s| s.to_owned());
    cmd::tools_dir().join(file)
}

/// The preloadable arm64 libfaketime (its thread-safe build: the functions run tokio's
/// threads), once unpacked.
pub fn arm64_faketime() -> Option<PathBuf> {
    let lib = unpacked_dir(ARM64_FAKETIME_DEB.0)
        .join("usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1");
    lib.is_file().then_some(lib)
}

/// Where Debian's arm64 C library lies (`qemu-aarch64-static -L` takes it).
pub fn arm64_sysroot() -> Option<PathBuf> {
    let dir = Path::new("/usr/aarch64-linux-gnu");
    dir.join("lib/ld-linux-aarch64.so.1")
        .exists()
        .then(|| dir.to_owned())
}
