//! Reading a `terraform show -json` state: what deploy, verify and the tests ask of it.

use std::collections::BTreeMap;

use serde_json::Value;

/// The managed resources of a `terraform show -json` state, child modules' included, by full
/// address (`module.registration.aws_secretsmanager_secret.key` for one in a module).
pub fn resources(state: &Value) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    collect(&state["values"]["root_module"], &mut found);
    found
}

fn collect(module: &Value, found: &mut BTreeMap<String, Value>) {
    for r in module["resources"].as_array().into_iter().flatten() {
        if r["mode"] == "managed" {
            found.insert(
                r["address"].as_str().unwrap_or("").to_owned(),
                r["values"].clone(),
            );
        }
    }
    for child in module["child_modules"].as_array().into_iter().flatten() {
        collect(child, found);
    }
}

/// Whether `address` is a resource of type `kind`, in the root module or any module
/// (`aws_iam_role_policy.x`, `module.m.aws_iam_role_policy.x[0]`).
pub fn is(address: &str, kind: &str) -> bool {
    let mut parts: Vec<&str> = address.split('.').collect();
    while parts.first() == Some(&"module") && parts.len() > 2 {
        parts.drain(..2);
    }
    parts.first() == Some(&kind) && parts.len() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_modules_resources_are_read_by_full_address() {
        let state = serde_json::json!({"values": {"root_module": {
            "resources": [
                {"address": "aws_vpc.this", "mode": "managed", "values": {"id": "vpc-1"}},
                {"address": "data.aws_partition.this", "mode": "data", "values": {}},
            ],
            "child_modules": [{"resources": [
                {"address": "module.registration.aws_secretsmanager_secret.key", "mode": "managed", "values": {"arn": "a"}},
            ], "child_modules": [{"resources": [
                {"address": "module.registration.module.inner.aws_sqs_queue.q", "mode": "managed", "values": {}},
            ]}]}],
        }}});
        let found = resources(&state);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            [
                "aws_vpc.this",
                "module.registration.aws_secretsmanager_secret.key",
                "module.registration.module.inner.aws_sqs_queue.q",
            ]
        );
    }

    #[test]
    fn a_type_is_recognised_in_any_module() {
        for (address, kind, expected) in [
            (
                "aws_iam_role_policy.rotation_tasks",
                "aws_iam_role_policy",
                true,
            ),
            (
                "module.registration.aws_iam_role_policy.rotate",
                "aws_iam_role_policy",
                true,
            ),
            (
                "module.a.module.b.aws_iam_role_policy.x[0]",
                "aws_iam_role_policy",
                true,
            ),
            (
                "aws_iam_role_policy_attachment.x",
                "aws_iam_role_policy",
                false,
            ),
            (
                "module.aws_iam_role_policy.aws_sqs_queue.q",
                "aws_iam_role_policy",
                false,
            ),
            ("aws_iam_role.stack[\"api\"]", "aws_iam_role", true),
            ("aws_iam_role", "aws_iam_role", false),
        ] {
            assert_eq!(is(address, kind), expected, "{address} as {kind}");
        }
    }
}
