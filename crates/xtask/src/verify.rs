//! `cargo xtask verify --env E`: reads the deployed system back through the AWS APIs and proves
//! the two controls are wired as designed. Exits non-zero on any mismatch.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_ecs::types::TaskDefinition;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput as LambdaConfig;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput as SecretDescription;
use aws_sdk_wafv2::types::{Scope, Statement, TextTransformationType};
use serde_json::Value;
use shared_auth::{Component, GuardContract, Settings};
use testkit::aws::AwsContext;

use crate::context::{block_on, require_supplied, settings_for};
use crate::report::Report;
use crate::terraform::{output_str, outputs};
use crate::{flags, image};

type Outputs = HashMap<String, Value>;

impl flags::Verify {
    pub fn run(self) -> Result<()> {
        let env = &self.env;
        let settings = settings_for(env)?;
        require_supplied(&settings)?;
        let outputs = outputs(env)?;
        let report = block_on(checks(&settings, &outputs))?;
        report.print();
        let failed = report.failures();
        if failed > 0 {
            bail!("{failed} check(s) failed: the deployed `{env}` does not match its contract");
        }
        println!("\n`{env}` matches its contract.");
        Ok(())
    }
}

async fn checks(settings: &Settings, outputs: &Outputs) -> Result<Report> {
    let sdk = testkit::sdk_config(&settings.aws).await;
    let nat_eips = nat_eips(outputs)?;
    let mut report = Report::default();
    let lambda = aws_sdk_lambda::Client::new(&sdk)
        .get_function_configuration()
        .function_name(output_str(outputs, "lambda_function_name")?)
        .send()
        .await
        .aws("Lambda")?;
    let lambda_contract = contract_checks(&mut report, &sdk, &lambda, outputs, &nat_eips).await?;
    let contract = lambda_contract.unwrap_or_else(|| settings.guard.clone());
    // The guard secret's versions and rotation, read once for the checks that need them.
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .describe_secret()
        .secret_id(&contract.secret_id)
        .send()
        .await
        .aws("Secrets Manager");
    waf_checks(
        &mut report,
        &sdk,
        outputs,
        &nat_eips,
        &contract,
        &settings.env,
        secret.as_ref(),
    )
    .await?;
    report.record(
        "secret rotation: function, schedule, versions accepted",
        secret_rotation(settings, &sdk, outputs, secret.as_ref()).await,
    );
    report.record(
        "task image is the pushed digest, right platform",
        task_image(settings, &sdk, outputs).await,
    );
    report.record(
        "Lambda in the NAT-routed private subnets",
        placement(&sdk, &lambda, outputs, &nat_eips).await,
    );
    report.record(
        "Cognito PostConfirmation → post-confirm",
        cognito_trigger(&sdk, &lambda, outputs).await,
    );
    report.record(
        &format!("{} points at the ALB", settings.public_base_url()),
        api_name(settings, outputs).await,
    );
    // Where the ALB really answers: the api is ready (its login connects), a forged
    // registration is refused, and the Lambda's own dry run passes the whole path.
    let live = settings.aws.endpoint_url.is_none();
    let skipped = || Ok("skipped: a local AWS's ALB serves no traffic".to_owned());
    report.record(
        "api ready: database login and secret",
        if live {
            readiness(settings).await
        } else {
            skipped()
        },
    );
    report.record(
        "forged POST through the ALB → 403",
        if live {
            probe(settings).await
        } else {
            skipped()
        },
    );
    report.record(
        "Lambda's dry run through NAT, WAF and ALB → 204",
        if live {
            lambda_dry_run(&sdk, outputs).await
        } else {
            Ok("skipped: a local AWS cannot invoke a function".to_owned())
        },
    );
    Ok(report)
}

