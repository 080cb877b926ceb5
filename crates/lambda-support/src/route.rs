//! The guarded route and the one builder of a signed request to it: the sign-up function's
//! registrations, both functions' dry runs and the tests' clients all go through
//! [`GuardedRoute::signed`], so a request is signed one way everywhere.

use secrecy::SecretString;
use shared_auth::GuardContract;

/// Where the guarded route is, and what guards it.
#[derive(Debug, Clone)]
pub struct GuardedRoute {
    pub http: reqwest::Client,
    pub contract: GuardContract,
    /// Scheme and host of the api (no path).
    pub base_url: String,
}

impl GuardedRoute {
    pub fn new(http: reqwest::Client, contract: GuardContract, base_url: &str) -> Self {
        Self {
            http,
            contract,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The route's URL.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, self.contract.path)
    }

    /// A request to the route carrying the JSON `body` as message `id`, signed at `now` (unix
    /// seconds) with every key of `keys` by the contract's mode.
    pub fn signed_at(
        &self,
        keys: &[SecretString],
        id: &str,
        body: &[u8],
        now: u64,
    ) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(self.contract.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        self.signed_request(method, keys, id, body, now)
    }

    fn signed_request(
        &self,
        method: reqwest::Method,
        keys: &[SecretString],
        id: &str,
        body: &[u8],
        now: u64,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, self.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in self.contract.credentials(keys, id, body, now).iter() {
            request = request.header(name, value);
        }
        request
    }

    /// [`GuardedRoute::signed_at`] now.
    pub fn signed(&self, keys: &[SecretString], id: &str, body: &[u8]) -> reqwest::RequestBuilder {
        self.signed_at(keys, id, body, shared_auth::unix::seconds())
    }

    /// A dry run signed with `keys`: the api checks the whole guard and, only if it passes,
    /// answers `204` with the version it matched, writing nothing. Its id is its own
    /// (`dryrun_`, the time in milliseconds and a count): a dry run is never a registration.
    pub fn dry_run(&self, keys: &[SecretString]) -> reqwest::RequestBuilder {
        static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("dryrun_{}_{n}", shared_auth::unix::millis());
        self.signed(keys, &id, b"{}")
            .header(shared_auth::DRY_RUN_HEADER, "1")
    }

    /// The heartbeat's read-and-delete of its user `sub` (`DELETE` on the route, body
    /// [`shared_auth::heartbeat::Forget`]), signed like a registration with its own id
    /// (`forget_` and the `sub`).
    pub fn forget(&self, keys: &[SecretString], sub: &str) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(&shared_auth::heartbeat::Forget {
            sub: sub.to_owned(),
        })
        .unwrap_or_else(|_| unreachable!("a string serialises"));
        let id: String = format!("forget_{sub}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            .take(128)
            .collect();
        self.signed_request(
            reqwest::Method::DELETE,
            keys,
            &id,
            &body,
            shared_auth::unix::seconds(),
        )
    }
}

/// The secret version a dry run's answer says it matched (at most 20 characters), or "".
pub fn verified_with(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(shared_auth::VERIFIED_WITH_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(20)
        .collect()
}
