//! The guard secret's rotation function: Secrets Manager's four steps, so the secret rotates
//! on a schedule with no human step and no refused sign-up.
//!
//! | step | what it does | why no sender is refused |
//! |---|---|---|
//! | `createSecret` | a new random value ([`shared_auth::generate_secret`]) as `AWSPENDING` under the rotation's token | nothing uses it yet |
//! | `setSecret` | waits until the api reports the pending version id on `GET /readyz`, then one more refresh interval, and checks again | every api task refreshes once per `api.secret_refresh_s`; a full interval after the value was first seen, every task has read it |
//! | `testSecret` | sends dry runs ([`shared_auth::DRY_RUN_HEADER`]) signed with the pending value; each must come back `204` verified with `pending` | proves the whole path (ALB, WAF, guard) accepts it; no row is written |
//! | `finishSecret` | moves `AWSCURRENT` to the token (the old value becomes `AWSPREVIOUS`, still accepted) and removes `AWSPENDING` | senders switch at their next fetch; the api still accepts what they hold |
//!
//! In `static` mode the WAF checks the header too ([`crate::waf`]): `setSecret` first makes
//! the rule group accept current, previous and pending, and `finishSecret` ends with current
//! and previous, so the edge never refuses a value the api accepts.
//!
//! Each step is idempotent (Secrets Manager retries a failed step): it first reads where the
//! rotation stands and does only what is missing. Waiting is bounded ([`Rotator::budget`]). Logs
//! name the step, the secret and the version id, never a value.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::{ExposeSecret, SecretString};
use shared_auth::{GuardContract, Settings, SigningMode};

use crate::waf::{Accepted, GuardRuleGroup};

const PENDING: &str = "AWSPENDING";
const CURRENT: &str = "AWSCURRENT";

/// One of Secrets Manager's rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

impl Step {
    /// The four steps in the order Secrets Manager runs them.
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    /// The name Secrets Manager sends in the event's `Step`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }

    pub fn parse(name: &str) -> Result<Step, RotationError> {
        Step::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| RotationError::UnknownStep(name.chars().take(40).collect()))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a step failed. Secrets Manager retries the step; the message is logged and names no
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("unknown rotation step `{0}`")]
    UnknownStep(String),
    #[error(
        "secret `{got}` is not the guard secret `{expected}`: this function rotates that one only"
    )]
    WrongSecret { got: String, expected: String },
    #[error("version {token} of `{secret}` is not staged for rotation (no AWSPENDING)")]
    NotPending { secret: String, token: String },
    #[error("`{0}` has no AWSCURRENT version")]
    NoCurrent(String),
    #[error("the api did not report pending version {token} within {waited:?} (last seen: {seen})")]
    NotLearned {
        token: String,
        waited: Duration,
        seen: String,
    },
    #[error("the api did not accept the pending version on a dry run: {0}")]
    TestFailed(String),
    #[error("Secrets Manager: {0}")]
    Aws(String),
    #[error("{0}")]
    Waf(String),
    #[error("the system's random source failed: {0}")]
    Random(String),
}

fn aws<E: std::error::Error + 'static, R: fmt::Debug>(
    e: aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> RotationError {
    RotationError::Aws(DisplayErrorContext(&e).to_string())
}

/// What one waiting step may take for an api that refreshes every `refresh_s` seconds: see it
/// once, wait one interval, see it again, with room for a slow refresh. The function's timeout
/// (`infra/rotation.tf`) is larger.
pub fn step_budget(refresh_s: u64) -> Duration {
    Duration::from_secs(refresh_s.saturating_mul(3).saturating_add(30).min(600))
}

/// Everything a step needs; built once per execution environment.
#[derive(Debug)]
pub struct Rotator {
    pub sm: SecretsManager,
    pub http: reqwest::Client,
    pub contract: GuardContract,
    /// Where the verifiers are: the api's base URL, as the post-confirm Lambda reaches it.
    pub api_base_url: String,
    /// How often each api task re-reads the secret (`api.secret_refresh_s`).
    pub refresh: Duration,
    /// Longest a waiting step (`setSecret`) may take before it fails and is retried.
    pub budget: Duration,
    /// Dry runs `testSecret` sends; each must pass.
    pub test_requests: u32,
    /// Pause between `/readyz` polls.
    pub poll: Duration,
    /// `static` mode: the WAF rule group that checks the header at the edge, and its ARN
    /// ([`crate::waf`]); `setSecret` adds the pending value, `finishSecret` drops the oldest.
    pub waf: Option<(GuardRuleGroup, String)>,
}

