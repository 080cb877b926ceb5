//! `verify`'s edge checks, tested: the WAF's header shapes against real signatures, and the
//! rule-group judgements against rules built as WAF returns them.

/// The regex the guarded route's module gives local `name`, as WAF receives it.
fn edge_shape(name: &str) -> regex_lite::Regex {
    let edge = include_str!("../../../../../../infra/modules/guarded-route/main.tf");
    let line = edge
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in infra/modules/guarded-route/main.tf"));
    let value = line
        .split_once('"')
        .and_then(|(_, rest)| rest.rsplit_once('"'))
        .map(|(v, _)| v)
        .expect("a quoted string");
    regex_lite::Regex::new(value).expect("a valid regex")
}

/// The signature header a sender attaches in `hmac` mode ([`shared_auth::GuardContract::credentials`],
/// the one builder), for `body` signed at `ts`.
fn signature_of(secret: &secrecy::SecretString, ts: u64, body: &[u8]) -> String {
    let vars =
        std::collections::HashMap::from([("TOLLGATE__GUARD__MODE".to_owned(), "hmac".to_owned())]);
    let contract = shared_auth::load_for(shared_auth::Component::Lambda, &vars)
        .expect("local settings in hmac mode")
        .guard;
    let credentials = contract.credentials(std::slice::from_ref(secret), "msg_edge", body, ts);
    let (_, value) = credentials
        .iter()
        .find(|(name, _)| *name == contract.signature_header)
        .expect("hmac mode signs");
    value.to_owned()
}

/// The edge's hmac rule must let every real credential through and stop malformed ones:
/// its shapes are checked against what the sender really signs.
#[test]
fn the_wafs_header_shapes_accept_every_real_signature_and_refuse_malformed_ones() {
    let (timestamp, signature) = (edge_shape("timestamp_shape"), edge_shape("signature_shape"));
    for n in 0..200u64 {
        let secret = shared_auth::generate_secret().expect("random");
        let ts = 1_700_000_000 + n * 7_919;
        let sig = signature_of(&secret, ts, format!("{{\"n\":{n}}}").as_bytes());
        assert!(timestamp.is_match(&ts.to_string()), "{ts}");
        assert!(signature.is_match(&sig), "{sig}");
        // During a rotation the sender may send two entries; a future version may add one.
        assert!(signature.is_match(&format!("{sig} {sig}")));
        assert!(signature.is_match(&format!("v1a,abc {sig}")));
    }
    for bad in [
        "",
        "-1",
        "12.5",
        " 1700000000",
        "1700000000 ",
        "1234567890123",
        "0x10",
    ] {
        assert!(!timestamp.is_match(bad), "timestamp {bad:?}");
    }
    let good = signature_of(&"k".repeat(43).into(), 1, b"{}");
    for bad in [
        String::new(),
        "v1,".to_owned(),
        "v1,abc".to_owned(),
        good.replace("v1,", "v2,"),
        good.replace("v1,", "v1="),
        good.trim_end_matches('=').to_owned(),
        format!("{good}x"),
        format!("x{good}"),
    ] {
        assert!(!signature.is_match(&bad), "signature {bad:?}");
    }
}

use aws_sdk_wafv2::primitives::Blob;
use aws_sdk_wafv2::types::{
    ByteMatchStatement, FieldToMatch, NotStatement, PositionalConstraint, RateBasedStatement,
    RateBasedStatementAggregateKeyType, Rule, TextTransformation, UriPath, VisibilityConfig,
};

use super::*;

fn path_match(path: &str, constraint: PositionalConstraint) -> Statement {
    let mut b = ByteMatchStatement::builder()
        .search_string(Blob::new(path))
        .positional_constraint(constraint)
        .field_to_match(
            FieldToMatch::builder()
                .uri_path(UriPath::builder().build())
                .build(),
        );
    // Returned by WAF in any order.
    for (priority, t) in [
        TextTransformationType::Lowercase,
        TextTransformationType::UrlDecode,
        TextTransformationType::NormalizePath,
    ]
    .into_iter()
    .enumerate()
    {
        b = b.text_transformations(
            TextTransformation::builder()
                .priority(priority as i32)
                .r#type(t)
                .build()
                .expect("transformation"),
        );
    }
    Statement::builder()
        .byte_match_statement(b.build().expect("byte match"))
        .build()
}

fn not(statement: Statement) -> Statement {
    Statement::builder()
        .not_statement(NotStatement::builder().statement(statement).build())
        .build()
}

fn rate_rule(name: &str, scope_down: Option<Statement>) -> Rule {
    let rate = RateBasedStatement::builder()
        .limit(300)
        .aggregate_key_type(RateBasedStatementAggregateKeyType::Ip)
        .set_scope_down_statement(scope_down.map(Box::new))
        .build()
        .expect("rate statement");
    Rule::builder()
        .name(name)
        .priority(2)
        .statement(Statement::builder().rate_based_statement(rate).build())
        .visibility_config(
            VisibilityConfig::builder()
                .sampled_requests_enabled(false)
                .cloud_watch_metrics_enabled(true)
                .metric_name(name)
                .build()
                .expect("visibility"),
        )
        .build()
        .expect("rule")
}