/// The HTTP client verify speaks with: it says who it is (the managed rule set blocks
/// requests without a User-Agent once enforced), and waits at most 10 s.
fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("tollgate-verify/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The api's name resolves to the ALB. Compared by address, which covers an alias record and
/// a CNAME alike.
async fn api_name(settings: &Settings, outputs: &Outputs) -> Result<String> {
    let Some(domain) = settings.deploy.domain.clone() else {
        return Ok("skipped: no deploy.domain (local)".to_owned());
    };
    let alb = output_str(outputs, "alb_dns_name")?;
    let addresses = |name: String| async move {
        tokio::net::lookup_host((name.as_str(), 443))
            .await
            .map(|found| found.map(|a| a.ip()).collect::<BTreeSet<_>>())
    };
    let Ok(alb_addresses) = addresses(alb.clone()).await else {
        return Ok(format!(
            "skipped: the ALB's name {alb} does not resolve here (a local AWS serves no DNS)"
        ));
    };
    let fix = match &settings.deploy.hosted_zone_id {
        Some(zone) => format!("the stack's alias record in {zone} is missing: re-run deploy"),
        None => format!(
            "create an alias A record (or a CNAME) for {domain} pointing at {alb} in the domain's DNS"
        ),
    };
    match addresses(domain.clone()).await {
        Ok(found) if !found.is_disjoint(&alb_addresses) => {
            Ok(format!("{domain} → {alb} ({} address(es))", found.len()))
        }
        Ok(found) => bail!("{domain} resolves to {found:?}, not the ALB {alb}: {fix}"),
        Err(e) => bail!("{domain} does not resolve ({e}): {fix}"),
    }
}

/// `GET /readyz` through the public name: the serving login connects and the secret is loaded.
async fn readiness(settings: &Settings) -> Result<String> {
    let url = format!("{}/readyz", settings.public_base_url());
    let response = http()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} is not JSON"))?;
    match (body["database"].as_bool(), body["secret"].as_bool()) {
        (Some(true), Some(true)) => Ok(format!("{url} → {status}")),
        _ => bail!(
            "{url} → {status} {body}: a task whose login cannot connect (see the api's log group) or whose secret is not loaded"
        ),
    }
}

/// Invokes the post-confirm function with a probe: it signs a dry-run registration with the
/// current secret and sends it as every sign-up goes, through the NAT gateway, the WAF and the
/// ALB; the api must verify it (`204`, verified with `current`) and write nothing.
async fn lambda_dry_run(sdk: &SdkConfig, outputs: &Outputs) -> Result<String> {
    let function = output_str(outputs, "lambda_function_name")?;
    let out = aws_sdk_lambda::Client::new(sdk)
        .invoke()
        .function_name(&function)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            post_confirm::probe::EVENT.to_string(),
        ))
        .send()
        .await
        .aws("Lambda")?;
    let body: Value = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    if let Some(error) = out.function_error() {
        bail!("{function} failed the probe ({error}): {body}");
    }
    match (body["status"].as_u64(), body["verified_with"].as_str()) {
        (Some(204), Some("current")) => Ok(format!("{function}: 204, verified with current")),
        _ => bail!("{function}'s dry run came back {body}"),
    }
}

/// The environments of both deployables parse to one contract, which allows the NAT EIP.
/// Returns the Lambda's contract when it parses.
async fn contract_checks(
    report: &mut Report,
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
    nat_eips: &[String],
) -> Result<Option<GuardContract>> {
    let lambda_env: HashMap<String, String> = lambda
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let task_env = task_environment(sdk, outputs).await?;
    let lambda_contract = shared_auth::load_for(Component::Lambda, &lambda_env).map(|s| s.guard);
    let task_contract = shared_auth::load_for(Component::Api, &task_env).map(|s| s.guard);
    for (name, parsed) in [
        ("Lambda environment parses", &lambda_contract),
        ("task environment parses", &task_contract),
    ] {
        report.record(
            name,
            parsed
                .as_ref()
                .map(|_| "shared loader accepts it".into())
                .map_err(|e| anyhow::anyhow!("{e}")),
        );
    }
    report.record(
        "Lambda and task contracts are equal",
        match (&lambda_contract, &task_contract) {
            (Ok(a), Ok(b)) => compare(a, b),
            _ => Err(anyhow::anyhow!(
                "cannot compare: an environment does not parse"
            )),
        },
    );
    report.record(
        "contract allows every NAT EIP",
        match &lambda_contract {
            Ok(c) => {
                let missing: Vec<&String> = nat_eips
                    .iter()
                    .filter(|ip| {
                        !ip.parse()
                            .is_ok_and(|ip| shared_auth::is_allowed(ip, &c.allowed_cidrs))
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(format!("{} in allowed_cidrs", nat_eips.join(", ")))
                } else {
                    Err(anyhow::anyhow!("{missing:?} not in {:?}", c.allowed_cidrs))
                }
            }
            Err(_) => Err(anyhow::anyhow!("the Lambda's contract does not parse")),
        },
    );
    Ok(lambda_contract.ok())
}

/// The task definition names its image by digest; the registry serves that digest for the tag
/// xtask pushed it under; the image's platform is the task's `cpu_architecture`.
async fn task_image(settings: &Settings, sdk: &SdkConfig, outputs: &Outputs) -> Result<String> {
    let definition = task_definition(sdk, outputs).await?;
    let named = definition
        .container_definitions()
        .first()
        .and_then(|c| c.image())
        .context("the task definition has no container image")?;
    let reference = image::Reference::parse(named)?;
    let registry = image::registry_for(settings).await?;
    if registry.host != reference.registry {
        bail!(
            "the task pulls from {}, not this environment's registry {}",
            reference.registry,
            registry.host
        );
    }
    let tag = image::oci::tag_for(&reference.digest);
    let served = registry
        .manifest_digest(&reference.repository, &tag)
        .await?
        .with_context(|| format!("the registry has no {}:{tag}", reference.repository))?;
    if served != reference.digest {
        bail!(
            "{}:{tag} is {served} in the registry, but the task runs {}",
            reference.repository,
            reference.digest
        );
    }
    let (_, config) = registry
        .manifest_and_config(&reference.repository, &reference.digest)
        .await?;
    let platform = config["architecture"].as_str().unwrap_or("?");
    let task_cpu = definition
        .runtime_platform()
        .and_then(|p| p.cpu_architecture())
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| "X86_64".into());
    let expected = if task_cpu.eq_ignore_ascii_case("ARM64") {
        "arm64"
    } else {
        "amd64"
    };
    if platform != expected {
        bail!("the image is linux/{platform}, the task runs on {task_cpu}");
    }
    Ok(format!(
        "{tag} = {}…, linux/{platform} on {task_cpu}",
        &reference.digest[..19]
    ))
}

