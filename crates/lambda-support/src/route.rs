//! The guarded route and the one builder of a signed request to it: the sign-up function's
//! registrations, both functions' dry runs and the tests' clients all go through
//! [`GuardedRoute::signed`], so a request is signed one way everywhere.
//!
//! A request is signed by the api's clock as this process knows it ([`ApiClock`]): its own,
//! corrected by what a refusal's `Date` header said, as the AWS SDKs correct theirs. A function
//! whose host clock is off by more than the api's `max_skew_s` would otherwise be refused every
//! registration until the clock is put right.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use secrecy::SecretString;
use shared_auth::GuardContract;

/// How far an answer's `Date` may be from the corrected clock before the clock is corrected
/// again: well above the header's one-second grain and a slow round trip, well below the api's
/// `max_skew_s` (300 s by default).
pub const CLOCK_TOLERANCE_S: u64 = 30;

/// The api's clock as this process has learnt it: the local clock plus an offset, read from the
/// `Date` of a refused request's answer (the load balancer's or the api's clock).
///
/// Trusting the header gives nothing away: the api still checks every timestamp against its
/// own clock and every id against the ones it has seen, and whoever could change the header
/// could as well drop the request.
#[derive(Debug, Clone, Default)]
pub struct ApiClock {
    offset_s: Arc<AtomicI64>,
}

impl ApiClock {
    /// Unix seconds by the api's clock.
    pub fn now(&self) -> u64 {
        shared_auth::unix::seconds().saturating_add_signed(self.offset_s())
    }

    /// How far the api's clock is ahead of the local one (negative: behind), in seconds.
    pub fn offset_s(&self) -> i64 {
        self.offset_s.load(Ordering::Relaxed)
    }

    /// Corrects the clock by `response`'s `Date` when it is further than [`CLOCK_TOLERANCE_S`]
    /// from [`ApiClock::now`]; returns the new offset when it changed.
    pub fn learn(&self, response: &reqwest::Response) -> Option<i64> {
        let date = response
            .headers()
            .get(reqwest::header::DATE)?
            .to_str()
            .ok()?;
        self.learn_date(date, shared_auth::unix::seconds())
    }

    fn learn_date(&self, date: &str, local: u64) -> Option<i64> {
        let theirs = shared_auth::unix::seconds_of(httpdate::parse_http_date(date).ok()?)?;
        let ours = local.saturating_add_signed(self.offset_s());
        if theirs.abs_diff(ours) <= CLOCK_TOLERANCE_S {
            return None;
        }
        let offset = i64::try_from(theirs).ok()? - i64::try_from(local).ok()?;
        self.offset_s.store(offset, Ordering::Relaxed);
        Some(offset)
    }
}

/// Where the guarded route is, and what guards it.
#[derive(Debug, Clone)]
pub struct GuardedRoute {
    pub http: reqwest::Client,
    pub contract: GuardContract,
    /// Scheme and host of the api (no path).
    pub base_url: String,
    /// The clock requests are signed by; clones of the route share it.
    pub clock: ApiClock,
}

impl GuardedRoute {
    pub fn new(http: reqwest::Client, contract: GuardContract, base_url: &str) -> Self {
        Self {
            http,
            contract,
            base_url: base_url.trim_end_matches('/').to_owned(),
            clock: ApiClock::default(),
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

    /// [`GuardedRoute::signed_at`] now, by the api's clock as learnt ([`ApiClock`]).
    pub fn signed(&self, keys: &[SecretString], id: &str, body: &[u8]) -> reqwest::RequestBuilder {
        self.signed_at(keys, id, body, self.clock.now())
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
        self.signed_request(reqwest::Method::DELETE, keys, &id, &body, self.clock.now())
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn http_date(unix: u64) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
    }

    #[test]
    fn a_date_further_than_the_tolerance_sets_the_offset_and_a_near_one_leaves_it() {
        let clock = ApiClock::default();
        assert_eq!(
            clock.learn_date(&http_date(NOW + CLOCK_TOLERANCE_S), NOW),
            None
        );
        assert_eq!(
            clock.learn_date(&http_date(NOW - CLOCK_TOLERANCE_S), NOW),
            None
        );
        assert_eq!(clock.offset_s(), 0);
        // Our clock 10 minutes ahead: the api's Date is 600 s behind it.
        assert_eq!(clock.learn_date(&http_date(NOW - 600), NOW), Some(-600));
        assert_eq!(clock.offset_s(), -600);
        // Learnt once, the same Date changes nothing; a clone shares what was learnt.
        assert_eq!(clock.clone().learn_date(&http_date(NOW - 601), NOW), None);
        // Our clock put right (NTP stepped it back): the next refusal's Date undoes the offset.
        assert_eq!(clock.learn_date(&http_date(NOW - 600), NOW - 600), Some(0));
        assert_eq!(clock.offset_s(), 0);
    }

    #[test]
    fn a_missing_or_unreadable_date_changes_nothing() {
        let clock = ApiClock::default();
        for date in ["", "yesterday", "Thu, 01 Jan 2026 00:00:00", "1800000000"] {
            assert_eq!(clock.learn_date(date, NOW), None, "{date:?}");
        }
        assert_eq!(clock.offset_s(), 0);
    }

    #[test]
    fn requests_are_signed_by_the_corrected_clock() {
        let contract = shared_auth::load_for(shared_auth::Component::Deploy, &Default::default())
            .expect("the embedded settings load")
            .guard;
        let route = GuardedRoute::new(reqwest::Client::new(), contract, "http://127.0.0.1:9");
        let local = shared_auth::unix::seconds();
        route
            .clock
            .learn_date(&http_date(local + 3_600), local)
            .expect("an hour is past the tolerance");
        let keys = [SecretString::from("k".repeat(32))];
        let request = route
            .signed(&keys, "id_1", b"{}")
            .build()
            .expect("a request");
        let header = route.contract.timestamp_header.as_str();
        let signed_at: u64 = request.headers()[header]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("unix seconds");
        assert!(
            signed_at.abs_diff(local + 3_600) <= 2,
            "{signed_at} vs {local}"
        );
    }
}
