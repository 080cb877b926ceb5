//! Real Cognito PostConfirmation event shapes, read into registrations.

use post_confirm::event::{Action, EventError, Registration, action};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

fn registration(name: &str) -> Registration {
    match action(&fixture(name)) {
        Ok(Action::Register(r)) => r,
        other => panic!("{name}: expected a registration, got {other:?}"),
    }
}

#[test]
fn a_sign_up_becomes_a_registration() {
    assert_eq!(
        registration("sign-up"),
        Registration {
            sub: "7d8ca528-4931-4254-9273-ea5ee853f271".into(),
            email: Some("ada@example.com".into()),
            email_verified: true,
            username: "ada".into(),
            user_pool_id: "ap-northeast-1_EXAMPLE".into(),
        }
    );
}

#[test]
fn the_pool_makes_the_id_and_never_enters_the_body() {
    let r = registration("sign-up");
    assert_eq!(
        r.id(),
        shared_auth::registration_id(
            "ap-northeast-1_EXAMPLE",
            "7d8ca528-4931-4254-9273-ea5ee853f271"
        )
    );
    let body = serde_json::to_value(&r).expect("json");
    assert!(body.get("user_pool_id").is_none(), "{body}");
    assert_ne!(r.id(), r.clone().in_pool("ap-northeast-1_OTHER").id());
}

#[test]
fn email_verified_may_be_a_string_or_a_boolean() {
    assert!(registration("boolean-email-verified").email_verified);
    assert!(!registration("unverified-with-extra-fields").email_verified);
}

#[test]
fn extra_fields_are_tolerated() {
    let r = registration("unverified-with-extra-fields");
    assert_eq!(r.email.as_deref(), Some("ada@example.com"));
}

#[test]
fn a_phone_only_user_has_no_email() {
    let r = registration("phone-only");
    assert_eq!(
        (r.email, r.email_verified, r.username.as_str()),
        (None, false, "+15550100")
    );
}

#[test]
fn a_password_reset_is_skipped() {
    assert!(matches!(
        action(&fixture("forgot-password")),
        Ok(Action::Skip(_))
    ));
}

#[test]
fn an_unknown_trigger_is_skipped_not_failed() {
    let mut event = fixture("sign-up");
    event["triggerSource"] = Value::String("PostConfirmation_SomethingNew".into());
    assert!(matches!(action(&event), Ok(Action::Skip(_))));
}

#[test]
fn a_missing_sub_is_a_clear_error() {
    assert_eq!(
        action(&fixture("missing-sub")),
        Err(EventError::MissingAttribute("sub"))
    );
    let mut event = fixture("sign-up");
    event["userName"] = Value::Null;
    assert_eq!(action(&event), Err(EventError::MissingUserName));
}

#[test]
fn something_else_entirely_is_refused() {
    let event =
        serde_json::json!({"triggerSource": "PostConfirmation_ConfirmSignUp", "request": "nope"});
    assert!(matches!(
        action(&event),
        Err(EventError::NotPostConfirmation(_))
    ));
}
