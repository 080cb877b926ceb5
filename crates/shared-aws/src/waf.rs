//! The WAF's half of `static` mode: a rule group that blocks the guarded route unless its
//! `x-custom-auth` line is exactly one of the accepted secret versions.
//!
//! The values are secret, so the group is written through the WAF API only — by `cargo xtask
//! deploy` (first version) and by the rotation function (each rotation) — and the Terraform
//! web ACL refers to it by name (`data.aws_wafv2_rule_group`): no value ever enters Terraform
//! state or plan output. Its description lists the accepted Secrets Manager version ids, so
//! `cargo xtask verify` can report them without reading a value.

use crate::versions::{Version, Versions};
use aws_sdk_wafv2::Client as Wafv2;
use aws_sdk_wafv2::error::DisplayErrorContext;
use aws_sdk_wafv2::primitives::Blob;
use aws_sdk_wafv2::types::{
    AndStatement, ByteMatchStatement, FieldToMatch, NotStatement, OrStatement,
    PositionalConstraint, Rule, RuleAction, RuleGroupSummary, Scope, SingleHeader, Statement,
    TextTransformation, TextTransformationType, UriPath, VisibilityConfig,
};
use secrecy::ExposeSecret;
use shared_auth::GuardContract;

/// The rotation function's variable naming the rule group (set by Terraform in `static` mode).
pub const RULE_GROUP_ARN_VAR: &str = "TOLLGATE_GUARD_RULE_GROUP_ARN";

/// Capacity units reserved for the group (fixed at creation): the rule with three accepted
/// values needs about ten.
pub const CAPACITY: i64 = 50;
/// The one rule in the group.
pub const RULE_NAME: &str = "registration-secret-required";
/// How the description names the accepted versions.
const DESCRIPTION_PREFIX: &str = "Tollgate guard secret versions accepted:";
/// Transformations applied to the path before comparing, as the web ACL's own guarded rules
/// do (`infra/modules/guarded-route`), so `/%75ser` and `/USER` are the guarded route here too.
pub const PATH_TRANSFORMATIONS: [TextTransformationType; 3] = [
    TextTransformationType::UrlDecode,
    TextTransformationType::NormalizePath,
    TextTransformationType::Lowercase,
];

/// The group's name for an environment (`tollgate-<env>` is the stack's prefix).
pub fn rule_group_name(env: &str) -> String {
    format!("tollgate-{env}-guard-secret")
}

#[derive(Debug, thiserror::Error)]
pub enum WafError {
    #[error("no accepted secret version: the rule would block every registration")]
    NothingAccepted,
    #[error("WAF: {0}")]
    Aws(String),
    #[error("the rule group `{0}` kept changing under us (optimistic lock); try again")]
    Contended(String),
}

fn aws<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_wafv2::error::SdkError<E, R>,
) -> WafError {
    WafError::Aws(DisplayErrorContext(&e).to_string())
}

fn built<T>(r: Result<T, aws_sdk_wafv2::error::BuildError>) -> T {
    r.unwrap_or_else(|e| unreachable!("every required field is set: {e}"))
}

fn visibility(metric: &str) -> VisibilityConfig {
    built(
        VisibilityConfig::builder()
            .cloud_watch_metrics_enabled(true)
            // A sample would keep the request's headers, the secret among them.
            .sampled_requests_enabled(false)
            .metric_name(metric)
            .build(),
    )
}

fn byte_match(
    field: FieldToMatch,
    value: &[u8],
    transformations: &[TextTransformationType],
) -> Statement {
    let mut b = ByteMatchStatement::builder()
        .field_to_match(field)
        .positional_constraint(PositionalConstraint::Exactly)
        .search_string(Blob::new(value));
    for (priority, kind) in transformations.iter().enumerate() {
        b = b.text_transformations(built(
            TextTransformation::builder()
                .priority(priority as i32)
                .r#type(kind.clone())
                .build(),
        ));
    }
    Statement::builder()
        .byte_match_statement(built(b.build()))
        .build()
}

