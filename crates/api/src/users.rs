//! The `users` table's queries: registering, provisioning from a token, reading. The pool and
//! the logins it connects with are [`crate::database`]'s.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::NewUser;
use shared_auth::heartbeat::Via;

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
///
/// One statement, one round trip, whatever happened: insert when new; otherwise, when newer,
/// take the attributes and the signing time (reporting whether an attribute changed, from the
/// old row version joined in); otherwise return the row as it is.
pub async fn register_user(
    pool: &PgPool,
    user: &NewUser,
    signed_at: i64,
) -> Result<Registered, sqlx::Error> {
    // A concurrent first registration of the same `sub` commits after this statement's
    // snapshot: the insert yields to it and the other parts cannot see it yet, so nothing comes
    // back. The next statement sees it.
    for _ in 0..3 {
        let row = sqlx::query!(
            r#"WITH ins AS (
                   INSERT INTO users (cognito_sub, email, email_verified, username, signed_at,
                                      registered_via)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (cognito_sub) DO NOTHING
                   RETURNING id, cognito_sub, email, email_verified, username, created_at, updated_at
               ), upd AS (
                   UPDATE users u
                      SET email = $2, email_verified = $3, username = $4, signed_at = $5,
                          updated_at = CASE
                              WHEN (o.email, o.email_verified, o.username) IS DISTINCT FROM ($2, $3, $4)
                              THEN now() ELSE o.updated_at END
                     FROM users o
                    WHERE o.id = u.id AND u.cognito_sub = $1 AND u.signed_at < $5
                   RETURNING u.id, u.cognito_sub, u.email, u.email_verified, u.username,
                             u.created_at, u.updated_at,
                             (o.email, o.email_verified, o.username) IS DISTINCT FROM ($2, $3, $4)
                                 AS changed
               )
               SELECT 'created' AS "outcome!", id AS "id!", cognito_sub AS "sub!", email,
                      email_verified AS "email_verified!", username AS "username!",
                      created_at AS "created_at!", updated_at AS "updated_at!"
                 FROM ins
               UNION ALL
               SELECT CASE WHEN changed THEN 'updated' ELSE 'unchanged' END, id, cognito_sub,
                      email, email_verified, username, created_at, updated_at
                 FROM upd
               UNION ALL
               SELECT 'unchanged', id, cognito_sub, email, email_verified, username,
                      created_at, updated_at
                 FROM users
                WHERE cognito_sub = $1
                  AND NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM upd)"#,
            user.sub(),
            user.email(),
            user.email_verified(),
            user.username(),
            signed_at,
            user.via().map(Via::as_str),
        )
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue };
        let stored = User {
            id: row.id,
            sub: row.sub,
            email: row.email,
            email_verified: row.email_verified,
            username: row.username,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        return Ok(match row.outcome.as_str() {
            "created" => Registered::Created(stored),
            "updated" => Registered::Updated(stored),
            _ => Registered::Unchanged(stored),
        });
    }
    Err(sqlx::Error::RowNotFound)
}

/// Returns the user with this `sub`, creating it from `user` when missing (a sign-up whose
/// registration call failed; the row says `registered_via = 'jit'`, and its `signed_at` of 0
/// lets any later registration apply). Never changes an existing row.
pub async fn provision_user(pool: &PgPool, user: &NewUser) -> Result<(User, bool), sqlx::Error> {
    if let Some(created) = provision_if_missing(pool, user).await? {
        return Ok((created, true));
    }
    let existing = find_by_sub(pool, user.sub())
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((existing, false))
}

async fn provision_if_missing(pool: &PgPool, user: &NewUser) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (cognito_sub, email, email_verified, username, signed_at,
                              registered_via)
           VALUES ($1, $2, $3, $4, 0, 'jit')
           ON CONFLICT (cognito_sub) DO NOTHING
           RETURNING id AS "id!", cognito_sub AS "sub!", email, email_verified AS "email_verified!",
                     username AS "username!", created_at AS "created_at!", updated_at AS "updated_at!""#,
        user.sub(),
        user.email(),
        user.email_verified(),
        user.username(),
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

/// The heartbeat's read-and-delete: removes the row of heartbeat user `sub` and returns how it
/// had been registered (`Some(None)`: before `registered_via` existed); `None` when there is
/// no such row. Runs the database's `forget_heartbeat_user`, which deletes a heartbeat user's
/// row and no other (the serving role cannot delete otherwise).
pub async fn forget_heartbeat_user(
    pool: &PgPool,
    sub: Uuid,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT registered_via FROM forget_heartbeat_user($1)"#,
        sub
    )
    .fetch_optional(pool)
    .await
}

/// Whether the database answers a trivial query.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
