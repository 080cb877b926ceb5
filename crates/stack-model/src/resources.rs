//! The managed resources of a `terraform show -json` document: a state's `values`, or a plan's
//! `planned_values` with what is unknown until apply resolved from the configuration's
//! references ([`resolve_plan`]).

use serde_json::Value;

/// One managed resource of the state: its address, type and attribute values.
#[derive(Debug, Clone)]
pub struct Resource {
    pub address: String,
    pub kind: String,
    pub values: Value,
}

/// Every managed resource of a `terraform show -json` document (a state's `values` or a
/// plan's `planned_values`), child modules included.
pub fn resources(doc: &Value) -> Vec<Resource> {
    let root = if doc["values"].is_object() {
        &doc["values"]["root_module"]
    } else {
        &doc["planned_values"]["root_module"]
    };
    let mut found = Vec::new();
    collect(root, &mut found);
    found
}

fn collect(module: &Value, found: &mut Vec<Resource>) {
    for r in module["resources"].as_array().into_iter().flatten() {
        if r["mode"] == "managed" {
            found.push(Resource {
                address: r["address"].as_str().unwrap_or_default().to_owned(),
                kind: r["type"].as_str().unwrap_or_default().to_owned(),
                values: r["values"].clone(),
            });
        }
    }
    for child in module["child_modules"].as_array().into_iter().flatten() {
        collect(child, found);
    }
}

/// The managed resources of a plan (`terraform show -json <plan>`), each value Terraform
/// knows only after apply given from the configuration instead: an `id` or `arn` becomes the
/// resource's own address, and an attribute naming another resource (a subnet, a route table,
/// a security group, a gateway, an allocation) becomes that resource's id, or its address when
/// that is unknown too. With `count.index` in the reference, the instance of the same index
/// (or, past the last, the last: `min(count.index, …)`); without, every instance for a list
/// attribute. An unknown public address becomes 192.0.2.0 (TEST-NET-1): known only after
/// apply, and no flow depends on its value.
pub fn resolve_plan(plan: &Value) -> Vec<Resource> {
    let planned = resources(plan);
    let unknown: std::collections::HashMap<String, Value> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["address"].as_str()?.to_owned(),
                r["change"]["after_unknown"].clone(),
            ))
        })
        .collect();
    let config: std::collections::HashMap<String, Value> =
        plan["configuration"]["root_module"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["address"].as_str()?.to_owned(), r["expressions"].clone())))
            .collect();
    let ids: std::collections::HashMap<String, String> = planned
        .iter()
        .map(|r| {
            let id = r.values["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(&r.address);
            (r.address.clone(), id.to_owned())
        })
        .collect();
    let resolver = Resolver {
        planned: &planned,
        ids: &ids,
    };
    planned
        .iter()
        .map(|r| {
            let mut values = r.values.clone();
            let base = base_address(&r.address);
            let expressions = config.get(&base).cloned().unwrap_or_default();
            resolver.fill(
                &mut values,
                unknown.get(&r.address).unwrap_or(&Value::Null),
                &expressions,
                &Value::Null,
                index_of(&r.address),
                &r.address,
            );
            Resource {
                address: r.address.clone(),
                kind: r.kind.clone(),
                values,
            }
        })
        .collect()
}

/// `aws_subnet.private[1]` → `aws_subnet.private`.
fn base_address(address: &str) -> String {
    address.split('[').next().unwrap_or(address).to_owned()
}

/// `aws_subnet.private[1]` → `Some(1)`.
fn index_of(address: &str) -> Option<usize> {
    address
        .rsplit_once('[')?
        .1
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The resource type an attribute naming another resource points at.
fn target_type(attribute: &str) -> Option<&'static str> {
    Some(match attribute {
        "subnet_id" | "subnet_ids" | "subnets" => "aws_subnet",
        "security_group_id"
        | "security_group_ids"
        | "security_groups"
        | "vpc_security_group_ids"
        | "source_security_group_id"
        | "referenced_security_group_id" => "aws_security_group",
        "route_table_id" => "aws_route_table",
        "nat_gateway_id" => "aws_nat_gateway",
        "gateway_id" => "aws_internet_gateway",
        "allocation_id" => "aws_eip",
        "vpc_id" => "aws_vpc",
        _ => return None,
    })
}

struct Resolver<'a> {
    planned: &'a [Resource],
    ids: &'a std::collections::HashMap<String, String>,
}

impl Resolver<'_> {
    /// Fills the attributes of `values` that `unknown` marks, from `expressions` (or, for a
    /// nested block written as one expression, the parent's `outer`).
    fn fill(
        &self,
        values: &mut Value,
        unknown: &Value,
        expressions: &Value,
        outer: &Value,
        index: Option<usize>,
        address: &str,
    ) {
        let Some(marks) = unknown.as_object() else {
            return;
        };
        for (key, mark) in marks {
            let expression = expressions.get(key).unwrap_or(outer);
            match mark {
                Value::Bool(true) => {
                    if let Some(value) = self.value(key, expression, index, address) {
                        values[key.as_str()] = value;
                    }
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let inner_expr = expression
                            .as_array()
                            .and_then(|e| e.get(i))
                            .unwrap_or(expression);
                        if let Some(slot) = values.get_mut(key.as_str()).and_then(|v| v.get_mut(i))
                        {
                            self.fill(slot, item, inner_expr, expression, index, address);
                        }
                    }
                }
                Value::Object(_) => {
                    if let Some(slot) = values.get_mut(key.as_str()) {
                        self.fill(slot, mark, expression, expression, index, address);
                    }
                }
                _ => {}
            }
        }
    }

    fn value(
        &self,
        key: &str,
        expression: &Value,
        index: Option<usize>,
        address: &str,
    ) -> Option<Value> {
        match key {
            "id" | "arn" => return Some(Value::String(address.to_owned())),
            "public_ip" => return Some(Value::String("192.0.2.0".into())),
            _ => {}
        }
        let kind = target_type(key)?;
        let references: Vec<&str> = expression["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let by_index = references.contains(&"count.index");
        let target = references
            .iter()
            .map(|r| r.strip_suffix(".id").unwrap_or(r))
            .find(|r| r.starts_with(&format!("{kind}.")) && !r.contains("[*]"))?;
        let instances: Vec<&Resource> = self
            .planned
            .iter()
            .filter(|r| r.address == target || base_address(&r.address) == target)
            .collect();
        let id = |r: &Resource| Value::String(self.ids[&r.address].clone());
        let plural = key.ends_with('s');
        if plural {
            return Some(Value::Array(instances.iter().map(|r| id(r)).collect()));
        }
        let chosen = match (by_index, index) {
            (true, Some(i)) => instances.get(i).or(instances.last()),
            _ => instances.first(),
        }?;
        Some(id(chosen))
    }
}
