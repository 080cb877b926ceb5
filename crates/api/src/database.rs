//! The api's PostgreSQL connection as it is deployed: verified TLS, credentials from Secrets
//! Manager that rotate under it, and migrations applied as the owner.
//!
//! - **TLS.** `api.db_sslmode` (default `verify-full`) against `api.db_ca_file`, else the Amazon
//!   RDS root CAs compiled in (`deploy/tls/rds-global-bundle.pem`). An `sslmode` in the URL wins.
//! - **Rotating credentials.** With `api.db_secret_id`, the username and password come from that
//!   secret (JSON `{"username","password"}`, as RDS stores them). They are re-read every
//!   `api.secret_refresh_s`, and at once when PostgreSQL refuses them (SQLSTATE 28P01): the
//!   failed operation is then retried once with the new ones. Pooled connections live at most
//!   `api.db_max_lifetime_s`, so every connection soon uses the current credentials.
//! - **Migrations** run at start as the owner (`api.db_owner_secret_id`, e.g. the RDS-managed
//!   master secret), under sqlx's advisory lock, so tasks starting together apply them once.
//! - **The serving login** (the `db_secret_id` user, a member of `tollgate_app`) is created or
//!   given the secret's password by the owner after migrating, or, when the secret had no
//!   version yet at start, as soon as the api first reads one: a task that started too early
//!   becomes ready by itself, with no redeploy.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared_auth::{ApiSettings, DbSslMode, Settings};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use tokio::sync::Mutex;

use shared_aws::secrets_manager;

use crate::secrets::{SecretFetchError, fetch_stage};

/// The Amazon RDS root CAs (see `deploy/tls/README.md`).
pub const RDS_CA_BUNDLE: &[u8] = include_bytes!("../../../deploy/tls/rds-global-bundle.pem");

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A re-read within this long after the last one is skipped: many requests failing at once
/// on the same stale password cause one fetch, not one each.
const REAUTH_DEBOUNCE: Duration = Duration::from_millis(200);
/// Attempts of an operation whose credentials were refused, re-reading them in between: a
/// rotation changes the password and the secret one after the other, not at once.
const AUTH_ATTEMPTS: u32 = 4;
const AUTH_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Database credentials as RDS and Tollgate store them in Secrets Manager.
#[derive(Clone, Deserialize)]
pub struct DbCredentials {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl DbCredentials {
    fn same_as(&self, other: &DbCredentials) -> bool {
        self.username == other.username
            && self.password.expose_secret() == other.password.expose_secret()
    }

    fn apply(&self, options: PgConnectOptions) -> PgConnectOptions {
        options
            .username(&self.username)
            .password(self.password.expose_secret())
    }
}

/// A secret holding [`DbCredentials`].
#[derive(Debug, Clone)]
pub struct CredentialSecret {
    client: SecretsManager,
    secret_id: String,
}

impl CredentialSecret {
    pub fn new(client: SecretsManager, secret_id: String) -> Self {
        Self { client, secret_id }
    }

    /// The `AWSCURRENT` credentials.
    pub async fn fetch(&self) -> Result<DbCredentials, SecretFetchError> {
        self.fetch_stage("AWSCURRENT")
            .await?
            .ok_or_else(|| SecretFetchError::NoVersion {
                secret_id: self.secret_id.clone(),
                stage: "AWSCURRENT",
            })
    }

