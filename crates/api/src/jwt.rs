//! Cognito ID tokens for `GET /users/me`: RS256 signatures checked against the user pool's JWKS
//! (cached, refetched at most once a minute when an unknown key id appears), then issuer,
//! audience, `token_use` and the time claims.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Smallest time between two JWKS fetches triggered by unknown key ids.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY_S: u64 = 60;

/// Why a token was refused (for the log and the `WWW-Authenticate` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid signature, issuer or audience")]
    Invalid,
    #[error("not an ID token")]
    WrongUse,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("the user pool's keys cannot be fetched")]
    KeysUnavailable,
}

/// The ID token claims Tollgate uses.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub token_use: String,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub email_verified: bool,
    #[serde(rename = "cognito:username")]
    pub username: Option<String>,
}

/// Cognito sends booleans; some tools send `"true"`.
fn bool_or_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match Option::<B>::deserialize(de)? {
        Some(B::Bool(b)) => b,
        Some(B::Str(s)) => s.eq_ignore_ascii_case("true"),
        None => false,
    })
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies Cognito ID tokens for one user pool and app client.
pub struct JwtVerifier {
    issuer: String,
    client_id: String,
    jwks_url: String,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held while the JWKS is fetched, so concurrent unknown key ids cause one fetch.
    fetch_lock: Mutex<()>,
    refetch_interval: Duration,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(issuer: String, client_id: String, jwks_url: String) -> anyhow::Result<Self> {
        Self::with_refetch_interval(issuer, client_id, jwks_url, JWKS_REFETCH_INTERVAL)
    }

    /// As [`JwtVerifier::new`], with another least time between two fetches.
    pub fn with_refetch_interval(
        issuer: String,
        client_id: String,
        jwks_url: String,
        refetch_interval: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            issuer,
            client_id,
            jwks_url,
            http,
            cache: RwLock::default(),
            fetch_lock: Mutex::new(()),
            refetch_interval,
        })
    }

    /// Verifies `token` at time `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: u64) -> Result<IdClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client_id]);
        // Time claims are checked below against the service's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;

        if claims.token_use != "id" {
            return Err(TokenError::WrongUse);
        }
        if now > claims.exp.saturating_add(LEEWAY_S) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_S) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The key `kid`, fetching the JWKS when it is unknown (at most once a minute). The fetch
    /// is single-flight and holds no lock the readers need: a slow JWKS endpoint delays only
    /// tokens with unknown key ids, never those whose key is cached.
    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        let _fetching = self.fetch_lock.lock().await;
        {
            let mut cache = self.cache.write().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone()); // another request fetched it meanwhile
            }
            let may_fetch = cache
                .fetched_at
                .is_none_or(|t| t.elapsed() >= self.refetch_interval);
            if !may_fetch {
                return Err(TokenError::UnknownKey);
            }
            cache.fetched_at = Some(Instant::now());
        }
        let keys = match self.fetch_keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, url = %self.jwks_url, "JWKS fetch failed");
                return Err(TokenError::KeysUnavailable);
            }
        };
        tracing::info!(keys = keys.len(), url = %self.jwks_url, "JWKS fetched");
        let key = keys.get(kid).cloned();
        self.cache.write().await.keys = keys;
        key.ok_or(TokenError::UnknownKey)
    }

    async fn fetch_keys(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}
