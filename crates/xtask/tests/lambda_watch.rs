//! The Lambda without Cognito: `cargo xtask up --no-lambda` keeps moto, PostgreSQL and the api
//! running; `cargo lambda watch` runs the function under cargo-lambda's own emulator (a Runtime
//! API this project did not write) and `cargo lambda invoke` sends it the shipped sample events
//! — exactly the README's "Working on the Lambda alone"; then `cargo xtask reconcile` registers
//! users confirmed while their registration never reached the api. One stack serves both, so
//! they never race for its ports or its env file.

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

/// `cargo xtask …`: the binary this test build made (a second `cargo run` would build xtask
/// again with other features).
fn xtask() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"));
    command.current_dir(root());
    command
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

/// What `up --no-lambda` prints: the addresses of its services.
struct Stack {
    _group: Group,
    database_url: String,
    moto: String,
    api: String,
}

/// Starts `cargo xtask up --no-lambda` and waits for the addresses it prints.
fn start_stack() -> Stack {
    let mut up = xtask();
    up.args(["up", "--no-lambda"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut group = spawn_group(&mut up);
    let stdout = group.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("up: {line}");
            let line = line.trim().to_owned();
            for key in ["api", "moto (AWS)", "DATABASE_URL"] {
                if let Some(rest) = line.strip_prefix(key) {
                    let value = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send((key, value));
                }
            }
        }
    });
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 3 {
        let (key, value) = rx
            .recv_timeout(Duration::from_secs(900))
            .expect("`cargo xtask up --no-lambda` printed its addresses (see its output above)");
        seen.insert(key, value);
    }
    Stack {
        _group: group,
        database_url: seen["DATABASE_URL"].clone(),
        moto: seen["moto (AWS)"].clone(),
        api: seen["api"].clone(),
    }
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
async fn the_lambda_alone_under_cargo_lambda_watch_and_reconcile_after_lost_registrations() {
    let probe = Command::new(env!("CARGO"))
        .args(["lambda", "--version"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "cargo-lambda is missing: `cargo xtask setup` brings it (or `pip install cargo-lambda`)"
    );
    let stack = start_stack();
    let database_url = stack.database_url.clone();
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
            .args([
                "lambda",
                "watch",
                "--bin",
                "post-confirm",
                "--ignore-changes",
            ])
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

    reconcile_registers_users_confirmed_while_the_api_missed_them(&stack).await;
}

fn reconcile(stack: &Stack, pool_id: &str) -> String {
    let out = xtask()
        .args(["reconcile", "--env", "local"])
        .args(["--user-pool-id", pool_id, "--api-url", &stack.api])
        .env("TOLLGATE__AWS__ENDPOINT_URL", &stack.moto)
        .output()
        .expect("cargo xtask reconcile runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "reconcile failed:\n{text}");
    text
}

async fn reconcile_registers_users_confirmed_while_the_api_missed_them(stack: &Stack) {
    // More confirmed users than one ListUsers page (60), whose PostConfirmation never reached
    // the api, and one who never confirmed.
    const CONFIRMED: usize = 62;
    let aws = shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: Some(stack.moto.clone()),
    };
    let sdk = testkit::sdk_config(&aws).await;
    let pool = testkit::cognito::UserPool::create(&sdk, &stack.moto, "reconcile")
        .await
        .expect("pool");
    let mut subs = Vec::new();
    for i in 0..CONFIRMED {
        let user = pool
            .sign_up(&format!("lost{i}"), &format!("lost{i}@example.com"))
            .await
            .expect("sign-up");
        subs.push(user.sub);
    }
    let unconfirmed = pool
        .sign_up_unconfirmed("pending", "pending@example.com")
        .await
        .expect("sign-up");
    let db = sqlx::PgPool::connect(&stack.database_url)
        .await
        .expect("db");
    let count = |subs: Vec<String>| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM users WHERE cognito_sub::text = ANY($1)",
            )
            .bind(subs)
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    assert_eq!(count(subs.clone()).await, 0, "none registered yet");

    let first = reconcile(stack, &pool.id);
    assert!(
        first.contains(&format!(
            "{CONFIRMED} confirmed and enabled; {CONFIRMED} were missing and are registered now"
        )),
        "{first}"
    );
    assert_eq!(count(subs.clone()).await, CONFIRMED as i64);
    assert_eq!(
        count(vec![unconfirmed.clone()]).await,
        0,
        "unconfirmed users are not registered"
    );

    let again = reconcile(stack, &pool.id);
    assert!(
        again.contains(&format!(
            "0 were missing and are registered now, {CONFIRMED} were already registered"
        )),
        "{again}"
    );
    assert_eq!(
        count(subs).await,
        CONFIRMED as i64,
        "idempotent: no duplicates"
    );
}
