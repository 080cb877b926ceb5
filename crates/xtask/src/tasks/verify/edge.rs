//! The edge: the WAF holds every NAT address, blocks the guarded path from anywhere else
//! (found by meaning: decoded, normalised, lower-cased, any method), never rate-limits or
//! lets a managed rule see that path, checks the credential's shape (hmac) or value (static,
//! through the rule group xtask and the rotation function keep), samples nothing, and logs
//! with every credential header redacted.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput as SecretDescription;
use aws_sdk_wafv2::types::{Rule, RuleGroup, Scope, Statement, TextTransformationType};
use opskit::aws::AwsContext;
use shared_auth::GuardContract;

use super::Outputs;
use super::rotation::described;
use crate::support::report::Report;
use crate::support::terraform::output_str;

/// What the edge's checks read: the stack, the contract, the secret's description.
pub(super) struct Edge<'a> {
    pub sdk: &'a SdkConfig,
    pub outputs: &'a Outputs,
    pub nat_eips: &'a [String],
    pub contract: &'a GuardContract,
    pub env: &'a str,
    pub secret: Result<&'a SecretDescription, &'a anyhow::Error>,
}

impl Edge<'_> {
    /// The WAF's IP set, its web ACL's rules, and its logging, each a line of the report.
    pub(super) async fn checks(&self, report: &mut Report) -> Result<()> {
        let path = self.contract.path.as_str();
        let waf = aws_sdk_wafv2::Client::new(self.sdk);
        let ip_set_arn = self.ip_set(&waf, report).await?;
        let acl = waf
            .get_web_acl()
            .scope(Scope::Regional)
            .name(output_str(self.outputs, "web_acl_name")?)
            .id(output_str(self.outputs, "web_acl_id")?)
            .send()
            .await
            .aws("WAF")?
            .web_acl
            .context("WAF returned no web ACL")?;
        let groups = referenced_groups(&waf, acl.rules()).await?;
        // What WAF decides the path with: the ACL's rules, each referenced group's in its place.
        let effective = effective_rules(acl.rules(), &groups);
        let rules = effective.as_slice();
        report.record(
            "WAF blocks the guarded path from other sources",
            waf_rule_ok(rules, path, &ip_set_arn),
        );
        report.record(
            "no WAF rate rule counts the guarded path",
            rate_rules_spare_the_guarded_path(rules, path),
        );
        report.record(
            "WAF managed rules spare the guarded path",
            managed_rules_spare_the_guarded_path(rules, path),
        );
        report.record(
            &format!(
                "WAF checks the credential's shape ({} mode)",
                self.contract.mode
            ),
            self.credential(rules, &groups),
        );
        report.record(
            "WAF keeps no sampled requests",
            no_sampled_requests(&acl, rules),
        );
        report.record(
            "WAF logs redact every credential header",
            self.log_redaction(&waf, acl.arn()).await,
        );
        Ok(())
    }

    /// Records whether the IP set holds every NAT EIP; returns its ARN.
    async fn ip_set(&self, waf: &aws_sdk_wafv2::Client, report: &mut Report) -> Result<String> {
        let ip_set = waf
            .get_ip_set()
            .scope(Scope::Regional)
            .name(output_str(self.outputs, "ip_set_name")?)
            .id(output_str(self.outputs, "ip_set_id")?)
            .send()
            .await
            .aws("WAF")?
            .ip_set
            .context("WAF returned no IP set")?;
        let addresses = ip_set.addresses();
        let missing: Vec<String> = self
            .nat_eips
            .iter()
            .map(|ip| format!("{ip}/32"))
            .filter(|cidr| !addresses.contains(cidr))
            .collect();
        report.record(
            "WAF IP set holds every NAT EIP",
            if missing.is_empty() {
                Ok(format!(
                    "{} among {} address(es)",
                    self.nat_eips.join(", "),
                    addresses.len()
                ))
            } else {
                Err(anyhow::anyhow!("{missing:?} missing from {addresses:?}"))
            },
        );
        Ok(ip_set.arn().to_owned())
    }

    /// The web ACL's logging configuration redacts every credential header.
    async fn log_redaction(&self, waf: &aws_sdk_wafv2::Client, acl_arn: &str) -> Result<String> {
        let logging = waf
            .get_logging_configuration()
            .resource_arn(acl_arn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "no logging configuration on the web ACL: {}",
                    opskit::aws::explain(&e)
                )
            })?;
        let redacted: Vec<String> = logging
            .logging_configuration()
            .map(|l| {
                l.redacted_fields()
                    .iter()
                    .filter_map(|f| f.single_header().map(|h| h.name().to_ascii_lowercase()))
                    .collect()
            })
            .unwrap_or_default();
        redaction_covers(&redacted, &self.contract.credential_headers())
    }

    /// The web ACL's credential rule for the contract's mode.
    fn credential(&self, rules: &[Rule], groups: &[Referenced]) -> Result<String> {
        match self.contract.mode {
            shared_auth::SigningMode::Static => self.secret_rule_group(groups),
            shared_auth::SigningMode::Hmac => signature_shape(rules, self.contract),
        }
    }

    /// `static`: a reference to the rule group xtask and the rotation function keep, accepting
    /// exactly the secret's versions (ids from its description, one header match per id).
    fn secret_rule_group(&self, groups: &[Referenced]) -> Result<String> {
        let (env, secret) = (self.env, self.secret);
        let expected_name = shared_aws::waf::rule_group_name(env);
        let group = match groups.iter().find(|g| g.group.name() == expected_name) {
            Some(g) if !g.counted => &g.group,
            Some(_) => bail!("the web ACL only counts `{expected_name}`"),
            None => bail!(
                "the web ACL refers to {:?}, not `{expected_name}`",
                groups.iter().map(|g| g.group.name()).collect::<Vec<_>>()
            ),
        };
        let ids = shared_aws::waf::accepted_ids(group.description().unwrap_or_default());
        let described = described(secret)?;
        let held: BTreeSet<String> = shared_aws::versions::Stages::of(described)
            .staged_versions()
            .map(str::to_owned)
            .collect();
        let accepted: BTreeSet<String> = ids.iter().cloned().collect();
        let [rule] = group.rules() else {
            bail!(
                "`{expected_name}` holds {} rules, not one",
                group.rules().len()
            );
        };
        let matches = shared_aws::waf::accepted_values(rule).map_or(0, |v| v.len());
        if accepted.is_empty() || !accepted.is_subset(&held) || matches != accepted.len() {
            bail!(
                "`{expected_name}` accepts {ids:?} with {matches} header match(es); the secret holds {held:?}"
            );
        }
        Ok(format!(
            "`{expected_name}` accepts versions {}",
            ids.join(", ")
        ))
    }
}

