//! `cargo xtask up --once`, run as a new user runs it: every line of its table must be ✓.

use std::process::Command;

#[test]
fn the_local_flow_passes_end_to_end() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["run", "--quiet", "--package", "xtask", "--", "up", "--once"])
        .output()
        .expect("cargo runs");
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
    assert_eq!(table.len(), 11, "{stdout}");
    assert!(table.iter().all(|l| l.starts_with('✓')), "{stdout}");
    for line in [
        "Lambda registration accepted",
        "Cognito retry replayed",
        "forged: spoofed X-Forwarded-For",
        "api down at sign-up",
        "registered from the queue when the api came back",
        "lost registration recovered",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
}
