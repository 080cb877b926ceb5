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
//! - `AWSPREVIOUS` counts only for `guard.previous_grace_s` after the current version was
//!   created: long enough for every sender's cache, and no longer, so a leaked value dies
//!   with the grace (or at once, when `cargo xtask rotate-secret --revoke-previous` removes
//!   the stage).
//! - `AWSPENDING` counts only while a rotation can be in progress: its version is newer than
//!   the current one and younger than the longest a rotation runs. A pending version a
//!   failed rotation left behind, or one staged by hand, opens nothing.
//! - Nothing here judges a value's length or shape: [`shared_auth::SecretSet`] does, for the
//!   verifier.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use secrecy::{ExposeSecret, SecretString};

use shared_auth::SecretVersion;

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

/// How long the stages besides `AWSCURRENT` count, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acceptance {
    /// `AWSPREVIOUS` counts until this long after the current version was created.
    pub previous_grace_s: u64,
    /// `AWSPENDING` counts until this long after it was created (a rotation's longest run).
    pub rotation_s: u64,
}

impl Acceptance {
    /// The contract's windows: `guard.previous_grace_s`, and the longest rotation for the api's
    /// refresh interval.
    pub fn for_settings(settings: &shared_auth::Settings) -> Self {
        Self {
            previous_grace_s: settings.guard.previous_grace_s,
            rotation_s: shared_auth::rotation::longest(settings.api.secret_refresh_s).as_secs(),
        }
    }
}

/// A stage holding a value that does not count now, and why (for logs; never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub stage: &'static str,
    pub id: String,
    pub why: &'static str,
}

/// The versions a verifier should accept, by stage.
#[derive(Debug, Clone)]
pub struct Versions {
    pub current: Version,
    pub previous: Option<Version>,
    pub pending: Option<Version>,
    /// Stages with a value that did not count, and why.
    pub left_out: Vec<LeftOut>,
}

impl Versions {
    /// Applies the rule to what the stages hold, at `now_s` (unix seconds).
    pub fn from_stages(
        current: Option<Version>,
        previous: Option<Version>,
        pending: Option<Version>,
        acceptance: Acceptance,
        now_s: i64,
    ) -> Result<Self, VersionsError> {
        let usable = |v: Option<Version>| v.filter(|v| !v.value.expose_secret().is_empty());
        let current = usable(current).ok_or(VersionsError::NoCurrent)?;
        let mut left_out = Vec::new();
        let previous = usable(previous).filter(|p| {
            let within = within(current.created_s, acceptance.previous_grace_s, now_s);
            if !within {
                left_out.push(LeftOut::of(
                    PREVIOUS,
                    p,
                    "its grace after the promotion has passed",
                ));
            }
            within
        });
        let pending = usable(pending).filter(|p| {
            let newer = match (p.created_s, current.created_s) {
                (Some(p), Some(c)) => p >= c,
                _ => true,
            };
            let in_progress = newer && within(p.created_s, acceptance.rotation_s, now_s);
            if !in_progress && p.id != current.id {
                left_out.push(LeftOut::of(PENDING, p, "no rotation is in progress"));
            }
            in_progress
        });
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
            left_out,
        })
    }

    /// The current version alone, as a sender signs with it.
    pub fn current_only(current: Option<Version>) -> Result<Version, VersionsError> {
        current
            .filter(|v| !v.value.expose_secret().is_empty())
            .ok_or(VersionsError::NoCurrent)
    }

    /// Every accepted version with its stage, current first.
    pub fn all(&self) -> impl Iterator<Item = (SecretVersion, &Version)> {
        std::iter::once((SecretVersion::Current, &self.current))
            .chain(self.previous.iter().map(|v| (SecretVersion::Previous, v)))
            .chain(self.pending.iter().map(|v| (SecretVersion::Pending, v)))
    }
}

impl LeftOut {
    fn of(stage: &'static str, version: &Version, why: &'static str) -> Self {
        Self {
            stage,
            id: version.id.clone(),
            why,
        }
    }
}

/// Whether `now_s` is less than `window_s` after `since_s`; a version without a date counts
/// (Secrets Manager always gives one).
fn within(since_s: Option<i64>, window_s: u64, now_s: i64) -> bool {
    since_s.is_none_or(|since| {
        now_s < since.saturating_add(i64::try_from(window_s).unwrap_or(i64::MAX))
    })
}

/// Why the versions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("the secret has no AWSCURRENT version with a value")]
    NoCurrent,
    #[error("Secrets Manager: {0}")]
    Aws(String),
}

