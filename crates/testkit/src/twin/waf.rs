//! The web ACL as WAF evaluates it, for the twin's load balancer: the rules as the stack
//! rendered them (read back from moto with `GetWebACL`, the IP sets and rule groups they name
//! with `GetIPSet` and `GetRuleGroup`), in priority order, each statement as WAF's developer
//! guide defines it, against the request the load balancer received and the address it came
//! from. moto stores web ACLs and evaluates none: this is the twin's WAF.
//!
//! Modelled: byte and regex matches on the URI path, a single header, the method or the query
//! string, after their text transformations (`NONE`, `URL_DECODE`, `LOWERCASE`,
//! `NORMALIZE_PATH`, `COMPRESS_WHITE_SPACE`); IP set references; `And`/`Or`/`Not`; rate-based
//! rules aggregated by IP with their scope-down statement; rule group references (their rules,
//! and the reference's override action); the actions block, allow and count; the default
//! action. Not modelled: AWS's managed rule groups (their rules are AWS's and not published
//! as data): in `count` (the stack's default) they change nothing, and in `enforce` the twin
//! says it cannot tell ([`Verdict::Unmodelled`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde_json::Value;

/// What WAF decides for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Blocked by the named rule.
    Block(String),
    /// A rule the twin cannot evaluate would decide (an enforced managed rule group).
    Unmodelled(String),
}

/// One request as WAF inspects it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query, still encoded.
    pub uri: String,
    /// Header names lower-cased; a repeated header appears once per line.
    pub headers: Vec<(String, String)>,
    /// The address the load balancer received the request from.
    pub client: IpAddr,
}

/// A web ACL ready to evaluate, with the rate rules' counts.
#[derive(Debug)]
pub struct WebAcl {
    name: String,
    default_allow: bool,
    rules: Vec<Value>,
    ip_sets: HashMap<String, Vec<IpNet>>,
    rule_groups: HashMap<String, Vec<Value>>,
    /// Rate rules' windows are divided by this (and their limits, rounded up), so a test
    /// reaches a limit at the same rate in a fraction of the time.
    rate_scale: u32,
    seen: Mutex<HashMap<(String, IpAddr), VecDeque<Instant>>>,
}

