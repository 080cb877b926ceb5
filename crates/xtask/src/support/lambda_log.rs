//! Reading the post-confirm Lambda's JSON log: which status the api gave a registration.
//! `up` checks its flow with it, and `reconcile` counts created versus already registered.

/// The status of the last "user registered" line for `sub` in `log` (JSON lines).
pub fn registered_status(log: &str, sub: &str) -> Option<u16> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "user registered" && v["sub"] == sub)
        .filter_map(|v| v["status"].as_u64())
        .filter_map(|s| u16::try_from(s).ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_registration_line_for_the_sub_wins() {
        let log = r#"{"message":"user registered","sub":"a","status":201}
not json
{"message":"user registered","sub":"b","status":201}
{"message":"registration attempt failed","sub":"a","status":503}
{"message":"user registered","sub":"a","status":200}"#;
        assert_eq!(registered_status(log, "a"), Some(200));
        assert_eq!(registered_status(log, "b"), Some(201));
        assert_eq!(registered_status(log, "c"), None);
    }
}
