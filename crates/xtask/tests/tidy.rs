//! The house rules, kept true by reading the tree (as rust-analyzer's `tidy` does). A rule
//! nobody runs is a wish: each failure says what to do.
//!
//! 1. No function longer than [`MAX_FN_LINES`] lines in `crates/*/src`: split it into named
//!    steps.
//! 2. No crate depends on a deployable: what two crates share lives in a library
//!    (`shared-auth`, `lambda-support`), and xtask runs a deployable's built binary rather than
//!    linking it. The deployables are read from the tree ([`deployables`]): a crate with a
//!    binary that `infra/` deploys under its own name, never a list kept by hand.
//! 3. `testkit` ships nowhere: neither a deployable nor the build that deploys (`xtask-cloud`,
//!    xtask with `cloud` alone) has it in its normal or build dependency tree, directly or
//!    through another crate. What the deploy path shares with the test kit is `opskit`.
//! 4. No `#[path]` attribute: shared code is a crate, not a file included twice.
//! 5. The light `cargo xtask` (`local` alone, what `up` and `test` build) links no AWS SDK
//!    that what `up` runs does not link already: the deploy-only SDKs (EC2, ECS, ECR, Lambda,
//!    WAF) stay behind `cloud`, so a first `up` does not compile them.
//! 6. One integration-test binary per crate (`tests/main.rs`, each file a module of it).
//! 7. A dev build of the binaries reuses the tests' dependency builds: one feature set.
//! 8. No module circles in any crate: imports go one way, parents above their children.
//! 9. One reader of a secret's stages (`shared_aws::versions::Stages`).
//! 10. Every source file opens with a `//!` saying what it is.
//! 11. One `GetSecretValue` in the code that runs (`crates/*/src`):
//!     `shared_aws::versions::read`. Tests may read a value themselves, as an observer
//!     independent of the code under test.
//! 12. One builder of a guarded request's credentials in the code that runs:
//!     `GuardContract::credentials`. Only `shared-auth` calls `sign`; tests may sign requests no
//!     sender would build (the adversarial suite's wrong methods and paths).
//! 13. The contract stays a contract: `shared-auth` links no AWS SDK, async runtime or web
//!     framework (how a component reaches AWS is `shared-aws`).
//! 14. The clock is read in one place in the code that runs: `shared_auth::unix` (seconds and
//!     milliseconds since the epoch); a clock that can be shifted (the api's) builds on it.
//!
//! Each rule that reads text has a self-test: it is fed a violating snippet and must find it.

use std::path::{Path, PathBuf};

/// The longest function the house accepts, signature to closing brace.
const MAX_FN_LINES: usize = 80;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The crates' folders: `crates/*` with a Cargo.toml.
fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The crates that ship, read from the tree: each crate with a binary (`src/main.rs` or a
/// `[[bin]]`) that `infra/` deploys under its own name, as a Lambda function or an ECS task
/// family (`"${local.name}-<crate>"`). Each is deployed on its own, and nothing links one.
fn deployables() -> Vec<String> {
    let with_binaries: Vec<String> = crates()
        .iter()
        .filter(|krate| has_binary(krate))
        .filter_map(|krate| krate.file_name()?.to_str().map(str::to_owned))
        .collect();
    let infra: String = std::fs::read_dir(root().join("infra"))
        .expect("infra/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .map(|p| std::fs::read_to_string(p).expect("readable Terraform"))
        .collect();
    let found = deployed(&with_binaries, &infra);
    assert!(
        !found.is_empty(),
        "no crate's binary is deployed by infra/*.tf: the rules that protect deployables would hold vacuously"
    );
    found
}

/// Whether a crate builds a binary.
fn has_binary(krate: &Path) -> bool {
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).expect("Cargo.toml");
    krate.join("src/main.rs").is_file() || manifest.contains("[[bin]]")
}

/// Of `crates` (with binaries), those `infra` (the Terraform text) deploys under their own name.
fn deployed(crates: &[String], infra: &str) -> Vec<String> {
    crates
        .iter()
        .filter(|name| infra.contains(&format!("\"${{local.name}}-{name}\"")))
        .cloned()
        .collect()
}

#[test]
fn deployables_are_what_infra_deploys() {
    let infra = r#"
        function_name = "${local.name}-post-confirm"
        family        = "${local.name}-api"
        name          = "${local.name}-api-tasks"
        # xtask runs here: "${local.name}-xtask-cloud"
    "#;
    let crates = ["api", "post-confirm", "xtask", "testkit"].map(str::to_owned);
    assert_eq!(deployed(&crates, infra), ["api", "post-confirm"]);
    let found = deployables();
    for library in ["shared-auth", "testkit", "opskit", "xtask"] {
        assert!(
            !found.iter().any(|d| d == library),
            "{library} is not deployed: {found:?}"
        );
    }
}

/// `text` with comments, string and character literals blanked (newlines kept), so braces
/// and keywords are only the code's.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |s: &[u8]| -> String {
        s.iter()
            .map(|&c| if c == b'\n' { '\n' } else { ' ' })
            .collect()
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            i + rest
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2)
        } else if let Some(len) = raw_string_len(rest) {
            i + len
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            i + (j + 1).min(rest.len())
        } else if let Some(len) = char_literal_len(rest) {
            i + len
        } else {
            out.push(rest[0] as char);
            i += 1;
            continue;
        };
        out.push_str(&keep_newlines(&b[i..end]));
        i = end;
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the start of `s`.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let body = start + hashes + 1;
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let end = s[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map_or(s.len(), |p| body + p + close.len());
    Some(end)
}