impl WebAcl {
    /// A web ACL from its `GetWebACL` document, with the IP sets' addresses and the rule
    /// groups' rules it names (by ARN).
    pub fn new(
        acl: &Value,
        ip_sets: HashMap<String, Vec<IpNet>>,
        rule_groups: HashMap<String, Vec<Value>>,
    ) -> Result<Self> {
        let mut rules: Vec<Value> = acl["Rules"].as_array().cloned().unwrap_or_default();
        rules.sort_by_key(|r| r["Priority"].as_i64().unwrap_or(i64::MAX));
        Ok(WebAcl {
            name: acl["Name"].as_str().unwrap_or("web ACL").to_owned(),
            default_allow: acl["DefaultAction"].get("Allow").is_some(),
            rules,
            ip_sets,
            rule_groups,
            rate_scale: 1,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The same, its rate rules' windows and limits divided by `scale`.
    pub fn with_rate_scale(mut self, scale: u32) -> Self {
        self.rate_scale = scale.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// WAF's decision on `request`: the first rule in priority order whose statement matches
    /// and whose action terminates (block, allow) decides; count goes on; else the default.
    pub fn evaluate(&self, request: &Request) -> Verdict {
        match self.first_terminating(&self.rules, request, "") {
            Some(verdict) => verdict,
            None if self.default_allow => Verdict::Allow,
            None => Verdict::Block(format!("{} (default action)", self.name)),
        }
    }

    fn first_terminating(
        &self,
        rules: &[Value],
        request: &Request,
        prefix: &str,
    ) -> Option<Verdict> {
        for rule in rules {
            let name = format!("{prefix}{}", rule["Name"].as_str().unwrap_or("?"));
            let statement = &rule["Statement"];
            if let Some(group) = statement.get("RuleGroupReferenceStatement") {
                let counted = rule["OverrideAction"].get("Count").is_some();
                let arn = group["ARN"].as_str().unwrap_or_default();
                let inner = self.rule_groups.get(arn).cloned().unwrap_or_default();
                match self.first_terminating(&inner, request, &format!("{name}/")) {
                    Some(verdict) if !counted => return Some(verdict),
                    _ => continue,
                }
            }
            if let Some(managed) = statement.get("ManagedRuleGroupStatement") {
                let counted = rule["OverrideAction"].get("Count").is_some();
                let scoped_out = managed
                    .get("ScopeDownStatement")
                    .is_some_and(|s| !self.matches(s, request, &name));
                if counted || scoped_out {
                    continue;
                }
                return Some(Verdict::Unmodelled(name));
            }
            if !self.matches(statement, request, &name) {
                continue;
            }
            let action = &rule["Action"];
            if action.get("Block").is_some() {
                return Some(Verdict::Block(name));
            }
            if action.get("Allow").is_some() {
                return Some(Verdict::Allow);
            }
        }
        None
    }

    /// Whether `statement` matches `request` (`rule` names the rule, for rate counts).
    fn matches(&self, statement: &Value, request: &Request, rule: &str) -> bool {
        if let Some(s) = statement.get("ByteMatchStatement") {
            let wanted = search_string(&s["SearchString"]);
            let position = s["PositionalConstraint"].as_str().unwrap_or("EXACTLY");
            return fields(s, request)
                .iter()
                .any(|v| byte_match(v, &wanted, position));
        }
        if let Some(s) = statement.get("RegexMatchStatement") {
            let Ok(regex) = regex_lite::Regex::new(s["RegexString"].as_str().unwrap_or_default())
            else {
                return false;
            };
            return fields(s, request).iter().any(|v| regex.is_match(v));
        }
        if let Some(s) = statement.get("IPSetReferenceStatement") {
            let arn = s["ARN"].as_str().unwrap_or_default();
            return self
                .ip_sets
                .get(arn)
                .is_some_and(|nets| nets.iter().any(|n| n.contains(&request.client)));
        }
        if let Some(s) = statement.get("NotStatement") {
            return !self.matches(&s["Statement"], request, rule);
        }
        if let Some(s) = statement.get("AndStatement") {
            return statements(s).iter().all(|s| self.matches(s, request, rule));
        }
        if let Some(s) = statement.get("OrStatement") {
            return statements(s).iter().any(|s| self.matches(s, request, rule));
        }
        if let Some(s) = statement.get("RateBasedStatement") {
            return self.rate(s, request, rule);
        }
        false
    }

    /// A rate-based statement: the requests of this client that its scope-down statement
    /// covers, counted over the window; it matches once they exceed the limit.
    fn rate(&self, s: &Value, request: &Request, rule: &str) -> bool {
        if let Some(scope) = s.get("ScopeDownStatement")
            && !self.matches(scope, request, rule)
        {
            return false;
        }
        let scale = u64::from(self.rate_scale);
        let window =
            Duration::from_secs(s["EvaluationWindowSec"].as_u64().unwrap_or(300)) / self.rate_scale;
        let limit = s["Limit"].as_u64().unwrap_or(u64::MAX).div_ceil(scale) as usize;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let times = seen.entry((rule.to_owned(), request.client)).or_default();
        let now = Instant::now();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            times.pop_front();
        }
        times.push_back(now);
        times.len() > limit
    }
}

fn statements(s: &Value) -> Vec<Value> {
    s["Statements"].as_array().cloned().unwrap_or_default()
}

/// A byte match's search string. The WAF API carries it as base64 of the bytes; moto 5.2.1
/// answers Python's rendering of the bytes (`b'/user'`), which is read here too.
fn search_string(value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    if let Some(inner) = text.strip_prefix("b'").and_then(|t| t.strip_suffix('\'')) {
        return inner.replace("\\\\", "\\").replace("\\'", "'");
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// The values of the statement's field in `request`, each after the text transformations in
/// their priority order. A missing header gives none (WAF's default for a missing field is
/// no match).
fn fields(s: &Value, request: &Request) -> Vec<String> {
    let field = &s["FieldToMatch"];
    let (path, query) = request
        .uri
        .split_once('?')
        .map_or((request.uri.as_str(), ""), |(p, q)| (p, q));
    let raw: Vec<String> = if field.get("UriPath").is_some() {
        vec![path.to_owned()]
    } else if field.get("QueryString").is_some() {
        vec![query.to_owned()]
    } else if field.get("Method").is_some() {
        vec![request.method.clone()]
    } else if let Some(header) = field.get("SingleHeader") {
        let name = header["Name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        request
            .headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .collect()
    } else {
        Vec::new()
    };
    let mut transformations: Vec<&Value> = s["TextTransformations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    transformations.sort_by_key(|t| t["Priority"].as_i64().unwrap_or(0));
    raw.into_iter()
        .map(|v| {
            transformations.iter().fold(v, |v, t| {
                transform(&v, t["Type"].as_str().unwrap_or("NONE"))
            })
        })
        .collect()
}

/// One text transformation (WAF Developer Guide, *Text transformation options*).
pub fn transform(value: &str, kind: &str) -> String {
    match kind {
        "URL_DECODE" => url_decode(value),
        "LOWERCASE" => value.to_ascii_lowercase(),
        "COMPRESS_WHITE_SPACE" => value.split_whitespace().collect::<Vec<_>>().join(" "),
        "NORMALIZE_PATH" => normalize_path(value),
        _ => value.to_owned(),
    }
}

fn url_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&value[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Multiple slashes to one, `.` segments dropped and `..` segments applied, except at the
/// start of the input.
fn normalize_path(value: &str) -> String {
    let absolute = value.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    for segment in value.split('/') {
        match segment {
            "" | "." => {}
            ".." if !kept.is_empty() && kept.last() != Some(&"..") => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let joined = kept.join("/");
    let trailing = value.len() > 1 && value.ends_with('/') && !joined.is_empty();
    format!(
        "{}{joined}{}",
        if absolute { "/" } else { "" },
        if trailing { "/" } else { "" }
    )
}

fn byte_match(value: &str, wanted: &str, position: &str) -> bool {
    match position {
        "EXACTLY" => value == wanted,
        "STARTS_WITH" => value.starts_with(wanted),
        "ENDS_WITH" => value.ends_with(wanted),
        "CONTAINS" => value.contains(wanted),
        "CONTAINS_WORD" => value
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| w == wanted),
        _ => false,
    }
}

/// What the load balancer tells the evaluator of the request it holds (set by its nginx;
/// every other header is the client's).
pub const METHOD_HEADER: &str = "x-twin-method";
pub const URI_HEADER: &str = "x-twin-uri";
pub const CLIENT_HEADER: &str = "x-twin-client";
/// The rule that blocked a request, on the evaluator's answer (and the load balancer's 403).
pub const RULE_HEADER: &str = "x-twin-waf-rule";

/// Serves `acl` on `listener` (in the load balancer's namespace) for nginx's `auth_request`:
/// 200 to let a request through, 403 naming the rule that blocks it. On a thread of its own.
pub fn serve(listener: std::net::TcpListener, acl: WebAcl) -> Result<()> {
    listener.set_nonblocking(true)?;
    let acl = std::sync::Arc::new(acl);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
                let acl = acl.clone();
                async move { decide(&acl, &headers) }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(())
}

fn decide(acl: &WebAcl, headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let Ok(client) = value(CLIENT_HEADER).parse() else {
        return (
            axum::http::StatusCode::FORBIDDEN,
            [(RULE_HEADER, "no client address")],
        )
            .into_response();
    };
    let request = Request {
        method: value(METHOD_HEADER),
        uri: value(URI_HEADER),
        headers: headers
            .iter()
            .filter(|(k, _)| !k.as_str().starts_with("x-twin-"))
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        client,
    };
    match acl.evaluate(&request) {
        Verdict::Allow => axum::http::StatusCode::OK.into_response(),
        Verdict::Block(rule) | Verdict::Unmodelled(rule) => {
            (axum::http::StatusCode::FORBIDDEN, [(RULE_HEADER, rule)]).into_response()
        }
    }
}

/// The web ACL named `name` in moto at `endpoint` (region `region`), with its IP sets and rule
/// groups, read back through the WAF API.
pub async fn read(endpoint: &str, region: &str, name: &str) -> Result<WebAcl> {
    let listed = call(
        endpoint,
        region,
        "ListWebACLs",
        serde_json::json!({"Scope": "REGIONAL"}),
    )
    .await?;
    let summary = listed["WebACLs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["Name"] == name)
        .with_context(|| format!("no web ACL {name}"))?;
    let acl = call(
        endpoint,
        region,
        "GetWebACL",
        serde_json::json!({"Name": name, "Scope": "REGIONAL", "Id": summary["Id"]}),
    )
    .await?["WebACL"]
        .clone();
    let mut ip_sets = HashMap::new();
    let mut rule_groups = HashMap::new();
    let mut arns = BTreeMap::new();
    collect_arns(&acl["Rules"], &mut arns);
    // A rule group's rules name IP sets of their own (the guarded route's module): read
    // whatever is named, the ACL's first, then what each group read back names.
    let mut read = std::collections::BTreeSet::new();
    while let Some((arn, kind)) = arns
        .iter()
        .find(|(arn, _)| !read.contains(*arn))
        .map(|(a, k)| (a.clone(), *k))
    {
        read.insert(arn.clone());
        // arn:aws:wafv2:<region>:<account>:regional/<kind>/<name>/<id>
        let parts: Vec<&str> = arn.rsplit('/').take(2).collect();
        let [id, name] = parts.as_slice() else {
            bail!("`{arn}` is not a WAF ARN");
        };
        if kind == "ipset" {
            let set = call(
                endpoint,
                region,
                "GetIPSet",
                serde_json::json!({"Name": name, "Scope": "REGIONAL", "Id": id}),
            )
            .await?;
            let nets = set["IPSet"]["Addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            ip_sets.insert(arn.clone(), nets);
        } else {
            let group = call(
                endpoint,
                region,
                "GetRuleGroup",
                serde_json::json!({"Name": name, "Scope": "REGIONAL", "Id": id}),
            )
            .await?;
            let mut rules: Vec<Value> = group["RuleGroup"]["Rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            rules.sort_by_key(|r| r["Priority"].as_i64().unwrap_or(i64::MAX));
            collect_arns(&Value::Array(rules.clone()), &mut arns);
            rule_groups.insert(arn.clone(), rules);
        }
    }
    WebAcl::new(&acl, ip_sets, rule_groups)
}

/// Every IP set and rule group ARN the rules name.
fn collect_arns(value: &Value, into: &mut BTreeMap<String, &'static str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let kind = match key.as_str() {
                    "IPSetReferenceStatement" => Some("ipset"),
                    "RuleGroupReferenceStatement" => Some("rulegroup"),
                    _ => None,
                };
                if let (Some(kind), Some(arn)) = (kind, inner["ARN"].as_str()) {
                    into.insert(arn.to_owned(), kind);
                }
                collect_arns(inner, into);
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_arns(v, into)),
        _ => {}
    }
}

async fn call(endpoint: &str, region: &str, action: &str, body: Value) -> Result<Value> {
    let answer = reqwest::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("AWSWAF_20190729.{action}"))
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{region}/wafv2/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("wafv2:{action}: the local AWS does not answer"))?;
    let status = answer.status();
    let json: Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("wafv2:{action} answered {status}: {json}");
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAT: &str = "127.9.9.9";
    const SET: &str = "arn:aws:wafv2:ap-northeast-1:1:regional/ipset/sources/1";

    fn path_match(position: &str) -> Value {
        json!({"ByteMatchStatement": {
            "SearchString": "b'/user'", "FieldToMatch": {"UriPath": {}}, "PositionalConstraint": position,
            "TextTransformations": [{"Priority": 2, "Type": "LOWERCASE"}, {"Priority": 1, "Type": "NORMALIZE_PATH"}, {"Priority": 0, "Type": "URL_DECODE"}]
        }})
    }

    const ROUTE: &str = "arn:aws:wafv2:ap-northeast-1:1:regional/rulegroup/route/1";

    /// The stack's web ACL as moto returns it (rules out of priority order), the guarded
    /// route's rules in their rule group (infra/modules/guarded-route), referred to with the
    /// override action `route_override`.
    fn acl_with(route_override: Value) -> WebAcl {
        let doc = json!({
            "Name": "tollgate-staging", "DefaultAction": {"Allow": {}},
            "Rules": [
                {"Name": "app-rate-limit", "Priority": 5, "Action": {"Block": {}}, "Statement": {"RateBasedStatement": {
                    "Limit": 100, "EvaluationWindowSec": 300, "AggregateKeyType": "IP",
                    "ScopeDownStatement": {"NotStatement": {"Statement": path_match("EXACTLY")}}}}},
                {"Name": "route", "Priority": 1, "OverrideAction": route_override, "Statement": {"RuleGroupReferenceStatement": {"ARN": ROUTE}}},
                {"Name": "AWSManagedRulesCommonRuleSet", "Priority": 10, "OverrideAction": {"Count": {}}, "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}}}
            ]
        });
        let route = vec![
            json!({"Name": "from-allowed-sources", "Priority": 1, "Action": {"Block": {}}, "Statement": {"AndStatement": {"Statements": [
                path_match("EXACTLY"),
                {"NotStatement": {"Statement": {"IPSetReferenceStatement": {"ARN": SET}}}}]}}}),
            json!({"Name": "signature-shape", "Priority": 2, "Action": {"Block": {}}, "Statement": {"AndStatement": {"Statements": [
                path_match("EXACTLY"),
                {"NotStatement": {"Statement": {"RegexMatchStatement": {"RegexString": "^[0-9]{1,12}$", "FieldToMatch": {"SingleHeader": {"Name": "Webhook-Timestamp"}}, "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}}}]}}}),
        ];
        WebAcl::new(
            &doc,
            HashMap::from([(
                SET.to_owned(),
                vec![format!("{NAT}/32").parse().expect("net")],
            )]),
            HashMap::from([(ROUTE.to_owned(), route)]),
        )
        .expect("acl")
    }

    fn acl() -> WebAcl {
        acl_with(json!({"None": {}}))
    }

    /// A reference WAF only counts decides nothing: the guarded path passes from anywhere.
    #[test]
    fn a_counted_rule_group_blocks_nothing() {
        let counted = acl_with(json!({"Count": {}}));
        let outsider = request("POST", "/user", "198.51.100.66", &[]);
        assert_eq!(counted.evaluate(&outsider), Verdict::Allow);
        assert_eq!(
            acl().evaluate(&outsider),
            Verdict::Block("route/from-allowed-sources".into())
        );
    }

    fn request(method: &str, uri: &str, client: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            client: client.parse().expect("ip"),
        }
    }

    #[test]
    fn the_guarded_path_in_any_spelling_is_blocked_from_outside_the_set() {
        let acl = acl();
        let stamp = [("webhook-timestamp", "1700000000")];
        for uri in [
            "/user",
            "/USER",
            "//user",
            "/%75ser",
            "/a/../user",
            "/./user",
            "/user?x=1",
        ] {
            assert_eq!(
                acl.evaluate(&request("POST", uri, "198.51.100.66", &stamp)),
                Verdict::Block("route/from-allowed-sources".into()),
                "{uri}"
            );
            assert_eq!(
                acl.evaluate(&request("POST", uri, NAT, &stamp)),
                Verdict::Allow,
                "{uri}"
            );
        }
        // Another path is app traffic.
        assert_eq!(
            acl.evaluate(&request("GET", "/users/me", "198.51.100.66", &[])),
            Verdict::Allow
        );
    }

    #[test]
    fn the_signature_headers_must_have_their_shape_even_from_the_nat() {
        let acl = acl();
        let blocked = Verdict::Block("route/signature-shape".into());
        assert_eq!(acl.evaluate(&request("POST", "/user", NAT, &[])), blocked);
        assert_eq!(
            acl.evaluate(&request(
                "POST",
                "/user",
                NAT,
                &[("webhook-timestamp", "soon")]
            )),
            blocked
        );
    }

    #[test]
    fn the_rate_rule_counts_everything_but_the_guarded_path() {
        let acl = acl().with_rate_scale(10);
        let stamp = [("webhook-timestamp", "1700000000")];
        // Limit 100 scaled by 10: the 11th request of a client within the window is blocked.
        for n in 1..=10 {
            assert_eq!(
                acl.evaluate(&request("GET", "/healthz", NAT, &[])),
                Verdict::Allow,
                "{n}"
            );
        }
        assert_eq!(
            acl.evaluate(&request("GET", "/healthz", NAT, &[])),
            Verdict::Block("app-rate-limit".into())
        );
        // The guarded path is never counted, however many registrations leave the NAT.
        for _ in 0..50 {
            assert_eq!(
                acl.evaluate(&request("POST", "/user", NAT, &stamp)),
                Verdict::Allow
            );
        }
        // Another client has its own count.
        assert_eq!(
            acl.evaluate(&request("GET", "/healthz", "198.51.100.66", &[])),
            Verdict::Allow
        );
    }

    #[test]
    fn transformations_are_waf_s() {
        assert_eq!(normalize_path("//a/./b/../c/"), "/a/c/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(url_decode("/%75ser%2fx"), "/user/x");
        assert_eq!(
            search_string(&json!("L3VzZXI=")),
            "/user",
            "the API's base64"
        );
        assert_eq!(
            search_string(&json!("b'/user'")),
            "/user",
            "moto's rendering"
        );
    }
}
