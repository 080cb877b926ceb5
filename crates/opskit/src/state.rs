//! Reading a `terraform show -json` state: what deploy, verify and the tests ask of it.

use std::collections::BTreeMap;

use serde_json::Value;

/// The managed resources of a `terraform show -json` state (root module), by address.
pub fn resources(state: &Value) -> BTreeMap<String, Value> {
    state["values"]["root_module"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["mode"] == "managed")
        .map(|r| {
            (
                r["address"].as_str().unwrap_or("").to_owned(),
                r["values"].clone(),
            )
        })
        .collect()
}
