//! `cargo xtask destroy --env E`: every resource of an environment, after asking.

use anyhow::Result;
use testkit::cmd;

use crate::context::{check_local_aws, confirm, settings_for};
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
        eprintln!("· `{env}` destroyed");
        Ok(())
    }
}
