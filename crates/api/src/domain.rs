//! Registration data that validates itself on construction: past [`NewUser::parse`], an invalid
//! user cannot exist (the fields are private; there is no other constructor).
//!
//! Validation knows nothing of HTTP: it fails with a [`ValidationError`] naming the field, which
//! the routes turn into a 422.

use serde::Deserialize;
use shared_auth::heartbeat::Via;
use utoipa::ToSchema;
use uuid::Uuid;

/// Cognito's limit on an attribute value, in characters: any address it confirmed fits.
pub const MAX_EMAIL_LEN: usize = 2048;
pub const MAX_USERNAME_LEN: usize = 128;

/// The body of `POST /user`, as the post-confirm Lambda sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The Cognito `sub` (a UUID).
    #[schema(format = Uuid, example = "7d8ca528-4931-4254-9273-ea5ee853f271")]
    pub sub: String,
    /// Absent or null for phone-only user pools.
    #[serde(default)]
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// The Cognito user name.
    #[schema(example = "ada")]
    pub username: String,
    /// Which of the sign-up function's ways sent it: `trigger`, `queue` or `sweep`. Stored with
    /// the first registration of a `sub` (`registered_via`); absent from older senders.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "trigger")]
    pub via: Option<Via>,
}

/// Why a registration is invalid: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {detail}")]
pub struct ValidationError {
    pub field: &'static str,
    pub detail: String,
}

/// A valid user, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    sub: Uuid,
    email: Option<String>,
    email_verified: bool,
    username: String,
    via: Option<Via>,
}

impl NewUser {
    /// The Cognito `sub`.
    pub fn sub(&self) -> Uuid {
        self.sub
    }

    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// Whether Cognito verified the address (never true without one).
    pub fn email_verified(&self) -> bool {
        self.email_verified
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The way in the request named (`None` from an older sender).
    pub fn via(&self) -> Option<Via> {
        self.via
    }

    pub fn parse(req: RegistrationRequest) -> Result<Self, ValidationError> {
        let sub = Uuid::try_parse(&req.sub).map_err(|_| invalid("sub", "must be a UUID"))?;
        let email = req.email.map(|e| parse_email(&e).map(|()| e)).transpose()?;
        let username = req.username;
        let chars = username.chars().count();
        if chars == 0 || chars > MAX_USERNAME_LEN {
            return Err(invalid(
                "username",
                format!("must be 1 to {MAX_USERNAME_LEN} characters"),
            ));
        }
        if username.chars().any(char::is_control) {
            return Err(invalid("username", "must not contain control characters"));
        }
        if req.via == Some(Via::Jit) {
            return Err(invalid(
                "via",
                "must be trigger, queue or sweep: jit is the api's own",
            ));
        }
        Ok(NewUser {
            via: req.via,
            sub,
            // A verified flag without an address means nothing.
            email_verified: req.email_verified && email.is_some(),
            email,
            username,
        })
    }
}

fn invalid(field: &'static str, detail: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        detail: detail.into(),
    }
}

/// A deliberately plain address check: Cognito already verified the address format it accepts;
/// this keeps garbage and oversized values out of the database.
fn parse_email(email: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| Err(invalid("email", why));
    if email.chars().count() > MAX_EMAIL_LEN {
        return bad("must be at most 2048 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return bad("must contain an @");
    };
    if local.is_empty() || local.contains('@') {
        return bad("must have a local part before a single @");
    }
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if !domain.contains('.') || !labels_ok {
        return bad("must have a domain such as example.com after the @");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(sub: &str, email: Option<&str>, username: &str) -> RegistrationRequest {
        RegistrationRequest {
            sub: sub.into(),
            email: email.map(Into::into),
            email_verified: true,
            username: username.into(),
            via: None,
        }
    }
    const SUB: &str = "7d8ca528-4931-4254-9273-ea5ee853f271";

    fn field_of(r: Result<NewUser, ValidationError>) -> &'static str {
        match r {
            Err(ValidationError { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn valid_registrations_parse() {
        let u = NewUser::parse(req(SUB, Some("ada@example.com"), "ada")).expect("valid");
        assert_eq!(u.sub.to_string(), SUB);
        assert!(u.email_verified);
        let phone_only = NewUser::parse(req(SUB, None, "+15550100")).expect("phone-only pool");
        assert_eq!(phone_only.email, None);
        assert!(!phone_only.email_verified, "no address, nothing verified");
    }

    #[test]
    fn each_invalid_field_is_named() {
        assert_eq!(
            field_of(NewUser::parse(req("not-a-uuid", None, "ada"))),
            "sub"
        );
        assert_eq!(field_of(NewUser::parse(req("", None, "ada"))), "sub");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@-x.com",
            "ada@example..com",
        ] {
            assert_eq!(
                field_of(NewUser::parse(req(SUB, Some(bad), "ada"))),
                "email",
                "{bad:?}"
            );
        }
        // Cognito's limit (2,048 characters) is ours: one more is refused, the limit is not.
        let at_limit = format!("{}@example.com", "a".repeat(2048 - 12));
        assert!(NewUser::parse(req(SUB, Some(&at_limit), "ada")).is_ok());
        let long = format!("{}@example.com", "a".repeat(2048 - 11));
        assert_eq!(
            field_of(NewUser::parse(req(SUB, Some(&long), "ada"))),
            "email"
        );
        let long_local = format!("{}@example.com", "a".repeat(100));
        assert!(
            NewUser::parse(req(SUB, Some(&long_local), "ada")).is_ok(),
            "a local part over 64 bytes, which Cognito accepts"
        );
        assert_eq!(field_of(NewUser::parse(req(SUB, None, ""))), "username");
        assert_eq!(
            field_of(NewUser::parse(req(SUB, None, &"u".repeat(129)))),
            "username"
        );
        assert_eq!(
            field_of(NewUser::parse(req(SUB, None, "a\u{0}b"))),
            "username"
        );
        assert!(
            NewUser::parse(req(SUB, None, &"ü".repeat(128))).is_ok(),
            "length counts characters"
        );
        let jit = RegistrationRequest {
            via: Some(Via::Jit),
            ..req(SUB, None, "ada")
        };
        assert_eq!(
            field_of(NewUser::parse(jit)),
            "via",
            "no sender claims the app's way"
        );
    }
}
