//! The api's container image without a container engine: a static musl build of `api`
//! (cargo-zigbuild), assembled into an OCI image here ([`oci`]) and pushed with the registry
//! API ([`push`]) to the environment's ECR repository, or to a registry on loopback for
//! `local`. Deploys name the image by digest.

pub mod oci;
pub mod push;

use std::path::Path;

use anyhow::{Context, Result, bail};
use opskit::aws::AwsContext;
use secrecy::SecretString;
use shared_auth::Settings;

pub use oci::Image;
pub use push::RegistryClient;

/// The repository the image goes to: ECR's `tollgate-<env>-api` (infra/service.tf), and the
/// same name in a loopback registry.
pub fn repository(env: &str) -> String {
    format!("tollgate-{env}-api")
}

/// The image for the environment around `binary`, a static build of the api for the OCI
/// `architecture` (checked here).
pub fn build(settings: &Settings, binary: &Path, architecture: &str) -> Result<Image> {
    let bytes =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    oci::check_static_elf(&bytes, architecture)
        .with_context(|| format!("{} cannot go into the image", binary.display()))?;
    let image = oci::build(&oci::Contents {
        binary: &bytes,
        architecture,
        port: settings.api.listen.port(),
        version: env!("CARGO_PKG_VERSION"),
    })?;
    eprintln!("· api image: {}", oci::describe(&image));
    Ok(image)
}

/// The registry of an environment: `deploy.registry` as given (no credentials; loopback is
/// plain HTTP), else the account's ECR with a token from `GetAuthorizationToken`.
pub async fn registry_for(settings: &Settings) -> Result<RegistryClient> {
    if let Some(host) = &settings.deploy.registry {
        return RegistryClient::new(host, None);
    }
    let config = shared_aws::sdk_config(&settings.aws).await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    let token = ecr
        .get_authorization_token()
        .send()
        .await
        .aws("get an ECR authorization token (ecr:GetAuthorizationToken)")?;
    let data = token
        .authorization_data()
        .first()
        .context("ECR returned no authorization data")?;
    let (Some(token), Some(endpoint)) = (data.authorization_token(), data.proxy_endpoint()) else {
        bail!("ECR's authorization data lacks the token or the registry endpoint");
    };
    RegistryClient::new(endpoint, Some(SecretString::from(format!("Basic {token}"))))
}

/// Whether the environment's ECR repository exists yet (a first deploy creates it before the
/// push). A non-ECR registry creates repositories on push.
pub async fn repository_exists(settings: &Settings) -> Result<bool> {
    if settings.deploy.registry.is_some() {
        return Ok(true);
    }
    let config = shared_aws::sdk_config(&settings.aws).await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    match ecr
        .describe_repositories()
        .repository_names(repository(&settings.env))
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_repository_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(e).aws("cannot look up the ECR repository"),
    }
}

/// A pushed image: `registry/repository@sha256:…`, what the task definition names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub digest: String,
}

impl Reference {
    pub fn new(registry: &RegistryClient, repository: &str, image: &Image) -> Self {
        Self {
            registry: registry.host.clone(),
            repository: repository.to_owned(),
            digest: image.digest().to_owned(),
        }
    }

    /// Parses `host[:port]/repository@sha256:<64 hex>`; anything else (a tag, `latest`) is
    /// refused.
    pub fn parse(reference: &str) -> Result<Self> {
        let (name, digest) = reference
            .split_once('@')
            .with_context(|| format!("`{reference}` names no digest (…@sha256:…)"))?;
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            bail!("`{reference}`: `{digest}` is not a sha256 digest");
        }
        let (registry, repository) = name
            .split_once('/')
            .with_context(|| format!("`{reference}` names no registry"))?;
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

/// Pushes the image to the environment's registry and returns its reference by digest.
/// Pushes `image` to this environment's repository in `registry` (from [`registry_for`], asked
/// once per command: each ECR lookup is a `GetAuthorizationToken` call).
pub async fn push(
    settings: &Settings,
    registry: &RegistryClient,
    image: &Image,
) -> Result<Reference> {
    let repository = repository(&settings.env);
    eprintln!(
        "· pushing the api image to {}/{repository}:{}",
        registry.host,
        image.tag()
    );
    let digest = registry.push(&repository, image).await.with_context(|| {
        match &settings.deploy.registry {
            Some(host) => format!(
                "cannot push to the registry at {host} (deploy.registry); for `local`, run one: `cargo xtask registry`"
            ),
            None => "cannot push to ECR".to_owned(),
        }
    })?;
    let reference = Reference::new(registry, &repository, image);
    debug_assert_eq!(digest, reference.digest);
    eprintln!("· pushed {reference}");
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_must_name_a_registry_and_a_full_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let reference = Reference::parse(&format!("127.0.0.1:5000/tollgate-local-api@{digest}"))
            .expect("valid");
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "tollgate-local-api");
        assert_eq!(
            reference.to_string(),
            format!("127.0.0.1:5000/tollgate-local-api@{digest}")
        );
        for bad in [
            "123.dkr.ecr.ap-northeast-1.amazonaws.com/tollgate-staging-api:latest".to_owned(),
            format!("tollgate-local-api@{digest}"),
            format!("127.0.0.1:5000/api@sha256:{}", "ab".repeat(31)),
            format!("127.0.0.1:5000/api@sha256:{}", "AB".repeat(32)),
            format!("127.0.0.1:5000/api@sha512:{}", "ab".repeat(32)),
        ] {
            assert!(Reference::parse(&bad).is_err(), "{bad}");
        }
    }
}
