//! A task definition's `secrets` as ECS resolves them before the container starts: each
//! `valueFrom` a Secrets Manager secret's ARN, whole, or with a JSON key, a version stage or a
//! version id after it (`arn:…:secret:name-AbCdEf:json-key:version-stage:version-id`, each part
//! optional; Amazon ECS Developer Guide, *Pass Secrets Manager secrets through Amazon ECS
//! environment variables*). The task's execution role reads them (checked by IAM's rules
//! elsewhere); here the value is fetched from moto.

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::ExposeSecret;
use shared_aws::versions;

/// One parsed `valueFrom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFrom {
    /// The secret's ARN, without the optional parts.
    pub secret: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

impl ValueFrom {
    pub fn parse(value_from: &str) -> Result<Self> {
        let parts: Vec<&str> = value_from.split(':').collect();
        // arn, partition, service, region, account, "secret", name: seven parts.
        if parts.len() < 7
            || parts[0] != "arn"
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
        {
            bail!(
                "`{value_from}` is not a Secrets Manager secret's ARN (a Parameter Store `valueFrom` is not modelled)"
            );
        }
        if parts.len() > 10 {
            bail!(
                "`{value_from}` has more parts than arn:…:secret:name:json-key:version-stage:version-id"
            );
        }
        let part = |i: usize| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .map(|p| (*p).to_owned())
        };
        Ok(ValueFrom {
            secret: parts[..7].join(":"),
            json_key: part(7),
            version_stage: part(8),
            version_id: part(9),
        })
    }

    /// The value ECS would put in the variable.
    pub async fn resolve(&self, sm: &SecretsManager) -> Result<String> {
        // moto looks for AWSCURRENT on any version when no stage is named (infra/README.md).
        let stage = self.version_stage.as_deref().unwrap_or("AWSCURRENT");
        let version = versions::read(sm, &self.secret, self.version_id.as_deref(), Some(stage))
            .await
            .with_context(|| format!("cannot read {}", self.secret))?
            .with_context(|| format!("{} has no value", self.secret))?;
        let text = version.value.expose_secret().to_owned();
        let Some(key) = &self.json_key else {
            return Ok(text);
        };
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON, so it has no key `{key}`", self.secret))?;
        match &json[key] {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Null => bail!("{} has no key `{key}`", self.secret),
            other => Ok(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:rds!db-1-AbCdEf";

    #[test]
    fn every_form_ecs_documents_parses() {
        assert_eq!(
            ValueFrom::parse(ARN).expect("plain"),
            ValueFrom {
                secret: ARN.into(),
                json_key: None,
                version_stage: None,
                version_id: None
            }
        );
        let keyed = ValueFrom::parse(&format!("{ARN}:password::")).expect("json key");
        assert_eq!(keyed.json_key.as_deref(), Some("password"));
        assert_eq!(keyed.version_stage, None);
        let staged = ValueFrom::parse(&format!("{ARN}:username:AWSPREVIOUS:")).expect("stage");
        assert_eq!(staged.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let versioned = ValueFrom::parse(&format!("{ARN}:::0123-abcd")).expect("version id");
        assert_eq!(
            (versioned.json_key, versioned.version_id.as_deref()),
            (None, Some("0123-abcd"))
        );
    }

    #[test]
    fn what_ecs_would_refuse_is_refused() {
        for bad in [
            "arn:aws:ssm:ap-northeast-1:123456789012:parameter/x",
            "tollgate/staging/db-app",
            &format!("{ARN}:a:b:c:d"),
        ] {
            assert!(ValueFrom::parse(bad).is_err(), "{bad}");
        }
    }
}
