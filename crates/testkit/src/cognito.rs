//! A Cognito user pool in moto, with users signed up, confirmed and signed in.
//!
//! moto never invokes triggers, so [`PoolUser::event`] builds the PostConfirmation event Cognito
//! would send, from the user's stored attributes.

use anyhow::{Context, Result};
use aws_sdk_cognitoidentityprovider::Client as Cognito;
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, AuthFlowType, ExplicitAuthFlowsType, UserType,
};
use serde_json::{Value, json};

use crate::aws::AwsContext;

/// The password every local user gets (moto's default policy accepts it).
pub const PASSWORD: &str = "Local-demo-password-1";

/// A user pool with one app client that may sign in with a password (admin flow).
#[derive(Debug, Clone)]
pub struct UserPool {
    pub cognito: Cognito,
    pub id: String,
    pub client_id: String,
    pub region: String,
    /// The `iss` of the pool's tokens.
    pub issuer: String,
    /// Where moto serves the pool's signing keys.
    pub jwks_url: String,
    /// The AWS endpoint the pool lives in.
    pub endpoint: String,
}

/// A confirmed user: its `sub`, the PostConfirmation event for it, and its tokens.
#[derive(Debug, Clone)]
pub struct PoolUser {
    pub username: String,
    pub sub: String,
    pub event: Value,
    pub id_token: String,
    pub access_token: String,
}

impl UserPool {
    /// Creates a pool named `tollgate-<label>-<unique>` and its app client in the moto at
    /// `endpoint`.
    pub async fn create(sdk: &aws_config::SdkConfig, endpoint: &str, label: &str) -> Result<Self> {
        let cognito = Cognito::new(sdk);
        let region = sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_else(|| "ap-northeast-1".into());
        let unique = uuid::Uuid::new_v4().simple();
        let pool = cognito
            .create_user_pool()
            .pool_name(format!("tollgate-{label}-{unique}"))
            .send()
            .await
            .aws("cannot create a Cognito user pool")?;
        let id = pool
            .user_pool()
            .and_then(|p| p.id())
            .context("moto returned no pool id")?
            .to_owned();
        let client = cognito
            .create_user_pool_client()
            .user_pool_id(&id)
            .client_name(format!("tollgate-{label}-app"))
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
            .send()
            .await
            .aws("cannot create the user pool's app client")?;
        let client_id = client
            .user_pool_client()
            .and_then(|c| c.client_id())
            .context("moto returned no client id")?
            .to_owned();
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            issuer: format!("https://cognito-idp.{region}.amazonaws.com/{id}"),
            jwks_url: format!(
                "{}/{id}/.well-known/jwks.json",
                endpoint.trim_end_matches('/')
            ),
            cognito,
            region,
            id,
            client_id,
        })
    }

    /// The `TOLLGATE__API__…` variables that point the api's `/users/me` at this pool.
    pub fn api_env(&self) -> Vec<(String, String)> {
        vec![
            ("TOLLGATE__API__JWT_ISSUER".into(), self.issuer.clone()),
            (
                "TOLLGATE__API__JWT_CLIENT_ID".into(),
                self.client_id.clone(),
            ),
            ("TOLLGATE__API__JWKS_URL".into(), self.jwks_url.clone()),
            // The pool's AWS: the api asks it whether a user to provision still exists.
            ("TOLLGATE__AWS__ENDPOINT_URL".into(), self.endpoint.clone()),
            ("TOLLGATE__AWS__REGION".into(), self.region.clone()),
        ]
    }

    /// Signs up `username` (without confirming): the state a user is in before confirming.
    pub async fn sign_up_unconfirmed(&self, username: &str, email: &str) -> Result<String> {
        let email_attr = AttributeType::builder()
            .name("email")
            .value(email)
            .build()?;
        let out = self
            .cognito
            .sign_up()
            .client_id(&self.client_id)
            .username(username)
            .password(PASSWORD)
            .user_attributes(email_attr)
            .send()
            .await
            .aws(&format!("cannot sign up `{username}`"))?;
        Ok(out.user_sub().to_owned())
    }

    /// Signs up and confirms `username` (no sign-in, no tokens: cheap enough for hundreds);
    /// returns its `sub`.
    pub async fn confirmed_user(&self, username: &str, email: &str) -> Result<String> {
        let sub = self.sign_up_unconfirmed(username, email).await?;
        self.cognito
            .admin_confirm_sign_up()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .aws(&format!("cannot confirm `{username}`"))?;
        Ok(sub)
    }

    /// Disables `username`: confirmed still, but unable to sign in.
    pub async fn disable(&self, username: &str) -> Result<()> {
        self.cognito
            .admin_disable_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .aws(&format!("cannot disable `{username}`"))?;
        Ok(())
    }

    /// Deletes `username` from the pool.
    pub async fn delete(&self, username: &str) -> Result<()> {
        self.cognito
            .admin_delete_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .aws(&format!("cannot delete `{username}`"))?;
        Ok(())
    }

    /// Signs up and confirms `username`, then signs in: real tokens, and the PostConfirmation
    /// event Cognito would send for the confirmation.
    pub async fn sign_up(&self, username: &str, email: &str) -> Result<PoolUser> {
        self.sign_up_unconfirmed(username, email).await?;
        self.cognito
            .admin_confirm_sign_up()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .aws(&format!("cannot confirm `{username}`"))?;
        let event = self.post_confirmation_event(username).await?;
        let sub = event["request"]["userAttributes"]["sub"]
            .as_str()
            .context("the user has no sub")?
            .to_owned();
        let auth = self
            .cognito
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", PASSWORD)
            .send()
            .await
            .aws(&format!("cannot sign in `{username}`"))?;
        let tokens = auth
            .authentication_result()
            .context("moto returned no tokens")?;
        Ok(PoolUser {
            username: username.to_owned(),
            sub,
            event,
            id_token: tokens.id_token().context("no ID token")?.to_owned(),
            access_token: tokens.access_token().context("no access token")?.to_owned(),
        })
    }

    /// The PostConfirmation (sign-up) event for `username`, from its stored attributes.
    pub async fn post_confirmation_event(&self, username: &str) -> Result<Value> {
        let user = self
            .cognito
            .admin_get_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .aws(&format!("cannot read user `{username}`"))?;
        Ok(post_confirmation_event(
            &self.region,
            &self.id,
            &self.client_id,
            username,
            user.user_attributes(),
        ))
    }
}

