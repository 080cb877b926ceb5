//! The shipped contracts, deployed with nothing set: `deploy` must refuse before it builds
//! anything, naming every value only the user can supply with the variable that sets it, and
//! never ask for the allowlist (the NAT gateway's address comes from the stack itself).

use std::path::Path;
use std::process::Command;

fn deploy_plan(env: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"));
    command
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .args(["deploy", "--env", env, "--plan"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE__") {
            command.env_remove(key);
        }
    }
    let out = command.output().expect("cargo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn deploying_a_shipped_contract_as_checked_in_asks_for_every_user_value_at_once() {
    for env in ["staging", "production"] {
        let (ok, text) = deploy_plan(env);
        assert!(
            !ok,
            "{env}: deploy went ahead without the user's values:\n{text}"
        );
        for variable in [
            "TOLLGATE__DEPLOY__STATE_BUCKET",
            "TOLLGATE__DEPLOY__DOMAIN",
            "TOLLGATE__DEPLOY__HOSTED_ZONE_ID",
            "TOLLGATE__DEPLOY__CERTIFICATE_ARN",
        ] {
            assert!(
                text.contains(variable),
                "{env}: {variable} not named:\n{text}"
            );
        }
        assert!(
            !text.contains("allowed_cidrs") && !text.contains("ALLOWED_CIDRS"),
            "{env}: the allowlist is the stack's to supply:\n{text}"
        );
        assert!(
            !text.contains("building"),
            "{env}: deploy built something before asking:\n{text}"
        );
    }
}
