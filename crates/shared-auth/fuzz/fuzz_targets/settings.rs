//! The settings loader under arbitrary `TOLLGATE__…` overrides (`KEY=value` lines): it must
//! answer Ok or an error naming a key, never panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use shared_auth::{Component, ConfigError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("TOLLGATE__{}", k.to_uppercase()), v.to_owned()))
        .collect();
    for component in [Component::Api, Component::Lambda, Component::Deploy] {
        match shared_auth::load_for(component, &vars) {
            Ok(_) | Err(ConfigError::Invalid { .. } | ConfigError::Parse { .. }) => {}
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }
});
