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
    (
        "AWS/ApplicationELB",
        "TargetResponseTime",
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

/// This stack's queue names and load balancers' ARN suffixes: the values AWS's metrics name.
fn stack_resources(deployed: &Deployed) -> (BTreeSet<String>, BTreeSet<String>) {
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
    (queues, balancers)
}

pub fn alarms_watch_what_is_printed(deployed: &Deployed, logs: &[PathBuf]) -> Vec<Row> {
    let printed = printed(logs);
    let (queues, balancers) = stack_resources(deployed);
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
            aws_metric(&format!("alarm {name}"), &metric, &queues, &balancers)
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
    what: &str,
    metric: &Metric,
    queues: &BTreeSet<String>,
    balancers: &BTreeSet<String>,
) -> Row {
    let Some((_, _, dims)) = AWS_METRICS
        .iter()
        .find(|(ns, m, _)| *ns == metric.namespace && *m == metric.name)
    else {
        return Row::check(
            what,
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
        what,
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

/// Every graph of the stack's dashboards shows a metric that exists: a `Tollgate` metric named
/// with its dimensions must be one the binaries printed, a `SEARCH` must find at least one of
/// them (its schema is an exact dimension set, as CloudWatch matches it), and AWS's metrics must
/// carry the dimensions AWS publishes them under, for this stack's resources.
pub fn dashboards_graph_what_is_printed(deployed: &Deployed, logs: &[PathBuf]) -> Vec<Row> {
    let printed = printed(logs);
    let (queues, balancers) = stack_resources(deployed);
    let mut rows = Vec::new();
    for (address, dashboard) in &deployed.resources {
        if !address.starts_with("aws_cloudwatch_dashboard.") {
            continue;
        }
        let name = dashboard["dashboard_name"].as_str().unwrap_or(address);
        let body: serde_json::Value = dashboard["dashboard_body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        for graph in graphs(&body) {
            let what = format!("dashboard {name}: {}", graph.title);
            rows.push(match graph.shows {
                Shows::Metric(metric) if metric.namespace == shared_aws::emf::NAMESPACE => {
                    let ok = printed.contains(&metric);
                    Row::check(
                        &what,
                        ok,
                        if ok {
                            format!("{metric}: printed by the binaries")
                        } else {
                            format!("{metric} is never printed: the graph stays empty")
                        },
                    )
                }
                Shows::Metric(metric) => aws_metric(&what, &metric, &queues, &balancers),
                Shows::Search(search) => match Search::parse(&search) {
                    Some(parsed) => {
                        let found: Vec<String> = printed
                            .iter()
                            .filter(|m| parsed.finds(m))
                            .map(ToString::to_string)
                            .collect();
                        Row::check(
                            &what,
                            !found.is_empty(),
                            if found.is_empty() {
                                format!("{search} finds nothing the binaries print")
                            } else {
                                format!("{search} finds {}", found.join("; "))
                            },
                        )
                    }
                    None => Row::check(
                        &what,
                        false,
                        format!("{search}: not a SEARCH this check reads"),
                    ),
                },
            });
        }
    }
    if rows.is_empty() {
        rows.push(Row::check(
            "dashboards",
            false,
            "the state holds no dashboard graph".into(),
        ));
    }
    rows
}

/// What one line of a metric widget shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shows {
    Metric(Metric),
    Search(String),
}

#[derive(Debug, Clone)]
struct Graph {
    title: String,
    shows: Shows,
}

/// Every line of every metric widget of a dashboard body: `[namespace, name, key, value, …,
/// {options}?]`, or `{"expression": "SEARCH(…)"}`.
fn graphs(body: &serde_json::Value) -> Vec<Graph> {
    let mut out = Vec::new();
    for widget in body["widgets"].as_array().into_iter().flatten() {
        if widget["type"] != "metric" {
            continue;
        }
        let title = widget["properties"]["title"]
            .as_str()
            .unwrap_or("(untitled)")
            .to_owned();
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(parts) = line.as_array() else {
                continue;
            };
            let strings: Vec<&str> = parts.iter().filter_map(serde_json::Value::as_str).collect();
            let expression = parts.iter().find_map(|p| p["expression"].as_str());
            let shows = match (expression, strings.as_slice()) {
                (Some(e), _) => Shows::Search(e.to_owned()),
                (None, [namespace, name, dims @ ..]) => Shows::Metric(Metric {
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                    dimensions: dims
                        .chunks(2)
                        .map(|kv| {
                            (
                                kv[0].to_owned(),
                                kv.get(1).copied().unwrap_or("").to_owned(),
                            )
                        })
                        .collect(),
                }),
                _ => continue,
            };
            out.push(Graph {
                title: title.clone(),
                shows,
            });
        }
    }
    out
}

/// A metric search, `SEARCH('{Namespace,Dim,…} MetricName="X" Dim="v"', 'Stat', period)`, as
/// far as this check reads one: the schema (an exact set of dimension names) and exact terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Search {
    namespace: String,
    dimensions: BTreeSet<String>,
    terms: BTreeMap<String, String>,
}

impl Search {
    fn parse(expression: &str) -> Option<Search> {
        let inner = expression.trim().strip_prefix("SEARCH('")?;
        let query = &inner[..inner.find("',")?];
        let (schema, rest) = query.strip_prefix('{')?.split_once('}')?;
        let mut names = schema.split(',').map(str::trim);
        let namespace = names.next()?.to_owned();
        let dimensions = names.map(str::to_owned).collect();
        let mut terms = BTreeMap::new();
        for term in rest.split_whitespace() {
            let (key, value) = term.split_once('=')?;
            terms.insert(key.to_owned(), value.trim_matches('"').to_owned());
        }
        Some(Search {
            namespace,
            dimensions,
            terms,
        })
    }

    fn finds(&self, metric: &Metric) -> bool {
        let keys: BTreeSet<String> = metric.dimensions.keys().cloned().collect();
        metric.namespace == self.namespace
            && keys == self.dimensions
            && self.terms.iter().all(|(k, v)| match k.as_str() {
                "MetricName" => &metric.name == v,
                _ => metric.dimensions.get(k) == Some(v),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed_by(lines: &[String]) -> BTreeSet<Metric> {
        lines.iter().flat_map(|l| metrics_of(l)).collect()
    }

    #[test]
    fn a_search_finds_only_its_exact_dimension_set() {
        let printed = printed_by(&[
            shared_aws::emf::line_in_sets(
                "post-confirm",
                &[("Path", "trigger"), ("Outcome", "registered")],
                &[&["Service", "Outcome"], &["Service", "Path", "Outcome"]],
                &[("Registration", 1, "Count")],
                1,
            ),
            shared_aws::emf::line(
                "api",
                ("Reason", "bad_source"),
                &[("RegistrationRefused", 1, "Count")],
            ),
        ]);
        let finds = |expression: &str| {
            let search = Search::parse(expression).expect("a search");
            printed.iter().filter(|m| search.finds(m)).count()
        };
        let by_path = "SEARCH('{Tollgate,Service,Path,Outcome} MetricName=\"Registration\" Service=\"post-confirm\"', 'Sum', 300)";
        assert_eq!(finds(by_path), 1);
        // One dimension short, another service, another name, another namespace: nothing.
        for dead in [
            "SEARCH('{Tollgate,Service,Path} MetricName=\"Registration\"', 'Sum', 300)",
            "SEARCH('{Tollgate,Service,Path,Outcome} MetricName=\"Registration\" Service=\"api\"', 'Sum', 300)",
            "SEARCH('{Tollgate,Service,Reason} MetricName=\"Registrations\"', 'Sum', 300)",
            "SEARCH('{Other,Service,Reason} MetricName=\"RegistrationRefused\"', 'Sum', 300)",
        ] {
            assert_eq!(finds(dead), 0, "{dead}");
        }
        assert!(Search::parse("METRICS()").is_none());
    }

    #[test]
    fn every_line_of_every_metric_widget_is_read() {
        let body = serde_json::json!({"widgets": [
            {"type": "metric", "properties": {"title": "a", "metrics": [
                [{"id": "e", "expression": "SEARCH('{Tollgate,Service} MetricName=\"X\"', 'Sum', 60)"}],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "q"],
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", "app/x/1", {"stat": "p99"}]
            ]}},
            {"type": "alarm", "properties": {"alarms": ["arn"]}},
            {"type": "text", "properties": {"markdown": "hi"}}
        ]});
        let graphs = graphs(&body);
        assert_eq!(graphs.len(), 3);
        assert!(matches!(&graphs[0].shows, Shows::Search(s) if s.starts_with("SEARCH(")));
        assert_eq!(
            graphs[2].shows,
            Shows::Metric(Metric {
                namespace: "AWS/ApplicationELB".into(),
                name: "TargetResponseTime".into(),
                dimensions: [("LoadBalancer".to_owned(), "app/x/1".to_owned())].into(),
            })
        );
    }
}
