//! Every alarm of the stack watches a metric that exists. CloudWatch keeps one metric per
//! namespace, name and exact set of dimensions (name and value): an alarm naming another set
//! watches nothing and never fires. The runner's processes printed their metric lines (the
//! embedded metric format) into their logs; each `Tollgate` alarm must name one of the metrics
//! CloudWatch would make of them (`shared_aws::emf::metrics_of`, read from what the real
//! binaries printed, not from the code's constants). Alarms on AWS's own metrics must name the
//! dimensions AWS publishes them under, with values of this stack's resources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use shared_aws::emf::{Metric, metrics_of};

use super::world::{Deployed, Row};

/// AWS's own metrics the stack alarms on: namespace, metric, the dimension names AWS publishes
/// it under (CloudWatch User Guide, *AWS services that publish CloudWatch metrics*: Amazon SQS
/// metrics by `QueueName`; Application Load Balancer metrics by `LoadBalancer`).
const AWS_METRICS: &[(&str, &str, &[&str])] = &[
    (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        &["QueueName"],
    ),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", &["QueueName"]),
    (
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        &["LoadBalancer"],
    ),
];

/// Every metric CloudWatch would make of the lines in `logs`.
pub fn printed(logs: &[PathBuf]) -> BTreeSet<Metric> {
    logs.iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| text.lines().flat_map(metrics_of).collect::<Vec<_>>())
        .collect()
}

pub fn alarms_watch_what_is_printed(deployed: &Deployed, logs: &[PathBuf]) -> Vec<Row> {
    let printed = printed(logs);
    let queues: BTreeSet<String> = deployed
        .resources
        .iter()
        .filter(|(a, _)| a.starts_with("aws_sqs_queue."))
        .filter_map(|(_, r)| r["name"].as_str().map(str::to_owned))
        .collect();
    let balancers: BTreeSet<String> = deployed
        .resources
        .iter()
        .filter(|(a, _)| a.starts_with("aws_lb."))
        .filter_map(|(_, r)| r["arn_suffix"].as_str().map(str::to_owned))
        .collect();
    let mut rows = Vec::new();
    for (address, alarm) in &deployed.resources {
        if !address.starts_with("aws_cloudwatch_metric_alarm.") {
            continue;
        }
        let metric = Metric {
            namespace: alarm["namespace"].as_str().unwrap_or_default().to_owned(),
            name: alarm["metric_name"].as_str().unwrap_or_default().to_owned(),
            dimensions: alarm["dimensions"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect::<BTreeMap<_, _>>(),
        };
        let name = alarm["alarm_name"].as_str().unwrap_or(address);
        let row = if metric.namespace == shared_aws::emf::NAMESPACE {
            let ok = printed.contains(&metric);
            let detail = if ok {
                format!("{metric}: printed by the binaries")
            } else {
                let same_name: Vec<String> = printed
                    .iter()
                    .filter(|m| m.name == metric.name)
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "{metric} is never printed, so it never fires; printed under that name: {}",
                    if same_name.is_empty() {
                        "nothing".into()
                    } else {
                        same_name.join("; ")
                    }
                )
            };
            Row::check(&format!("alarm {name}"), ok, detail)
        } else {
            aws_metric(name, &metric, &queues, &balancers)
        };
        rows.push(row);
    }
    if rows.is_empty() {
        rows.push(Row::check(
            "alarms",
            false,
            "the state holds no alarm".into(),
        ));
    }
    rows
}

fn aws_metric(
    name: &str,
    metric: &Metric,
    queues: &BTreeSet<String>,
    balancers: &BTreeSet<String>,
) -> Row {
    let Some((_, _, dims)) = AWS_METRICS
        .iter()
        .find(|(ns, m, _)| *ns == metric.namespace && *m == metric.name)
    else {
        return Row::check(
            &format!("alarm {name}"),
            false,
            format!(
                "{metric}: not in the table of AWS's metrics this check knows (add it with its documented dimensions)"
            ),
        );
    };
    let names: Vec<&str> = metric.dimensions.keys().map(String::as_str).collect();
    let resources_exist = metric.dimensions.iter().all(|(k, v)| match k.as_str() {
        "QueueName" => queues.contains(v),
        "LoadBalancer" => balancers.contains(v),
        _ => false,
    });
    let ok = names == *dims && resources_exist;
    Row::check(
        &format!("alarm {name}"),
        ok,
        if ok {
            format!("{metric}: AWS publishes it so, for this stack's resource")
        } else {
            format!(
                "{metric}: AWS publishes {} by {dims:?}, for one of this stack's resources",
                metric.name
            )
        },
    )
}

/// The alarms as they were before each named the exact set the binaries print (the lost and
/// given-up registrations by `Outcome` alone, the refusals with no dimension): the check must
/// fail every one of them.
pub fn the_old_alarms_are_caught(deployed: &Deployed, logs: &[PathBuf]) -> Row {
    let mut old = deployed.clone();
    let mut changed = Vec::new();
    for (address, alarm) in old.resources.iter_mut() {
        if !address.starts_with("aws_cloudwatch_metric_alarm.") || alarm["namespace"] != "Tollgate"
        {
            continue;
        }
        let dims = alarm["dimensions"].as_object_mut();
        if let Some(dims) = dims {
            dims.remove("Service");
        }
        changed.push(alarm["alarm_name"].as_str().unwrap_or(address).to_owned());
    }
    let rows = alarms_watch_what_is_printed(&old, logs);
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.ok && changed.iter().any(|c| r.what.ends_with(c.as_str())))
        .map(|r| r.what.as_str())
        .collect();
    Row::check(
        "caught: alarms on sets nobody prints",
        !changed.is_empty() && missed.is_empty(),
        if missed.is_empty() {
            format!(
                "{} alarms without their `Service` dimension: each ✗",
                changed.len()
            )
        } else {
            format!(
                "passed although nothing prints their set: {}",
                missed.join(", ")
            )
        },
    )
}