/// A secret's stages as one DescribeSecret saw them: which version holds which stage. The
/// one place `VersionIdsToStages` is read; everyone who asks "which version is current" (the
/// rotation function, `deploy`, `verify`, `rotate-secret`) asks this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages(HashMap<String, Vec<String>>);

impl Stages {
    /// The stages of a DescribeSecret answer.
    pub fn of(described: &DescribeSecretOutput) -> Self {
        Self(described.version_ids_to_stages.clone().unwrap_or_default())
    }

    /// Describes `secret_id` once and returns its stages.
    pub async fn describe(sm: &SecretsManager, secret_id: &str) -> Result<Self, VersionsError> {
        sm.describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map(|out| Self::of(&out))
            .map_err(|e| VersionsError::Aws(DisplayErrorContext(&e).to_string()))
    }

    /// The version holding `stage`.
    pub fn holder(&self, stage: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, s)| s.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }

    /// The stages `version_id` holds; `None` when the secret has no such version.
    pub fn of_version(&self, version_id: &str) -> Option<&[String]> {
        self.0.get(version_id).map(Vec::as_slice)
    }

    /// Every version with its stages, as described.
    pub fn by_version(&self) -> &HashMap<String, Vec<String>> {
        &self.0
    }

    /// The versions holding at least one stage.
    pub fn staged_versions(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, stages)| !stages.is_empty())
            .map(|(id, _)| id.as_str())
    }
}