/// A rule group the web ACL refers to, as WAF holds it, and whether the reference only counts.
pub(super) struct Referenced {
    /// The ACL's rule that refers to it.
    pub rule: String,
    pub counted: bool,
    pub group: RuleGroup,
}

/// Every rule group the web ACL's rules refer to, read back.
async fn referenced_groups(waf: &aws_sdk_wafv2::Client, rules: &[Rule]) -> Result<Vec<Referenced>> {
    let mut groups = Vec::new();
    for rule in rules {
        let Some(reference) = rule
            .statement()
            .and_then(|s| s.rule_group_reference_statement())
        else {
            continue;
        };
        let group = waf
            .get_rule_group()
            .arn(reference.arn())
            .send()
            .await
            .aws("WAF")?
            .rule_group
            .with_context(|| format!("WAF returned no rule group for `{}`", rule.name()))?;
        groups.push(Referenced {
            rule: rule.name().to_owned(),
            counted: rule.override_action().is_some_and(|o| o.count().is_some()),
            group,
        });
    }
    Ok(groups)
}

/// The rules WAF evaluates, in the web ACL's order: a reference to a rule group is replaced
/// by the group's rules (named `<acl rule>/<group rule>`), a counted reference by nothing (its
/// blocks decide nothing), a reference to a group not read back is kept as it is.
fn effective_rules(rules: &[Rule], groups: &[Referenced]) -> Vec<Rule> {
    let mut ordered: Vec<&Rule> = rules.iter().collect();
    ordered.sort_by_key(|r| r.priority());
    let mut effective = Vec::new();
    for rule in ordered {
        let Some(group) = groups.iter().find(|g| g.rule == rule.name()) else {
            effective.push(rule.clone());
            continue;
        };
        if group.counted {
            continue;
        }
        let mut inner: Vec<Rule> = group.group.rules().to_vec();
        inner.sort_by_key(|r| r.priority());
        for mut r in inner {
            r.name = format!("{}/{}", rule.name(), r.name());
            effective.push(r);
        }
    }
    effective
}

