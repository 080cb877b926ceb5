//! `cargo xtask rotate-secret --env E`: a new version of the guard secret. The old one becomes
//! `AWSPREVIOUS`, which the api keeps accepting, so no sender is refused.

use anyhow::Result;
use aws_sdk_secretsmanager::Client as SecretsManager;

use crate::context::{block_on, check_local_aws, settings_for};
use crate::flags;

impl flags::RotateSecret {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        block_on(async {
            let sm = SecretsManager::new(&testkit::sdk_config(&settings.aws).await);
            let value = testkit::secrets::new_secret()?;
            let version =
                testkit::secrets::put_version(&sm, &settings.guard.secret_id, &value).await?;
            eprintln!(
                "· `{}`: new version {version} is AWSCURRENT, the old one AWSPREVIOUS (value not shown)",
                settings.guard.secret_id,
            );
            eprintln!(
                "  The api accepts both within api.secret_refresh_s ({} s); the Lambda switches after its \
                 cache TTL ({} s) or at once on its first 403. No downtime.",
                settings.api.secret_refresh_s, settings.guard.secret_ttl_s
            );
            Ok(())
        })
    }
}
