//! # rotate-secret: the guard secret's rotation function
//!
//! Secrets Manager's four steps, so the secret rotates on a schedule with no human step and no
//! refused sign-up. A deployable of its own (`rotate-secret.zip`), in the sign-up function's
//! subnets so it reaches the api exactly as the sender does; it shares the signed request,
//! the HTTP client and the log with the sign-up function through `lambda-support`, and the
//! secret's versions and the WAF rule group with everyone through `shared-auth`.
//!
//! | step | what it does | why no sender is refused |
//! |---|---|---|
//! | `createSecret` | a new Standard Webhooks key ([`shared_auth::generate_secret`], `whsec_…`) as `AWSPENDING` under the rotation's token; a value staged by hand that is not one is refused | nothing uses it yet |
//! | `setSecret` | waits until **every** running api task reports the pending version id on its own `GET /readyz` ([`verifiers`]: the tasks' private addresses from ECS) | no task is taken on trust: one whose refresh fails holds the rotation back instead of refusing the promoted value |
//! | `testSecret` | sends dry runs ([`shared_auth::DRY_RUN_HEADER`]) signed with the pending value, each of which must come back `204` verified with `pending`, and asks every task again | proves the whole path (ALB, WAF, guard) accepts it; no row is written |
//! | `finishSecret` | moves `AWSCURRENT` to the token (the old value becomes `AWSPREVIOUS`, still accepted) and removes `AWSPENDING` | senders switch at their next fetch; the api still accepts what they hold |
//!
//! In `static` mode the WAF checks the header too ([`shared_aws::waf`]): `setSecret` first makes
//! the rule group accept current, previous and pending, and `finishSecret` ends with current
//! and previous, so the edge never refuses a value the api accepts.
//!
//! Each step is idempotent (Secrets Manager retries a failed step): it first reads where the
//! rotation stands and does only what is missing. Waiting is bounded ([`Rotator::budget`]). Logs
//! name the step, the secret and the version id, never a value.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use lambda_support::route::{self, GuardedRoute};
use secrecy::{ExposeSecret, SecretString};
use shared_auth::rotation::{Step, UnknownStep};
use shared_auth::{Settings, SigningMode};
use shared_aws::versions::{self, Acceptance, CURRENT, PENDING, Stages, Versions, VersionsError};
use shared_aws::waf::GuardRuleGroup;
pub use verifiers::Verifiers;

pub mod verifiers;