/// The group's rule: block `contract.path` (after the path transformations) unless the static
/// header is exactly one accepted value.
pub fn rule(
    contract: &GuardContract,
    metric: &str,
    accepted: &[&Version],
) -> Result<Rule, WafError> {
    let header = || {
        FieldToMatch::builder()
            .single_header(built(
                SingleHeader::builder()
                    .name(contract.static_header.to_ascii_lowercase())
                    .build(),
            ))
            .build()
    };
    let mut matches: Vec<Statement> = accepted
        .iter()
        .map(|a| {
            byte_match(
                header(),
                a.value.expose_secret().as_bytes(),
                &[TextTransformationType::None],
            )
        })
        .collect();
    let any_accepted = match matches.len() {
        0 => return Err(WafError::NothingAccepted),
        1 => matches.remove(0),
        _ => Statement::builder()
            .or_statement(built(
                OrStatement::builder().set_statements(Some(matches)).build(),
            ))
            .build(),
    };
    let path = byte_match(
        FieldToMatch::builder()
            .uri_path(UriPath::builder().build())
            .build(),
        contract.path.as_bytes(),
        &PATH_TRANSFORMATIONS,
    );
    let not_accepted = Statement::builder()
        .not_statement(NotStatement::builder().statement(any_accepted).build())
        .build();
    let statement = Statement::builder()
        .and_statement(built(
            AndStatement::builder()
                .statements(path)
                .statements(not_accepted)
                .build(),
        ))
        .build();
    Ok(built(
        Rule::builder()
            .name(RULE_NAME)
            .priority(0)
            .action(
                RuleAction::builder()
                    .block(aws_sdk_wafv2::types::BlockAction::builder().build())
                    .build(),
            )
            .statement(statement)
            .visibility_config(visibility(metric))
            .build(),
    ))
}

/// The header values `rule` accepts, read back from its statement (the shape [`rule`] writes:
/// `AND(path, NOT(one match | OR(matches)))`); `None` for any other shape.
pub fn accepted_values(rule: &Rule) -> Option<Vec<Vec<u8>>> {
    let inner = rule
        .statement()?
        .and_statement()?
        .statements()
        .get(1)?
        .not_statement()?
        .statement()?;
    let matches = match inner.or_statement() {
        Some(or) => or.statements().iter().collect(),
        None => vec![inner],
    };
    matches
        .into_iter()
        .map(|m| Some(m.byte_match_statement()?.search_string().as_ref().to_vec()))
        .collect()
}

/// The description naming the accepted versions (ids only).
pub fn description(accepted: &[&Version]) -> String {
    let ids: Vec<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
    format!("{DESCRIPTION_PREFIX} {}", ids.join(" "))
}

