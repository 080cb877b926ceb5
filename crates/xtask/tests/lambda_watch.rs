//! The Lambda as a developer works on it alone: `cargo xtask up --no-lambda` keeps moto,
//! PostgreSQL and the api running, `cargo lambda watch` runs the function under cargo-lambda's
//! own emulator (a Runtime API this project did not write), and `cargo lambda invoke` sends it
//! the shipped sample events — exactly the README's "Working on the Lambda alone".

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join(format!("crates/post-confirm/tests/fixtures/{name}.json"))
}

/// A child process group, killed when dropped (cargo runs the real program as a grandchild).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{pid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command) -> Group {
    use std::os::unix::process::CommandExt;
    Group(command.process_group(0).spawn().expect("command starts"))
}

/// Starts `cargo xtask up --no-lambda` and waits for its `DATABASE_URL` line.
fn start_stack() -> (Group, String) {
    let mut up = Command::new(env!("CARGO"));
    up.current_dir(root())
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "up",
            "--no-lambda",
        ])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut group = spawn_group(&mut up);
    let stdout = group.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("up: {line}");
            if let Some(url) = line.trim().strip_prefix("DATABASE_URL") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(900))
        .expect("`cargo xtask up --no-lambda` printed DATABASE_URL (see its output above)");
    (group, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn invoke(port: u16, event: &Path) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["lambda", "invoke", "post-confirm"])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(event)
        .output()
        .expect("cargo lambda invoke runs")
}

async fn rows(database_url: &str, sub: &str) -> i64 {
    let db = sqlx::PgPool::connect(database_url)
        .await
        .expect("the stack's PostgreSQL");
    sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
        .bind(sub)
        .fetch_one(&db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn cargo_lambda_watch_registers_a_sign_up_and_passes_other_events_through() {
    let probe = Command::new(env!("CARGO"))
        .args(["lambda", "--version"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "cargo-lambda is missing: install it with `pip install cargo-lambda` (.ci/run does)"
    );
    let (_stack, database_url) = start_stack();
    let env_file = root().join("target/tollgate/post-confirm.env");
    assert!(
        env_file.is_file(),
        "up --no-lambda wrote {}",
        env_file.display()
    );

    let port = free_port();
    let _watch = spawn_group(
        Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["lambda", "watch", "-p", "post-confirm", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .arg("--env-file")
            .arg(&env_file)
            .stdin(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let sign_up = fixture("sign-up");
    let sent: Value =
        serde_json::from_slice(&std::fs::read(&sign_up).expect("fixture")).expect("json");
    let sub = sent["request"]["userAttributes"]["sub"]
        .as_str()
        .expect("sub")
        .to_owned();
    assert_eq!(rows(&database_url, &sub).await, 0, "a fresh database");

    // The first invocation compiles and starts the function: give it time.
    let out = invoke(port, &sign_up);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "invoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let returned: Value = serde_json::from_str(stdout.trim()).expect("the function returns JSON");
    assert_eq!(returned, sent, "Cognito needs the event back unchanged");
    assert_eq!(
        rows(&database_url, &sub).await,
        1,
        "the sign-up was registered"
    );

    // A forgotten password is a PostConfirmation too, but not a new user.
    let forgot = fixture("forgot-password");
    let out = invoke(port, &forgot);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let returned: Value = serde_json::from_slice(&out.stdout).expect("the function returns JSON");
    let sent: Value =
        serde_json::from_slice(&std::fs::read(&forgot).expect("fixture")).expect("json");
    assert_eq!(returned, sent);
    assert_eq!(rows(&database_url, &sub).await, 1, "still one row");
}
