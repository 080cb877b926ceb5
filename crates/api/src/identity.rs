//! Whether Cognito still has the token's user, enabled: asked before `GET /users/me` creates a
//! missing row from a token (just-in-time registration), so a user deleted or disabled in
//! Cognito is not re-created while their ID token lives.
//!
//! Only that path asks. A user whose row exists is served from the row: asking Cognito on every
//! `GET /users/me` would spend `AdminGetUser`'s quota (a shared per-account rate, the
//! *UserRead* category) on the route every app user calls. Such a user keeps reading their own
//! row until the ID token expires (the pool's ID-token validity, an hour by default); their
//! refresh tokens are revoked when an operator signs them out.
//!
//! Answers are cached per user (enabled for five minutes, gone or disabled for one), and the
//! cache is bounded, so a burst of new users costs one lookup each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::Client as Cognito;
use aws_sdk_cognitoidentityprovider::error::DisplayErrorContext;
use shared_auth::Settings;

/// How long an answer is trusted.
const ENABLED_FOR: Duration = Duration::from_secs(300);
const GONE_FOR: Duration = Duration::from_secs(60);
/// Most users remembered at once; the cache starts over past it.
const CACHE_LIMIT: usize = 10_000;

/// What Cognito says of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Enabled,
    /// Deleted, or never in this pool.
    Gone,
    Disabled,
}

#[derive(Debug, thiserror::Error)]
#[error("Cognito: {0}")]
pub struct LookupError(String);

/// The pool the api's tokens come from, asked through `AdminGetUser`.
#[derive(Debug)]
pub struct UserDirectory {
    client: Cognito,
    pool_id: String,
    cache: Mutex<HashMap<String, (Instant, Standing)>>,
}

impl UserDirectory {
    /// The directory of the pool named by `api.jwt_issuer` (a Cognito issuer,
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>`); `None` for another issuer.
    pub async fn from_settings(settings: &Settings) -> Option<Self> {
        let issuer = settings.api.jwt_issuer.as_deref()?;
        let (region, pool_id) = cognito_pool(issuer)?;
        let mut aws = settings.aws.clone();
        aws.region = Some(region);
        let sdk = shared_aws::sdk_config(&aws).await;
        Some(Self {
            client: Cognito::new(&sdk),
            pool_id,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The standing of `username` (the token's `cognito:username`, or its `sub`).
    pub async fn standing(&self, username: &str) -> Result<Standing, LookupError> {
        if let Some(known) = self.cached(username) {
            return Ok(known);
        }
        let found = self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await;
        let standing = match found {
            Ok(user) if user.enabled() => Standing::Enabled,
            Ok(_) => Standing::Disabled,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_user_not_found_exception()) =>
            {
                Standing::Gone
            }
            Err(e) => return Err(LookupError(DisplayErrorContext(&e).to_string())),
        };
        self.remember(username, standing);
        Ok(standing)
    }

    fn cached(&self, username: &str) -> Option<Standing> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, standing) = cache.get(username)?;
        let trusted = if *standing == Standing::Enabled {
            ENABLED_FOR
        } else {
            GONE_FOR
        };
        (at.elapsed() < trusted).then_some(*standing)
    }

    fn remember(&self, username: &str, standing: Standing) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(username.to_owned(), (Instant::now(), standing));
    }
}

/// Region and pool id of a Cognito issuer URL.
fn cognito_pool(issuer: &str) -> Option<(String, String)> {
    let rest = issuer.strip_prefix("https://cognito-idp.")?;
    let (host_rest, pool_id) = rest.split_once('/')?;
    let region = host_rest.strip_suffix(".amazonaws.com")?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    (valid(region) && valid(pool_id)).then(|| (region.to_owned(), pool_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_read_from_a_cognito_issuer_only() {
        assert_eq!(
            cognito_pool("https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_AbC123"),
            Some(("ap-northeast-1".into(), "ap-northeast-1_AbC123".into()))
        );
        for other in [
            "https://issuer.example.com/pool",
            "http://cognito-idp.ap-northeast-1.amazonaws.com/p",
            "https://cognito-idp.ap-northeast-1.amazonaws.com/",
            "https://cognito-idp.ap-northeast-1.amazonaws.com/a/b",
        ] {
            assert_eq!(cognito_pool(other), None, "{other}");
        }
    }
}