/// Why a step failed. Secrets Manager retries the step; the message is logged and names no
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    UnknownStep(#[from] UnknownStep),
    #[error(
        "secret `{got}` is not the guard secret `{expected}`: this function rotates that one only"
    )]
    WrongSecret { got: String, expected: String },
    #[error("version {token} of `{secret}` is not staged for rotation (no AWSPENDING)")]
    NotPending { secret: String, token: String },
    #[error("`{0}` has no AWSCURRENT version")]
    NoCurrent(String),
    #[error("not every api task reports pending version {token} after {waited:?}: {seen}")]
    NotLearned {
        token: String,
        waited: Duration,
        seen: String,
    },
    #[error("cannot find the api's tasks: {0}")]
    Tasks(#[from] verifiers::FindError),
    #[error("the api did not accept the pending version on a dry run: {0}")]
    TestFailed(String),
    #[error("Secrets Manager: {0}")]
    Aws(String),
    #[error("{0}")]
    Waf(String),
    #[error("the system's random source failed: {0}")]
    Random(String),
    /// A pending value someone staged by hand that is not a Standard Webhooks key: the
    /// rotation will not promote it.
    #[error("{0}; delete the AWSPENDING version and rotate again to have one generated")]
    NotStandard(#[from] shared_auth::SecretError),
}

fn aws<E: std::error::Error + 'static, R: fmt::Debug>(
    e: aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> RotationError {
    RotationError::Aws(DisplayErrorContext(&e).to_string())
}

/// A failed read of `secret_id`'s versions, as a rotation error.
fn versions_error(e: VersionsError, secret_id: &str) -> RotationError {
    match e {
        VersionsError::NoCurrent => RotationError::NoCurrent(secret_id.to_owned()),
        VersionsError::Aws(e) => RotationError::Aws(e),
    }
}

/// Everything a step needs; built once per execution environment.
#[derive(Debug)]
pub struct Rotator {
    pub sm: SecretsManager,
    /// The guarded route, as the post-confirm Lambda reaches it (the verifiers are there).
    pub route: GuardedRoute,
    /// Longest a waiting step (`setSecret`) may take before it fails and is retried.
    pub budget: Duration,
    /// Dry runs `testSecret` sends; each must pass.
    pub test_requests: u32,
    /// Pause between `/readyz` polls.
    pub poll: Duration,
    /// Every api task, asked directly.
    pub verifiers: Verifiers,
    /// The client that asks them: plain HTTP to each task's private address inside the VPC
    /// (the ALB reaches the tasks the same way), where the guarded route's client speaks HTTPS
    /// only. Nothing secret travels on it: `/readyz` reports version ids.
    pub tasks_http: reqwest::Client,
    /// When `AWSPREVIOUS` and `AWSPENDING` count (the contract's windows).
    pub acceptance: Acceptance,
    /// `static` mode: the WAF rule group that checks the header at the edge, and its ARN
    /// ([`crate::waf`]); `setSecret` adds the pending value, `finishSecret` drops the oldest.
    pub waf: Option<(GuardRuleGroup, String)>,
}

impl Rotator {
    /// A rotator for the contract in `settings`; `budget` is what one step may wait, which the
    /// function's timeout must exceed.
    pub async fn from_settings(settings: &Settings, budget: Duration) -> anyhow::Result<Self> {
        let http = lambda_support::http::client(
            &settings.lambda,
            settings.env != "local",
            concat!("tollgate-rotate-secret/", env!("CARGO_PKG_VERSION")),
        )?;
        let sdk = lambda_support::sdk_config(settings).await?;
        let local_api = (settings.env == shared_auth::settings::DEFAULT_ENV)
            .then_some(settings.lambda.api_base_url.as_str());
        let verifiers = Verifiers::from_vars(&|k| std::env::var(k).ok(), &sdk, local_api)?;
        Ok(Self {
            verifiers,
            tasks_http: verifiers::client(&settings.lambda)?,
            acceptance: Acceptance::for_settings(settings),
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            route: GuardedRoute::new(http, settings.guard.clone(), &settings.lambda.api_base_url),
            budget,
            test_requests: 3,
            poll: Duration::from_millis(500),
            waf: match std::env::var(shared_aws::waf::RULE_GROUP_ARN_VAR) {
                Ok(arn) if !arn.is_empty() && settings.guard.mode == SigningMode::Static => Some((
                    GuardRuleGroup {
                        client: aws_sdk_wafv2::Client::new(&sdk),
                    },
                    arn,
                )),
                _ => None,
            },
        })
    }

    /// Every version the verifiers should accept now (the one reader's rule).
    pub async fn accepted_versions(&self, secret_id: &str) -> Result<Versions, RotationError> {
        versions::accepted(&self.sm, secret_id, self.acceptance, versions::now_s())
            .await
            .map_err(|e| versions_error(e, secret_id))
    }

    /// Makes the WAF accept exactly what Secrets Manager holds now (static mode only).
    async fn sync_waf(&self, secret_id: &str) -> Result<(), RotationError> {
        let Some((group, arn)) = &self.waf else {
            return Ok(());
        };
        let accepted = self.accepted_versions(secret_id).await?;
        group
            .update(arn, &self.route.contract, &accepted)
            .await
            .map_err(|e| RotationError::Waf(e.to_string()))?;
        let ids: Vec<&str> = accepted.all().map(|(_, v)| v.id.as_str()).collect();
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
    async fn stages(&self, secret_id: &str) -> Result<Stages, RotationError> {
        let described = self
            .sm
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(aws)?;
        let name = described.name().unwrap_or_default();
        if name != self.route.contract.secret_id {
            return Err(RotationError::WrongSecret {
                got: name.to_owned(),
                expected: self.route.contract.secret_id.clone(),
            });
        }
        Ok(Stages::of(&described))
    }

    /// `createSecret`: a new value as `AWSPENDING` under `token`, unless it is already there.
    async fn create(
        &self,
        secret_id: &str,
        token: &str,
        stages: &Stages,
    ) -> Result<(), RotationError> {
        if stages.holder(CURRENT).is_none() {
            return Err(RotationError::NoCurrent(secret_id.to_owned()));
        }
        match stages.of_version(token) {
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
        if let Some(pending) = self.pending_value(secret_id, token).await? {
            shared_auth::secret::require_standard(&pending, "pending")?;
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
        stages: &Stages,
    ) -> Result<(), RotationError> {
        if self.finished(secret_id, token, stages)? {
            return Ok(());
        }
        // The edge first: the WAF accepts the pending value before the api is asked to.
        self.sync_waf(secret_id).await?;
        self.wait_every_task(token, Instant::now() + self.budget)
            .await
    }

    /// Polls every running task's `GET /readyz` until each reports `token` as pending (or
    /// already current). The task list is read again on every poll: a task started meanwhile
    /// must hold it too.
    async fn wait_every_task(&self, token: &str, deadline: Instant) -> Result<(), RotationError> {
        let started = Instant::now();
        loop {
            let answers = self.verifiers.ask(&self.tasks_http).await?;
            let lagging: Vec<String> = answers
                .iter()
                .filter(|a| !a.holds(token))
                .map(|a| match &a.versions {
                    Ok(v) => format!("{} holds {v}", a.url),
                    Err(e) => format!("{} did not answer ({e})", a.url),
                })
                .collect();
            if lagging.is_empty() {
                tracing::info!(
                    version = token,
                    tasks = answers.len(),
                    "every api task holds the version"
                );
                return Ok(());
            }
            if Instant::now() + self.poll > deadline {
                return Err(RotationError::NotLearned {
                    token: token.to_owned(),
                    waited: started.elapsed(),
                    seen: lagging.join("; "),
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
        stages: &Stages,
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
                shared_auth::secret::require_standard(&pending, "pending")?;
                (pending, "pending")
            }
            _ => (current, "current"),
        };
        for _ in 0..self.test_requests.max(1) {
            self.dry_run(&secret, expected).await?;
        }
        if expected == "pending" {
            // The dry runs reached the tasks the ALB chose; each task must hold it.
            self.wait_every_task(token, Instant::now() + self.poll)
                .await?;
        }
        Ok(())
    }

    async fn current_value(&self, secret_id: &str) -> Result<SecretString, RotationError> {
        versions::current(&self.sm, secret_id)
            .await
            .map(|v| v.value)
            .map_err(|e| versions_error(e, secret_id))
    }

    /// One dry run of the guarded route with `secret`; `Ok` when the api answers `204`
    /// verified with `expected` (`pending`, or `current` for a configuration test).
    pub async fn dry_run(
        &self,
        secret: &SecretString,
        expected: &str,
    ) -> Result<(), RotationError> {
        let response = self
            .route
            .dry_run(std::slice::from_ref(secret))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| RotationError::TestFailed(e.to_string()))?;
        let verified = route::verified_with(&response);
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
        stages: &Stages,
    ) -> Result<(), RotationError> {
        let current = stages
            .holder(CURRENT)
            .map(str::to_owned)
            .ok_or_else(|| RotationError::NoCurrent(secret_id.to_owned()))?;
        let Some(token_stages) = stages.of_version(token) else {
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
        stages: &Stages,
    ) -> Result<bool, RotationError> {
        match stages.of_version(token) {
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
        versions::at_version(&self.sm, secret_id, token, PENDING)
            .await
            .map(|v| v.map(|v| v.value))
            .map_err(|e| versions_error(e, secret_id))
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