/// `hmac`: a block of the guarded path unless both the timestamp and signature headers match
/// their shapes (the guarded route module's `signature-shape`, wherever the ACL refers to it).
fn signature_shape(rules: &[Rule], contract: &GuardContract) -> Result<String> {
    let rule = rules
        .iter()
        .find(|r| r.name() == "signature-shape" || r.name().ends_with("/signature-shape"))
        .context("no signature-shape rule")?;
    if rule.action().and_then(|a| a.block()).is_none() {
        bail!("`{}` does not block", rule.name());
    }
    let shapes: Vec<(String, String)> = rule
        .statement()
        .and_then(|s| s.and_statement())
        .and_then(|a| a.statements().get(1))
        .and_then(|n| n.not_statement())
        .and_then(|n| n.statement())
        .and_then(|s| s.and_statement())
        .map(|a| {
            a.statements()
                .iter()
                .filter_map(|s| s.regex_match_statement())
                .filter_map(|r| {
                    Some((
                        r.field_to_match()?
                            .single_header()?
                            .name()
                            .to_ascii_lowercase(),
                        r.regex_string().to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let names: BTreeSet<&str> = shapes.iter().map(|(h, _)| h.as_str()).collect();
    let needed: BTreeSet<String> = [&contract.timestamp_header, &contract.signature_header]
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if names != needed.iter().map(String::as_str).collect() {
        bail!("the shape rule checks {names:?}, the contract signs with {needed:?}");
    }
    Ok(format!(
        "{} well-formed",
        needed.into_iter().collect::<Vec<_>>().join(" and ")
    ))
}

fn redaction_covers(redacted: &[String], needed: &[String]) -> Result<String> {
    let missing: Vec<&String> = needed.iter().filter(|h| !redacted.contains(h)).collect();
    if missing.is_empty() {
        Ok(format!(
            "{} redacted: {}",
            redacted.len(),
            needed.join(", ")
        ))
    } else {
        bail!("WAF logs would keep the values of {missing:?}")
    }
}

/// Sampled requests keep headers unredacted: none may be kept, by the web ACL's default
/// action or by any rule.
fn no_sampled_requests(acl: &aws_sdk_wafv2::types::WebAcl, effective: &[Rule]) -> Result<String> {
    let mut sampling: Vec<&str> = acl
        .rules()
        .iter()
        .chain(effective)
        .filter(|r| {
            r.visibility_config()
                .is_some_and(|v| v.sampled_requests_enabled())
        })
        .map(|r| r.name())
        .collect();
    sampling.sort_unstable();
    sampling.dedup();
    if acl
        .visibility_config()
        .is_some_and(|v| v.sampled_requests_enabled())
    {
        sampling.push("(default action)");
    }
    if sampling.is_empty() {
        Ok(format!(
            "off for the default action and {} rule(s)",
            effective.len()
        ))
    } else {
        bail!("sampled requests (headers unredacted) kept by {sampling:?}")
    }
}

/// Whether `b` matches exactly the guarded path as WAF reads it (decoded, normalised,
/// lower-cased). Compared by meaning: WAF returns the search string as bytes and the
/// transformations in any order.
fn matches_guarded_path(b: &aws_sdk_wafv2::types::ByteMatchStatement, path: &str) -> bool {
    let transforms: BTreeSet<&str> = b
        .text_transformations()
        .iter()
        .map(|t| t.r#type().as_str())
        .collect();
    let wanted = [
        TextTransformationType::UrlDecode,
        TextTransformationType::NormalizePath,
        TextTransformationType::Lowercase,
    ];
    b.field_to_match().is_some_and(|f| f.uri_path().is_some())
        && b.search_string().as_ref() == path.as_bytes()
        && b.positional_constraint().as_str() == "EXACTLY"
        && wanted.iter().all(|t| transforms.contains(t.as_str()))
}

/// A blocking rule must refuse the guarded path (any method) from sources outside the IP set.
/// Found by what it does, not by its place: WAF returns rules in any order, and the hmac
/// mode's shape rule is a blocking AND on the same path too.
fn waf_rule_ok(
    rules: &[aws_sdk_wafv2::types::Rule],
    path: &str,
    ip_set_arn: &str,
) -> Result<String> {
    let judged: Vec<(&str, bool, bool, usize)> = rules
        .iter()
        .filter(|r| r.action().is_some_and(|a| a.block().is_some()))
        .filter_map(|r| {
            let parts = r.statement()?.and_statement()?.statements();
            let path_ok = parts
                .iter()
                .filter_map(Statement::byte_match_statement)
                .any(|b| matches_guarded_path(b, path));
            let not_in_set = parts.iter().any(|s| {
                s.not_statement()
                    .and_then(|n| n.statement())
                    .and_then(|s| s.ip_set_reference_statement())
                    .is_some_and(|r| r.arn() == ip_set_arn)
            });
            Some((r.name(), path_ok, not_in_set, parts.len()))
        })
        .collect();
    // Any further condition (a method, a header) would narrow the block: it must be these two.
    if let Some((name, ..)) = judged.iter().find(|(_, p, s, n)| *p && *s && *n == 2) {
        return Ok(format!(
            "rule `{name}`: {path} (any method) from outside the IP set"
        ));
    }
    let seen: Vec<String> = judged
        .iter()
        .map(|(name, p, s, n)| format!("`{name}` (path {p}, ip set {s}, {n} condition(s))"))
        .collect();
    bail!(
        "no blocking rule is exactly `path = {path} (decoded, normalised, lower-cased) AND NOT in the IP set`; blocking AND rules: {}",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    )
}

/// Whether a rule's scope-down is exactly `NOT (the guarded path)`, so the rule never sees it.
fn spares_the_guarded_path(scope_down: Option<&Statement>, path: &str) -> bool {
    scope_down
        .and_then(|s| s.not_statement())
        .and_then(|n| n.statement())
        .and_then(|s| s.byte_match_statement())
        .is_some_and(|b| matches_guarded_path(b, path))
}

/// No rate-based rule may count the guarded path: every legitimate sign-up leaves through the
/// one NAT address, so counting it would block real registrations. Each rate rule must be
/// scoped down to `NOT (the guarded path)`.
fn rate_rules_spare_the_guarded_path(
    rules: &[aws_sdk_wafv2::types::Rule],
    path: &str,
) -> Result<String> {
    let rate: Vec<_> = rules
        .iter()
        .filter_map(|r| Some((r.name(), r.statement()?.rate_based_statement()?)))
        .collect();
    let counting: Vec<&str> = rate
        .iter()
        .filter(|(_, statement)| !spares_the_guarded_path(statement.scope_down_statement(), path))
        .map(|(name, _)| *name)
        .collect();
    if counting.is_empty() {
        Ok(format!(
            "{} rate rule(s), each scoped to everything but {path}",
            rate.len()
        ))
    } else {
        bail!(
            "rate rule(s) {counting:?} may count {path}, where every sign-up shares the NAT address"
        )
    }
}

/// Every AWS managed rule group is scoped to everything but the guarded path: a managed rule
/// (no User-Agent, an address's reputation) must never refuse a real sign-up, which the
/// source address and the credential already vouch for.
fn managed_rules_spare_the_guarded_path(
    rules: &[aws_sdk_wafv2::types::Rule],
    path: &str,
) -> Result<String> {
    let managed: Vec<_> = rules
        .iter()
        .filter_map(|r| Some((r.name(), r.statement()?.managed_rule_group_statement()?)))
        .collect();
    let unscoped: Vec<&str> = managed
        .iter()
        .filter(|(_, statement)| !spares_the_guarded_path(statement.scope_down_statement(), path))
        .map(|(name, _)| *name)
        .collect();
    if unscoped.is_empty() {
        Ok(format!(
            "{} managed group(s), each scoped to everything but {path}",
            managed.len()
        ))
    } else {
        bail!("managed rule group(s) {unscoped:?} also inspect {path}")
    }
}

#[cfg(test)]
mod tests;