fn blocking_and(name: &str, second: Statement) -> Rule {
    let mut rule = rate_rule(name, None);
    rule.action = Some(
        aws_sdk_wafv2::types::RuleAction::builder()
            .block(aws_sdk_wafv2::types::BlockAction::builder().build())
            .build(),
    );
    rule.statement = Some(
        Statement::builder()
            .and_statement(
                aws_sdk_wafv2::types::AndStatement::builder()
                    .statements(path_match("/user", PositionalConstraint::Exactly))
                    .statements(second)
                    .build()
                    .expect("and"),
            )
            .build(),
    );
    rule
}

#[test]
fn the_source_rule_is_found_whatever_the_order_waf_returns_rules_in() {
    let ip_set = "arn:aws:wafv2:ap-northeast-1:123456789012:regional/ipset/x/1";
    let source = blocking_and(
        "route/from-allowed-sources",
        not(Statement::builder()
            .ip_set_reference_statement(
                aws_sdk_wafv2::types::IpSetReferenceStatement::builder()
                    .arn(ip_set)
                    .build()
                    .expect("ip set ref"),
            )
            .build()),
    );
    // hmac mode's shape rule: a blocking AND on the same path, but not the source check.
    let shape = blocking_and(
        "route/signature-shape",
        not(path_match("/other", PositionalConstraint::Exactly)),
    );
    for rules in [
        vec![shape.clone(), source.clone()],
        vec![source.clone(), shape.clone()],
    ] {
        let found = waf_rule_ok(&rules, "/user", ip_set).expect("found");
        assert!(found.contains("route/from-allowed-sources"), "{found}");
    }
    let err = waf_rule_ok(&[shape], "/user", ip_set).expect_err("no source rule");
    assert!(err.to_string().contains("route/signature-shape"), "{err}");
}

#[test]
fn a_rate_rule_scoped_to_everything_but_the_guarded_path_passes() {
    let rules = [rate_rule(
        "app",
        Some(not(path_match("/user", PositionalConstraint::Exactly))),
    )];
    assert!(rate_rules_spare_the_guarded_path(&rules, "/user").is_ok());
    assert!(rate_rules_spare_the_guarded_path(&[], "/user").is_ok());
}

#[test]
fn a_rate_rule_that_can_count_the_guarded_path_is_named() {
    for (name, scope_down) in [
        ("unscoped", None),
        (
            "on the path",
            Some(path_match("/user", PositionalConstraint::StartsWith)),
        ),
        (
            "not a prefix",
            Some(not(path_match("/user", PositionalConstraint::StartsWith))),
        ),
        (
            "not another path",
            Some(not(path_match("/users", PositionalConstraint::Exactly))),
        ),
    ] {
        let rules = [rate_rule(name, scope_down)];
        let err = rate_rules_spare_the_guarded_path(&rules, "/user")
            .expect_err(name)
            .to_string();
        assert!(err.contains(name), "{err}");
    }
}

fn managed_rule(name: &str, scope_down: Option<Statement>) -> Rule {
    Rule::builder()
        .name(name)
        .priority(10)
        .statement(
            Statement::builder()
                .managed_rule_group_statement(
                    aws_sdk_wafv2::types::ManagedRuleGroupStatement::builder()
                        .vendor_name("AWS")
                        .name(name)
                        .set_scope_down_statement(scope_down.map(Box::new))
                        .build()
                        .expect("managed group"),
                )
                .build(),
        )
        .visibility_config(visibility(false))
        .build()
        .expect("rule")
}

#[test]
fn a_managed_group_that_can_see_the_guarded_path_is_named() {
    let scoped = managed_rule(
        "AWSManagedRulesCommonRuleSet",
        Some(not(path_match("/user", PositionalConstraint::Exactly))),
    );
    assert!(managed_rules_spare_the_guarded_path(std::slice::from_ref(&scoped), "/user").is_ok());
    for (name, scope) in [
        ("Unscoped", None),
        (
            "StartsWith",
            Some(not(path_match("/user", PositionalConstraint::StartsWith))),
        ),
        (
            "OtherPath",
            Some(not(path_match("/users", PositionalConstraint::Exactly))),
        ),
        (
            "NotNegated",
            Some(path_match("/user", PositionalConstraint::Exactly)),
        ),
    ] {
        let rules = [scoped.clone(), managed_rule(name, scope)];
        let e = managed_rules_spare_the_guarded_path(&rules, "/user").expect_err(name);
        assert!(e.to_string().contains(name), "{e}");
    }
}

fn visibility(sampled: bool) -> VisibilityConfig {
    VisibilityConfig::builder()
        .sampled_requests_enabled(sampled)
        .cloud_watch_metrics_enabled(true)
        .metric_name("acl")
        .build()
        .expect("visibility")
}

