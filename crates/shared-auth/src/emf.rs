//! CloudWatch embedded metric format (EMF): a JSON log line that CloudWatch Logs turns into
//! metrics, with no agent and no API call. The api and the Lambda print the same shape, so
//! their metrics sit side by side under one namespace.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The namespace every Tollgate metric is published under.
pub const NAMESPACE: &str = "Tollgate";

/// One EMF line: `metrics` (name, value, unit) for `service`, with one dimension
/// (`dimension.0` = `dimension.1`), stamped now.
pub fn line(service: &str, dimension: (&str, &str), metrics: &[(&str, u64, &str)]) -> String {
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    line_at(service, dimension, metrics, timestamp_ms)
}

/// [`line`] at a given time (unix milliseconds).
pub fn line_at(
    service: &str,
    dimension: (&str, &str),
    metrics: &[(&str, u64, &str)],
    timestamp_ms: u64,
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service", dimension.0]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({ "Name": name, "Unit": unit }))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Service".into(), service.into());
    root.insert(dimension.0.into(), dimension.1.into());
    for (name, value, _) in metrics {
        root.insert((*name).into(), (*value).into());
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_dimension_and_metric_is_a_top_level_member() {
        let text = line_at(
            "api",
            ("Reason", "signature_mismatch"),
            &[
                ("RegistrationRefused", 3, "Count"),
                ("Other", 7, "Milliseconds"),
            ],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&text).expect("json");
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        for dimension in directive["Dimensions"][0].as_array().expect("dimensions") {
            assert!(
                v.get(dimension.as_str().expect("name")).is_some(),
                "{dimension}"
            );
        }
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name");
            assert!(v[name].is_u64(), "{name} missing in {text}");
        }
        assert_eq!(v["Reason"], "signature_mismatch");
        assert_eq!(v["Other"], 7);
        assert!(!text.contains('\n'), "one line");
    }
}