impl Rotator {
    /// A rotator for the contract in `settings`; `budget` is what one step may wait, which the
    /// function's timeout must exceed.
    pub async fn from_settings(settings: &Settings, budget: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            sm: crate::secret::secrets_manager(&settings.aws).await,
            http: crate::client::Registrar::http_client(&settings.lambda, settings.env != "local")?,
            contract: settings.guard.clone(),
            api_base_url: settings
                .lambda
                .api_base_url
                .trim_end_matches('/')
                .to_owned(),
            refresh: Duration::from_secs(settings.api.secret_refresh_s),
            budget,
            test_requests: 3,
            poll: Duration::from_millis(500),
            waf: match std::env::var(crate::waf::RULE_GROUP_ARN_VAR) {
                Ok(arn) if !arn.is_empty() && settings.guard.mode == SigningMode::Static => {
                    let sdk = shared_auth::aws::sdk_config(&settings.aws).await;
                    Some((
                        GuardRuleGroup {
                            client: aws_sdk_wafv2::Client::new(&sdk),
                        },
                        arn,
                    ))
                }
                _ => None,
            },
        })
    }

    /// Every version the verifiers should accept now ([`accepted_versions`]).
    pub async fn accepted_versions(&self, secret_id: &str) -> Result<Vec<Accepted>, RotationError> {
        accepted_versions(&self.sm, secret_id).await
    }

    /// Makes the WAF accept exactly what Secrets Manager holds now (static mode only).
    async fn sync_waf(&self, secret_id: &str) -> Result<(), RotationError> {
        let Some((group, arn)) = &self.waf else {
            return Ok(());
        };
        let accepted = self.accepted_versions(secret_id).await?;
        group
            .update(arn, &self.contract, &accepted)
            .await
            .map_err(|e| RotationError::Waf(e.to_string()))?;
        let ids: Vec<&str> = accepted.iter().map(|a| a.version_id.as_str()).collect();
        tracing::info!(rule_group = %arn, versions = ?ids, "WAF accepts these versions");
        Ok(())
    }

    /// Runs one step for the rotation `token` of `secret_id` (a name or an ARN).
    pub async fn run(&self, step: Step, secret_id: &str, token: &str) -> Result<(), RotationError> {
        let started = Instant::now();
        let stages = self.stages(secret_id).await?;
        let result = match step {
            Step::Create => self.create(secret_id, token, &stages).await,
            Step::Set => self.set(secret_id, token, &stages).await,
            Step::Test => self.test(secret_id, token, &stages).await,
            Step::Finish => self.finish(secret_id, token, &stages).await,
        };
        match &result {
            Ok(()) => tracing::info!(
                step = step.name(),
                secret = secret_id,
                version = token,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "rotation step done"
            ),
            Err(e) => tracing::error!(
                step = step.name(),
                secret = secret_id,
                version = token,
                error = %e,
                "rotation step failed; Secrets Manager retries it"
            ),
        }
        result
    }

    /// Every version's stages, after checking `secret_id` is the contract's secret.
    async fn stages(&self, secret_id: &str) -> Result<HashMap<String, Vec<String>>, RotationError> {
        let described = self
            .sm
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(aws)?;
        let name = described.name().unwrap_or_default();
        if name != self.contract.secret_id {
            return Err(RotationError::WrongSecret {
                got: name.to_owned(),
                expected: self.contract.secret_id.clone(),
            });
        }
        Ok(described.version_ids_to_stages.unwrap_or_default())
    }

    /// `createSecret`: a new value as `AWSPENDING` under `token`, unless it is already there.
    async fn create(
        &self,
        secret_id: &str,
        token: &str,
        stages: &HashMap<String, Vec<String>>,
    ) -> Result<(), RotationError> {
        if !stages.values().any(|s| s.iter().any(|s| s == CURRENT)) {
            return Err(RotationError::NoCurrent(secret_id.to_owned()));
        }
        match stages.get(token) {
            Some(s) if s.iter().any(|s| s == CURRENT) => return Ok(()), // already finished
            Some(s) if !s.iter().any(|s| s == PENDING) => {
                return Err(RotationError::NotPending {
                    secret: secret_id.to_owned(),
                    token: token.to_owned(),
                });
            }
            // Secrets Manager staged an empty version for the token (or, when a tool drives
            // the steps without it, nothing yet): write the value below.
            _ => {}
        }
        if self.pending_value(secret_id, token).await?.is_some() {
            tracing::info!(version = token, "the pending version already has its value");
            return Ok(());
        }
        let value =
            shared_auth::generate_secret().map_err(|e| RotationError::Random(e.to_string()))?;
        self.sm
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose_secret())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(aws)?;
        Ok(())
    }

    /// `setSecret`: every verifier learns the pending version before any sender uses it.
    async fn set(
        &self,
        secret_id: &str,
        token: &str,
        stages: &HashMap<String, Vec<String>>,
    ) -> Result<(), RotationError> {
        if self.finished(secret_id, token, stages)? {
            return Ok(());
        }
        // The edge first: the WAF accepts the pending value before the api is asked to.
        self.sync_waf(secret_id).await?;
        let deadline = Instant::now() + self.budget;
        self.wait_reported(token, deadline).await?;
        // Seen by one task, so the value was written before now; every task refreshes within
        // one interval, so after one more interval every task has read it.
        tokio::time::sleep(self.refresh + self.poll).await;
        self.wait_reported(token, deadline + self.refresh).await
    }

    /// Polls `GET /readyz` until it reports `token` as pending (or already current).
    async fn wait_reported(&self, token: &str, deadline: Instant) -> Result<(), RotationError> {
        let started = Instant::now();
        let url = format!("{}/readyz", self.api_base_url);
        loop {
            let seen;
            match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
            {
                Ok(response) => match response.json::<serde_json::Value>().await {
                    Ok(body) => {
                        let versions = &body["secret_versions"];
                        if versions["pending"] == token || versions["current"] == token {
                            return Ok(());
                        }
                        seen = versions.to_string();
                    }
                    Err(e) => seen = format!("unreadable /readyz: {e}"),
                },
                Err(e) => seen = format!("{e}"),
            }
            if Instant::now() + self.poll > deadline {
                return Err(RotationError::NotLearned {
                    token: token.to_owned(),
                    waited: started.elapsed(),
                    seen,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// `testSecret`: dry runs signed with the pending value must each pass as `pending`.
    async fn test(
        &self,
        secret_id: &str,
        token: &str,
        stages: &HashMap<String, Vec<String>>,
    ) -> Result<(), RotationError> {
        if self.finished(secret_id, token, stages)? {
            return Ok(());
        }
        // Secrets Manager's configuration test (a rotation attached with
        // `rotate_immediately = false`) runs testSecret alone, on a pending version that is
        // empty or a copy of the current value: either way it proves the function reaches the
        // api and signs, and the api, which checks current first, matches `current`.
        let current = self.current_value(secret_id).await?;
        let (secret, expected) = match self.pending_value(secret_id, token).await? {
            Some(pending) if pending.expose_secret() != current.expose_secret() => {
                (pending, "pending")
            }
            _ => (current, "current"),
        };
        for _ in 0..self.test_requests.max(1) {
            self.dry_run(&secret, expected).await?;
        }
        Ok(())
    }

    async fn current_value(&self, secret_id: &str) -> Result<SecretString, RotationError> {
        self.sm
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(CURRENT)
            .send()
            .await
            .map_err(aws)?
            .secret_string
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| RotationError::NoCurrent(secret_id.to_owned()))
    }

    /// One dry run of the guarded route with `secret`; `Ok` when the api answers `204`
    /// verified with `expected` (`pending`, or `current` for a configuration test).
    pub async fn dry_run(
        &self,
        secret: &SecretString,
        expected: &str,
    ) -> Result<(), RotationError> {
        let body = b"{}";
        let method = reqwest::Method::from_bytes(self.contract.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut request = self
            .http
            .request(
                method,
                format!("{}{}", self.api_base_url, self.contract.path),
            )
            .timeout(Duration::from_secs(5))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(shared_auth::DRY_RUN_HEADER, "1")
            .body(body.as_slice());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (name, value) in self
            .contract
            .credentials(secret, &self.contract.path, body, now)
            .iter()
        {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RotationError::TestFailed(e.to_string()))?;
        let verified = response
            .headers()
            .get(shared_auth::VERIFIED_WITH_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        match response.status().as_u16() {
            204 if verified == expected => Ok(()),
            status => Err(RotationError::TestFailed(format!(
                "HTTP {status}, verified with `{verified}`"
            ))),
        }
    }

    /// `finishSecret`: `token` becomes `AWSCURRENT` (the old one `AWSPREVIOUS`) and loses
    /// `AWSPENDING`, so the next rotation can start.
    async fn finish(
        &self,
        secret_id: &str,
        token: &str,
        stages: &HashMap<String, Vec<String>>,
    ) -> Result<(), RotationError> {
        let current = stages
            .iter()
            .find(|(_, s)| s.iter().any(|s| s == CURRENT))
            .map(|(id, _)| id.clone())
            .ok_or_else(|| RotationError::NoCurrent(secret_id.to_owned()))?;
        let Some(token_stages) = stages.get(token) else {
            return Err(RotationError::NotPending {
                secret: secret_id.to_owned(),
                token: token.to_owned(),
            });
        };
        if current != token {
            if !token_stages.iter().any(|s| s == PENDING) {
                return Err(RotationError::NotPending {
                    secret: secret_id.to_owned(),
                    token: token.to_owned(),
                });
            }
            self.sm
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage(CURRENT)
                .move_to_version_id(token)
                .remove_from_version_id(&current)
                .send()
                .await
                .map_err(aws)?;
        }
        if token_stages.iter().any(|s| s == PENDING) {
            self.sm
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage(PENDING)
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(aws)?;
        }
        // The edge drops the version before the old one; the one senders may still hold
        // (now AWSPREVIOUS) stays accepted.
        self.sync_waf(secret_id).await
    }

    /// Whether `token` is already `AWSCURRENT` (a retried step after the rotation finished);
    /// an error when it is neither current nor pending.
    fn finished(
        &self,
        secret_id: &str,
        token: &str,
        stages: &HashMap<String, Vec<String>>,
    ) -> Result<bool, RotationError> {
        match stages.get(token) {
            Some(s) if s.iter().any(|s| s == CURRENT) => Ok(true),
            Some(s) if s.iter().any(|s| s == PENDING) => Ok(false),
            _ => Err(RotationError::NotPending {
                secret: secret_id.to_owned(),
                token: token.to_owned(),
            }),
        }
    }

    /// The value of `token` staged `AWSPENDING`; `None` while it has none.
    async fn pending_value(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<Option<SecretString>, RotationError> {
        let result = self
            .sm
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(token)
            .version_stage(PENDING)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .secret_string
                .filter(|s| !s.is_empty())
                .map(SecretString::from)),
            Err(e) => match e.as_service_error() {
                // No such version yet, or the stage is not on it (moto says "InvalidRequest").
                Some(
                    GetSecretValueError::ResourceNotFoundException(_)
                    | GetSecretValueError::InvalidRequestException(_),
                ) => Ok(None),
                _ => Err(aws(e)),
            },
        }
    }

    /// Runs the four steps in order, as Secrets Manager would, reporting each through
    /// `progress`. For environments whose Secrets Manager cannot invoke a function (moto).
    pub async fn rotate(
        &self,
        secret_id: &str,
        token: &str,
        mut progress: impl FnMut(Step, Duration),
    ) -> Result<(), RotationError> {
        for step in Step::ALL {
            let started = Instant::now();
            self.run(step, secret_id, token).await?;
            progress(step, started.elapsed());
        }
        Ok(())
    }
}

/// Every version the verifiers should accept now, by stage: `AWSCURRENT`, `AWSPREVIOUS`,
/// and `AWSPENDING` while it is not the current one.
pub async fn accepted_versions(
    sm: &SecretsManager,
    secret_id: &str,
) -> Result<Vec<Accepted>, RotationError> {
    let mut accepted: Vec<Accepted> = Vec::new();
    for stage in [CURRENT, "AWSPREVIOUS", PENDING] {
        let result = sm
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_resource_not_found_exception() || s.is_invalid_request_exception()
                }) =>
            {
                continue;
            }
            Err(e) => return Err(aws(e)),
        };
        let (Some(id), Some(value)) = (out.version_id, out.secret_string) else {
            continue;
        };
        if !value.is_empty() && !accepted.iter().any(|a| a.version_id == id) {
            accepted.push(Accepted {
                version_id: id,
                value: SecretString::from(value),
            });
        }
    }
    if accepted.is_empty() {
        return Err(RotationError::NoCurrent(secret_id.to_owned()));
    }
    Ok(accepted)
}

/// The Lambda handler: one step per invocation, from Secrets Manager's rotation event.
pub async fn handle(
    rotator: &Rotator,
    event: lambda_runtime::LambdaEvent<
        aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent,
    >,
) -> Result<(), lambda_runtime::Error> {
    let event = event.payload;
    let step = Step::parse(&event.step)?;
    rotator
        .run(step, &event.secret_id, &event.client_request_token)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_secrets_managers() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.name()).expect("known"), step);
        }
        assert!(Step::parse("createsecret").is_err());
        assert!(Step::parse("").is_err());
    }
}