fn acl(rules: Vec<Rule>, default_sampled: bool) -> aws_sdk_wafv2::types::WebAcl {
    aws_sdk_wafv2::types::WebAcl::builder()
        .name("acl")
        .id("id")
        .arn("arn")
        .default_action(aws_sdk_wafv2::types::DefaultAction::builder().build())
        .set_rules(Some(rules))
        .visibility_config(visibility(default_sampled))
        .build()
        .expect("web ACL")
}

#[test]
fn any_sampled_requests_are_named() {
    let quiet = rate_rule("app", None);
    let check =
        |rules: Vec<Rule>, default: bool| no_sampled_requests(&acl(rules.clone(), default), &rules);
    assert!(check(vec![quiet.clone()], false).is_ok());
    let err = check(vec![quiet.clone()], true).expect_err("default");
    assert!(err.to_string().contains("(default action)"), "{err}");
    let mut loud = rate_rule("loud", None);
    loud.visibility_config = Some(visibility(true));
    let err = check(vec![quiet.clone(), loud.clone()], false).expect_err("rule");
    assert!(err.to_string().contains("loud"), "{err}");
    // A rule inside a referenced group samples just the same.
    loud.name = "route/loud".into();
    let err = no_sampled_requests(&acl(vec![quiet.clone()], false), &[quiet, loud])
        .expect_err("group rule");
    assert!(err.to_string().contains("route/loud"), "{err}");
}

fn reference(name: &str, priority: i32, arn: &str, counted: bool) -> Rule {
    let action = aws_sdk_wafv2::types::OverrideAction::builder();
    let action = if counted {
        action.count(aws_sdk_wafv2::types::CountAction::builder().build())
    } else {
        action.none(aws_sdk_wafv2::types::NoneAction::builder().build())
    };
    Rule::builder()
        .name(name)
        .priority(priority)
        .statement(
            Statement::builder()
                .rule_group_reference_statement(
                    aws_sdk_wafv2::types::RuleGroupReferenceStatement::builder()
                        .arn(arn)
                        .build()
                        .expect("reference"),
                )
                .build(),
        )
        .override_action(action.build())
        .visibility_config(visibility(false))
        .build()
        .expect("rule")
}

fn group(name: &str, rules: Vec<Rule>) -> aws_sdk_wafv2::types::RuleGroup {
    aws_sdk_wafv2::types::RuleGroup::builder()
        .name(name)
        .id("id")
        .arn(format!("arn:{name}"))
        .capacity(100)
        .set_rules(Some(rules))
        .visibility_config(visibility(false))
        .build()
        .expect("group")
}

/// The guarded route's rules live in a rule group (infra/modules/guarded-route): the checks
/// read them in the group's place, and a counted reference blocks nothing, so its rules must
/// not satisfy a check.
#[test]
fn a_referenced_groups_rules_are_judged_in_its_place_unless_only_counted() {
    let ip_set = "arn:aws:wafv2:ap-northeast-1:123456789012:regional/ipset/x/1";
    let mut source = blocking_and(
        "from-allowed-sources",
        not(Statement::builder()
            .ip_set_reference_statement(
                aws_sdk_wafv2::types::IpSetReferenceStatement::builder()
                    .arn(ip_set)
                    .build()
                    .expect("ip set ref"),
            )
            .build()),
    );
    source.priority = 1;
    let app = rate_rule("app", None);
    for counted in [false, true] {
        let acl_rules = vec![app.clone(), reference("route", 1, "arn:g", counted)];
        let groups = [Referenced {
            rule: "route".into(),
            counted,
            group: group("g", vec![source.clone()]),
        }];
        let effective = effective_rules(&acl_rules, &groups);
        let names: Vec<&str> = effective.iter().map(|r| r.name()).collect();
        let found = waf_rule_ok(&effective, "/user", ip_set);
        if counted {
            assert_eq!(names, ["app"]);
            assert!(found.is_err(), "a counted group's block passed");
        } else {
            assert_eq!(names, ["route/from-allowed-sources", "app"]);
            assert!(found.expect("found").contains("route/from-allowed-sources"));
        }
    }
}

#[test]
fn a_redaction_that_misses_a_credential_header_names_it() {
    for mode in ["hmac", "static"] {
        let vars = std::collections::HashMap::from([
            ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
            ("TOLLGATE__GUARD__MODE".to_owned(), mode.to_owned()),
        ]);
        let contract = shared_auth::load_for(shared_auth::Component::Lambda, &vars)
            .expect("local contract")
            .guard;
        let needed = contract.credential_headers();
        assert!(redaction_covers(&needed, &needed).is_ok());
        for dropped in &needed {
            let partial: Vec<String> = needed.iter().filter(|h| h != &dropped).cloned().collect();
            let err = redaction_covers(&partial, &needed).expect_err(dropped);
            assert!(err.to_string().contains(dropped.as_str()), "{err}");
        }
    }
}
