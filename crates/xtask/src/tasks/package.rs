//! `cargo xtask package --env E`: the deployable artifacts in target/dist/<env>/ (see
//! [`crate::support::artifacts`]); `--push` also pushes the api image to the environment's
//! registry and prints its reference by digest.

use anyhow::{Result, bail};

use crate::flags;
use crate::support::artifacts::{api_image, lambda_zip};
use crate::support::context::{block_on, settings_for};
use crate::support::image;

impl flags::Package {
    pub fn run(self) -> Result<()> {
        // What builds the artifacts (`cargo xtask setup --for deploy`), before anything starts.
        crate::tasks::setup::ensure(crate::flags::Scope::Deploy)?;
        let settings = settings_for(&self.env)?;
        lambda_zip(&settings)?;
        let image = api_image(&settings, self.api_binary.as_deref())?;
        if self.push {
            block_on(async {
                if !image::repository_exists(&settings).await? {
                    bail!(
                        "the ECR repository `{}` does not exist yet: `cargo xtask deploy --env {}` creates it and pushes",
                        image::repository(&settings.env),
                        settings.env
                    );
                }
                let registry = image::registry_for(&settings).await?;
                let reference = image::push(&settings, &registry, &image).await?;
                println!("{reference}");
                Ok(())
            })?;
        }
        Ok(())
    }
}
