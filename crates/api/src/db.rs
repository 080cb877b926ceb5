//! PostgreSQL: the pool and the `users` queries.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::NewUser;

/// Whether an error means "the database cannot be reached right now" (→ 503) rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // Class 08 (connection exception), 57 (operator intervention: shutdown, statement
        // timeout), 53 (insufficient resources), 28 (credentials refused: mid-rotation, after
        // the one re-read and retry).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57") || c.starts_with("53") || c.starts_with("28")
        }),
        _ => false,
    }
}

/// A stored user, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    /// The Cognito `sub` (column `cognito_sub`).
    pub sub: Uuid,
    pub email: Option<String>,
    pub email_verified: bool,
    pub username: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created(User),
    /// A replay with changed attributes: Cognito is the source of truth, so they were applied.
    Updated(User),
    /// An identical replay.
    Unchanged(User),
}

// Every query below is checked against the schema at compile time (`sqlx::query_as!`), from the
// offline cache in `.sqlx/` (`SQLX_OFFLINE=true`, set in `.cargo/config.toml`); after changing a
// query or a migration, `cargo xtask sqlx-prepare` refreshes it. `"sub!"`-style aliases tell
// sqlx a column is never NULL where it cannot infer that through `RETURNING`.

/// Registers a user, idempotently on the Cognito `sub`: safe under retries and under
/// concurrent duplicates (the unique index makes the loser's insert a no-op). Registrations
/// apply in `signed_at` order: an older or equal one, replayed, changes nothing.
pub async fn register_user(
    pool: &PgPool,
    user: &NewUser,
    signed_at: i64,
) -> Result<Registered, sqlx::Error> {
    if let Some(created) = insert_if_missing(pool, user, signed_at).await? {
        return Ok(Registered::Created(created));
    }
    let updated = sqlx::query_as!(
        User,
        r#"UPDATE users SET email = $2, email_verified = $3, username = $4, signed_at = $5,
                            updated_at = now()
           WHERE cognito_sub = $1 AND signed_at < $5
             AND (email, email_verified, username) IS DISTINCT FROM ($2, $3, $4)
           RETURNING id AS "id!", cognito_sub AS "sub!", email, email_verified AS "email_verified!",
                     username AS "username!", created_at AS "created_at!", updated_at AS "updated_at!""#,
        user.sub(),
        user.email(),
        user.email_verified(),
        user.username(),
        signed_at,
    )
    .fetch_optional(pool)
    .await?;
    if let Some(updated) = updated {
        return Ok(Registered::Updated(updated));
    }
    // Same attributes, newer signature: remember it, so an older replay cannot win later.
    sqlx::query!(
        "UPDATE users SET signed_at = $2 WHERE cognito_sub = $1 AND signed_at < $2",
        user.sub(),
        signed_at,
    )
    .execute(pool)
    .await?;
    let existing = find_by_sub(pool, user.sub())
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(Registered::Unchanged(existing))
}

/// Returns the user with this `sub`, creating it from `user` when missing (a sign-up whose
/// registration call failed). Never changes an existing row.
pub async fn provision_user(pool: &PgPool, user: &NewUser) -> Result<(User, bool), sqlx::Error> {
    if let Some(created) = insert_if_missing(pool, user, 0).await? {
        return Ok((created, true));
    }
    let existing = find_by_sub(pool, user.sub())
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((existing, false))
}

async fn insert_if_missing(
    pool: &PgPool,
    user: &NewUser,
    signed_at: i64,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (cognito_sub, email, email_verified, username, signed_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (cognito_sub) DO NOTHING
           RETURNING id AS "id!", cognito_sub AS "sub!", email, email_verified AS "email_verified!",
                     username AS "username!", created_at AS "created_at!", updated_at AS "updated_at!""#,
        user.sub(),
        user.email(),
        user.email_verified(),
        user.username(),
        signed_at,
    )
    .fetch_optional(pool)
    .await
}

pub async fn find_by_sub(pool: &PgPool, sub: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"SELECT id, cognito_sub AS sub, email, email_verified, username, created_at, updated_at
           FROM users WHERE cognito_sub = $1"#,
        sub
    )
    .fetch_optional(pool)
    .await
}

/// Whether the database answers a trivial query.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
