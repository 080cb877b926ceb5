//! `cargo xtask destroy --env E`: every resource of an environment, after asking.
//!
//! A protected environment (`deploy.deletion_protection`, staging and production) cannot be
//! destroyed as it stands: RDS, the ALB and the user pool refuse deletion. Destroy first lifts
//! that protection with an apply (the database still gets a final snapshot), then destroys.

use anyhow::Result;
use opskit::cmd;

use crate::flags;
use crate::support::context::{block_on, check_local_aws, confirm, settings_for};
use crate::support::terraform;

/// The resources `deploy.deletion_protection` guards (deletion protection, recovery windows,
/// no force-delete): the apply before a destroy changes these alone, so a stack left
/// half-destroyed by an earlier attempt is not rebuilt on the way.
const PROTECTED: [&str; 7] = [
    "aws_db_instance.this",
    "aws_lb.this",
    "aws_cognito_user_pool.this",
    "module.registration.aws_secretsmanager_secret.key",
    "aws_secretsmanager_secret.db_app",
    "aws_s3_bucket.alb_logs",
    "aws_ecr_repository.api",
];

/// What lifts the protection for the destroy, keeping a final snapshot named for this
/// destroy (a second destroy must not meet the first one's snapshot).
fn unprotect() -> Vec<String> {
    let stamp = shared_auth::unix::seconds();
    vec![
        "-var=deletion_protection=false".to_owned(),
        "-var=final_snapshot=true".to_owned(),
        format!("-var=final_snapshot_suffix=-{stamp}"),
    ]
}

impl flags::Destroy {
    pub fn run(self) -> Result<()> {
        let env = &self.env;
        let settings = settings_for(env)?;
        check_local_aws(&settings)?;
        let _folder = terraform::FolderLock::acquire(env)?;
        let dir = terraform::deployed_dir(env)?;
        let protected = settings.deploy.deletion_protection;
        let unprotect = unprotect();
        if protected {
            confirm(
                &format!(
                    "`{env}` is protected (deploy.deletion_protection): lift the protection of its \
                     database, ALB and user pool, keep a final database snapshot, delete its \
                     secrets at once, and destroy every resource?"
                ),
                self.yes,
            )?;
            eprintln!("· lifting deletion protection (the database keeps a final snapshot)");
            cmd::run(
                terraform::terraform(&dir)
                    .args(["apply", "-input=false", "-auto-approve"])
                    .args(&unprotect)
                    .args(terraform::target_args(&dir, &PROTECTED)?),
            )?;
        } else {
            confirm(&format!("Destroy every resource of `{env}`?"), self.yes)?;
        }
        eprintln!("· terraform destroy (minutes; progress below)");
        let mut destroy = terraform::terraform(&dir);
        destroy.args(["destroy", "-input=false", "-auto-approve"]);
        if protected {
            destroy.args(&unprotect);
        }
        cmd::run(&mut destroy)?;
        // static mode's WAF rule group is not Terraform's (its rule holds the secret): now
        // that no web ACL refers to it, it goes too.
        let name = shared_aws::waf::rule_group_name(env);
        let deleted = block_on(async {
            shared_aws::waf::GuardRuleGroup {
                client: aws_sdk_wafv2::Client::new(&shared_aws::sdk_config(&settings.aws).await),
            }
            .delete(&name)
            .await
        })?;
        if deleted {
            eprintln!("· WAF rule group `{name}` deleted");
        }
        eprintln!("· `{env}` destroyed");
        Ok(())
    }
}
