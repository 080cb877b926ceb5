//! What a person makes in an account before the first deploy, made in the local AWS: a
//! versioned state bucket and the hosted zone of the api's name (README, Deploying, step 1).
//! Plain REST calls rather than two more SDKs to compile: moto checks no signature, and finds
//! the service from the credential scope of the `Authorization` header ([`scope`]).

use anyhow::{Context, Result, bail};

/// The state bucket and the api's name and zone for `env`, made in the moto at `moto`, as the
/// `TOLLGATE__DEPLOY__…` variables that supply them.
pub async fn user_values(moto: &str, env: &str) -> Result<Vec<(String, String)>> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let http = reqwest::Client::new();
    let bucket = format!("tollgate-state-{env}-{}", &unique[..12]);
    for (query, body) in [
        (
            "",
            "<CreateBucketConfiguration><LocationConstraint>ap-northeast-1</LocationConstraint></CreateBucketConfiguration>",
        ),
        (
            "?versioning",
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
        ),
    ] {
        let answer = http
            .put(format!("{moto}/{bucket}{query}"))
            .body(body)
            .send()
            .await
            .context("moto does not answer")?;
        if !answer.status().is_success() {
            bail!("S3 {query}: {}", answer.status());
        }
    }
    let zone_name = format!("{env}.tollgate-{}.test", &unique[..8]);
    let created = http
        .post(format!("{moto}/2013-04-01/hostedzone"))
        .header("authorization", scope("route53"))
        .body(format!(
            "<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
             <Name>{zone_name}</Name><CallerReference>{unique}</CallerReference></CreateHostedZoneRequest>"
        ))
        .send()
        .await
        .context("moto does not answer")?
        .text()
        .await?;
    let zone_id = xml_value(&created, "Id")?
        .trim_start_matches("/hostedzone/")
        .to_owned();
    Ok(vec![
        ("TOLLGATE__DEPLOY__STATE_BUCKET".into(), bucket),
        (
            "TOLLGATE__DEPLOY__DOMAIN".into(),
            format!("api.{zone_name}"),
        ),
        ("TOLLGATE__DEPLOY__HOSTED_ZONE_ID".into(), zone_id),
    ])
}

/// An `Authorization` header naming `service` in its credential scope, for moto's routing.
pub fn scope(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

/// The text of the first `<tag>` in `xml`.
pub fn xml_value(xml: &str, tag: &str) -> Result<String> {
    let open = format!("<{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
        .map(|(value, _)| value.to_owned())
        .with_context(|| format!("no <{tag}> in {xml}"))
}
