//! CloudWatch embedded metric format (EMF): a JSON log line that CloudWatch Logs turns into
//! metrics, with no agent and no API call. The api and the Lambda print the same shape, so
//! their metrics sit side by side under one namespace.

use serde_json::{Map, Value, json};

/// The namespace every Tollgate metric is published under.
pub const NAMESPACE: &str = "Tollgate";

/// Which dimension sets a line publishes its metrics under. CloudWatch keeps one metric per
/// combination of dimensions, and an alarm watches exactly one: a total across every value of
/// the second dimension exists only if a line publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sets {
    /// `{Service, <dimension>}` only.
    Detailed,
    /// `{Service, <dimension>}` and `{Service}`: the per-service total too.
    WithServiceTotal,
}

/// One EMF line: `metrics` (name, value, unit) for `service`, with one dimension
/// (`dimension.0` = `dimension.1`) besides `Service`, stamped now.
pub fn line(service: &str, dimension: (&str, &str), metrics: &[(&str, u64, &str)]) -> String {
    line_with(
        service,
        dimension,
        metrics,
        Sets::Detailed,
        shared_auth::unix::millis(),
    )
}

/// [`line`], published under the dimension sets `sets` at `timestamp_ms` (unix milliseconds).
pub fn line_with(
    service: &str,
    dimension: (&str, &str),
    metrics: &[(&str, u64, &str)],
    sets: Sets,
    timestamp_ms: u64,
) -> String {
    let detailed: &[&str] = &["Service", dimension.0];
    let mut published = vec![detailed];
    if sets == Sets::WithServiceTotal {
        published.push(&["Service"]);
    }
    line_in_sets(service, &[dimension], &published, metrics, timestamp_ms)
}

/// One EMF line for `service` with the members `dimensions` (name, value) besides `Service`,
/// its `metrics` published under each of the dimension sets `sets` (each a list of member
/// names, `Service` among them) at `timestamp_ms`.
pub fn line_in_sets(
    service: &str,
    dimensions: &[(&str, &str)],
    sets: &[&[&str]],
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
                "Dimensions": sets,
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({ "Name": name, "Unit": unit }))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Service".into(), service.into());
    for (name, value) in dimensions {
        root.insert((*name).into(), (*value).into());
    }
    for (name, value, _) in metrics {
        root.insert((*name).into(), (*value).into());
    }
    Value::Object(root).to_string()
}

/// A metric as CloudWatch keys it: namespace, name, and the dimensions' names and values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Metric {
    pub namespace: String,
    pub name: String,
    pub dimensions: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .dimensions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(
            f,
            "{}/{} {{{}}}",
            self.namespace,
            self.name,
            dims.join(", ")
        )
    }
}

/// The metrics CloudWatch makes of one log line, by the embedded metric format's rules: for
/// each directive, each metric under each dimension set, the dimensions' values read from
/// the line's top-level members. Empty for a line that is not EMF (not JSON, no `_aws`).
pub fn metrics_of(line: &str) -> Vec<Metric> {
    let Ok(root) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for directive in root["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(namespace) = directive["Namespace"].as_str() else {
            continue;
        };
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let names: Vec<&str> = set
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(dimensions) = names
                .iter()
                .map(|n| Some(((*n).to_owned(), root[*n].as_str()?.to_owned())))
                .collect::<Option<std::collections::BTreeMap<_, _>>>()
            else {
                continue;
            };
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                if let Some(name) = metric["Name"].as_str()
                    && root.get(name).is_some()
                {
                    found.push(Metric {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        dimensions: dimensions.clone(),
                    });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_dimension_and_metric_is_a_top_level_member() {
        let text = line_with(
            "api",
            ("Reason", "signature_mismatch"),
            &[
                ("RegistrationRefused", 3, "Count"),
                ("Other", 7, "Milliseconds"),
            ],
            Sets::Detailed,
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

    #[test]
    fn cloudwatch_keeps_one_metric_per_dimension_set_printed() {
        let metrics = [("RegistrationRefused", 2, "Count")];
        let key = |dims: &[(&str, &str)]| Metric {
            namespace: NAMESPACE.into(),
            name: "RegistrationRefused".into(),
            dimensions: dims
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        };
        let detailed = metrics_of(&line_with(
            "api",
            ("Reason", "bad_source"),
            &metrics,
            Sets::Detailed,
            1,
        ));
        assert_eq!(
            detailed,
            [key(&[("Service", "api"), ("Reason", "bad_source")])]
        );
        let with_total = metrics_of(&line_with(
            "api",
            ("Reason", "bad_source"),
            &metrics,
            Sets::WithServiceTotal,
            1,
        ));
        assert_eq!(
            with_total,
            [
                key(&[("Service", "api"), ("Reason", "bad_source")]),
                key(&[("Service", "api")])
            ]
        );
        // Not EMF, or a dimension without its member: no metric.
        assert!(metrics_of("{\"level\":\"info\"}").is_empty());
        assert!(metrics_of("plain text").is_empty());
        let missing = r#"{"_aws":{"CloudWatchMetrics":[{"Namespace":"Tollgate","Dimensions":[["Service"]],"Metrics":[{"Name":"X"}]}]},"X":1}"#;
        assert!(metrics_of(missing).is_empty());
    }
}