/// The length of a character literal (`'x'`, `'\n'`, `'\u{7f}'`, `b'x'`) at the start of `s`;
/// `None` for a lifetime (`'a`).
fn char_literal_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"b'") {
        1
    } else if s.first() == Some(&b'\'') {
        0
    } else {
        return None;
    };
    let body = &s[start + 1..];
    let len = if body.first() == Some(&b'\\') {
        body.iter().skip(1).position(|&c| c == b'\'')? + 2
    } else {
        // One character (up to four UTF-8 bytes) and the closing quote.
        let width = match body.first()? {
            c if *c < 0x80 => 1,
            c if *c >= 0xf0 => 4,
            c if *c >= 0xe0 => 3,
            _ => 2,
        };
        if body.get(width) != Some(&b'\'') {
            return None;
        }
        width
    };
    Some(start + 1 + len + 1)
}

/// Every function in `text` as (name, first line, lines), signature to closing brace.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(text);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("fn ").map(|p| p + search) {
        search = at + 3;
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if !word_start {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body starts at the first `{` before any `;` (a declaration has none).
        let Some(open) = code[at..].find(['{', ';']).map(|p| p + at) else {
            continue;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0usize;
        let mut close = open;
        for (i, &c) in bytes.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
        let (first, last) = (line_of(at), line_of(close));
        found.push((name, first, last - first + 1));
    }
    found
}

#[test]
fn the_scanner_sees_code_not_literals_or_comments() {
    let text = r##"
fn short() {
    let s = "{ not a brace";
    let r = r#"} nor this { "#;
    let c = '{';
    let l: &'static str = "x"; // fn hidden() {
    /* fn also_hidden() { */
}

fn longer<'a>(x: &'a str) -> &'a str {
    if x.is_empty() {
        x
    } else {
        x
    }
}
"##;
    let found = functions(text);
    let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["short", "longer"]);
    assert_eq!(found[0].2, 7, "short spans seven lines");
    assert_eq!(found[1].2, 7, "longer spans seven lines");
}

