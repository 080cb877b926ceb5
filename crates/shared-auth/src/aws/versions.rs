//! The one reader of the guard secret's versions: which values are accepted, by which
//! Secrets Manager version. The api's verifier, the WAF's rule group, the rotation function,
//! `deploy` and `verify` all read through here, so the edge and the api can never accept
//! different sets.
//!
//! The rule, in one place:
//! - `AWSCURRENT` must exist and hold a value.
//! - `AWSPREVIOUS` and `AWSPENDING` count only when they hold a value, on a version other than
//!   one already counted, with a value other than one already counted (a rotation's
//!   configuration test stages a copy of the current value; counting it adds nothing).
//! - Nothing here judges a value's length or shape: [`crate::SecretSet`] does, for the
//!   verifier.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::{ExposeSecret, SecretString};

use crate::SecretVersion;

/// The stage names Secrets Manager gives versions.
pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const PENDING: &str = "AWSPENDING";

/// One version: its id, value and creation time (unix seconds). `Debug` hides the value.
#[derive(Clone)]
pub struct Version {
    pub id: String,
    pub value: SecretString,
    pub created_s: Option<i64>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("value", &"[redacted]")
            .field("created_s", &self.created_s)
            .finish()
    }
}

/// The versions a verifier should accept, by stage.
#[derive(Debug, Clone)]
pub struct Versions {
    pub current: Version,
    pub previous: Option<Version>,
    pub pending: Option<Version>,
}

impl Versions {
    /// Applies the rule to what the stages hold.
    pub fn from_stages(
        current: Option<Version>,
        previous: Option<Version>,
        pending: Option<Version>,
    ) -> Result<Self, VersionsError> {
        let usable = |v: Option<Version>| v.filter(|v| !v.value.expose_secret().is_empty());
        let current = usable(current).ok_or(VersionsError::NoCurrent)?;
        let mut counted = vec![current.clone()];
        let mut keep = |v: Option<Version>| {
            let v = usable(v)?;
            let seen = counted
                .iter()
                .any(|c| c.id == v.id || c.value.expose_secret() == v.value.expose_secret());
            if seen {
                return None;
            }
            counted.push(v.clone());
            Some(v)
        };
        let previous = keep(previous);
        let pending = keep(pending);
        Ok(Self {
            current,
            previous,
            pending,
        })
    }

    /// Every accepted version with its stage, current first.
    pub fn all(&self) -> impl Iterator<Item = (SecretVersion, &Version)> {
        std::iter::once((SecretVersion::Current, &self.current))
            .chain(self.previous.iter().map(|v| (SecretVersion::Previous, v)))
            .chain(self.pending.iter().map(|v| (SecretVersion::Pending, v)))
    }
}

/// Why the versions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("the secret has no AWSCURRENT version with a value")]
    NoCurrent,
    #[error("Secrets Manager: {0}")]
    Aws(String),
}

/// The version holding `stage`, from DescribeSecret's `VersionIdsToStages`.
pub fn holder<'a>(stages: &'a HashMap<String, Vec<String>>, stage: &str) -> Option<&'a str> {
    stages
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == stage))
        .map(|(id, _)| id.as_str())
}

/// The version at `stage` of `secret_id`; `None` when no version holds the stage. Named by
/// stage: moto's unnamed read stays on an old version after a promotion.
pub async fn at_stage(
    sm: &SecretsManager,
    secret_id: &str,
    stage: &str,
) -> Result<Option<Version>, VersionsError> {
    read(sm, secret_id, None, stage).await
}

/// Version `version_id` of `secret_id` if it holds `stage` (and a value); `None` otherwise.
pub async fn at_version(
    sm: &SecretsManager,
    secret_id: &str,
    version_id: &str,
    stage: &str,
) -> Result<Option<Version>, VersionsError> {
    Ok(read(sm, secret_id, Some(version_id), stage)
        .await?
        .filter(|v| !v.value.expose_secret().is_empty()))
}

async fn read(
    sm: &SecretsManager,
    secret_id: &str,
    version_id: Option<&str>,
    stage: &str,
) -> Result<Option<Version>, VersionsError> {
    let result = sm
        .get_secret_value()
        .secret_id(secret_id)
        .set_version_id(version_id.map(str::to_owned))
        .version_stage(stage)
        .send()
        .await;
    match result {
        Ok(out) => Ok(Some(Version {
            id: out.version_id.unwrap_or_default(),
            value: SecretString::from(out.secret_string.unwrap_or_default()),
            created_s: out.created_date.map(|d| d.secs()),
        })),
        // No version holds the stage (or, in moto, it holds no value).
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_resource_not_found_exception() || s.is_invalid_request_exception()
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(VersionsError::Aws(DisplayErrorContext(&e).to_string())),
    }
}

/// The versions of `secret_id` a verifier accepts now ([`Versions::from_stages`]).
pub async fn accepted(sm: &SecretsManager, secret_id: &str) -> Result<Versions, VersionsError> {
    let current = at_stage(sm, secret_id, CURRENT).await?;
    let previous = at_stage(sm, secret_id, PREVIOUS).await?;
    let pending = at_stage(sm, secret_id, PENDING).await?;
    Versions::from_stages(current, previous, pending)
}

/// The current version alone: what a sender signs with.
pub async fn current(sm: &SecretsManager, secret_id: &str) -> Result<Version, VersionsError> {
    Versions::from_stages(at_stage(sm, secret_id, CURRENT).await?, None, None).map(|v| v.current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, value: &str) -> Option<Version> {
        Some(Version {
            id: id.into(),
            value: value.into(),
            created_s: None,
        })
    }

    #[test]
    fn one_rule_for_empty_duplicated_and_copied_versions() {
        let all = Versions::from_stages(v("c", "one"), v("p", "two"), v("n", "three")).expect("ok");
        let ids: Vec<&str> = all.all().map(|(_, v)| v.id.as_str()).collect();
        assert_eq!(ids, ["c", "p", "n"]);
        // Pending on the current version (moto after a promotion), or a copy of its value (a
        // configuration test), or empty (staged, not yet written): not counted.
        for pending in [v("c", "one"), v("n", "one"), v("n", "")] {
            let set = Versions::from_stages(v("c", "one"), v("p", "two"), pending).expect("ok");
            assert!(set.pending.is_none());
            assert_eq!(set.previous.as_ref().map(|p| p.id.as_str()), Some("p"));
        }
        assert!(matches!(
            Versions::from_stages(v("c", ""), None, None),
            Err(VersionsError::NoCurrent)
        ));
        assert!(matches!(
            Versions::from_stages(None, v("p", "two"), None),
            Err(VersionsError::NoCurrent)
        ));
        assert!(
            !format!("{all:?}").contains("three"),
            "values are never shown"
        );
    }

    #[test]
    fn the_holder_of_a_stage_is_named() {
        let stages = HashMap::from([
            ("a".to_owned(), vec![CURRENT.to_owned()]),
            ("b".to_owned(), vec![PREVIOUS.to_owned()]),
            ("c".to_owned(), vec![]),
        ]);
        assert_eq!(holder(&stages, CURRENT), Some("a"));
        assert_eq!(holder(&stages, PREVIOUS), Some("b"));
        assert_eq!(holder(&stages, PENDING), None);
    }
}