/// The event Cognito sends the PostConfirmation trigger when `username` confirms sign-up.
pub fn post_confirmation_event(
    region: &str,
    pool_id: &str,
    client_id: &str,
    username: &str,
    attributes: &[AttributeType],
) -> Value {
    let mut attributes: serde_json::Map<String, Value> = attributes
        .iter()
        .filter_map(|a| {
            a.value()
                .map(|v| (a.name().to_owned(), Value::String(v.to_owned())))
        })
        .collect();
    attributes.insert("cognito:user_status".into(), json!("CONFIRMED"));
    json!({
        "version": "1",
        "region": region,
        "userPoolId": pool_id,
        "userName": username,
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": client_id},
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": {"userAttributes": attributes},
        "response": {}
    })
}

/// The pool's users in the heartbeat's reserved domain ([`shared_auth::heartbeat`]), any state.
pub async fn heartbeat_users(cognito: &Cognito, pool_id: &str) -> Result<Vec<UserType>> {
    let listed = cognito
        .list_users()
        .user_pool_id(pool_id)
        .send()
        .await
        .aws("cannot list the pool's users")?;
    Ok(listed
        .users()
        .iter()
        .filter(|u| {
            attribute(u, "email").is_some_and(|e| shared_auth::heartbeat::is_heartbeat_email(&e))
        })
        .cloned()
        .collect())
}

/// Cognito's part in a heartbeat, which moto does not play: waits up to `within` for the
/// heartbeat's user to be confirmed, then hands `fire` the PostConfirmation event Cognito
/// would send the trigger (as `AdminConfirmSignUp` makes it do). Returns that user's `sub`.
pub async fn play_heartbeat_trigger<F, Fut>(
    cognito: &Cognito,
    region: &str,
    pool_id: &str,
    client_id: &str,
    within: std::time::Duration,
    fire: F,
) -> Result<String>
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        let confirmed = heartbeat_users(cognito, pool_id)
            .await?
            .into_iter()
            .find(|u| u.user_status().map(|s| s.as_str()) == Some("CONFIRMED"));
        if let Some(user) = confirmed {
            let username = user.username().unwrap_or_default();
            let event =
                post_confirmation_event(region, pool_id, client_id, username, user.attributes());
            fire(event).await?;
            return attribute(&user, "sub").context("the heartbeat's user has no sub");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("no heartbeat user was confirmed within {within:?}")
}

fn attribute(user: &UserType, name: &str) -> Option<String> {
    user.attributes()
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.value())
        .map(str::to_owned)
}
