//! `cargo xtask destroy --env E`: every resource of an environment, after asking.

use anyhow::Result;
use testkit::cmd;

use crate::context::{block_on, check_local_aws, confirm, settings_for};
use crate::{flags, terraform};

impl flags::Destroy {
    pub fn run(self) -> Result<()> {
        let env = &self.env;
        let settings = settings_for(env)?;
        check_local_aws(&settings)?;
        let dir = terraform::deployed_dir(env)?;
        confirm(&format!("Destroy every resource of `{env}`?"), self.yes)?;
        eprintln!("· terraform destroy (minutes; progress below)");
        cmd::run(terraform::terraform(&dir).args(["destroy", "-input=false", "-auto-approve"]))?;
        // static mode's WAF rule group is not Terraform's (its rule holds the secret): now
        // that no web ACL refers to it, it goes too.
        let name = post_confirm::waf::rule_group_name(env);
        let deleted = block_on(async {
            post_confirm::waf::GuardRuleGroup {
                client: aws_sdk_wafv2::Client::new(&testkit::sdk_config(&settings.aws).await),
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
