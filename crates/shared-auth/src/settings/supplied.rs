//! The values only the person deploying can supply (a state bucket, the api's name and how its
//! certificate is made). The shipped contracts leave them out rather than carry real-looking
//! placeholders; `cargo xtask deploy` asks for all of them at once, before building anything.

use std::fmt;

use super::{DEFAULT_ENV, ENV_PREFIX, ENV_SEPARATOR, Settings};

/// A value the deploying user must supply, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfilled {
    /// The setting, `section.key`.
    pub key: &'static str,
    /// What to put there.
    pub hint: String,
    /// Another setting that would do instead, with its own hint.
    pub or: Option<(&'static str, String)>,
}

impl Unfilled {
    /// The `TOLLGATE__SECTION__KEY` variable that sets `key`.
    pub fn variable(key: &str) -> String {
        let upper = key.replace('.', ENV_SEPARATOR).to_ascii_uppercase();
        format!("{ENV_PREFIX}{ENV_SEPARATOR}{upper}")
    }
}

impl fmt::Display for Unfilled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  ({}): {}",
            Self::variable(self.key),
            self.key,
            self.hint
        )?;
        if let Some((key, hint)) = &self.or {
            write!(f, "\n    or {}  ({key}): {hint}", Self::variable(key))?;
        }
        Ok(())
    }
}

impl Settings {
    /// Every value this environment still needs from the user, in the order to supply them;
    /// empty for `local`, whose stack runs on a local AWS.
    pub fn unfilled(&self) -> Vec<Unfilled> {
        if self.env == DEFAULT_ENV {
            return Vec::new();
        }
        let d = &self.deploy;
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        let region = self.aws.region.as_deref().unwrap_or("the stack's region");
        let mut missing = Vec::new();
        if blank(&d.state_bucket) {
            missing.push(Unfilled {
                key: "deploy.state_bucket",
                hint: "an existing S3 bucket with versioning on, to hold the Terraform state \
                       (e.g. tollgate-terraform-state-<account id>)"
                    .into(),
                or: None,
            });
        }
        if blank(&d.domain) {
            missing.push(Unfilled {
                key: "deploy.domain",
                hint: format!(
                    "the api's public name, e.g. api.{}.example.com; the Lambda calls https://<domain>",
                    self.env
                ),
                or: None,
            });
        }
        if blank(&d.hosted_zone_id) && blank(&d.certificate_arn) {
            missing.push(Unfilled {
                key: "deploy.hosted_zone_id",
                hint: "the Route 53 hosted zone id of that name (Z…): Terraform requests the \
                       certificate, validates it by DNS and points the name at the ALB"
                    .into(),
                or: Some((
                    "deploy.certificate_arn",
                    format!(
                        "an issued ACM certificate for that name in {region}; you then point \
                         the name at the ALB yourself (README, Deploying)"
                    ),
                )),
            });
        }
        missing
    }

    /// Where the api answers the public: `https://<deploy.domain>` when a domain is set,
    /// else `lambda.api_base_url` (local runs).
    pub fn public_base_url(&self) -> String {
        match self
            .deploy
            .domain
            .as_deref()
            .filter(|d| !d.trim().is_empty())
        {
            Some(domain) => format!("https://{domain}"),
            None => self.lambda.api_base_url.trim_end_matches('/').to_owned(),
        }
    }
}
