//! `cargo xtask up --once`, run as a new user runs it, on a PATH without the Python tools:
//! `setup --check` names them missing (`--for deploy` only what a deploy runs), `setup` brings
//! them into the project's environments (fresh ones here, `TOLLGATE_TOOLS_DIR`), and `up --once`
//! then passes with that PATH unchanged: every line of its table ✓.

use std::path::Path;
use std::process::{Command, Output};

/// System folders, cargo's and rustup's: none of the Python tools (pip's and pyenv's folders
/// are left out).
fn bare_path() -> String {
    let cargo = Path::new(env!("CARGO")).parent().expect("cargo's folder");
    let rustup = testkit::cmd::which("rustup").expect("rustup on PATH");
    let rustup = rustup.parent().expect("rustup's folder");
    format!(
        "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        cargo.display(),
        rustup.display()
    )
}

fn xtask(tools: &Path, args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_xtask-cloud"))
        .current_dir(&root)
        .args(args)
        .env("PATH", bare_path())
        .env("TOLLGATE_TOOLS_DIR", tools)
        .output()
        .expect("cargo runs")
}

/// The line of `setup`'s table that names `tool`.
fn row<'a>(table: &'a str, tool: &str) -> Option<&'a str> {
    table.lines().find(|l| l.starts_with(tool))
}

#[test]
fn the_local_flow_passes_end_to_end() {
    let tools = std::env::temp_dir().join(format!("tollgate-tools-{}", std::process::id()));
    let check = xtask(&tools, &["setup", "--check"]);
    let table = String::from_utf8_lossy(&check.stdout);
    assert!(
        !check.status.success(),
        "nothing is missing on a bare PATH?\n{table}"
    );
    for tool in [
        "moto_server",
        "schemathesis",
        "cargo-lambda",
        "cargo-zigbuild",
        "zig",
    ] {
        assert!(
            row(&table, tool).unwrap_or_default().contains("missing"),
            "{tool} not reported missing:\n{table}"
        );
    }
    // A deploy's own set: the builds' tools and Terraform, nothing of the local world.
    let deploy = xtask(&tools, &["setup", "--check", "--for", "deploy"]);
    let table = String::from_utf8_lossy(&deploy.stdout);
    assert!(!deploy.status.success(), "{table}");
    for tool in ["cargo-lambda", "cargo-zigbuild", "zig", "terraform"] {
        assert!(
            row(&table, tool).is_some(),
            "a deploy needs {tool}:\n{table}"
        );
    }
    for tool in ["moto_server", "schemathesis", "checkov", "initdb", "wrk"] {
        assert!(
            row(&table, tool).is_none(),
            "a deploy does not run {tool}:\n{table}"
        );
    }
    let setup = xtask(&tools, &["setup"]);
    let table = String::from_utf8_lossy(&setup.stdout);
    let moto = row(&table, "moto_server").unwrap_or_default();
    assert!(
        moto.contains("✓") && moto.contains("project environment"),
        "setup did not bring moto into the project's environment:\n{table}\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let deploy = xtask(&tools, &["setup", "--check", "--for", "deploy"]);
    let table = String::from_utf8_lossy(&deploy.stdout);
    assert!(deploy.status.success(), "{table}");
    let lambda = row(&table, "cargo-lambda").unwrap_or_default();
    assert!(
        lambda.contains("project environment") && lambda.contains("/build-"),
        "cargo-lambda is not in the builds' own environment:\n{table}"
    );
    // Not on this PATH: the builds find it because they name the environment's Python.
    let zig = row(&table, "zig").unwrap_or_default();
    assert!(
        zig.contains("✓") && zig.contains("/build-") && zig.contains("/bin/python3 -m ziglang"),
        "zig (which both builds link with) is not the builds' environment's:\n{table}"
    );
    let output = xtask(&tools, &["up", "--once"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo xtask up --once failed:\n{stdout}\n{stderr}"
    );
    let table: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect();
    assert_eq!(table.len(), 12, "{stdout}");
    assert!(table.iter().all(|l| l.starts_with('✓')), "{stdout}");
    for line in [
        "Lambda registration accepted",
        "Cognito retry replayed",
        "forged: spoofed X-Forwarded-For",
        "api down at sign-up",
        "registered from the queue when the api came back",
        "lost registration recovered",
        "heartbeat",
        "registered through the trigger in",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    std::fs::remove_dir_all(&tools).ok();
}
