//! The api's database as deployed: verified TLS (and refusals of the wrong CA and of plain
//! text), the least-privilege serving role, migrations under concurrent starts, and
//! credentials that rotate under load.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use api::Clock;
use api::secrets::{SecretProvider, SecretStore};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
use shared_auth::{Component, SecretSet};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

/// The CA file the test PostgreSQL's URL names (`sslrootcert=`).
fn ca_file() -> PathBuf {
    let url = database_url();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sslrootcert="))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("DATABASE_URL names no sslrootcert: run the tests with `cargo xtask test`, whose PostgreSQL requires TLS")
        })
}

/// `url` without its query (no sslmode, no sslrootcert): the settings decide.
fn bare(url: &str) -> String {
    url.split_once('?')
        .map(|(u, _)| u)
        .unwrap_or(url)
        .to_owned()
}

/// `url` for another user.
fn as_user(url: &str, user: &str) -> String {
    url.replacen("postgres://postgres@", &format!("postgres://{user}@"), 1)
}

/// Builds the app against `url` with `vars`; the error text when it cannot start.
async fn build_error(url: &str, vars: &[(&str, &str)]) -> String {
    let mut all: HashMap<String, String> = HashMap::from([
        ("TOLLGATE_ENV".into(), "local".into()),
        ("TOLLGATE__API__LISTEN".into(), "127.0.0.1:0".into()),
        ("TOLLGATE__API__MIGRATE_ON_START".into(), "true".into()),
        ("DATABASE_URL".into(), url.to_owned()),
    ]);
    all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let settings = shared_auth::load_for(Component::Api, &all).expect("settings");
    let secrets = SecretStore::start(
        SecretProvider::Fixed(SecretSet::new(CURRENT.into(), None).expect("secret")),
        Duration::from_secs(60),
    )
    .await;
    match api::Application::build(settings, secrets, Clock::system()).await {
        Ok(_) => panic!("the api started against {url}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_api_connects_over_verified_tls_by_default() {
    let url = bare(&fresh_database().await);
    let ca = ca_file();
    // No sslmode in the URL: the default (verify-full) applies, against the configured CA.
    let app = spawn_with(Options {
        database_url: Some(url),
        ..Options::default().var("TOLLGATE__API__DB_CA_FILE", &ca.display().to_string())
    })
    .await;
    let response = app.register(&body_for(SUB, "ada@example.com")).await;
    assert_eq!(response.status(), 201);
    let tls: bool = sqlx::query_scalar(
        "SELECT ssl FROM pg_stat_ssl WHERE pid IN (SELECT pid FROM pg_stat_activity WHERE application_name = 'tollgate-api')",
    )
    .fetch_one(&app.db)
    .await
    .expect("the api's connection is listed");
    assert!(tls, "the api's connection is encrypted");
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused_and_the_error_names_the_setting() {
    let other = testkit::tls::TestCa::new("Some other CA").expect("CA");
    let dir = std::env::temp_dir().join(format!("tollgate-ca-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let other_ca = dir.join("other-ca.crt");
    std::fs::write(&other_ca, other.pem()).expect("write CA");
    let url = bare(&database_url());
    let error = build_error(
        &url,
        &[("TOLLGATE__API__DB_CA_FILE", &other_ca.display().to_string())],
    )
    .await;
    assert!(
        error.contains("api.database_url") && error.contains("TLS verify-full"),
        "{error}"
    );
    assert!(
        error.to_lowercase().contains("certificate"),
        "the TLS cause is named: {error}"
    );
    // With the RDS bundle (the default), a locally signed server is refused as well.
    let error = build_error(&url, &[]).await;
    assert!(error.contains("api.database_url"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_server_without_tls_is_refused() {
    let plain = testkit::services::Postgres::start_plain().expect("a plain-text PostgreSQL");
    let url = bare(&plain.url());
    for mode in ["verify-full", "require"] {
        let error = build_error(&url, &[("TOLLGATE__API__DB_SSLMODE", mode)]).await;
        assert!(
            error.contains("api.database_url") && error.contains(&format!("TLS {mode}")),
            "{mode}: {error}"
        );
    }
}

/// A new login role in `tollgate_app`, as the deploy makes one; returns its name.
async fn app_login(admin: &mut PgConnection, password: &str) -> String {
    let name = format!("tollgate_api_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE tollgate_app"
    ))
    .execute(admin)
    .await
    .expect("create login");
    name
}

#[tokio::test]
async fn the_serving_role_can_register_but_not_drop_delete_or_read_outside_its_grants() {
    let app = spawn().await; // migrates the fresh database as its owner
    assert_eq!(
        app.register(&body_for(SUB, "ada@example.com"))
            .await
            .status(),
        201
    );
    let mut admin = PgConnection::connect(&app.db_url).await.expect("admin");
    let login = app_login(&mut admin, "serving-role-password-1").await;
    let mut options: sqlx::postgres::PgConnectOptions =
        as_user(&app.db_url, &login).parse().expect("url");
    options = options.password("serving-role-password-1");
    let mut conn = PgConnection::connect_with(&options)
        .await
        .expect("the serving role connects");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .expect("SELECT is granted");
    assert_eq!(rows, 1);
    sqlx::query("UPDATE users SET username = 'ada2'")
        .execute(&mut conn)
        .await
        .expect("UPDATE is granted");
    for forbidden in [
        "DROP TABLE users",
        "DELETE FROM users",
        "TRUNCATE users",
        "SELECT count(*) FROM _sqlx_migrations",
        "CREATE TABLE loot (x int)",
        "ALTER TABLE users ADD COLUMN x int",
    ] {
        let err = sqlx::raw_sql(forbidden)
            .execute(&mut conn)
            .await
            .expect_err(forbidden);
        let code = err
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.into_owned()));
        assert_eq!(code.as_deref(), Some("42501"), "{forbidden}: {err}");
    }
    // The heartbeat's function deletes a heartbeat user's row alone: called on a real user, by
    // the role that may call it, it deletes nothing.
    let forgotten: i64 = sqlx::query_scalar("SELECT count(*) FROM forget_heartbeat_user($1::uuid)")
        .bind(SUB)
        .fetch_one(&mut conn)
        .await
        .expect("EXECUTE is granted");
    assert_eq!(forgotten, 0);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(still, 1, "the row survived");
}

struct ApiProcess(Child);

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test]
async fn two_api_processes_starting_at_once_on_an_empty_database_apply_the_schema_once() {
    let url = fresh_database().await;
    let ports = [free_port(), free_port()];
    let processes: Vec<ApiProcess> = ports
        .iter()
        .map(|port| {
            ApiProcess(
                Command::new(env!("CARGO_BIN_EXE_api"))
                    .env("TOLLGATE_ENV", "local")
                    .env("DATABASE_URL", &url)
                    .env("TOLLGATE__API__LISTEN", format!("127.0.0.1:{port}"))
                    .env("TOLLGATE__API__MIGRATE_ON_START", "true")
                    .env("TOLLGATE_SECRET_CURRENT", CURRENT)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("api starts"),
            )
        })
        .collect();
    let http = reqwest::Client::new();
    for port in ports {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the api on {port} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let db = sqlx::PgPool::connect(&url).await.expect("db");
    let (applied, total): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE success), count(*) FROM _sqlx_migrations")
            .fetch_one(&db)
            .await
            .expect("migrations table");
    let shipped = api::database::MIGRATOR.iter().count() as i64;
    assert_eq!((applied, total), (shipped, shipped), "each migration once");
    drop(processes);
}

/// Puts `{"username","password"}` as the new AWSCURRENT of `id`.
async fn put_credentials(sm: &SecretsManager, id: &str, username: &str, password: &str) {
    let value = SecretString::from(format!(
        r#"{{"username":"{username}","password":"{password}"}}"#
    ));
    testkit::secrets::put_secret(sm, id, &value)
        .await
        .expect("moto stores the credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_survive_two_credential_rotations_under_load() {
    const REQUESTS: usize = 2_000;
    const SPACING: Duration = Duration::from_millis(10); // 2,000 over ~20 s
    let sm = SecretsManager::new(&testkit::sdk_config(&testkit::local_aws()).await);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (app_secret, owner_secret) = (
        format!("tollgate/test/db-app-{unique}"),
        format!("tollgate/test/db-owner-{unique}"),
    );
    let login = format!("tollgate_api_{unique}");
    put_credentials(&sm, &app_secret, &login, "first-password-0001").await;
    // The test cluster trusts its superuser over TLS: the owner's password is not checked.
    put_credentials(&sm, &owner_secret, "postgres", "unused").await;

    let db_url = fresh_database().await;
    let app = spawn_with(Options {
        database_url: Some(as_user(&db_url, &login)),
        ..Options::default()
            .var("TOLLGATE__AWS__ENDPOINT_URL", &testkit::aws_endpoint())
            .var("TOLLGATE__API__DB_SECRET_ID", &app_secret)
            .var("TOLLGATE__API__DB_OWNER_SECRET_ID", &owner_secret)
            // Connections are recycled every second, so rotated credentials are used at once.
            .var("TOLLGATE__API__DB_MAX_LIFETIME_S", "1")
            .var("TOLLGATE__API__SECRET_REFRESH_S", "60")
            .var("TOLLGATE__API__DB_MAX_CONNECTIONS", "8")
    })
    .await;
    let mut admin = PgConnection::connect(&db_url).await.expect("admin");

    let mut requests = JoinSet::new();
    let mut serving_as: BTreeSet<String> = BTreeSet::new();
    let start = Instant::now();
    let rotations = [
        (REQUESTS / 4, "second-password-0002"),
        (REQUESTS * 3 / 5, "third-password-0003"),
    ];
    for i in 0..REQUESTS {
        if let Some((_, password)) = rotations.iter().find(|(at, _)| *at == i) {
            // As Secrets Manager's rotation does: the database first, then the secret.
            sqlx::raw_sql(&format!("ALTER ROLE {login} PASSWORD '{password}'"))
                .execute(&mut admin)
                .await
                .expect("rotate in PostgreSQL");
            put_credentials(&sm, &app_secret, &login, password).await;
        }
        if i >= REQUESTS * 4 / 5 && i % 25 == 0 {
            // Who the api is logged in as, looked at while the requests keep coming: a single
            // look can fall between a connection's expiry and its replacement (with no request
            // in flight the pool may hold none at all), so the last fifth is sampled.
            let logins: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT usename::text FROM pg_stat_activity
                 WHERE application_name = 'tollgate-api' AND datname = current_database()",
            )
            .fetch_all(&mut admin)
            .await
            .expect("activity");
            serving_as.extend(logins);
        }
        let sub = uuid::Uuid::new_v4().to_string();
        let body = body_for(&sub, "load@example.com");
        let headers = app.credentials(CURRENT, body.as_bytes(), now());
        let (http, base) = (app.http.clone(), app.base.clone());
        requests.spawn(async move {
            let mut request = http
                .post(format!("{base}/user"))
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
        tokio::time::sleep(SPACING).await;
    }
    let mut counts: HashMap<u16, usize> = HashMap::new();
    while let Some(status) = requests.join_next().await {
        *counts.entry(status.expect("request task")).or_default() += 1;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut admin)
        .await
        .expect("count");
    let accepted = counts.get(&201).copied().unwrap_or(0);
    let server_errors: usize = counts
        .iter()
        .filter(|(s, _)| **s >= 500 || **s == 0)
        .map(|(_, n)| n)
        .sum();
    println!(
        "rotation under load: {REQUESTS} requests in {:.1} s, 2 rotations; statuses {counts:?}; {rows} rows; {accepted} accepted; {server_errors} 5xx/transport errors",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(server_errors, 0, "{counts:?}");
    assert_eq!(accepted, REQUESTS, "{counts:?}");
    assert_eq!(
        rows as usize, accepted,
        "every accepted registration is stored"
    );
    assert_eq!(
        serving_as,
        BTreeSet::from([login]),
        "under load the api serves as its own login only (and was seen serving)"
    );
}

/// The first deploy's order gone wrong: the api starts before its login's secret has a
/// version. It must not need a redeploy: `/readyz` says the database is not usable until the
/// secret has a version, then the api sets the login up itself and serves.
#[tokio::test]
async fn a_task_started_before_its_login_secret_has_a_version_becomes_ready_once_it_has_one() {
    let sm = SecretsManager::new(&testkit::sdk_config(&testkit::local_aws()).await);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (app_secret, owner_secret) = (
        format!("tollgate/test/db-app-{unique}"),
        format!("tollgate/test/db-owner-{unique}"),
    );
    let login = format!("tollgate_api_{unique}");
    // The shell Terraform creates: a secret with no version yet.
    sm.create_secret()
        .name(&app_secret)
        .send()
        .await
        .expect("moto creates the secret's shell");
    put_credentials(&sm, &owner_secret, "postgres", "unused").await;
    let db_url = fresh_database().await;
    let app = spawn_with(Options {
        database_url: Some(as_user(&db_url, &login)),
        ..Options::default()
            .var("TOLLGATE__AWS__ENDPOINT_URL", &testkit::aws_endpoint())
            .var("TOLLGATE__API__DB_SECRET_ID", &app_secret)
            .var("TOLLGATE__API__DB_OWNER_SECRET_ID", &owner_secret)
            .var("TOLLGATE__API__SECRET_REFRESH_S", "1")
    })
    .await;
    let readiness = || async {
        let response = app
            .http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("readyz answers");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("readyz is JSON");
        (status, body["database"].as_bool())
    };
    for _ in 0..3 {
        assert_eq!(readiness().await, (503, Some(false)), "no credentials yet");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    put_credentials(&sm, &app_secret, &login, "first-password-0001").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while readiness().await != (200, Some(true)) {
        assert!(
            Instant::now() < deadline,
            "the api did not become ready after its secret got a version"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = app.register(&body_for(SUB, "ada@example.com")).await;
    assert_eq!(response.status(), 201, "it serves, as its own login");
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity
         WHERE application_name = 'tollgate-api' AND datname = current_database()",
    )
    .fetch_all(&app.db)
    .await
    .expect("activity");
    assert_eq!(owners, [login]);
}
