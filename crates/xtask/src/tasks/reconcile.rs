//! `cargo xtask reconcile --env E`: nothing confirmed is lost. Lists the user pool's confirmed
//! users (paginated) and replays Cognito's PostConfirmation event for each through the Lambda,
//! whose registration is idempotent: a user the api has answers 200, a missing one 201.
//!
//! The Lambda, not xtask, sends the registrations: it alone leaves through the NAT address the
//! edge allows and holds the contract's signing code. In AWS the deployed function is invoked;
//! locally the real binary runs under `testkit`'s Lambda Runtime API, as in `cargo xtask up`.

use std::time::Duration;

use anyhow::{Result, bail};
use aws_config::SdkConfig;
use aws_sdk_cognitoidentityprovider::Client as Cognito;
use aws_sdk_cognitoidentityprovider::types::UserStatusType;
use serde_json::Value;
use shared_auth::Settings;
use testkit::aws::AwsContext;

use crate::flags;
use crate::support::context::{block_on, check_local_aws, settings_for};
use crate::support::local_lambda::LocalLambda;
use crate::support::{lambda_log, terraform};

/// Cognito's page size limit for ListUsers.
const PAGE: i32 = 60;
/// What a replayed invocation may take (Cognito's own budget).
const BUDGET: Duration = Duration::from_secs(5);

/// How one replay ended.
#[derive(Debug, Default)]
struct Tally {
    created: usize,
    present: usize,
    /// Registered, but the log did not say which (AWS log tail cut short).
    registered: usize,
    failed: Vec<String>,
}

impl flags::Reconcile {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        block_on(self.reconcile(&settings))
    }

    async fn reconcile(&self, settings: &Settings) -> Result<()> {
        let sdk = testkit::sdk_config(&settings.aws).await;
        let pool_id = match &self.user_pool_id {
            Some(id) => id.clone(),
            None => terraform::output_str(&terraform::outputs(&self.env)?, "user_pool_id")?,
        };
        let events = confirmed_users(&sdk, &pool_id).await?;
        eprintln!("· {} confirmed user(s) in {pool_id}", events.len());
        let mut replay = if settings.aws.endpoint_url.is_some() {
            let api_url = self
                .api_url
                .clone()
                .unwrap_or_else(|| settings.lambda.api_base_url.clone());
            Replay::Local(LocalSignUp::start(settings, &api_url)?)
        } else {
            let outputs = terraform::outputs(&self.env)?;
            Replay::Deployed {
                client: aws_sdk_lambda::Client::new(&sdk),
                function: terraform::output_str(&outputs, "lambda_function_name")?,
            }
        };
        let mut tally = Tally::default();
        for (n, (sub, event)) in events.iter().enumerate() {
            let outcome = replay.invoke(sub, event).await;
            let mark = match &outcome {
                Ok(Some(201)) => "registered (was missing)",
                Ok(Some(_)) => "already registered",
                Ok(None) => "registered",
                Err(_) => "FAILED",
            };
            eprintln!("  [{}/{}] {sub}: {mark}", n + 1, events.len());
            match outcome {
                Ok(Some(201)) => tally.created += 1,
                Ok(Some(_)) => tally.present += 1,
                Ok(None) => tally.registered += 1,
                Err(e) => tally.failed.push(format!("{sub}: {e:#}")),
            }
        }
        println!(
            "\nreconciled {} user(s): {} were missing and are registered now, {} were already registered, {} registered (status not logged), {} failed",
            events.len(),
            tally.created,
            tally.present,
            tally.registered,
            tally.failed.len()
        );
        if !tally.failed.is_empty() {
            bail!(
                "{} user(s) could not be registered (rerun: reconcile is idempotent):\n  {}",
                tally.failed.len(),
                tally.failed.join("\n  ")
            );
        }
        Ok(())
    }
}

/// Every confirmed user, as (sub, the PostConfirmation event Cognito sent for it).
async fn confirmed_users(sdk: &SdkConfig, pool_id: &str) -> Result<Vec<(String, Value)>> {
    let cognito = Cognito::new(sdk);
    let region = sdk
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "ap-northeast-1".into());
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cognito
            .list_users()
            .user_pool_id(pool_id)
            .limit(PAGE)
            .set_pagination_token(token.take())
            .send()
            .await
            .aws(&format!("cannot list the users of {pool_id}"))?;
        for user in page.users() {
            if user.user_status() != Some(&UserStatusType::Confirmed) {
                continue;
            }
            let username = user.username().unwrap_or_default();
            let event = testkit::cognito::post_confirmation_event(
                &region,
                pool_id,
                "tollgate-reconcile",
                username,
                user.attributes(),
            );
            if let Some(sub) = event["request"]["userAttributes"]["sub"].as_str() {
                events.push((sub.to_owned(), event));
            }
        }
        match page.pagination_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(events),
        }
    }
}

/// Where the replayed events go.
enum Replay {
    Local(LocalSignUp),
    Deployed {
        client: aws_sdk_lambda::Client,
        function: String,
    },
}

impl Replay {
    /// Replays one event; the api's status for it when the Lambda's log says.
    async fn invoke(&mut self, sub: &str, event: &Value) -> Result<Option<u16>> {
        match self {
            Replay::Local(lambda) => lambda.invoke(sub, event),
            Replay::Deployed { client, function } => {
                let out = client
                    .invoke()
                    .function_name(function.as_str())
                    .log_type(aws_sdk_lambda::types::LogType::Tail)
                    .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
                    .send()
                    .await
                    .aws(&format!("cannot invoke {function}"))?;
                if let Some(error) = out.function_error() {
                    let body = out
                        .payload()
                        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                        .unwrap_or_default();
                    bail!("{error}: {body}");
                }
                let log = out
                    .log_result()
                    .and_then(|tail| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(tail).ok()
                    })
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default();
                Ok(lambda_log::registered_status(&log, sub))
            }
        }
    }
}

/// The post-confirm binary under a local Lambda Runtime API.
struct LocalSignUp(LocalLambda);

impl LocalSignUp {
    fn start(settings: &Settings, api_url: &str) -> Result<Self> {
        let mut env = settings.guard.to_env_vars();
        env.push(("TOLLGATE_ENV".into(), settings.env.clone()));
        if let Some(endpoint) = &settings.aws.endpoint_url {
            env.push(("TOLLGATE__AWS__ENDPOINT_URL".into(), endpoint.clone()));
        }
        env.push(("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_url.to_owned()));
        LocalLambda::start("post-confirm", &env).map(Self)
    }

    fn invoke(&self, sub: &str, event: &Value) -> Result<Option<u16>> {
        self.0.invoke(&event.to_string(), BUDGET)?;
        Ok(lambda_log::registered_status(&self.0.log_text(), sub))
    }
}
