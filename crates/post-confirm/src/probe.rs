//! The probe: `cargo xtask verify` invokes the deployed function with [`EVENT`], and the
//! function sends a dry-run registration exactly as it sends real ones (in AWS through the NAT
//! gateway, the WAF and the ALB), signed with the current secret. The api checks the whole
//! guard and answers `204` without writing anything; the function returns what it got.
//!
//! Only a direct invocation (IAM's `lambda:InvokeFunction`) can send this event: Cognito's
//! events always carry a `triggerSource`, and this one is recognised by its exact shape.

use serde_json::{Value, json};

/// The event that asks for a probe.
pub const EVENT: &str = shared_auth::PROBE_EVENT;

/// Whether `raw` is exactly [`EVENT`].
pub fn is_probe(raw: &Value) -> bool {
    raw.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("tollgate").and_then(Value::as_str) == Some("probe"))
}

/// The probe's answer: the api's status and the secret version it matched.
pub fn answer(status: u16, verified_with: &str) -> Value {
    json!({ "status": status, "verified_with": verified_with })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_probe_event_is_a_probe() {
        assert!(is_probe(&serde_json::from_str(EVENT).expect("json")));
        for other in [
            json!({"tollgate": "probe", "triggerSource": "PostConfirmation_ConfirmSignUp"}),
            json!({"tollgate": "sweep"}),
            json!({"tollgate": true}),
            json!("probe"),
            json!({}),
        ] {
            assert!(!is_probe(&other), "{other}");
        }
    }
}
