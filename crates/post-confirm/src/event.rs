//! Reading Cognito's PostConfirmation event into the body of `POST /user`.

use aws_lambda_events::event::cognito::{
    CognitoEventUserPoolsPostConfirmation,
    CognitoEventUserPoolsPostConfirmationTriggerSource as Trigger,
};
use serde::Serialize;
use serde_json::Value;

/// The body of `POST /user` (the API's `RegistrationRequest`), and what the retry queue keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Registration {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    pub email_verified: bool,
    pub username: String,
    /// The user pool the user signed up in: not part of the body; with `sub`, it makes the
    /// request's id ([`Registration::id`]).
    #[serde(skip)]
    pub user_pool_id: String,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Register(Registration),
    /// Not a sign-up (a password reset, or a trigger this Lambda does not know): nothing to do.
    Skip(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the event is not a Cognito PostConfirmation event: {0}")]
    NotPostConfirmation(String),
    #[error("the event has no `{0}` user attribute")]
    MissingAttribute(&'static str),
    #[error("the event has no user name")]
    MissingUserName,
}

/// Decides what an event asks for. Reads through `aws_lambda_events`' type after turning
/// boolean attribute values (`"email_verified": true`, sent by some tools) into the strings
/// Cognito itself sends.
pub fn action(raw: &Value) -> Result<Action, EventError> {
    let trigger = raw
        .get("triggerSource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(
        trigger,
        "PostConfirmation_ConfirmSignUp" | "PostConfirmation_ConfirmForgotPassword"
    ) {
        return Ok(Action::Skip(format!("trigger `{trigger}`")));
    }
    let mut normalised = raw.clone();
    if let Some(attrs) = normalised
        .pointer_mut("/request/userAttributes")
        .and_then(Value::as_object_mut)
    {
        for value in attrs.values_mut() {
            if let Value::Bool(b) = value {
                *value = Value::String(b.to_string());
            }
        }
    }
    let event: CognitoEventUserPoolsPostConfirmation = serde_json::from_value(normalised)
        .map_err(|e| EventError::NotPostConfirmation(e.to_string()))?;
    let header = &event.cognito_event_user_pools_header;
    if header.trigger_source != Some(Trigger::ConfirmSignUp) {
        return Ok(Action::Skip(
            "trigger `PostConfirmation_ConfirmForgotPassword`".into(),
        ));
    }
    let attrs = &event.request.user_attributes;
    Registration::from_attributes(header.user_name.as_deref().unwrap_or_default(), |name| {
        attrs.get(name).map(String::as_str)
    })
    .map(|r| r.in_pool(header.user_pool_id.as_deref().unwrap_or_default()))
    .map(Action::Register)
}

impl Registration {
    /// The registration of user `username` with the attributes `attribute` names (Cognito's
    /// strings: `email_verified` is `"true"`), from a trigger's event or a user pool listing.
    pub fn from_attributes<'a>(
        username: &str,
        attribute: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, EventError> {
        let sub = attribute("sub")
            .filter(|s| !s.is_empty())
            .ok_or(EventError::MissingAttribute("sub"))?
            .to_owned();
        if username.is_empty() {
            return Err(EventError::MissingUserName);
        }
        let email = attribute("email")
            .filter(|e| !e.is_empty())
            .map(str::to_owned);
        let email_verified = email.is_some()
            && attribute("email_verified").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Registration {
            sub,
            email,
            email_verified,
            username: username.to_owned(),
            user_pool_id: String::new(),
        })
    }

    /// The same registration, of a user in pool `user_pool_id`.
    pub fn in_pool(mut self, user_pool_id: &str) -> Self {
        user_pool_id.clone_into(&mut self.user_pool_id);
        self
    }

    /// Whether this is the heartbeat's synthetic user ([`shared_auth::heartbeat`]).
    pub fn is_heartbeat(&self) -> bool {
        self.email
            .as_deref()
            .is_some_and(shared_auth::heartbeat::is_heartbeat_email)
    }

    /// The request's message id ([`shared_auth::registration_id`]): the same for the trigger,
    /// a queue redelivery and the sweep.
    pub fn id(&self) -> String {
        shared_auth::registration_id(&self.user_pool_id, &self.sub)
    }
}