/// The version ids a group's description names.
pub fn accepted_ids(description: &str) -> Vec<String> {
    description
        .strip_prefix(DESCRIPTION_PREFIX)
        .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The rule group in one region.
#[derive(Debug, Clone)]
pub struct GuardRuleGroup {
    pub client: Wafv2,
}

impl GuardRuleGroup {
    /// Creates the group `name` accepting `versions`, or updates it when it exists; returns
    /// its ARN.
    pub async fn ensure(
        &self,
        name: &str,
        contract: &GuardContract,
        versions: &Versions,
    ) -> Result<String, WafError> {
        let accepted: Vec<&Version> = versions.all().map(|(_, v)| v).collect();
        let accepted = accepted.as_slice();
        if let Some(arn) = self.find(name).await? {
            self.update(&arn, contract, versions).await?;
            return Ok(arn);
        }
        let created = self
            .client
            .create_rule_group()
            .name(name)
            .scope(Scope::Regional)
            .capacity(CAPACITY)
            .description(description(accepted))
            .rules(rule(contract, name, accepted)?)
            .visibility_config(visibility(name))
            .send()
            .await
            .map_err(aws)?;
        Ok(created.summary.and_then(|s| s.arn).unwrap_or_default())
    }

    /// The ARN of the group `name`, if it exists.
    pub async fn find(&self, name: &str) -> Result<Option<String>, WafError> {
        Ok(self
            .summary(|g| g.name() == Some(name))
            .await?
            .and_then(|g| g.arn))
    }

    /// The first group `wanted` picks, as `ListRuleGroups` gives it: name, id, ARN, lock token
    /// and description, which is all an update or a delete needs. Its rules are never read:
    /// they hold the secret, so no identity here needs `wafv2:GetRuleGroup` on the group.
    async fn summary(
        &self,
        wanted: impl Fn(&RuleGroupSummary) -> bool,
    ) -> Result<Option<RuleGroupSummary>, WafError> {
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_rule_groups()
                .scope(Scope::Regional)
                .limit(100)
                .set_next_marker(marker)
                .send()
                .await
                .map_err(aws)?;
            if let Some(found) = page.rule_groups().iter().find(|g| wanted(g)) {
                return Ok(Some(found.clone()));
            }
            match page.next_marker {
                Some(next) if !next.is_empty() && !page.rule_groups().is_empty() => {
                    marker = Some(next)
                }
                _ => return Ok(None),
            }
        }
    }

    /// Makes the group at `arn` accept exactly `versions`. Retries when another writer
    /// changed it between read and write.
    pub async fn update(
        &self,
        arn: &str,
        contract: &GuardContract,
        versions: &Versions,
    ) -> Result<(), WafError> {
        let accepted: Vec<&Version> = versions.all().map(|(_, v)| v).collect();
        let accepted = accepted.as_slice();
        for _ in 0..5 {
            let group = self.summary(|g| g.arn() == Some(arn)).await?;
            let Some((Some(name), Some(id), Some(lock))) =
                group.map(|g| (g.name, g.id, g.lock_token))
            else {
                return Err(WafError::Aws(format!("ListRuleGroups: no group {arn}")));
            };
            let result = self
                .client
                .update_rule_group()
                .name(&name)
                .id(id)
                .scope(Scope::Regional)
                .lock_token(lock)
                .description(description(accepted))
                .rules(rule(contract, &name, accepted)?)
                .visibility_config(visibility(&name))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_waf_optimistic_lock_exception()) =>
                {
                    continue;
                }
                Err(e) => return Err(aws(e)),
            }
        }
        Err(WafError::Contended(arn.to_owned()))
    }

    /// Deletes the group `name` if it exists (after the web ACL stopped referring to it).
    pub async fn delete(&self, name: &str) -> Result<bool, WafError> {
        let group = self.summary(|g| g.name() == Some(name)).await?;
        let Some((Some(id), Some(lock))) = group.map(|g| (g.id, g.lock_token)) else {
            return Ok(false);
        };
        self.client
            .delete_rule_group()
            .name(name)
            .id(id)
            .scope(Scope::Regional)
            .lock_token(lock)
            .send()
            .await
            .map_err(aws)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> GuardContract {
        shared_auth::load_for(shared_auth::Component::Lambda, &Default::default())
            .expect("local settings")
            .guard
    }

    fn accepted(n: usize) -> Vec<Version> {
        (0..n)
            .map(|i| Version {
                id: format!("00000000-0000-4000-8000-00000000000{i}"),
                value: format!("value-{i}-0123456789abcdefghijklmnopqrstuvw").into(),
                created_s: None,
            })
            .collect()
    }

    fn refs(versions: &[Version]) -> Vec<&Version> {
        versions.iter().collect()
    }

    /// The header values a rule accepts, read back from its statement.
    fn accepted_values(rule: &Rule) -> Vec<Vec<u8>> {
        let and = rule
            .statement()
            .and_then(|s| s.and_statement())
            .expect("AND");
        let [path, not] = and.statements() else {
            panic!("two statements")
        };
        let path = path.byte_match_statement().expect("path match");
        assert_eq!(path.search_string().as_ref(), contract().path.as_bytes());
        assert_eq!(path.positional_constraint(), &PositionalConstraint::Exactly);
        assert!(path.field_to_match().and_then(|f| f.uri_path()).is_some());
        let kinds: Vec<_> = path
            .text_transformations()
            .iter()
            .map(|t| t.r#type().clone())
            .collect();
        assert_eq!(kinds, PATH_TRANSFORMATIONS);
        let inner = not
            .not_statement()
            .expect("NOT")
            .statement()
            .expect("inner");
        let matches = match inner.or_statement() {
            Some(or) => or.statements().to_vec(),
            None => vec![inner.clone()],
        };
        matches
            .iter()
            .map(|m| {
                let b = m.byte_match_statement().expect("header match");
                let header = b
                    .field_to_match()
                    .and_then(|f| f.single_header())
                    .expect("single header");
                assert_eq!(header.name(), contract().static_header);
                assert_eq!(b.positional_constraint(), &PositionalConstraint::Exactly);
                b.search_string().as_ref().to_vec()
            })
            .collect()
    }

    #[test]
    fn the_rule_blocks_the_guarded_path_unless_one_accepted_value_matches() {
        for n in 1..=3 {
            let a = accepted(n);
            let rule = rule(&contract(), "m", &refs(&a)).expect("rule");
            assert!(rule.action().and_then(|a| a.block()).is_some(), "blocks");
            let values = accepted_values(&rule);
            let expected: Vec<Vec<u8>> = a
                .iter()
                .map(|a| a.value.expose_secret().as_bytes().to_vec())
                .collect();
            assert_eq!(values, expected, "{n} value(s)");
            assert_eq!(
                super::accepted_values(&rule),
                Some(expected),
                "the reader agrees"
            );
            assert!(
                !rule
                    .visibility_config()
                    .expect("vis")
                    .sampled_requests_enabled()
            );
        }
        assert!(matches!(
            rule(&contract(), "m", &[]),
            Err(WafError::NothingAccepted)
        ));
    }

    #[test]
    fn the_description_names_version_ids_and_no_value() {
        let a = accepted(2);
        let text = description(&refs(&a));
        assert!(text.len() <= 256, "WAF's description limit");
        assert_eq!(
            accepted_ids(&text),
            a.iter().map(|a| a.id.clone()).collect::<Vec<_>>()
        );
        assert!(!text.contains("value-"), "{text}");
        assert!(accepted_ids("something else").is_empty());
        assert!(!format!("{:?}", a[0]).contains("value-"));
    }
}