    async fn fetch_stage(
        &self,
        stage: &'static str,
    ) -> Result<Option<DbCredentials>, SecretFetchError> {
        let Some(text) = fetch_stage(&self.client, &self.secret_id, stage).await? else {
            return Ok(None);
        };
        // The error names the secret and the fields, never the value.
        serde_json::from_str(text.expose_secret())
            .map(Some)
            .map_err(|_| SecretFetchError::NotCredentials {
                secret_id: self.secret_id.clone(),
            })
    }
}

/// The connection options `api` settings give, before any credentials from a secret.
pub fn connect_options(api: &ApiSettings) -> anyhow::Result<PgConnectOptions> {
    let url = api.database_url.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "no database: set DATABASE_URL or api.database_url (TOLLGATE__API__DATABASE_URL)"
        )
    })?;
    let url = url.expose_secret();
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|_| anyhow::anyhow!("api.database_url / DATABASE_URL is not a PostgreSQL URL"))?;
    if let Some(password) = &api.database_password {
        options = options.password(password.expose_secret());
    }
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let in_url = |key: &str| query.split('&').any(|kv| kv.starts_with(key));
    if !in_url("sslmode=") {
        options = options.ssl_mode(match api.db_sslmode {
            DbSslMode::Disable => PgSslMode::Disable,
            DbSslMode::Require => PgSslMode::Require,
            DbSslMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(file) = &api.db_ca_file {
        options = options.ssl_root_cert(file);
    } else if !in_url("sslrootcert=") {
        options = options.ssl_root_cert_from_pem(RDS_CA_BUNDLE.to_vec());
    }
    Ok(options
        .application_name("tollgate-api")
        .options([("statement_timeout", api.db_statement_timeout_ms.to_string())]))
}

/// What the api connects with: the pool, and where its credentials come from.
#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: PgConnectOptions,
    secret: Option<CredentialSecret>,
    /// The owner's credentials (migrations, the serving login role).
    owner: Option<CredentialSecret>,
    /// The credentials in use, and when they were last fetched.
    current: Mutex<(Option<DbCredentials>, Option<Instant>)>,
    /// Whether the serving login was set up by the owner in this process.
    login_ready: std::sync::atomic::AtomicBool,
    /// For error messages: how the connection is protected.
    tls: String,
}

/// How long a pooled connection may sit idle before it is pinged ahead of its next use.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

impl Database {
    /// Builds the pool, lazily connected (the service starts while the database is down) and
    /// without credentials yet: [`Database::watch_credentials`] reads them, after
    /// [`Database::migrate`] when the api migrates at start.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let api = &settings.api;
        let base = connect_options(api)?;
        let sm = match (&api.db_secret_id, &api.db_owner_secret_id) {
            (None, None) => None,
            _ => Some(secrets_manager(&settings.aws).await),
        };
        let secret_for = |id: &Option<String>| {
            id.as_ref()
                .zip(sm.clone())
                .map(|(id, sm)| CredentialSecret::new(sm, id.clone()))
        };
        let pool = PgPoolOptions::new()
            .max_connections(api.db_max_connections)
            // A connection that sat idle may have been closed by the server (restart,
            // failover, an idle timeout on the way): it is pinged before use, and replaced if
            // dead. One that was in use a moment ago is not: a ping per request is a second
            // round trip per registration (15% of its CPU in `cargo xtask bench`).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_millis(api.db_acquire_timeout_ms))
            .max_lifetime(Duration::from_secs(api.db_max_lifetime_s))
            .connect_lazy_with(base.clone());
        Ok(Database {
            pool,
            inner: Arc::new(Inner {
                base,
                secret: secret_for(&api.db_secret_id),
                owner: secret_for(&api.db_owner_secret_id),
                current: Mutex::new((None, None)),
                login_ready: std::sync::atomic::AtomicBool::new(false),
                tls: String::from(api.db_sslmode),
            }),
        })
    }

    /// With `api.db_secret_id`: reads the serving credentials now and every `interval` after,
    /// in the background. A read that fails (no version yet, Secrets Manager down) keeps what
    /// the pool has and is retried at the next interval.
    pub async fn watch_credentials(&self, interval: Duration) {
        if self.inner.secret.is_none() {
            return;
        }
        self.refresh_credentials(true).await;
        tokio::spawn(self.clone().keep_fresh(interval));
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `operation`; while PostgreSQL refuses the credentials (a rotation in progress),
    /// re-reads them and runs it again, a few times, a quarter second apart.
    pub async fn with_fresh_credentials<T, F, Fut>(&self, operation: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut attempt = 1;
        loop {
            match operation(self.pool.clone()).await {
                Err(e)
                    if is_auth_failure(&e)
                        && self.inner.secret.is_some()
                        && attempt < AUTH_ATTEMPTS =>
                {
                    tracing::warn!(
                        attempt,
                        "the database refused the credentials; re-reading them"
                    );
                    if attempt > 1 {
                        tokio::time::sleep(AUTH_RETRY_PAUSE).await;
                    }
                    self.refresh_credentials(false).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn keep_fresh(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if self.pool.is_closed() {
                return;
            }
            self.refresh_credentials(true).await;
        }
    }

    /// Fetches the credentials and, when they changed, gives them to every new connection.
    /// `scheduled` refreshes always fetch `AWSCURRENT`. Re-reads after a refusal are debounced,
    /// and when `AWSCURRENT` is what was refused they take `AWSPENDING`: Secrets Manager's
    /// rotation sets the new password in the database before it promotes the version.
    async fn refresh_credentials(&self, scheduled: bool) {
        let Some(secret) = &self.inner.secret else {
            return;
        };
        let mut current = self.inner.current.lock().await;
        if !scheduled && current.1.is_some_and(|at| at.elapsed() < REAUTH_DEBOUNCE) {
            return;
        }
        let fetched = match secret.fetch().await {
            Ok(fresh)
                if !scheduled && current.0.as_ref().is_some_and(|old| old.same_as(&fresh)) =>
            {
                Ok(secret
                    .fetch_stage("AWSPENDING")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(fresh))
            }
            other => other,
        };
        match fetched {
            Ok(fresh) => {
                current.1 = Some(Instant::now());
                if current.0.as_ref().is_some_and(|old| old.same_as(&fresh)) {
                    return;
                }
                // The first credentials this process holds: if the secret had no version when
                // the api migrated, the login role was not set up then; it is now.
                if current.0.is_none() && !self.ensure_login_as_owner(&fresh).await {
                    return;
                }
                tracing::info!(username = %fresh.username, "database credentials loaded");
                self.pool
                    .set_connect_options(fresh.apply(self.inner.base.clone()));
                current.0 = Some(fresh);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the database credentials; keeping the last good ones")
            }
        }
    }

    /// Applies pending migrations, as the owner when `api.db_owner_secret_id` is set, then sets
    /// up the serving login when its secret has a version. sqlx holds PostgreSQL's advisory
    /// lock meanwhile, so concurrent starts apply each migration once.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let Some(owner) = self.owner_pool().await? else {
            return MIGRATOR
                .run(&self.pool)
                .await
                .map_err(|e| anyhow::anyhow!(self.describe(&sqlx::Error::from(e))));
        };
        let done = async {
            MIGRATOR.run(&owner).await?;
            match self.inner.secret.as_ref().map(CredentialSecret::fetch) {
                Some(fetch) => match fetch.await {
                    Ok(app) => self.ensure_login(&owner, &app).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the serving credentials yet; their login is set up when they are");
                        Ok(())
                    }
                },
                None => Ok(()),
            }
        }
        .await;
        owner.close().await;
        done.map_err(|e| anyhow::anyhow!(self.describe(&e)))
    }

    /// A one-connection pool as the owner, when the owner's secret is configured.
    async fn owner_pool(&self) -> anyhow::Result<Option<PgPool>> {
        let Some(secret) = &self.inner.owner else {
            return Ok(None);
        };
        let owner = secret
            .fetch()
            .await
            .context("cannot read the owner's credentials (api.db_owner_secret_id)")?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(owner.apply(self.inner.base.clone()))
            .await
            .map_err(|e| anyhow::anyhow!(self.describe(&e)))?;
        Ok(Some(pool))
    }

    /// Sets up the serving login as the owner, unless done already (or there is no owner to
    /// do it). Returns whether the login can be used.
    async fn ensure_login_as_owner(&self, app: &DbCredentials) -> bool {
        use std::sync::atomic::Ordering;
        if self.inner.login_ready.load(Ordering::SeqCst) || self.inner.owner.is_none() {
            return true;
        }
        let result = match self.owner_pool().await {
            Ok(Some(owner)) => {
                let done = self.ensure_login(&owner, app).await;
                owner.close().await;
                done.map_err(|e| anyhow::anyhow!(self.describe(&e)))
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot set up the serving login yet; retrying at the next refresh"
                );
                false
            }
        }
    }

    /// Makes the serving login a member of `tollgate_app` with the secret's current password,
    /// creating it when missing.
    async fn ensure_login(&self, owner: &PgPool, app: &DbCredentials) -> Result<(), sqlx::Error> {
        // Identifiers and the password are quoted by PostgreSQL itself (format %I / %L).
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
                .bind(&app.username)
                .fetch_one(owner)
                .await?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        let statement: String = sqlx::query_scalar(&format!(
            "SELECT format('{verb} ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)"
        ))
        .bind(&app.username)
        .bind(app.password.expose_secret())
        .fetch_one(owner)
        .await?;
        sqlx::raw_sql(&statement).execute(owner).await?;
        let grant: String =
            sqlx::query_scalar("SELECT format('GRANT tollgate_app TO %I', $1::text)")
                .bind(&app.username)
                .fetch_one(owner)
                .await?;
        sqlx::raw_sql(&grant).execute(owner).await?;
        self.inner
            .login_ready
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(username = %app.username, "serving login role is a member of tollgate_app");
        Ok(())
    }

    /// A connection failure as an operator reads it: the setting, the TLS mode, the cause.
    pub fn describe(&self, e: &sqlx::Error) -> String {
        // sqlx's messages often repeat their source's text: add each cause once.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if !cause.contains(&text) {
                cause.push_str(": ");
                cause.push_str(&text);
            }
            source = s.source();
        }
        format!(
            "cannot use the database at api.database_url (TLS {}): {cause}",
            self.inner.tls
        )
    }
}

/// PostgreSQL refused the user name or password (class 28: invalid authorization).
pub fn is_auth_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")))
}