/// The deployed task definition (the `task_definition_arn` output).
async fn task_definition(sdk: &SdkConfig, outputs: &Outputs) -> Result<TaskDefinition> {
    aws_sdk_ecs::Client::new(sdk)
        .describe_task_definition()
        .task_definition(output_str(outputs, "task_definition_arn")?)
        .send()
        .await
        .aws("ECS")?
        .task_definition
        .context("ECS returned no task definition")
}

/// The task definition's container environment.
async fn task_environment(sdk: &SdkConfig, outputs: &Outputs) -> Result<HashMap<String, String>> {
    let task = task_definition(sdk, outputs).await?;
    Ok(task
        .container_definitions()
        .first()
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default())
}

/// WAF: the IP set holds the NAT EIP, and the web ACL blocks the guarded path from elsewhere.
async fn waf_checks(
    report: &mut Report,
    sdk: &SdkConfig,
    outputs: &Outputs,
    nat_eips: &[String],
    contract: &GuardContract,
    env: &str,
    secret: Result<&SecretDescription, &anyhow::Error>,
) -> Result<()> {
    let path = contract.path.as_str();
    let waf = aws_sdk_wafv2::Client::new(sdk);
    let ip_set = waf
        .get_ip_set()
        .scope(Scope::Regional)
        .name(output_str(outputs, "ip_set_name")?)
        .id(output_str(outputs, "ip_set_id")?)
        .send()
        .await
        .aws("WAF")?;
    let addresses: Vec<String> = ip_set
        .ip_set()
        .map(|s| s.addresses().to_vec())
        .unwrap_or_default();
    let missing: Vec<String> = nat_eips
        .iter()
        .map(|ip| format!("{ip}/32"))
        .filter(|cidr| !addresses.contains(cidr))
        .collect();
    report.record(
        "WAF IP set holds every NAT EIP",
        if missing.is_empty() {
            Ok(format!(
                "{} among {} address(es)",
                nat_eips.join(", "),
                addresses.len()
            ))
        } else {
            Err(anyhow::anyhow!("{missing:?} missing from {addresses:?}"))
        },
    );
    let acl = waf
        .get_web_acl()
        .scope(Scope::Regional)
        .name(output_str(outputs, "web_acl_name")?)
        .id(output_str(outputs, "web_acl_id")?)
        .send()
        .await
        .aws("WAF")?;
    let ip_set_arn = ip_set
        .ip_set()
        .map(|s| s.arn().to_owned())
        .unwrap_or_default();
    report.record(
        "WAF blocks the guarded path from other sources",
        acl.web_acl()
            .context("no web ACL")
            .and_then(|acl| waf_rule_ok(acl.rules(), path, &ip_set_arn)),
    );
    report.record(
        "no WAF rate rule counts the guarded path",
        acl.web_acl()
            .context("no web ACL")
            .and_then(|acl| rate_rules_spare_the_guarded_path(acl.rules(), path)),
    );
    let rules = acl
        .web_acl()
        .map(|a| a.rules().to_vec())
        .unwrap_or_default();
    report.record(
        "WAF managed rules spare the guarded path",
        managed_rules_spare_the_guarded_path(&rules, path),
    );
    report.record(
        &format!("WAF checks the credential's shape ({} mode)", contract.mode),
        edge_credential(&waf, env, contract, &rules, secret).await,
    );
    report.record(
        "WAF keeps no sampled requests",
        acl.web_acl()
            .context("no web ACL")
            .and_then(no_sampled_requests),
    );
    let acl_arn = acl
        .web_acl()
        .map(|a| a.arn().to_owned())
        .unwrap_or_default();
    let logging = waf
        .get_logging_configuration()
        .resource_arn(&acl_arn)
        .send()
        .await;
    report.record(
        "WAF logs redact every credential header",
        match logging {
            Ok(out) => {
                let redacted: Vec<String> = out
                    .logging_configuration()
                    .map(|l| {
                        l.redacted_fields()
                            .iter()
                            .filter_map(|f| {
                                f.single_header().map(|h| h.name().to_ascii_lowercase())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                redaction_covers(&redacted, &credential_headers(contract))
            }
            Err(e) => Err(anyhow::anyhow!(
                "no logging configuration on the web ACL: {}",
                testkit::aws::explain(&e)
            )),
        },
    );
    Ok(())
}

/// The web ACL's credential rule for the contract's mode. `static`: a reference to the rule
/// group xtask and the rotation function keep, accepting exactly the secret's versions (ids
/// from its description, one header match per id). `hmac`: a block of the guarded path unless
/// both the timestamp and signature headers match their shapes.
async fn edge_credential(
    waf: &aws_sdk_wafv2::Client,
    env: &str,
    contract: &GuardContract,
    rules: &[aws_sdk_wafv2::types::Rule],
    secret: Result<&SecretDescription, &anyhow::Error>,
) -> Result<String> {
    match contract.mode {
        shared_auth::SigningMode::Static => {
            let arn = rules
                .iter()
                .find_map(|r| {
                    r.statement()
                        .and_then(|s| s.rule_group_reference_statement())
                        .map(|g| g.arn().to_owned())
                })
                .context("no rule refers to the secret's rule group")?;
            let group = waf
                .get_rule_group()
                .arn(&arn)
                .send()
                .await
                .aws("WAF")?
                .rule_group
                .context("empty rule group")?;
            let expected_name = post_confirm::waf::rule_group_name(env);
            if group.name() != expected_name {
                bail!(
                    "the web ACL refers to `{}`, not `{expected_name}`",
                    group.name()
                );
            }
            let ids = post_confirm::waf::accepted_ids(group.description().unwrap_or_default());
            let described = described(secret)?;
            let held: BTreeSet<String> = described
                .version_ids_to_stages()
                .map(|m| {
                    m.iter()
                        .filter(|(_, stages)| !stages.is_empty())
                        .map(|(id, _)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            let accepted: BTreeSet<String> = ids.iter().cloned().collect();
            let [rule] = group.rules() else {
                bail!(
                    "`{expected_name}` holds {} rules, not one",
                    group.rules().len()
                );
            };
            let matches = post_confirm::waf::accepted_values(rule).map_or(0, |v| v.len());
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
        shared_auth::SigningMode::Hmac => {
            let rule = rules
                .iter()
                .find(|r| r.name() == "registration-signature-shape")
                .context("no registration-signature-shape rule")?;
            if rule.action().and_then(|a| a.block()).is_none() {
                bail!("registration-signature-shape does not block");
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
    }
}

/// The headers a request may carry a credential in, lower case: both modes' headers (whichever
/// is active, so a switch of mode never starts logging secrets) and the app's bearer token and
/// cookies. Terraform redacts these in WAF logs (render) and verify checks it did.
pub fn credential_headers(contract: &GuardContract) -> Vec<String> {
    let mut headers: Vec<String> = [
        contract.static_header.as_str(),
        contract.signature_header.as_str(),
        "authorization",
        "cookie",
    ]
    .iter()
    .map(|h| h.to_ascii_lowercase())
    .collect();
    headers.sort();
    headers.dedup();
    headers
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
fn no_sampled_requests(acl: &aws_sdk_wafv2::types::WebAcl) -> Result<String> {
    let mut sampling: Vec<&str> = acl
        .rules()
        .iter()
        .filter(|r| {
            r.visibility_config()
                .is_some_and(|v| v.sampled_requests_enabled())
        })
        .map(|r| r.name())
        .collect();
    if acl
        .visibility_config()
        .is_some_and(|v| v.sampled_requests_enabled())
    {
        sampling.push("(default action)");
    }
    if sampling.is_empty() {
        Ok(format!(
            "off for the default action and {} rule(s)",
            acl.rules().len()
        ))
    } else {
        bail!("sampled requests (headers unredacted) kept by {sampling:?}")
    }
}

/// The user pool's PostConfirmation trigger points at this Lambda.
async fn cognito_trigger(
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
) -> Result<String> {
    let pool = aws_sdk_cognitoidentityprovider::Client::new(sdk)
        .describe_user_pool()
        .user_pool_id(output_str(outputs, "user_pool_id")?)
        .send()
        .await
        .aws("Cognito")?;
    let trigger = pool
        .user_pool()
        .and_then(|p| p.lambda_config())
        .and_then(|l| l.post_confirmation())
        .unwrap_or_default();
    let arn = lambda.function_arn().unwrap_or_default();
    if !arn.is_empty() && trigger == arn {
        Ok(arn.to_owned())
    } else {
        bail!("trigger is `{trigger}`, expected `{arn}`")
    }
}

/// Names the fields on which two contracts differ.
fn compare(a: &GuardContract, b: &GuardContract) -> Result<String> {
    let (va, vb) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    let (Value::Object(ma), Value::Object(mb)) = (&va, &vb) else {
        bail!("contracts are not objects")
    };
    let differ: Vec<String> = ma
        .iter()
        .filter(|(k, v)| mb.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "guard.{k}: Lambda {v} ≠ task {}",
                mb.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if differ.is_empty() {
        Ok(format!(
            "mode {}, {} {}, {} allowed source(s)",
            a.mode,
            a.method,
            a.path,
            a.allowed_cidrs.len()
        ))
    } else {
        bail!("{}", differ.join("; "))
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

/// The Lambda sits in the private subnets, and each routes through a NAT gateway whose address
/// is one of the allowed Elastic IPs (one gateway, or one per AZ).
async fn placement(
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
    nat_eips: &[String],
) -> Result<String> {
    let subnets: BTreeSet<String> = lambda
        .vpc_config()
        .map(|v| v.subnet_ids().iter().cloned().collect())
        .unwrap_or_default();
    let private: BTreeSet<String> = outputs
        .get("private_subnet_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if subnets.is_empty() || subnets != private {
        bail!("Lambda subnets {subnets:?} are not the private subnets {private:?}");
    }
    let groups: Vec<String> = lambda
        .vpc_config()
        .map(|v| v.security_group_ids().to_vec())
        .unwrap_or_default();
    let expected_group = output_str(outputs, "lambda_security_group_id")?;
    if groups != [expected_group.clone()] {
        bail!("Lambda security groups {groups:?}, expected [{expected_group}]");
    }
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let mut routes = Vec::new();
    for subnet in &subnets {
        let tables = ec2
            .describe_route_tables()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("association.subnet-id")
                    .values(subnet)
                    .build(),
            )
            .send()
            .await
            .aws("EC2")?;
        let nat_id = tables
            .route_tables()
            .iter()
            .flat_map(|t| t.routes())
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .and_then(|r| r.nat_gateway_id())
            .map(str::to_owned)
            .with_context(|| {
                format!("subnet {subnet} does not route 0.0.0.0/0 through a NAT gateway")
            })?;
        let nat = ec2
            .describe_nat_gateways()
            .nat_gateway_ids(&nat_id)
            .send()
            .await
            .aws("EC2")?;
        let public_ips: Vec<String> = nat
            .nat_gateways()
            .iter()
            .flat_map(|g| g.nat_gateway_addresses())
            .filter_map(|a| a.public_ip().map(str::to_owned))
            .collect();
        let Some(ip) = public_ips.iter().find(|ip| nat_eips.contains(ip)) else {
            bail!(
                "subnet {subnet} leaves through {nat_id} with addresses {public_ips:?}, none of the allowed {nat_eips:?}"
            );
        };
        routes.push(format!("{nat_id} → {ip}"));
    }
    routes.sort();
    routes.dedup();
    Ok(format!(
        "{} subnet(s) → {}",
        subnets.len(),
        routes.join(", ")
    ))
}

/// Every NAT gateway's Elastic IP, from the outputs (`nat_eips`; `nat_eip` for a stack
/// deployed before gateways were counted).
fn nat_eips(outputs: &Outputs) -> Result<Vec<String>> {
    let listed: Vec<String> = outputs
        .get("nat_eips")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        return Ok(vec![output_str(outputs, "nat_eip")?]);
    }
    Ok(listed)
}

/// A forged registration through the public edge must be refused (WAF or the api).
async fn probe(settings: &Settings) -> Result<String> {
    let url = format!("{}{}", settings.public_base_url(), settings.guard.path);
    let response = http()?
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"sub":"00000000-0000-4000-8000-000000000000","username":"probe"}"#)
        .send()
        .await;
    match response {
        Ok(r) if r.status().as_u16() == 403 => Ok(format!("{url} → 403")),
        Ok(r) => bail!("{url} answered {} to a forged registration", r.status()),
        Err(e) => Ok(format!("skipped: {url} does not answer ({e})")),
    }
}

/// The guard secret's description, or the error reading it, for one check's report.
fn described<'a>(
    secret: Result<&'a SecretDescription, &anyhow::Error>,
) -> Result<&'a SecretDescription> {
    secret.map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// The guard secret's rotation: the function is deployed and, where scheduled, attached; no
/// rotation is stuck half-way; and (where the ALB answers) the api accepts what Secrets Manager
/// holds. Reports every verifier's accepted version ids, never a value.
async fn secret_rotation(
    settings: &Settings,
    sdk: &SdkConfig,
    outputs: &Outputs,
    secret: Result<&SecretDescription, &anyhow::Error>,
) -> Result<String> {
    let function = output_str(outputs, "rotation_function_name")?;
    let function_arn = aws_sdk_lambda::Client::new(sdk)
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .aws("Lambda")?
        .function_arn
        .unwrap_or_default();
    let described = described(secret)?;
    let stages = described.version_ids_to_stages.clone().unwrap_or_default();
    let holder = |stage: &str| {
        stages
            .iter()
            .find(|(_, s)| s.iter().any(|s| s == stage))
            .map(|(id, _)| id.clone())
    };
    let current = holder("AWSCURRENT").context("the guard secret has no AWSCURRENT version")?;
    let previous = holder("AWSPREVIOUS");
    if let Some(pending) = holder("AWSPENDING").filter(|p| *p != current) {
        bail!(
            "version {pending} is still AWSPENDING: a rotation is running or stopped half-way \
             (see /aws/lambda/{function}); run `cargo xtask rotate-secret --env {}` once it ends",
            settings.env
        );
    }
    let schedule = if settings.deploy.secret_rotation_days == 0 {
        "no schedule (deploy.secret_rotation_days = 0)".to_owned()
    } else {
        let attached = described.rotation_lambda_arn().unwrap_or_default();
        if described.rotation_enabled != Some(true) || attached != function_arn {
            bail!(
                "rotation is not attached to {function} (enabled: {:?}, function: `{attached}`)",
                described.rotation_enabled
            );
        }
        format!(
            "every {} days by {function}",
            settings.deploy.secret_rotation_days
        )
    };
    let secrets_manager = format!(
        "Secrets Manager current {current}, previous {}",
        previous.as_deref().unwrap_or("none")
    );
    if settings.aws.endpoint_url.is_some() {
        return Ok(format!(
            "{schedule}; {secrets_manager}; api not asked (moto's ALB serves no traffic)"
        ));
    }
    let url = format!("{}/readyz", settings.public_base_url());
    let body: Value = http()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?
        .json()
        .await
        .with_context(|| format!("{url} is not JSON"))?;
    let api = &body["secret_versions"];
    let api_current = api["current"].as_str().unwrap_or("none");
    // Within one refresh interval of a rotation the api may still hold the one before.
    if api_current != current && Some(api_current) != previous.as_deref() {
        bail!("the api accepts {api} but Secrets Manager's current version is {current}");
    }
    Ok(format!("{schedule}; {secrets_manager}; api accepts {api}"))
}

#[cfg(test)]
mod tests {
    /// The regex `infra/edge.tf` gives local `name`, as WAF receives it.
    fn edge_shape(name: &str) -> regex_lite::Regex {
        let edge = include_str!("../../../infra/edge.tf");
        let line = edge
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in infra/edge.tf"));
        let value = line
            .split_once('"')
            .and_then(|(_, rest)| rest.rsplit_once('"'))
            .map(|(v, _)| v)
            .expect("a quoted string");
        regex_lite::Regex::new(value).expect("a valid regex")
    }

    /// The edge's hmac rule must let every real credential through and stop malformed ones:
    /// its shapes are checked against what the sender really signs.
    #[test]
    fn the_wafs_header_shapes_accept_every_real_signature_and_refuse_malformed_ones() {
        let (timestamp, signature) = (edge_shape("timestamp_shape"), edge_shape("signature_shape"));
        for n in 0..200u64 {
            let secret = shared_auth::generate_secret().expect("random");
            let ts = 1_700_000_000 + n * 7_919;
            let sig = shared_auth::sign(
                &secret,
                ts,
                "POST",
                "/user",
                format!("{{\"n\":{n}}}").as_bytes(),
            );
            assert!(timestamp.is_match(&ts.to_string()), "{ts}");
            assert!(signature.is_match(&sig), "{sig}");
            // During a rotation the sender may send two entries; a future version may add one.
            assert!(signature.is_match(&format!("{sig} {sig}")));
            assert!(signature.is_match(&format!("v2=abc {sig}")));
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
        let good = shared_auth::sign(&"k".repeat(43).into(), 1, "POST", "/user", b"{}");
        for bad in [
            String::new(),
            "v1=".to_owned(),
            "v1=abc".to_owned(),
            good.replace("v1=", "v2="),
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
            "registration-from-nat-only",
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
            "registration-signature-shape",
            not(path_match("/other", PositionalConstraint::Exactly)),
        );
        for rules in [
            vec![shape.clone(), source.clone()],
            vec![source.clone(), shape.clone()],
        ] {
            let found = waf_rule_ok(&rules, "/user", ip_set).expect("found");
            assert!(found.contains("registration-from-nat-only"), "{found}");
        }
        let err = waf_rule_ok(&[shape], "/user", ip_set).expect_err("no source rule");
        assert!(
            err.to_string().contains("registration-signature-shape"),
            "{err}"
        );
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
        assert!(
            managed_rules_spare_the_guarded_path(std::slice::from_ref(&scoped), "/user").is_ok()
        );
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
        assert!(no_sampled_requests(&acl(vec![quiet.clone()], false)).is_ok());
        let err = no_sampled_requests(&acl(vec![quiet.clone()], true)).expect_err("default");
        assert!(err.to_string().contains("(default action)"), "{err}");
        let mut loud = rate_rule("loud", None);
        loud.visibility_config = Some(visibility(true));
        let err = no_sampled_requests(&acl(vec![quiet, loud], false)).expect_err("rule");
        assert!(err.to_string().contains("loud"), "{err}");
    }

    #[test]
    fn both_modes_credential_headers_are_redacted_whichever_mode_is_active() {
        for mode in ["hmac", "static"] {
            let vars = HashMap::from([
                ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
                ("TOLLGATE__GUARD__MODE".to_owned(), mode.to_owned()),
                (
                    "TOLLGATE__GUARD__STATIC_HEADER".to_owned(),
                    "x-origin-verify".to_owned(),
                ),
            ]);
            let contract = shared_auth::load_for(Component::Lambda, &vars)
                .expect("local contract")
                .guard;
            let needed = credential_headers(&contract);
            for header in [
                "x-origin-verify",
                "x-tollgate-signature",
                "authorization",
                "cookie",
            ] {
                assert!(needed.iter().any(|h| h == header), "{mode:?}: {header}");
            }
            assert!(redaction_covers(&needed, &needed).is_ok());
            for dropped in &needed {
                let partial: Vec<String> =
                    needed.iter().filter(|h| h != &dropped).cloned().collect();
                let err = redaction_covers(&partial, &needed).expect_err(dropped);
                assert!(err.to_string().contains(dropped.as_str()), "{err}");
            }
        }
    }
}