impl FromIterator<(String, Vec<String>)> for Stages {
    fn from_iter<I: IntoIterator<Item = (String, Vec<String>)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// The version at `stage` of `secret_id`; `None` when no version holds the stage. Named by
/// stage: moto's unnamed read stays on an old version after a promotion.
pub async fn at_stage(
    sm: &SecretsManager,
    secret_id: &str,
    stage: &str,
) -> Result<Option<Version>, VersionsError> {
    read(sm, secret_id, None, Some(stage)).await
}

/// Version `version_id` of `secret_id` if it holds `stage` (and a value); `None` otherwise.
pub async fn at_version(
    sm: &SecretsManager,
    secret_id: &str,
    version_id: &str,
    stage: &str,
) -> Result<Option<Version>, VersionsError> {
    Ok(read(sm, secret_id, Some(version_id), Some(stage))
        .await?
        .filter(|v| !v.value.expose_secret().is_empty()))
}

/// The one `GetSecretValue` of the workspace's code: the version of `secret_id` named by
/// `version_id` and/or `stage` (AWS's default, `AWSCURRENT`, when neither is named; name the
/// stage with a version id: moto otherwise looks for `AWSCURRENT` on it); `None` when no such
/// version exists (or, in moto, it holds no value). Every other reader calls this or the
/// narrower [`at_stage`], [`at_version`], [`current`] and [`accepted`].
pub async fn read(
    sm: &SecretsManager,
    secret_id: &str,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<Option<Version>, VersionsError> {
    let result = sm
        .get_secret_value()
        .secret_id(secret_id)
        .set_version_id(version_id.map(str::to_owned))
        .set_version_stage(stage.map(str::to_owned))
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

/// The versions of `secret_id` a verifier accepts at `now_s` ([`Versions::from_stages`]).
pub async fn accepted(
    sm: &SecretsManager,
    secret_id: &str,
    acceptance: Acceptance,
    now_s: i64,
) -> Result<Versions, VersionsError> {
    let current = at_stage(sm, secret_id, CURRENT).await?;
    let previous = at_stage(sm, secret_id, PREVIOUS).await?;
    let pending = at_stage(sm, secret_id, PENDING).await?;
    Versions::from_stages(current, previous, pending, acceptance, now_s)
}

/// The current version alone: what a sender signs with.
pub async fn current(sm: &SecretsManager, secret_id: &str) -> Result<Version, VersionsError> {
    Versions::current_only(at_stage(sm, secret_id, CURRENT).await?)
}

/// The keys a sender signs with at `now_s`: the current version, then the pending one while a
/// rotation is in progress (by the same rule a verifier counts it, [`Versions::from_stages`]),
/// so a receiver that has learned either accepts the request. Both stages are read at once.
pub async fn signing_keys(
    sm: &SecretsManager,
    secret_id: &str,
    rotation_s: u64,
    now_s: i64,
) -> Result<Vec<SecretString>, VersionsError> {
    let (current, pending) = tokio::join!(
        at_stage(sm, secret_id, CURRENT),
        at_stage(sm, secret_id, PENDING)
    );
    let acceptance = Acceptance {
        previous_grace_s: 0,
        rotation_s,
    };
    let versions = Versions::from_stages(current?, None, pending?, acceptance, now_s)?;
    Ok(std::iter::once(versions.current.value)
        .chain(
            versions
                .pending
                .map(|p| p.value)
                .filter(|p| shared_auth::secret::require_standard(p, "pending").is_ok()),
        )
        .collect())
}

/// Unix seconds now, by this machine's clock.
pub fn now_s() -> i64 {
    i64::try_from(shared_auth::unix::seconds()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, value: &str) -> Option<Version> {
        at(id, value, None)
    }

    fn at(id: &str, value: &str, created_s: Option<i64>) -> Option<Version> {
        Some(Version {
            id: id.into(),
            value: value.into(),
            created_s,
        })
    }

    const WINDOWS: Acceptance = Acceptance {
        previous_grace_s: 3_600,
        rotation_s: 960,
    };
    const NOW: i64 = 1_800_000_000;

    fn stages(
        current: Option<Version>,
        previous: Option<Version>,
        pending: Option<Version>,
    ) -> Result<Versions, VersionsError> {
        Versions::from_stages(current, previous, pending, WINDOWS, NOW)
    }

    #[test]
    fn the_previous_version_counts_only_during_its_grace_after_the_promotion() {
        for (promoted_ago, counted) in [(0, true), (3_599, true), (3_600, false), (90_000, false)] {
            let set = stages(
                at("c", "one", Some(NOW - promoted_ago)),
                at("p", "two", Some(NOW - promoted_ago - 86_400 * 30)),
                None,
            )
            .expect("ok");
            assert_eq!(
                set.previous.is_some(),
                counted,
                "promoted {promoted_ago} s ago"
            );
            assert_eq!(
                set.left_out
                    .iter()
                    .any(|l| l.stage == PREVIOUS && l.id == "p"),
                !counted,
                "what is left out is named"
            );
        }
    }

    #[test]
    fn a_pending_version_counts_only_while_a_rotation_can_be_running() {
        let current = || at("c", "one", Some(NOW - 86_400));
        let cases = [
            (Some(NOW - 10), true, "staged 10 s ago"),
            (Some(NOW - 959), true, "within the longest rotation"),
            (
                Some(NOW - 960),
                false,
                "older than any rotation: a failed one",
            ),
            (Some(NOW - 90_000), false, "older than the current version"),
        ];
        for (created, counted, what) in cases {
            let set = stages(current(), None, at("n", "three", created)).expect("ok");
            assert_eq!(set.pending.is_some(), counted, "{what}");
            assert_eq!(
                set.left_out.iter().any(|l| l.stage == PENDING),
                !counted,
                "{what}"
            );
        }
    }

    #[test]
    fn one_rule_for_empty_duplicated_and_copied_versions() {
        let all = stages(v("c", "one"), v("p", "two"), v("n", "three")).expect("ok");
        let ids: Vec<&str> = all.all().map(|(_, v)| v.id.as_str()).collect();
        assert_eq!(ids, ["c", "p", "n"]);
        // Pending on the current version (moto after a promotion), or a copy of its value (a
        // configuration test), or empty (staged, not yet written): not counted.
        for pending in [v("c", "one"), v("n", "one"), v("n", "")] {
            let set = stages(v("c", "one"), v("p", "two"), pending).expect("ok");
            assert!(set.pending.is_none());
            assert_eq!(set.previous.as_ref().map(|p| p.id.as_str()), Some("p"));
        }
        assert!(matches!(
            stages(v("c", ""), None, None),
            Err(VersionsError::NoCurrent)
        ));
        assert!(matches!(
            stages(None, v("p", "two"), None),
            Err(VersionsError::NoCurrent)
        ));
        assert!(
            !format!("{all:?}").contains("three"),
            "values are never shown"
        );
    }

    #[test]
    fn the_holder_of_a_stage_is_named() {
        let stages: Stages = [
            ("a".to_owned(), vec![CURRENT.to_owned()]),
            ("b".to_owned(), vec![PREVIOUS.to_owned()]),
            ("c".to_owned(), vec![]),
        ]
        .into_iter()
        .collect();
        assert_eq!(stages.holder(CURRENT), Some("a"));
        assert_eq!(stages.holder(PREVIOUS), Some("b"));
        assert_eq!(stages.holder(PENDING), None);
        assert_eq!(stages.of_version("a"), Some(&[CURRENT.to_owned()][..]));
        assert_eq!(stages.of_version("z"), None);
        let mut staged: Vec<&str> = stages.staged_versions().collect();
        staged.sort_unstable();
        assert_eq!(
            staged,
            ["a", "b"],
            "a version without a stage is not staged"
        );
    }
}
