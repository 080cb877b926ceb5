//! The loader, end to end: embedded and on-disk contract files, environment overrides, and the
//! validation errors an operator sees.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use shared_auth::{Component, ConfigError, SecretSource, SigningMode, load_for};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn error_for(pairs: &[(&str, &str)]) -> String {
    load_for(Component::Deploy, &vars(pairs))
        .expect_err("settings should be refused")
        .to_string()
}

fn deploy_dir() -> String {
    format!("{}/../../deploy", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn local_is_the_default_and_loads_without_any_variable() {
    let s = load_for(Component::Deploy, &vars(&[])).expect("local contract loads");
    assert_eq!(s.env, "local");
    assert_eq!(s.guard.method, "POST");
    assert_eq!(s.guard.path, "/user");
    assert_eq!(s.guard.mode, SigningMode::Hmac);
    assert_eq!(s.guard.static_header, "x-custom-auth");
    assert_eq!(s.guard.max_skew_s, 300);
    assert_eq!(
        s.guard.allowed_cidrs,
        vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]
    );
    assert_eq!(s.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.api.secret_source, SecretSource::Env);
    assert_eq!(s.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
}

#[test]
fn embedded_contracts_equal_the_files_on_disk() {
    for env in ["local", "staging", "production"] {
        let extra = [("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32")];
        let mut embedded = vars(&extra);
        embedded.insert("TOLLGATE_ENV".into(), env.into());
        let mut on_disk = embedded.clone();
        on_disk.insert("TOLLGATE_CONFIG_DIR".into(), deploy_dir());
        let a = load_for(Component::Deploy, &embedded).expect("embedded contract loads");
        let b = load_for(Component::Deploy, &on_disk).expect("on-disk contract loads");
        assert_eq!(a.guard, b.guard, "{env}");
        assert_eq!(a.lambda, b.lambda, "{env}");
    }
}

#[test]
fn environment_overrides_win_and_lists_are_comma_separated() {
    let s = load_for(
        Component::Deploy,
        &vars(&[
            (
                "TOLLGATE__GUARD__ALLOWED_CIDRS",
                "203.0.113.7/32,2001:db8::/64",
            ),
            ("TOLLGATE__GUARD__MODE", "static"),
            ("TOLLGATE__GUARD__MAX_SKEW_S", "60"),
            ("TOLLGATE__API__LISTEN", "127.0.0.1:9999"),
            ("TOLLGATE__LAMBDA__MAX_ATTEMPTS", "2"),
        ]),
    )
    .expect("overrides apply");
    assert_eq!(
        s.guard.allowed_cidrs,
        vec![
            "203.0.113.7/32".parse().unwrap(),
            "2001:db8::/64".parse().unwrap()
        ]
    );
    assert_eq!(s.guard.mode, SigningMode::Static);
    assert_eq!(s.guard.max_skew_s, 60);
    assert_eq!(s.api.listen.port(), 9999);
    assert_eq!(s.lambda.max_attempts, 2);
}

#[test]
fn an_empty_list_override_empties_the_list() {
    let s = load_for(
        Component::Deploy,
        &vars(&[("TOLLGATE__GUARD__TRUSTED_PROXIES", "")]),
    )
    .expect("loads");
    assert!(s.guard.trusted_proxies.is_empty());
}

#[test]
fn variables_outside_the_double_underscore_prefix_are_not_settings() {
    let s = load_for(
        Component::Deploy,
        &vars(&[
            ("TOLLGATE_SECRET_CURRENT", "not-a-setting"),
            ("TOLLGATE_GUARD_PATH", "/other"),
        ]),
    )
    .expect("loads");
    assert_eq!(s.guard.path, "/user");
}

#[test]
fn database_url_variable_wins() {
    let s = load_for(
        Component::Deploy,
        &vars(&[("DATABASE_URL", "postgres://u:pw@127.0.0.1:5999/db")]),
    )
    .expect("loads");
    assert_eq!(
        s.api
            .database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned())
            .as_deref(),
        Some("postgres://u:pw@127.0.0.1:5999/db")
    );
    assert!(
        !format!("{s:?}").contains("pw@"),
        "Debug must not show the database password"
    );
    let s = load_for(
        Component::Deploy,
        &vars(&[("DATABASE_PASSWORD", "injected-by-ecs")]),
    )
    .expect("loads");
    assert_eq!(
        s.api
            .database_password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .as_deref(),
        Some("injected-by-ecs")
    );
    assert!(!format!("{s:?}").contains("injected-by-ecs"));
}

/// Variables to load with, the key the error must name, and words it must contain.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn each_bad_value_is_named_by_its_key() {
    let cases: &[BadCase<'_>] = &[
        (
            &[("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/33")],
            "guard.allowed_cidrs",
            "203.0.113.7/33",
        ),
        (
            &[("TOLLGATE__GUARD__TRUSTED_PROXIES", "10.0.0.0/8,bogus")],
            "guard.trusted_proxies",
            "bogus",
        ),
        (
            &[("TOLLGATE__GUARD__STATIC_HEADER", "x custom")],
            "guard.static_header",
            "RFC 9110",
        ),
        (
            &[("TOLLGATE__GUARD__SIGNATURE_HEADER", "x-sig:")],
            "guard.signature_header",
            "RFC 9110",
        ),
        (
            &[("TOLLGATE__GUARD__TIMESTAMP_HEADER", "X-Stamp")],
            "guard.timestamp_header",
            "lower case",
        ),
        (
            &[("TOLLGATE__GUARD__STATIC_HEADER", "x-forwarded-for")],
            "guard.static_header",
            "proxies",
        ),
        (
            &[("TOLLGATE__GUARD__STATIC_HEADER", "webhook-signature")],
            "guard.static_header",
            "different",
        ),
        (
            &[("TOLLGATE__GUARD__ID_HEADER", "webhook-timestamp")],
            "guard.static_header",
            "different",
        ),
        (
            &[("TOLLGATE__GUARD__ID_HEADER", "Webhook-Id")],
            "guard.id_header",
            "lower case",
        ),
        (
            &[("TOLLGATE__GUARD__MAX_SKEW_S", "0")],
            "guard.max_skew_s",
            "outside",
        ),
        (
            &[("TOLLGATE__GUARD__MAX_SKEW_S", "-5")],
            "guard.max_skew_s",
            "",
        ),
        (
            &[("TOLLGATE__GUARD__SECRET_TTL_S", "0")],
            "guard.secret_ttl_s",
            "greater than zero",
        ),
        (
            &[("TOLLGATE__GUARD__MODE", "plaintext")],
            "guard.mode",
            "use `hmac` or `static`",
        ),
        (
            &[("TOLLGATE__GUARD__METHOD", "post")],
            "guard.method",
            "upper-case",
        ),
        (
            &[("TOLLGATE__GUARD__PATH", "user")],
            "guard.path",
            "absolute",
        ),
        (
            &[("TOLLGATE__GUARD__PATH", "/User")],
            "guard.path",
            "lower-case",
        ),
        (
            &[("TOLLGATE__GUARD__PATH", "/user?x=1")],
            "guard.path",
            "query",
        ),
        (
            &[("TOLLGATE__GUARD__ALLOWED_CIDRS", "0.0.0.0/0")],
            "guard.allowed_cidrs",
            "every address",
        ),
        (
            &[("TOLLGATE__GUARD__TRUSTED_PROXIES", "::/0")],
            "guard.trusted_proxies",
            "every address",
        ),
        (
            &[("TOLLGATE__GUARD__ALLOWED_CIDRS", "0.0.0.0/1,128.0.0.0/1")],
            "guard.allowed_cidrs",
            "every address",
        ),
        (
            &[(
                "TOLLGATE__GUARD__ALLOWED_CIDRS",
                "0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/3,224.0.0.0/3",
            )],
            "guard.allowed_cidrs",
            "every address",
        ),
        (
            &[("TOLLGATE__GUARD__TRUSTED_PROXIES", "::/1,8000::/1")],
            "guard.trusted_proxies",
            "every address",
        ),
        (
            &[("TOLLGATE__GUARD__SECRET_ID", " ")],
            "guard.secret_id",
            "empty",
        ),
        (&[("TOLLGATE__API__LISTEN", "localhost")], "api.listen", ""),
        (
            &[("TOLLGATE__API__BODY_LIMIT_BYTES", "0")],
            "api.body_limit_bytes",
            "greater than zero",
        ),
        (
            &[("TOLLGATE__LAMBDA__API_BASE_URL", "ftp://x")],
            "lambda.api_base_url",
            "http",
        ),
        (
            &[("TOLLGATE__LAMBDA__API_BASE_URL", "https://h/user")],
            "lambda.api_base_url",
            "scheme and host only",
        ),
        (
            &[("TOLLGATE__AWS__ENDPOINT_URL", "127.0.0.1:4566")],
            "aws.endpoint_url",
            "http",
        ),
    ];
    for (pairs, key, words) in cases {
        let msg = error_for(pairs);
        assert!(msg.contains(key), "{pairs:?}: `{msg}` should name {key}");
        assert!(
            msg.contains(words),
            "{pairs:?}: `{msg}` should say {words:?}"
        );
    }
}

