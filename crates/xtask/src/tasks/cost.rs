//! `cargo xtask cost --env <env>`: what an environment costs a month standing still, and what a
//! million sign-ups add, from its contract (`deploy/<env>.toml`), the stack as checked in
//! (`infra/`) and the region's price table (`deploy/prices/<region>.toml`, data with its
//! sources). The Fargate line of the marginal cost comes from the bench's measured capacity of
//! one task (`infra/capacity.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use shared_auth::Settings;

use crate::flags;
use crate::support::context::{settings_for, workspace_root};

/// Hours in the month the estimate is for (AWS's calculator uses 730).
const HOURS_PER_MONTH: f64 = 730.0;

/// One region's price table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// The date the values were compared with their pages, or `unverified`.
    pub checked: String,
    pub prices: BTreeMap<String, Price>,
    pub per_sign_up: PerSignUp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub per: String,
    pub source: String,
}

/// What one sign-up uses where no bench here measures it, and the bench's capacity figure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSignUp {
    pub lambda_billed_ms: f64,
    pub nat_bytes: f64,
    pub log_bytes: f64,
    pub secret_reads: f64,
}

/// What the estimate reads of an environment.
#[derive(Debug, Clone)]
pub struct Shape {
    pub region: String,
    pub nat_gateways: u32,
    pub azs: u32,
    pub api_min_count: u32,
    pub api_max_count: u32,
    pub api_vcpu: f64,
    pub api_memory_gb: f64,
    pub api_architecture: String,
    pub lambda_memory_gb: f64,
    pub lambda_architecture: String,
    pub db_instance_class: String,
    pub db_multi_az: bool,
    pub db_storage_gb: f64,
    pub secrets: u32,
    pub waf_rules: u32,
    pub alarms: u32,
    pub metrics: u32,
    /// Accepted registrations one api task serves at its knee (`infra/capacity.toml`).
    pub sign_ups_per_task_s: f64,
}

/// One line of the estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub what: String,
    pub usd: f64,
}

#[derive(Debug)]
pub struct Estimate {
    /// A month at the autoscaling floor with no sign-ups.
    pub fixed: Vec<Line>,
    /// What the api tasks add at the autoscaling ceiling, a month.
    pub at_max: f64,
    /// A million sign-ups.
    pub per_million: Vec<Line>,
}