#[test]
fn no_function_is_longer_than_the_house_allows() {
    let mut long = Vec::new();
    for krate in crates() {
        for file in rust_files(&krate.join("src")) {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (name, line, lines) in functions(&text) {
                if lines > MAX_FN_LINES {
                    let shown = file
                        .strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    long.push(format!("{shown}:{line} `{name}` is {lines} lines"));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines; split each into named steps (a function per step, \
         called in order, reads as the list of what happens):\n  {}",
        long.join("\n  ")
    );
}

/// The dependency tables of a crate's manifest, as (table, dependency name).
fn dependencies(manifest: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(manifest).expect("Cargo.toml");
    let value: toml::Table = text.parse().expect("Cargo.toml parses");
    let mut found = Vec::new();
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = value.get(table).and_then(|t| t.as_table()) {
            for (name, spec) in deps {
                // `name = { package = "…" }` renames: the package is what is linked.
                let package = spec
                    .get("package")
                    .and_then(|p| p.as_str())
                    .unwrap_or(name)
                    .to_owned();
                found.push((table.to_owned(), package));
            }
        }
    }
    found
}

#[test]
fn no_crate_links_a_deployable_and_deployables_use_testkit_only_in_tests() {
    let deployables = deployables();
    let mut wrong = Vec::new();
    for krate in crates() {
        let name = krate
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        for (table, dependency) in dependencies(&krate.join("Cargo.toml")) {
            if deployables.contains(&dependency) {
                wrong.push(format!(
                    "crates/{name} depends on the deployable `{dependency}` ([{table}]): move what it \
                     needs into a library both use (shared-auth, lambda-support), or run the built binary"
                ));
            }
            if deployables.contains(&name) && dependency == "testkit" && table != "dev-dependencies"
            {
                wrong.push(format!(
                    "crates/{name} depends on testkit in [{table}]: a deployable may use it in tests only \
                     ([dev-dependencies]); production code must not ship test support"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_included_by_path() {
    let mut included = Vec::new();
    for krate in crates() {
        for file in rust_files(&krate) {
            if file.components().any(|c| c.as_os_str() == "target") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable source");
            if code_only(&text).contains("#[path") {
                included.push(
                    file.strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        included.is_empty(),
        "`#[path]` in {}: code two crates share belongs in a crate both depend on (testkit for tests)",
        included.join(", ")
    );
}

#[test]
fn every_crate_is_a_workspace_member() {
    let manifest: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("parses");
    let members: Vec<String> = manifest["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    for krate in crates() {
        let relative = krate
            .strip_prefix(root())
            .expect("under the root")
            .display()
            .to_string();
        assert!(
            members.contains(&relative),
            "{relative} is not in [workspace] members: cargo test --workspace would skip it"
        );
    }
    for dep in deployables() {
        assert!(
            members.iter().any(|m| m.ends_with(&dep)),
            "the deployable `{dep}` has no crate under crates/"
        );
    }
}

/// What `cargo <args>` prints, run at the workspace root with `env` added; fails the test,
/// with cargo's own message, if cargo does.
fn cargo_stdout(args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The `aws-sdk-*` crates in `package`'s normal dependency tree, with `extra` cargo flags.
fn aws_sdks(package: &str, extra: &[&str]) -> std::collections::BTreeSet<String> {
    normal_tree(package, extra)
        .into_iter()
        .filter(|name| name.starts_with("aws-sdk-"))
        .collect()
}

#[test]
fn the_light_xtask_links_no_sdk_that_up_would_not_build_anyway() {
    let light = aws_sdks("xtask", &["--no-default-features", "--features", "local"]);
    let mut built_by_up = std::collections::BTreeSet::new();
    for package in ["api", "post-confirm", "testkit"] {
        built_by_up.extend(aws_sdks(package, &[]));
    }
    let extra: Vec<&String> = light.difference(&built_by_up).collect();
    assert!(
        extra.is_empty(),
        "`cargo xtask` (`local` alone) links {extra:?}, which nothing `up` runs needs: make the \
         dependency optional in crates/xtask/Cargo.toml, add it to the `cloud` feature, and put \
         the code that uses it behind `#[cfg(feature = \"cloud\")]`"
    );
    // The rule is only worth its name while the full build does link more.
    let full = aws_sdks("xtask", &[]);
    assert!(
        full.contains("aws-sdk-wafv2") && !light.contains("aws-sdk-wafv2"),
        "the `cloud` feature no longer separates the deploy-only SDKs: light {light:?}, full {full:?}"
    );
}

/// `cargo xtask` (the light build) and the tests' build both write `target/debug/xtask`, and a
/// `cargo xtask soak` run beside the deploy test replaced the binary under it: its next
/// `verify` was the light one, which handed the task to `cargo run --bin xtask-cloud` and
/// compiled the SDK tree for 5 minutes. Only the full build makes `xtask-cloud`, so xtask's
/// tests run that.
#[test]
fn xtasks_tests_run_the_binary_only_their_build_makes() {
    let light = concat!("CARGO_BIN_EXE_", "xtask\"");
    let files = rust_files(&root().join("crates/xtask/tests"));
    assert!(files.len() > 5, "xtask's tests not found: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a test");
        assert!(
            !text.contains(light),
            "{} runs `{}`: `cargo xtask` may replace that binary while the test runs; use \
             env!(\"CARGO_BIN_EXE_xtask-cloud\")",
            file.display(),
            light.trim_end_matches('"')
        );
    }
}

/// Each crate's integration tests are one binary. One binary per file linked the whole
/// dependency tree again for each (31 binaries of about 45 MB, 1.3 GB of the tests' build, and
/// a link apiece); one per crate links it once. A crate with more than one file in `tests/`
/// turns autotests off and names them all, as modules, in `tests/main.rs`: a file it forgot
/// would never run, so that is checked too.
#[test]
fn each_crate_has_one_test_binary() {
    for krate in crates() {
        let name = krate
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let tests = krate.join("tests");
        let manifest: toml::Table = std::fs::read_to_string(krate.join("Cargo.toml"))
            .expect("a Cargo.toml")
            .parse()
            .expect("parses");
        let declared = manifest
            .get("test")
            .and_then(|t| t.as_array())
            .map_or(0, Vec::len);
        let autotests = manifest["package"]
            .get("autotests")
            .and_then(toml::Value::as_bool)
            .unwrap_or(true);
        let files: Vec<String> = std::fs::read_dir(&tests)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|e| e == "rs") || p.join("mod.rs").is_file()
                    })
                    .map(|p| {
                        p.file_stem()
                            .expect("a name")
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let discovered = if autotests {
            files
                .iter()
                .filter(|f| tests.join(format!("{f}.rs")).is_file())
                .count()
        } else {
            0
        };
        assert!(
            declared + discovered <= 1,
            "crates/{name} has {} test binaries: set `autotests = false`, declare one \
             [[test]] (name = \"integration\", path = \"tests/main.rs\") and make each file in \
             tests/ a `mod` of tests/main.rs",
            declared + discovered
        );
        if autotests {
            continue;
        }
        let main = std::fs::read_to_string(tests.join("main.rs"))
            .unwrap_or_else(|e| panic!("crates/{name}/tests/main.rs: {e}"));
        for module in files.iter().filter(|f| *f != "main") {
            assert!(
                main.lines().any(|l| l == format!("mod {module};")),
                "crates/{name}/tests/{module} is not a module of tests/main.rs, so its tests \
                 never run: add `mod {module};`"
            );
        }
    }
}

/// The dev builds of the binaries make no unit that the tests' build does not:
/// `opskit::build::dev_build_args` (what `up`, `migrate`, the local Lambda runs and the tests'
/// `built_binary` run), and `cargo lambda watch --bin post-confirm` (README's "Working on the
/// Lambda alone", `up --no-lambda`'s hint, the lambda_watch test), which runs
/// `cargo run --bin post-confirm`. When they did, each such build compiled its own copy of part
/// of the tree (0.2–0.4 GB and up to a minute per package set); `-p post-confirm` is one: it
/// resolves the function's features alone. A build leaves dev-dependencies out of feature
/// resolution, so a new dev-dependency that enables a feature breaks this rule; pin the feature
/// in crates/testkit/Cargo.toml as the others are.
#[test]
fn dev_builds_reuse_the_tests_units() {
    const WATCH: &str = "cargo lambda watch --bin post-confirm";
    let read = |file: &str| std::fs::read_to_string(root().join(file)).expect(file);
    for file in ["README.md", "crates/xtask/src/tasks/up.rs"] {
        assert!(
            read(file).contains(WATCH),
            "{file} no longer gives `{WATCH}`: whatever it gives instead must reuse the tests' \
             build, and this rule must check that build"
        );
    }
    let watch_test: String = read("crates/xtask/tests/lambda_watch.rs")
        .split_whitespace()
        .collect();
    assert!(
        watch_test.contains(r#".args(["lambda","watch","--bin","post-confirm","#),
        "the lambda_watch test runs the README's `{WATCH}`"
    );
    let tests = unit_graph(&["test", "--workspace", "--no-run"]);
    let builds = [
        (
            "a dev build of the binaries",
            opskit::build::dev_build_args(&["api", "post-confirm", "rotate-secret"]),
        ),
        (
            "the emulator's build (`cargo lambda watch --bin post-confirm`)",
            // What cargo-lambda runs is `cargo run --bin post-confirm`, whose unit graph is this
            // one (`cargo run --unit-graph` prints the same graph, then panics for want of a
            // binary to run).
            vec!["build", "--bin", "post-confirm"],
        ),
    ];
    for (what, args) in builds {
        let dev = unit_graph(&args);
        assert!(dev.len() > 100, "{what}: the unit graph is empty: {dev:?}");
        let extra: Vec<&String> = dev.difference(&tests).collect();
        assert!(
            extra.is_empty(),
            "{what} compiles {} units the tests' build does not (a feature only a \
             dev-dependency enables: pin it in crates/testkit/Cargo.toml; or a `-p` that \
             resolves one package's features):\n{}",
            extra.len(),
            extra
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The units `cargo <args>` would compile, each as package, target, mode, features and profile
/// settings (the profile's name aside: `dev` and `test` with the same settings are one build),
/// followed by a digest of the same of every unit it depends on, as cargo's own hash of a unit
/// includes its dependencies': two units alike but for a dependency (a host and a target copy
/// of a crate, say) are two builds. cargo's unit graph is unstable output: it is read through
/// `RUSTC_BOOTSTRAP=1`, and a change of its format fails here, not silently.
fn unit_graph(args: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args = args.to_vec();
    args.extend(["--locked", "--unit-graph", "-Z", "unstable-options"]);
    let out = cargo_stdout(&args, &[("RUSTC_BOOTSTRAP", "1")]);
    let graph: serde_json::Value = serde_json::from_slice(&out).expect("a unit graph");
    assert_eq!(
        graph["version"], 1,
        "cargo's unit graph format changed: read it anew"
    );
    let units = graph["units"].as_array().expect("units");
    let mut keys: Vec<Option<String>> = vec![None; units.len()];
    (0..units.len())
        .map(|index| unit_key(units, index, &mut keys))
        .collect()
}

/// `units[index]` as [`unit_graph`] describes it (memoised in `keys`; the graph has no cycles).
fn unit_key(units: &[serde_json::Value], index: usize, keys: &mut [Option<String>]) -> String {
    use std::hash::{Hash, Hasher};
    if let Some(key) = &keys[index] {
        return key.clone();
    }
    let unit = &units[index];
    let mut dependencies: Vec<String> = unit["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|dep| {
            let at = dep["index"].as_u64().expect("an index") as usize;
            format!("{} {}", dep["extern_crate_name"], unit_key(units, at, keys))
        })
        .collect();
    dependencies.sort();
    // A fixed-key SipHash: the same digest for the same dependencies in both graphs.
    let mut digest = std::hash::DefaultHasher::new();
    dependencies.hash(&mut digest);
    let mut profile = unit["profile"].clone();
    profile.as_object_mut().expect("a profile").remove("name");
    let key = format!(
        "{} {} {} {} features {} profile {} dependencies {:016x}",
        unit["pkg_id"].as_str().expect("a package"),
        unit["target"]["name"],
        unit["mode"],
        unit["platform"],
        unit["features"],
        profile,
        digest.finish()
    );
    keys[index] = Some(key.clone());
    key
}

/// A crate's modules by path (`["support", "context"]`), each with its file's code: from
/// `src/`, the crate root (`lib.rs`, or `main.rs` without one) left out, as are other
/// binaries' roots (`src/bin/`, a `main.rs` beside `lib.rs`). The root declares every module
/// and re-exports their names: it is everyone's parent, not a room of its own.
fn modules(files: &[(PathBuf, String)]) -> Vec<(Vec<String>, String)> {
    let has_lib = files.iter().any(|(p, _)| p == Path::new("lib.rs"));
    files
        .iter()
        .filter(|(p, _)| !p.starts_with("bin"))
        .filter(|(p, _)| !(p == Path::new("lib.rs") || (p == Path::new("main.rs"))))
        .filter(|(p, _)| has_lib || p.components().count() > 0)
        .map(|(p, text)| {
            let mut parts: Vec<String> = p
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            (parts, code_only(text))
        })
        .collect()
}

/// The paths `code` names from module `at`: `crate::a::b`, `super::x` (resolved against `at`,
/// `mod.rs` being its folder's module), and `child::x` for a child it declares (`mod child;`),
/// groups (`use crate::{a::B, c}`) expanded.
fn named_paths(code: &str, at: &[String]) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let ident = |i: usize| {
        let end = b[i..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(b.len(), |p| i + p);
        (code[i..end].to_owned(), end)
    };
    let children: Vec<String> = code
        .split(';')
        .filter_map(|s| {
            s.trim()
                .strip_prefix("pub ")
                .unwrap_or(s.trim())
                .strip_prefix("mod ")
        })
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        if !boundary || !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
            i += 1;
            continue;
        }
        let (word, end) = ident(i);
        if !code[end..].starts_with("::") {
            i = end;
            continue;
        }
        let mut base: Vec<String> = match word.as_str() {
            "crate" => Vec::new(),
            "super" => at[..at.len().saturating_sub(1)].to_vec(),
            w if children.iter().any(|c| c == w) => {
                let mut child = at.to_vec();
                child.push(w.to_owned());
                child
            }
            _ => {
                i = end;
                continue;
            }
        };
        let mut j = end + 2;
        // More `super::` steps up.
        while code[j..].starts_with("super::") {
            base.pop();
            j += "super::".len();
        }
        i = collect_path(code, j, base, &mut found);
    }
    found
}

/// Reads the path (or `{…}` group of paths) at `code[i..]` under `base` into `found`; returns
/// where it ends.
fn collect_path(
    code: &str,
    mut i: usize,
    mut base: Vec<String>,
    found: &mut Vec<Vec<String>>,
) -> usize {
    let b = code.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                i = collect_path(code, i, base.clone(), found);
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let segment = &code[start..i];
        if !segment.is_empty() && segment != "self" {
            base.push(segment.to_owned());
        }
        if code[i..].starts_with("::") && start != i {
            i += 2;
            continue;
        }
        found.push(base);
        return i;
    }
}

/// The module circles among `modules`: each set of two or more modules that reach each other
/// through the paths they name (a path names the longest module prefix of it that exists). A
/// module naming its own descendants (declaring them, re-exporting their names) is their
/// parent, as the crate root is everyone's: those arrows are not counted; arrows up
/// (`super::`) and across are.
fn circles(modules: &[(Vec<String>, String)]) -> Vec<Vec<String>> {
    let index = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|n| modules.iter().position(|(m, _)| m.as_slice() == &path[..n]))
    };
    let edges: Vec<Vec<usize>> = modules
        .iter()
        .enumerate()
        .map(|(me, (at, code))| {
            let mut to: Vec<usize> = named_paths(code, at)
                .iter()
                .filter_map(|p| index(p))
                .filter(|&t| t != me && !modules[t].0.starts_with(at))
                .collect();
            to.sort_unstable();
            to.dedup();
            to
        })
        .collect();
    let reach = |from: usize| {
        let (mut seen, mut stack) = (vec![false; modules.len()], vec![from]);
        while let Some(n) = stack.pop() {
            for &t in &edges[n] {
                if !seen[t] {
                    seen[t] = true;
                    stack.push(t);
                }
            }
        }
        seen
    };
    let reaches: Vec<Vec<bool>> = (0..modules.len()).map(reach).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (a, from_a) in reaches.iter().enumerate() {
        let mut circle: Vec<String> = (0..modules.len())
            .filter(|&b| from_a[b] && reaches[b][a])
            .map(|b| modules[b].0.join("::"))
            .collect();
        circle.sort();
        if circle.len() > 1 && !found.contains(&circle) {
            found.push(circle);
        }
    }
    found
}

/// A crate's `src/` files, relative to it, with their text.
fn sources(krate: &Path) -> Vec<(PathBuf, String)> {
    let src = krate.join("src");
    rust_files(&src)
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("readable source");
            (f.strip_prefix(&src).expect("under src").to_owned(), text)
        })
        .collect()
}

#[test]
fn no_module_circles_in_any_crate() {
    // The rule sees a circle where there is one, through `crate::`, `super::`, a declared child
    // and a group, and none in a tree that only goes down.
    let file = |p: &str, t: &str| (PathBuf::from(p), t.to_owned());
    let circular = [
        file("lib.rs", "pub mod a; pub mod b; pub mod c;"),
        file("a.rs", "use crate::{b::inner::Thing, c};"),
        file("b/mod.rs", "mod inner;\nfn f() { inner::g() }"),
        file("b/inner.rs", "use super::super::c::C; pub fn g() {}"),
        file(
            "c.rs",
            "pub struct C; fn f() -> crate::a::A { todo!() } // crate::x",
        ),
    ];
    assert_eq!(
        circles(&modules(&circular)),
        vec![vec!["a".to_owned(), "b::inner".into(), "c".into()]],
        "the circle a → b::inner → c → a (b, the parent naming its child, outside it)"
    );
    let downward = [
        file("lib.rs", "pub mod a; pub mod b; use crate::a::A;"),
        file(
            "a.rs",
            "use crate::b::B; pub struct A; const S: &str = \"crate::a::x\";",
        ),
        file("b.rs", "pub struct B; use crate::Root;"),
    ];
    assert!(circles(&modules(&downward)).is_empty());

    let mut found = Vec::new();
    for krate in crates() {
        for circle in circles(&modules(&sources(&krate))) {
            let name = krate.file_name().unwrap_or_default().to_string_lossy();
            found.push(format!("{name}: {}", circle.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "module circles; break each by moving what both sides need into a module of its own \
         below them (a leaf type, the shared step), so imports only go one way:\n  {}",
        found.join("\n  ")
    );
}

/// Every Rust file of every crate (its `src`, `tests`, `benches`, `examples`), by path from the
/// workspace root, with its text.
fn all_sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for krate in crates() {
        for dir in ["src", "tests", "benches", "examples"] {
            for path in rust_files(&krate.join(dir)) {
                let shown = path
                    .strip_prefix(root())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push((
                    shown,
                    std::fs::read_to_string(&path).expect("readable source"),
                ));
            }
        }
    }
    files
}
/// Where a secret's stages are read: `shared_aws::versions::Stages`, alone.
const STAGES_HOME: &str = "crates/shared-aws/src/versions.rs";

/// The files of `files` (path, text) whose code reads `VersionIdsToStages` itself.
fn stage_readers(files: &[(String, String)]) -> Vec<String> {
    offenders(
        files,
        |path| path != STAGES_HOME,
        |code| code.contains("version_ids_to_stages"),
    )
}

/// The paths of `files` (path, text) a rule covers (`covered`, by path) whose code, comments
/// and literals blanked ([`code_only`]), breaks it (`breaks`): the one shape of the text rules.
fn offenders(
    files: &[(String, String)],
    covered: impl Fn(&str) -> bool,
    breaks: impl Fn(&str) -> bool,
) -> Vec<String> {
    files
        .iter()
        .filter(|(path, text)| covered(path) && breaks(&code_only(text)))
        .map(|(path, _)| path.clone())
        .collect()
}

#[test]
fn one_reader_of_a_secrets_stages() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    assert_eq!(
        stage_readers(&[
            file(
                "a.rs",
                "let s = d.version_ids_to_stages.unwrap_or_default();"
            ),
            file(
                "b.rs",
                "// version_ids_to_stages, in a comment\nlet s = \"version_ids_to_stages\";"
            ),
            file(STAGES_HOME, "d.version_ids_to_stages.clone()"),
        ]),
        ["a.rs"],
        "a read outside the home is found; comments, strings and the home are not"
    );
    let files = all_sources();
    let found = stage_readers(&files);
    assert!(
        found.is_empty(),
        "these read a secret's VersionIdsToStages themselves; ask \
         shared_aws::versions::Stages (one describe, holder(stage), of_version):\n  {}",
        found.join("\n  ")
    );
}

/// The files of `files` (path, text) that do not open with a `//!` saying what they are.
fn undocumented(files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path.clone())
        .collect()
}

#[test]
fn every_source_file_says_what_it_is() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    assert_eq!(
        undocumented(&[
            file("a.rs", "//! What a is.\nfn a() {}"),
            file("b.rs", "// a plain comment\nfn b() {}"),
            file("c.rs", "/// an item's doc\nfn c() {}"),
        ]),
        ["b.rs", "c.rs"]
    );
    let files = all_sources();
    let found = undocumented(&files);
    assert!(
        found.is_empty(),
        "open each with a `//!` saying what the file is for:\n  {}",
        found.join("\n  ")
    );
}

/// Whether a `cargo tree --prefix none` listing holds testkit.
fn lists_testkit(tree: &str) -> bool {
    tree.lines()
        .any(|line| line.split_whitespace().next() == Some("testkit"))
}

/// The builds that must not link testkit: every deployable, and `xtask-cloud` as the light
/// build starts it (`cloud` alone), with the cargo flags that select each.
fn shipped_builds() -> Vec<(String, Vec<String>)> {
    let mut builds: Vec<(String, Vec<String>)> = deployables()
        .into_iter()
        .map(|d| (d.clone(), vec!["-p".to_owned(), d]))
        .collect();
    let cloud = "-p xtask --no-default-features --features cloud";
    builds.push((
        "xtask-cloud".to_owned(),
        cloud.split(' ').map(str::to_owned).collect(),
    ));
    builds
}

#[test]
fn no_shipped_build_links_testkit_even_through_another_crate() {
    assert!(lists_testkit(
        "api v0.1.0 (/w/crates/api)\ntestkit v0.1.0 (/w/crates/testkit)\n"
    ));
    assert!(!lists_testkit(
        "api v0.1.0\ntestkit-like v1.0.0\nshared-auth v0.1.0 (*)\n"
    ));
    // The rule sees testkit where it is: the full xtask build (the tests', with `local`) has it.
    let full = cargo_stdout(
        &[
            "tree", "--locked", "-p", "xtask", "-e", "normal", "--prefix", "none",
        ],
        &[],
    );
    assert!(
        lists_testkit(&String::from_utf8_lossy(&full)),
        "xtask's default build (with `local`) should list testkit; the probe no longer sees it"
    );
    let mut wrong = Vec::new();
    for (name, select) in shipped_builds() {
        let mut args: Vec<&str> =
            vec!["tree", "--locked", "-e", "normal,build", "--prefix", "none"];
        args.extend(select.iter().map(String::as_str));
        if lists_testkit(&String::from_utf8_lossy(&cargo_stdout(&args, &[]))) {
            wrong.push(name);
        }
    }
    assert!(
        wrong.is_empty(),
        "these shipped builds link testkit through a normal or build dependency (`cargo tree <flags> -i testkit -e normal,build` shows the path); test support must not ship, and what the deploy path needs of it belongs in opskit: {wrong:?}"
    );
}

/// Where the code that runs reads a secret's value: `shared_aws::versions::read`.
const SECRET_READ_HOME: &str = "crates/shared-aws/src/versions.rs";

/// The files of `files` (path, text) under a crate's `src/` whose code calls
/// `get_secret_value` outside its home.
fn secret_readers(files: &[(String, String)]) -> Vec<String> {
    offenders(
        files,
        |path| path != SECRET_READ_HOME && path.contains("/src/"),
        |code| code.contains("get_secret_value"),
    )
}

#[test]
fn one_reader_of_a_secrets_value() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    assert_eq!(
        secret_readers(&[
            file("crates/a/src/x.rs", "sm.get_secret_value().secret_id(id)"),
            file(
                "crates/a/src/y.rs",
                "// get_secret_value\nlet s = \"get_secret_value\";"
            ),
            file("crates/a/tests/z.rs", "sm.get_secret_value()"),
            file(SECRET_READ_HOME, "sm.get_secret_value()"),
        ]),
        ["crates/a/src/x.rs"],
        "a read in src outside the home is found; comments, strings, tests and the home are not"
    );
    let found = secret_readers(&all_sources());
    assert!(
        found.is_empty(),
        "these call GetSecretValue themselves; read through shared_aws::versions \
         (read, at_stage, at_version, current, accepted):\n  {}",
        found.join("\n  ")
    );
}

/// The files of `files` (path, text) under a crate's `src/`, outside `shared-auth`, whose code
/// signs a guarded request itself rather than through `GuardContract::credentials`.
fn own_signers(files: &[(String, String)]) -> Vec<String> {
    let signs = |code: &str| {
        ["shared_auth::sign", "shared_auth::signing"]
            .iter()
            .any(|path| code.contains(path))
            || code.split("use shared_auth::{").skip(1).any(|group| {
                let names = group.split('}').next().unwrap_or_default();
                names
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .any(|n| matches!(n, "sign" | "sign_all" | "signing"))
            })
    };
    offenders(
        files,
        |path| path.contains("/src/") && !path.starts_with("crates/shared-auth/"),
        signs,
    )
}

#[test]
fn one_builder_of_a_guarded_requests_credentials() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    assert_eq!(
        own_signers(&[
            file(
                "crates/a/src/x.rs",
                "let s = shared_auth::sign(&k, 1, \"POST\", p, b);"
            ),
            file(
                "crates/a/src/y.rs",
                "use shared_auth::{GuardContract, sign};"
            ),
            file(
                "crates/a/src/z.rs",
                "use aws_sigv4::http_request::sign; sign(r, &p)"
            ),
            file(
                "crates/a/src/w.rs",
                "contract.credentials(&secret, path, body, now)"
            ),
            file(
                "crates/a/tests/t.rs",
                "shared_auth::sign(&k, 1, \"PUT\", p, b)"
            ),
            file(
                "crates/shared-auth/src/lib.rs",
                "sign(secret, now, m, p, b)"
            ),
        ]),
        ["crates/a/src/x.rs", "crates/a/src/y.rs"],
        "the guard's signer outside shared-auth is found; SigV4, the builder, tests and the home are not"
    );
    let found = own_signers(&all_sources());
    assert!(
        found.is_empty(),
        "these sign a guarded request themselves; build its headers with \
         GuardContract::credentials, the one builder:\n  {}",
        found.join("\n  ")
    );
}

/// The crates of `package`'s normal dependency tree, with `extra` cargo flags.
fn normal_tree(package: &str, extra: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args = vec![
        "tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
    ];
    args.extend_from_slice(extra);
    String::from_utf8_lossy(&cargo_stdout(&args, &[]))
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Of `tree`, what a contract crate must not link: an AWS SDK, an async runtime, a web framework.
fn runtime_crates(tree: &std::collections::BTreeSet<String>) -> Vec<String> {
    tree.iter()
        .filter(|name| {
            name.starts_with("aws-sdk-")
                || name.starts_with("aws-config")
                || matches!(name.as_str(), "tokio" | "axum" | "hyper" | "reqwest")
        })
        .cloned()
        .collect()
}

#[test]
fn the_contract_links_no_aws_sdk_runtime_or_web_framework() {
    // The probe finds them where they are: in shared-aws, the contract's AWS side.
    let aws_side = runtime_crates(&normal_tree("shared-aws", &[]));
    assert!(
        aws_side.iter().any(|c| c == "aws-sdk-secretsmanager")
            && aws_side.iter().any(|c| c == "tokio"),
        "the probe no longer sees the SDK and runtime in shared-aws: {aws_side:?}"
    );
    let found = runtime_crates(&normal_tree("shared-auth", &[]));
    assert!(
        found.is_empty(),
        "shared-auth links {found:?}: the contract must build without them; put what needs them \
         in shared-aws (AWS) or the deployable that runs it"
    );
}

/// Where the code that runs reads the wall clock as Unix time.
const CLOCK_HOME: &str = "crates/shared-auth/src/unix.rs";

/// The files of `files` (path, text) under a crate's `src/` whose code turns the wall clock
/// into Unix time itself (`….duration_since(UNIX_EPOCH)`) outside [`CLOCK_HOME`].
fn own_clocks(files: &[(String, String)]) -> Vec<String> {
    let reads_clock = |code: &str| {
        code.match_indices("duration_since(").any(|(at, _)| {
            let call = &code[at..code.len().min(at + 60)];
            call.split(')')
                .next()
                .unwrap_or_default()
                .contains("UNIX_EPOCH")
        })
    };
    offenders(
        files,
        |path| path != CLOCK_HOME && path.contains("/src/"),
        reads_clock,
    )
}

#[test]
fn the_clock_is_read_in_one_place() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    assert_eq!(
        own_clocks(&[
            file(
                "crates/a/src/x.rs",
                "SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()"
            ),
            file(
                "crates/a/src/y.rs",
                "now.duration_since(\n    std::time::UNIX_EPOCH,\n)"
            ),
            file(
                "crates/a/src/z.rs",
                "let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1);"
            ),
            file(
                "crates/a/src/w.rs",
                "give_up.saturating_duration_since(Instant::now())"
            ),
            file(
                "crates/a/tests/t.rs",
                "SystemTime::now().duration_since(UNIX_EPOCH)"
            ),
            file(CLOCK_HOME, "SystemTime::now().duration_since(UNIX_EPOCH)"),
        ]),
        ["crates/a/src/x.rs", "crates/a/src/y.rs"],
        "a clock read in src outside the home is found; a fixed time, an Instant, tests and the home are not"
    );
    let found = own_clocks(&all_sources());
    assert!(
        found.is_empty(),
        "these read the clock themselves; use shared_auth::unix::{{seconds, millis}}:\n  {}",
        found.join("\n  ")
    );
}