#[test]
fn unknown_keys_are_errors_not_ignored() {
    let msg = error_for(&[("TOLLGATE__GUARD__ALLOWED_CIDR", "203.0.113.7/32")]);
    assert!(
        msg.contains("guard") && msg.contains("allowed_cidr"),
        "{msg}"
    );
    let msg = error_for(&[("TOLLGATE__NOSUCHSECTION__KEY", "1")]);
    assert!(msg.contains("nosuchsection"), "{msg}");
}

#[test]
fn unknown_keys_in_a_file_are_errors() {
    let dir = std::env::temp_dir().join(format!("tollgate-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = std::fs::read_to_string(format!("{}/local.toml", deploy_dir())).unwrap();
    std::fs::write(
        dir.join("typo.toml"),
        local.replace("max_skew_s = 300", "max_skew = 300"),
    )
    .unwrap();
    let msg = error_for(&[
        ("TOLLGATE_ENV", "typo"),
        ("TOLLGATE_CONFIG_DIR", dir.to_str().unwrap()),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(msg.contains("guard") && msg.contains("max_skew"), "{msg}");
}

#[test]
fn deploying_a_shipped_contract_needs_no_allowlist_but_running_components_do() {
    // The NAT gateway's address exists only after the stack does: deploy renders it in.
    for env in ["staging", "production"] {
        let s = load_for(Component::Deploy, &vars(&[("TOLLGATE_ENV", env)]))
            .unwrap_or_else(|e| panic!("{env} loads for deploy as checked in: {e}"));
        assert!(s.guard.allowed_cidrs.is_empty(), "{env}");
        for component in [Component::Api, Component::Lambda] {
            let msg = load_for(
                component,
                &vars(&[
                    ("TOLLGATE_ENV", env),
                    ("TOLLGATE__LAMBDA__API_BASE_URL", "https://api.example.com"),
                    (
                        "TOLLGATE__LAMBDA__RETRY_QUEUE",
                        "https://sqs.ap-northeast-1.amazonaws.com/123456789012/q",
                    ),
                ]),
            )
            .expect_err("a running component needs whom to allow")
            .to_string();
            assert!(
                msg.contains("guard.allowed_cidrs") && msg.contains("Elastic IP"),
                "{component:?}: {msg}"
            );
        }
    }
    let s = load_for(
        Component::Api,
        &vars(&[("TOLLGATE__GUARD__ALLOWED_CIDRS", "")]),
    )
    .expect("local may be empty");
    assert!(s.guard.allowed_cidrs.is_empty());
}

#[test]
fn the_values_only_a_user_can_supply_are_listed_together_with_their_variables() {
    for env in ["staging", "production"] {
        let s = load_for(Component::Deploy, &vars(&[("TOLLGATE_ENV", env)])).expect("loads");
        let unfilled = s.unfilled();
        let keys: Vec<&str> = unfilled.iter().map(|u| u.key).collect();
        assert_eq!(
            keys,
            [
                "deploy.state_bucket",
                "deploy.domain",
                "deploy.hosted_zone_id"
            ],
            "{env}"
        );
        let text: String = unfilled.iter().map(|u| format!("{u}\n")).collect();
        for variable in [
            "TOLLGATE__DEPLOY__STATE_BUCKET",
            "TOLLGATE__DEPLOY__DOMAIN",
            "TOLLGATE__DEPLOY__HOSTED_ZONE_ID",
            "TOLLGATE__DEPLOY__CERTIFICATE_ARN",
        ] {
            assert!(text.contains(variable), "{env}: {variable} in\n{text}");
        }
        assert!(!text.contains("allowed_cidrs"), "{text}");
    }
    let filled = |extra: &[(&str, &str)]| {
        let mut v = vec![
            ("TOLLGATE_ENV", "staging"),
            (
                "TOLLGATE__DEPLOY__STATE_BUCKET",
                "tollgate-state-123456789012",
            ),
            ("TOLLGATE__DEPLOY__DOMAIN", "api.staging.example.com"),
        ];
        v.extend_from_slice(extra);
        load_for(Component::Deploy, &vars(&v)).expect("loads")
    };
    let zone = filled(&[("TOLLGATE__DEPLOY__HOSTED_ZONE_ID", "Z0123456789ABCDEFGHIJ")]);
    assert!(zone.unfilled().is_empty());
    assert_eq!(zone.public_base_url(), "https://api.staging.example.com");
    let certificate = filled(&[(
        "TOLLGATE__DEPLOY__CERTIFICATE_ARN",
        "arn:aws:acm:ap-northeast-1:123456789012:certificate/0f8e7d6c-0000-4000-8000-000000000000",
    )]);
    assert!(certificate.unfilled().is_empty());
    let local = load_for(Component::Deploy, &vars(&[])).expect("local");
    assert!(local.unfilled().is_empty());
    assert_eq!(local.public_base_url(), "http://127.0.0.1:8080");
}

#[test]
fn supplied_values_must_have_their_shapes() {
    for (key, value) in [
        ("TOLLGATE__DEPLOY__DOMAIN", "https://api.example.com"),
        ("TOLLGATE__DEPLOY__DOMAIN", "api.example.com/user"),
        ("TOLLGATE__DEPLOY__DOMAIN", "localhost"),
        ("TOLLGATE__DEPLOY__DOMAIN", "API.example.com"),
        ("TOLLGATE__DEPLOY__HOSTED_ZONE_ID", "zone-1"),
        (
            "TOLLGATE__DEPLOY__HOSTED_ZONE_ID",
            "/hostedzone/Z0123456789",
        ),
        ("TOLLGATE__DEPLOY__CERTIFICATE_ARN", "FILL IN"),
        (
            "TOLLGATE__DEPLOY__CERTIFICATE_ARN",
            "arn:aws:iam::123456789012:role/x",
        ),
    ] {
        let field = key
            .trim_start_matches("TOLLGATE__DEPLOY__")
            .to_ascii_lowercase();
        let msg = error_for(&[("TOLLGATE_ENV", "staging"), (key, value)]);
        assert!(msg.contains(&format!("deploy.{field}")), "{value}: {msg}");
    }
}

#[test]
fn an_idle_connection_outlives_the_albs_idle_timeout() {
    let msg = error_for(&[("TOLLGATE__API__KEEP_ALIVE_IDLE_S", "60")]);
    assert!(
        msg.contains("api.keep_alive_idle_s") && msg.contains("deploy.alb_idle_timeout_s"),
        "{msg}"
    );
    let msg = error_for(&[
        ("TOLLGATE__DEPLOY__ALB_IDLE_TIMEOUT_S", "120"),
        ("TOLLGATE__API__KEEP_ALIVE_IDLE_S", "100"),
    ]);
    assert!(msg.contains("api.keep_alive_idle_s"), "{msg}");
    assert!(
        error_for(&[("TOLLGATE__DEPLOY__ALB_IDLE_TIMEOUT_S", "0")]).contains("alb_idle_timeout_s")
    );
    for env in ["local", "staging", "production"] {
        let s = load_for(Component::Deploy, &vars(&[("TOLLGATE_ENV", env)])).expect("loads");
        assert!(
            s.api.keep_alive_idle_s
                >= s.deploy.alb_idle_timeout_s + shared_auth::settings::KEEP_ALIVE_MARGIN_S,
            "{env}"
        );
    }
}

#[test]
fn the_connection_budget_counts_the_tasks_a_deployment_starts() {
    // Production as shipped: 10 tasks, at most 150 % during a deployment, 5 connections each.
    let shipped = load_for(Component::Deploy, &vars(&[("TOLLGATE_ENV", "production")]))
        .expect("production as shipped fits its database class");
    assert_eq!(
        (
            shipped.deploy.api_max_count,
            shipped.deploy.deployment_maximum_percent
        ),
        (10, 150)
    );
    // ECS's default surge (200 %) would start 20 tasks at once: 100 connections, over the 84
    // db.t4g.micro leaves the api.
    let msg = error_for(&[
        ("TOLLGATE_ENV", "production"),
        ("TOLLGATE__DEPLOY__DEPLOYMENT_MAXIMUM_PERCENT", "200"),
    ]);
    for needed in [
        "deploy.db_instance_class",
        "connection budget",
        "10 × 200 % = 20 tasks",
        "= 100 connections",
        "db.t4g.micro leaves 84",
        "max_connections 95",
        "migration",
        "rotation",
    ] {
        assert!(msg.contains(needed), "{needed}: {msg}");
    }
    // A larger class takes the same surge.
    load_for(
        Component::Deploy,
        &vars(&[
            ("TOLLGATE_ENV", "production"),
            ("TOLLGATE__DEPLOY__DEPLOYMENT_MAXIMUM_PERCENT", "200"),
            ("TOLLGATE__DEPLOY__DB_INSTANCE_CLASS", "db.t4g.small"),
        ]),
    )
    .expect("db.t4g.small has room for 20 × 5");
    let msg = error_for(&[("TOLLGATE__DEPLOY__DB_INSTANCE_CLASS", "db.x9.huge")]);
    assert!(
        msg.contains("db.t4g.micro"),
        "names the known classes: {msg}"
    );
    for (key, value) in [
        ("TOLLGATE__DEPLOY__DEPLOYMENT_MAXIMUM_PERCENT", "99"),
        ("TOLLGATE__DEPLOY__DEPLOYMENT_MAXIMUM_PERCENT", "201"),
        ("TOLLGATE__DEPLOY__DRAIN_MAXIMUM_CONCURRENCY", "1"),
        ("TOLLGATE__DEPLOY__DRAIN_MAXIMUM_CONCURRENCY", "1001"),
    ] {
        let msg = error_for(&[(key, value)]);
        let setting = key
            .trim_start_matches("TOLLGATE__DEPLOY__")
            .to_ascii_lowercase();
        assert!(
            msg.contains(&format!("deploy.{setting}")) && msg.contains(&format!("(set by {key})")),
            "{key}={value}: {msg}"
        );
    }
}

#[test]
fn a_refused_value_from_the_environment_names_the_variable_that_set_it() {
    // Refused by validation, and by parsing.
    for (key, value, setting) in [
        (
            "TOLLGATE__DEPLOY__DOMAIN",
            "https://api.example.com",
            "deploy.domain",
        ),
        (
            "TOLLGATE__DEPLOY__HOSTED_ZONE_ID",
            "zone-1",
            "deploy.hosted_zone_id",
        ),
        (
            "TOLLGATE__GUARD__ALLOWED_CIDRS",
            "203.0.113.7/33",
            "guard.allowed_cidrs",
        ),
        (
            "TOLLGATE__GUARD__TRUSTED_PROXIES",
            "10.0.0.0/8,bogus",
            "guard.trusted_proxies",
        ),
        (
            "TOLLGATE__API__SECRET_REFRESH_S",
            "soon",
            "api.secret_refresh_s",
        ),
        (
            "TOLLGATE__DEPLOY__API_MAX_COUNT",
            "0",
            "deploy.api_max_count",
        ),
    ] {
        let msg = error_for(&[("TOLLGATE_ENV", "staging"), (key, value)]);
        assert!(
            msg.contains(setting) && msg.contains(&format!("(set by {key})")),
            "{key}={value}: {msg}"
        );
    }
    // A value from the contract file names no variable.
    let dir = std::env::temp_dir().join(format!("tollgate-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let staging =
        std::fs::read_to_string(format!("{}/staging.toml", deploy_dir())).expect("staging.toml");
    std::fs::write(
        dir.join("staging.toml"),
        staging.replace("max_skew_s = 300", "max_skew_s = 0"),
    )
    .expect("write");
    let msg = error_for(&[
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE_CONFIG_DIR", dir.to_str().expect("utf-8")),
    ]);
    assert!(
        msg.contains("guard.max_skew_s") && !msg.contains("set by"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn environment_names_are_checked_and_missing_files_explained() {
    // Every AWS name is `tollgate-<env>…`: RDS and load balancer names refuse a trailing or a
    // doubled hyphen, and the target group `tollgate-<env>-api` holds 32 characters at most.
    for bad in [
        "../etc/passwd",
        "qa-",
        "q--a",
        "-qa",
        "1qa",
        "q",
        "Staging",
        "a-very-long-env-name",
        "",
    ] {
        let refused = load_for(Component::Deploy, &vars(&[("TOLLGATE_ENV", bad)]));
        assert!(
            matches!(refused, Err(ConfigError::BadEnvName(_)))
                // An empty TOLLGATE_ENV means the default, `local`.
                || bad.is_empty(),
            "`{bad}` was not refused as a name"
        );
    }
    for good in ["qa", "q-a", "qa2", "a-long-env-name-19"] {
        assert!(
            shared_auth::settings::is_environment_name(good),
            "`{good}` is a valid name"
        );
    }
    let msg = error_for(&[("TOLLGATE_ENV", "qa")]);
    assert!(
        msg.contains("TOLLGATE_CONFIG_DIR") && msg.contains("local, staging, production"),
        "{msg}"
    );
    let msg = error_for(&[
        ("TOLLGATE_ENV", "qa"),
        ("TOLLGATE_CONFIG_DIR", "/nonexistent-tollgate"),
    ]);
    assert!(msg.contains("/nonexistent-tollgate/qa.toml"), "{msg}");
}

#[test]
fn rendered_contract_variables_parse_back_to_the_same_contract() {
    for env in ["local", "staging", "production"] {
        let base = vars(&[
            ("TOLLGATE_ENV", env),
            ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
        ]);
        let mut original = load_for(Component::Deploy, &base).expect("loads").guard;
        // Change every field, so a field that the rendering forgot shows up as a difference.
        original.mode = shared_auth::SigningMode::Static;
        original.static_header = "x-other-auth".into();
        original.id_header = "x-other-id".into();
        original.timestamp_header = "x-other-ts".into();
        original.signature_header = "x-other-sig".into();
        original.secret_id = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:x".into();
        original.secret_ttl_s = 17;
        original.max_skew_s = 42;
        original.path = "/register".into();
        original.method = "PUT".into();
        original.allowed_cidrs = vec![
            "198.51.100.7/32".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ];
        original.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let mut rendered: HashMap<String, String> = original.to_env_vars().into_iter().collect();
        rendered.insert("TOLLGATE_ENV".into(), env.into());
        let back = load_for(Component::Deploy, &rendered)
            .expect("rendered contract loads")
            .guard;
        assert_eq!(back, original, "{env}");
    }
}

#[test]
fn deploy_settings_are_checked_outside_local() {
    let base = [
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
    ];
    let with = |extra: (&str, &str)| {
        let mut v: Vec<(&str, &str)> = base.to_vec();
        v.push(extra);
        error_for(&v)
    };
    assert!(
        with(("TOLLGATE__DEPLOY__CERTIFICATE_ARN", "not-an-arn"))
            .contains("deploy.certificate_arn")
    );
    assert!(
        with(("TOLLGATE__DEPLOY__LAMBDA_ARCHITECTURE", "sparc"))
            .contains("deploy.lambda_architecture")
    );
    assert!(
        with(("TOLLGATE__DEPLOY__API_ARCHITECTURE", "armv7")).contains("deploy.api_architecture")
    );
    for registry in ["http://127.0.0.1:5000", "registry.example.com/tollgate", ""] {
        assert!(
            with(("TOLLGATE__DEPLOY__REGISTRY", registry)).contains("deploy.registry"),
            "{registry}"
        );
    }
    for nat in ["three", "PER-AZ", ""] {
        assert!(
            with(("TOLLGATE__DEPLOY__NAT_GATEWAYS", nat)).contains("deploy.nat_gateways"),
            "{nat}"
        );
    }
    assert!(
        with(("TOLLGATE__DEPLOY__SECRET_ROTATION_DAYS", "1001"))
            .contains("deploy.secret_rotation_days")
    );
    for minutes in ["0", "61"] {
        assert!(
            with(("TOLLGATE__DEPLOY__HEARTBEAT_EVERY_MINUTES", minutes))
                .contains("deploy.heartbeat_every_minutes"),
            "{minutes}"
        );
    }
    assert!(
        with(("TOLLGATE__DEPLOY__HEARTBEAT_LATENCY_ALARM_MS", "999"))
            .contains("deploy.heartbeat_latency_alarm_ms")
    );
    let msg = with(("TOLLGATE__DEPLOY__VPC_CIDR", "172.16.0.0/16"));
    assert!(
        msg.contains("guard.trusted_proxies") && msg.contains("172.16.0.0/16"),
        "{msg}"
    );
}

#[test]
fn each_deployable_validates_only_the_sections_it_reads() {
    let loads = |component, pairs: &[(&str, &str)]| load_for(component, &vars(pairs)).is_ok();
    let (api, lambda, deploy) = (Component::Api, Component::Lambda, Component::Deploy);

    // A staging task whose deploy-only keys are wrong must still start.
    let bad_deploy = [
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
        (
            "TOLLGATE__LAMBDA__API_BASE_URL",
            "https://api.staging.example.com",
        ),
        (
            "TOLLGATE__LAMBDA__RETRY_QUEUE",
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/tollgate-staging-registrations",
        ),
        ("TOLLGATE__DEPLOY__CERTIFICATE_ARN", "FILL IN"),
    ];
    assert!(loads(api, &bad_deploy) && loads(lambda, &bad_deploy));
    assert!(!loads(deploy, &bad_deploy));

    let bad_lambda = [("TOLLGATE__LAMBDA__MAX_ATTEMPTS", "0")];
    assert!(loads(api, &bad_lambda));
    assert!(!loads(lambda, &bad_lambda) && !loads(deploy, &bad_lambda));

    let bad_api = [("TOLLGATE__API__REQUEST_TIMEOUT_MS", "0")];
    assert!(loads(lambda, &bad_api));
    assert!(!loads(api, &bad_api) && !loads(deploy, &bad_api));

    // The contract and the AWS endpoint are everyone's, and so are unknown keys.
    for shared in [
        ("TOLLGATE__GUARD__MAX_SKEW_S", "0"),
        ("TOLLGATE__AWS__ENDPOINT_URL", "moto:4566"),
        ("TOLLGATE__DEPLOY__NO_SUCH_KEY", "1"),
    ] {
        for component in [api, lambda, deploy] {
            assert!(
                !loads(component, &[shared]),
                "{component:?} accepted {shared:?}"
            );
        }
    }
}

#[test]
fn a_running_lambda_outside_local_needs_its_retry_queue_and_a_budget_inside_cognitos() {
    let staging = [
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
        ("TOLLGATE__LAMBDA__API_BASE_URL", "https://api.example.com"),
    ];
    let msg = load_for(Component::Lambda, &vars(&staging))
        .expect_err("no queue")
        .to_string();
    assert!(msg.contains("lambda.retry_queue"), "{msg}");
    let mut with_queue = staging.to_vec();
    with_queue.push((
        "TOLLGATE__LAMBDA__RETRY_QUEUE",
        "https://sqs.ap-northeast-1.amazonaws.com/123456789012/q",
    ));
    load_for(Component::Lambda, &vars(&with_queue)).expect("loads with its queue");
    for budget in ["50", "4500"] {
        let mut v = with_queue.clone();
        v.push(("TOLLGATE__LAMBDA__TRIGGER_BUDGET_MS", budget));
        let msg = load_for(Component::Lambda, &vars(&v))
            .expect_err("outside the budget")
            .to_string();
        assert!(msg.contains("lambda.trigger_budget_ms"), "{budget}: {msg}");
    }
    // The sweep's window must overlap the schedule's interval; its budget fit the timeout.
    assert!(
        error_for(&[("TOLLGATE__DEPLOY__SWEEP_EVERY_MINUTES", "180")])
            .contains("lambda.sweep_window_s")
    );
    assert!(
        error_for(&[("TOLLGATE__DEPLOY__LAMBDA_TIMEOUT_S", "30")])
            .contains("deploy.lambda_timeout_s")
    );
}