impl PriceTable {
    /// The table for `region` under `dir`; refused, naming the region and the tables there are,
    /// when there is none.
    pub fn for_region(dir: &Path, region: &str) -> Result<Self> {
        let path = dir.join(format!("{region}.toml"));
        if !path.is_file() {
            let mut have: Vec<String> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter_map(|n| n.strip_suffix(".toml").map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            have.sort();
            bail!(
                "no price table for region `{region}` ({} is missing; tables exist for: {}). \
                 Add one with each price's source page",
                path.display(),
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            );
        }
        Self::parse(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("the price table {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The price named `key`, which must be per `per`.
    fn usd(&self, key: &str, per: &str) -> Result<f64> {
        let price = self
            .prices
            .get(key)
            .with_context(|| format!("the price table has no `{key}`"))?;
        if price.per != per {
            bail!(
                "`{key}` is per {}, the estimate needs it per {per}",
                price.per
            );
        }
        Ok(price.usd)
    }
}

/// The estimate for `shape` at `table`'s prices.
pub fn estimate(shape: &Shape, table: &PriceTable) -> Result<Estimate> {
    let task_hour = task_hour(shape, table)?;
    Ok(Estimate {
        fixed: fixed(shape, table, task_hour)?,
        at_max: f64::from(shape.api_max_count - shape.api_min_count) * task_hour * HOURS_PER_MONTH,
        per_million: per_million(shape, table, task_hour)?,
    })
}

/// One api task for an hour.
fn task_hour(shape: &Shape, table: &PriceTable) -> Result<f64> {
    let hour = |key: &str| table.usd(key, "hour");
    Ok(
        hour(&format!("fargate_vcpu_{}", shape.api_architecture))? * shape.api_vcpu
            + hour(&format!("fargate_gb_{}", shape.api_architecture))? * shape.api_memory_gb,
    )
}

/// A month at the autoscaling floor, no sign-ups.
fn fixed(shape: &Shape, table: &PriceTable, task_hour: f64) -> Result<Vec<Line>> {
    let hour = |key: &str| table.usd(key, "hour");
    let month = |key: &str| table.usd(key, "month");
    let db_copies = if shape.db_multi_az { 2.0 } else { 1.0 };
    let line = |what: String, usd: f64| Line { what, usd };
    let fixed = vec![
        line(
            format!("NAT gateway × {}", shape.nat_gateways),
            f64::from(shape.nat_gateways) * hour("nat_gateway")? * HOURS_PER_MONTH,
        ),
        line(
            format!(
                "public IPv4 × {} (the NAT's Elastic IPs, the ALB's in {} AZs)",
                shape.nat_gateways + shape.azs,
                shape.azs
            ),
            f64::from(shape.nat_gateways + shape.azs) * hour("public_ipv4")? * HOURS_PER_MONTH,
        ),
        line(
            "Application Load Balancer".into(),
            hour("alb")? * HOURS_PER_MONTH,
        ),
        line(
            format!(
                "Fargate: {} api tasks ({} vCPU, {} GB, {})",
                shape.api_min_count, shape.api_vcpu, shape.api_memory_gb, shape.api_architecture
            ),
            f64::from(shape.api_min_count) * task_hour * HOURS_PER_MONTH,
        ),
        line(
            format!(
                "RDS PostgreSQL {}{}",
                shape.db_instance_class,
                if shape.db_multi_az { ", Multi-AZ" } else { "" }
            ),
            db_copies
                * hour(&format!("rds_postgres_{}", shape.db_instance_class))?
                * HOURS_PER_MONTH,
        ),
        line(
            format!("RDS storage, {} GB gp2", shape.db_storage_gb),
            db_copies * shape.db_storage_gb * month("rds_storage_gp2")?,
        ),
        line(
            format!("Secrets Manager × {}", shape.secrets),
            f64::from(shape.secrets) * month("secret")?,
        ),
        line(
            format!("WAF web ACL and {} rules", shape.waf_rules),
            month("waf_web_acl")? + f64::from(shape.waf_rules) * month("waf_rule")?,
        ),
        line(
            format!(
                "CloudWatch: {} alarms, {} custom metrics",
                shape.alarms, shape.metrics
            ),
            f64::from(shape.alarms) * month("cloudwatch_alarm")?
                + f64::from(shape.metrics) * month("cloudwatch_metric")?,
        ),
    ];
    Ok(fixed)
}

/// What a million sign-ups add.
fn per_million(shape: &Shape, table: &PriceTable, task_hour: f64) -> Result<Vec<Line>> {
    let line = |what: String, usd: f64| Line { what, usd };
    let n = 1e6;
    let per = &table.per_sign_up;
    if shape.sign_ups_per_task_s <= 0.0 {
        bail!(
            "no measured capacity: put the knee of `cargo xtask bench --only capacity` in \
             infra/capacity.toml"
        );
    }
    let million = |key: &str| table.usd(key, "million");
    let gb = |key: &str| table.usd(key, "gb");
    let per_million = vec![
        line("Lambda requests".into(), million("lambda_request")?),
        line(
            format!(
                "Lambda duration ({} ms at {} GB)",
                per.lambda_billed_ms, shape.lambda_memory_gb
            ),
            n * per.lambda_billed_ms / 1e3
                * shape.lambda_memory_gb
                * table.usd(
                    &format!("lambda_{}", shape.lambda_architecture),
                    "gb_second",
                )?,
        ),
        line(
            format!("NAT data processed ({} bytes each)", per.nat_bytes),
            n * per.nat_bytes / 1e9 * gb("nat_gateway_data")?,
        ),
        line(
            // One new connection per sign-up: 25 new connections a second is one LCU.
            "ALB capacity units (one new connection each)".into(),
            n / (25.0 * 3600.0) * table.usd("alb_lcu", "lcu_hour")?,
        ),
        line(
            format!(
                "Fargate time ({} sign-ups/s per task, measured)",
                shape.sign_ups_per_task_s
            ),
            n / shape.sign_ups_per_task_s / 3600.0 * task_hour,
        ),
        line("WAF requests".into(), million("waf_request")?),
        line(
            format!("Secrets Manager reads ({} per sign-up)", per.secret_reads),
            per.secret_reads * million("secret_api_calls")?,
        ),
        line(
            format!("CloudWatch Logs ({} bytes each)", per.log_bytes),
            n * per.log_bytes / 1e9 * gb("cloudwatch_logs_ingest")?,
        ),
        line(
            "Route 53 queries (one each)".into(),
            million("route53_query")?,
        ),
    ];
    Ok(per_million)
}

/// The largest line of `lines`.
pub fn largest(lines: &[Line]) -> Option<&Line> {
    lines.iter().max_by(|a, b| a.usd.total_cmp(&b.usd))
}

pub fn total(lines: &[Line]) -> f64 {
    lines.iter().map(|l| l.usd).sum()
}

/// The environment's shape from its contract and the stack as checked in.
fn shape(settings: &Settings, measured: &Measured) -> Result<Shape> {
    let infra = workspace_root().join("infra");
    let read = |file: &str| {
        std::fs::read_to_string(infra.join(file)).with_context(|| format!("infra/{file}"))
    };
    let d = &settings.deploy;
    let edge = read("edge.tf")?;
    let azs = 2; // infra/locals.tf: the first two of the region's zones
    let web_acl = block(&edge, "resource \"aws_wafv2_web_acl\"");
    let route = read("modules/guarded-route/main.tf")?;
    let route_rules = block(&route, "resource \"aws_wafv2_rule_group\"");
    Ok(Shape {
        region: settings
            .aws
            .region
            .clone()
            .context("the contract names no aws.region")?,
        nat_gateways: if d.nat_gateways == "per-az" { azs } else { 1 },
        azs,
        api_min_count: d.api_min_count,
        api_max_count: d.api_max_count,
        api_vcpu: api_task_vcpu()?,
        api_memory_gb: shared_auth::settings::capacity::API_TASK_MEMORY_MIB as f64 / 1024.0,
        api_architecture: d.api_architecture.clone(),
        lambda_memory_gb: lambda_memory_mb()? / 1024.0,
        lambda_architecture: d.lambda_architecture.clone(),
        db_instance_class: d.db_instance_class.clone(),
        db_multi_az: d.db_multi_az,
        db_storage_gb: number_after(&read("data.tf")?, "allocated_storage")?,
        // The guard's and the database master's (RDS-managed) secret.
        secrets: 2,
        // The web ACL's own rules and the guarded route's (its module's rule group).
        waf_rules: [web_acl, route_rules]
            .iter()
            .map(|b| b.lines().filter(|l| l.trim() == "rule {").count() as u32)
            .sum(),
        alarms: read("alarms.tf")?
            .matches("resource \"aws_cloudwatch_metric_alarm\"")
            .count() as u32,
        metrics: 0,
        sign_ups_per_task_s: measured.sign_ups_per_task_s,
    })
}

/// CPU units of the api's task in `infra/service.tf` (`cpu = 256`), as vCPUs.
pub fn api_task_vcpu() -> Result<f64> {
    Ok(infra_number(
        "service.tf",
        "resource \"aws_ecs_task_definition\" \"api\"",
        "cpu",
    )? / 1024.0)
}

/// The sign-up function's memory in `infra/post_confirm.tf`, in MB.
pub fn lambda_memory_mb() -> Result<f64> {
    infra_number(
        "post_confirm.tf",
        "resource \"aws_lambda_function\"",
        "memory_size",
    )
}

/// The number `key = N` first set in the block `start` opens in `infra/<file>`.
fn infra_number(file: &str, start: &str, key: &str) -> Result<f64> {
    let path = workspace_root().join("infra").join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let found = block(&text, start);
    if found.is_empty() {
        bail!("no `{start}` in {}", path.display());
    }
    number_after(found, key).with_context(|| format!("in `{start}` of {}", path.display()))
}

/// The autoscaling target keeps each task at this share of its knee: the room for the load
/// that arrives while a new task starts (scale-out cooldown 60 s, a task's start about as long).
pub const TARGET_SHARE_OF_KNEE: f64 = 0.6;

/// The ALB requests per task per minute (`ALBRequestCountPerTarget` is a one-minute sum) that
/// keeps a task at [`TARGET_SHARE_OF_KNEE`] of the smaller of the routes' knees.
pub fn request_target(knees_rps: &[f64]) -> Option<u64> {
    let lowest = knees_rps.iter().copied().reduce(f64::min)?;
    Some((lowest * TARGET_SHARE_OF_KNEE * 60.0).floor() as u64)
}

/// One api task's measured knees (`infra/capacity.toml`, from `cargo xtask bench --only
/// capacity`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    pub measured: String,
    pub sign_ups_per_task_s: f64,
    pub users_me_per_task_s: f64,
}

impl Measured {
    pub fn checked_in() -> Result<Self> {
        let path = workspace_root().join("infra").join("capacity.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }
}

/// `text` from `start` to the next top-level `resource`/`data` block.
fn block<'a>(text: &'a str, start: &str) -> &'a str {
    let Some(at) = text.find(start) else {
        return "";
    };
    let rest = &text[at..];
    let end = rest[1..]
        .find("\nresource ")
        .or_else(|| rest[1..].find("\ndata "))
        .map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// The number in the first `key = N` line of `text`.
fn number_after(text: &str, key: &str) -> Result<f64> {
    text.lines()
        .find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
        })
        .with_context(|| format!("no numeric `{key} =`"))
}

impl flags::Cost {
    pub fn run(self) -> Result<()> {
        let envs = if self.env.is_empty() {
            vec!["staging".to_owned(), "production".to_owned()]
        } else {
            self.env
        };
        let m = Measured::checked_in()?;
        for env in envs {
            let settings = settings_for(&env)?;
            let shape = shape(&settings, &m)?;
            let table = PriceTable::for_region(
                &workspace_root().join("deploy").join("prices"),
                &shape.region,
            )?;
            let estimate = estimate(&shape, &table)?;
            print(&env, &shape, &table, &estimate);
        }
        println!(
            "\none api task's knees (infra/capacity.toml; {}): {} sign-ups/s, {} GET /users/me/s",
            m.measured, m.sign_ups_per_task_s, m.users_me_per_task_s
        );
        if let Some(target) = request_target(&[m.sign_ups_per_task_s, m.users_me_per_task_s]) {
            println!(
                "ALBRequestCountPerTarget for {:.0} % of the lower knee: {target} per task per minute \
                 (infra/service.tf)",
                TARGET_SHARE_OF_KNEE * 100.0
            );
        }
        Ok(())
    }
}

fn print(env: &str, shape: &Shape, table: &PriceTable, e: &Estimate) {
    println!(
        "\n{env} ({}), prices checked: {}",
        shape.region, table.checked
    );
    if table.checked == "unverified" {
        println!(
            "  (UNVERIFIED prices: compare deploy/prices/{}.toml with its pages before quoting)",
            shape.region
        );
    }
    print_lines("a month at the floor, no sign-ups", &e.fixed);
    println!(
        "  + {:.2} USD a month with the api at its ceiling ({} tasks)",
        e.at_max, shape.api_max_count
    );
    let mut sources: Vec<&str> = table.prices.values().map(|p| p.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    print_lines("a million sign-ups add", &e.per_million);
    println!("  prices from: {}", sources.join(", "));
}

/// `lines` under `title`, their total and the largest.
fn print_lines(title: &str, lines: &[Line]) {
    println!("  {title}:");
    for l in lines {
        println!("    {:>9.2} USD  {}", l.usd, l.what);
    }
    println!("    {:>9.2} USD  total", total(lines));
    if let Some(l) = largest(lines) {
        println!("    largest: {}", l.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_target_is_a_share_of_the_lower_knee_per_minute() {
        // 0.6 × 300 req/s × 60 s.
        assert_eq!(request_target(&[1000.0, 300.0]), Some(10_800));
        assert_eq!(request_target(&[]), None);
    }

    #[test]
    fn the_autoscaling_request_target_is_derived_from_the_measured_knee() {
        let measured = Measured::checked_in().expect("infra/capacity.toml");
        let expected = request_target(&[measured.sign_ups_per_task_s, measured.users_me_per_task_s])
            .expect("two knees") as f64;
        let service = std::fs::read_to_string(workspace_root().join("infra/service.tf"))
            .expect("infra/service.tf");
        let policy = block(
            &service,
            "resource \"aws_appautoscaling_policy\" \"api_requests\"",
        );
        let target = number_after(policy, "target_value").expect("its target_value");
        assert_eq!(
            target, expected,
            "infra/service.tf's ALBRequestCountPerTarget target is not 60 % of the lower knee \
             in infra/capacity.toml, per minute"
        );
    }

    /// Round numbers, so the totals below are computed by hand.
    const TABLE: &str = r#"
checked = "2026-12-07"
[prices]
nat_gateway = { usd = 0.1, per = "hour", source = "x" }
public_ipv4 = { usd = 0.01, per = "hour", source = "x" }
alb = { usd = 0.02, per = "hour", source = "x" }
fargate_vcpu_arm64 = { usd = 0.04, per = "hour", source = "x" }
fargate_gb_arm64 = { usd = 0.004, per = "hour", source = "x" }
"rds_postgres_db.t4g.micro" = { usd = 0.03, per = "hour", source = "x" }
rds_storage_gp2 = { usd = 0.1, per = "month", source = "x" }
secret = { usd = 0.4, per = "month", source = "x" }
secret_api_calls = { usd = 5.0, per = "million", source = "x" }
waf_web_acl = { usd = 5.0, per = "month", source = "x" }
waf_rule = { usd = 1.0, per = "month", source = "x" }
waf_request = { usd = 0.6, per = "million", source = "x" }
cloudwatch_alarm = { usd = 0.1, per = "month", source = "x" }
cloudwatch_metric = { usd = 0.3, per = "month", source = "x" }
cloudwatch_logs_ingest = { usd = 0.5, per = "gb", source = "x" }
lambda_request = { usd = 0.2, per = "million", source = "x" }
lambda_arm64 = { usd = 0.00001, per = "gb_second", source = "x" }
nat_gateway_data = { usd = 0.05, per = "gb", source = "x" }
alb_lcu = { usd = 0.009, per = "lcu_hour", source = "x" }
route53_query = { usd = 0.4, per = "million", source = "x" }
[per_sign_up]
lambda_billed_ms = 100
nat_bytes = 10000
log_bytes = 2000
secret_reads = 0.1
"#;

    fn shape() -> Shape {
        Shape {
            region: "xx-test-1".into(),
            nat_gateways: 1,
            azs: 2,
            api_min_count: 2,
            api_max_count: 4,
            api_vcpu: 0.25,
            api_memory_gb: 0.5,
            api_architecture: "arm64".into(),
            lambda_memory_gb: 0.125,
            lambda_architecture: "arm64".into(),
            db_instance_class: "db.t4g.micro".into(),
            db_multi_az: true,
            db_storage_gb: 20.0,
            secrets: 2,
            waf_rules: 3,
            alarms: 5,
            metrics: 0,
            sign_ups_per_task_s: 100.0,
        }
    }

    #[test]
    fn a_small_table_gives_the_totals_worked_by_hand() {
        let table = PriceTable::parse(TABLE).expect("the table");
        let e = estimate(&shape(), &table).expect("an estimate");
        // NAT 0.1 × 730 = 73; IPv4 3 × 0.01 × 730 = 21.9; ALB 0.02 × 730 = 14.6;
        // Fargate 2 × (0.25 × 0.04 + 0.5 × 0.004 = 0.012) × 730 = 17.52;
        // RDS 2 × 0.03 × 730 = 43.8; storage 2 × 20 × 0.1 = 4; secrets 0.8; WAF 5 + 3 = 8;
        // alarms 0.5. Sum: 184.12.
        assert!((total(&e.fixed) - 184.12).abs() < 1e-6, "{:?}", e.fixed);
        assert_eq!(
            largest(&e.fixed).map(|l| l.what.as_str()),
            Some("NAT gateway × 1")
        );
        // Two more tasks: 2 × 0.012 × 730 = 17.52.
        assert!((e.at_max - 17.52).abs() < 1e-6);
        // A million: requests 0.2; duration 1e6 × 0.1 s × 0.125 GB × 1e-5 = 0.125;
        // NAT 10 GB × 0.05 = 0.5; LCU 1e6 / 90,000 × 0.009 = 0.1; Fargate 1e6 / 100 =
        // 10,000 task-seconds = 2.777… task-hours × 0.012 = 0.0333…; WAF 0.6;
        // secrets 0.1 × 5 = 0.5; logs 2 GB × 0.5 = 1; Route 53 0.4. Sum: 3.458333…
        assert!(
            (total(&e.per_million) - 3.458_333_333).abs() < 1e-6,
            "{:?}",
            e.per_million
        );
        assert!(
            largest(&e.per_million).is_some_and(|l| l.what.starts_with("CloudWatch Logs")),
            "{:?}",
            e.per_million
        );
    }

    #[test]
    fn a_region_without_a_table_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("tollgate-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("xx-test-1.toml"), TABLE).expect("table");
        let error = PriceTable::for_region(&dir, "eu-nowhere-9")
            .expect_err("no table")
            .to_string();
        assert!(
            error.contains("`eu-nowhere-9`") && error.contains("xx-test-1"),
            "{error}"
        );
        assert!(PriceTable::for_region(&dir, "xx-test-1").is_ok());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_price_in_the_wrong_unit_or_missing_is_an_error_not_a_zero() {
        let wrong = TABLE.replace(
            r#"nat_gateway = { usd = 0.1, per = "hour""#,
            r#"nat_gateway = { usd = 0.1, per = "month""#,
        );
        let error = estimate(&shape(), &PriceTable::parse(&wrong).expect("table"))
            .expect_err("wrong unit")
            .to_string();
        assert!(error.contains("nat_gateway"), "{error}");
        let missing = TABLE.replace(r#"alb = { usd = 0.02, per = "hour", source = "x" }"#, "");
        let error = estimate(&shape(), &PriceTable::parse(&missing).expect("table"))
            .expect_err("missing")
            .to_string();
        assert!(error.contains("`alb`"), "{error}");
    }

    #[test]
    fn the_shipped_environments_are_estimated_from_the_checked_in_table() {
        for env in ["staging", "production"] {
            let settings = settings_for(env).expect("the contract");
            let measured = Measured::checked_in().expect("infra/capacity.toml");
            let shape = super::shape(&settings, &measured).expect("the shape");
            assert!(shape.waf_rules > 0 && shape.alarms > 0, "{shape:?}");
            let table = PriceTable::for_region(
                &workspace_root().join("deploy").join("prices"),
                &shape.region,
            )
            .expect("the region's table");
            let e = estimate(&shape, &table).expect("an estimate");
            assert!(total(&e.fixed) > 0.0 && total(&e.per_million) > 0.0);
        }
    }
}
