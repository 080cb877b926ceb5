//! The part of the OCI distribution API a push and a check need: blobs (HEAD, then POST, PATCH
//! and PUT as `docker push` does, which ECR and CNCF distribution both accept), manifests by
//! tag or digest, and the `Docker-Content-Digest` the registry answers with.

use anyhow::{Context, Result, bail};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use super::oci::{Blob, Image, MANIFEST_MEDIA_TYPE};

/// A registry reached over HTTPS, or plain HTTP on loopback; with an optional `Authorization`
/// header value (ECR's `Basic …` token), never printed.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    /// `host[:port]`, as it appears in image references.
    pub host: String,
    base: String,
    auth: Option<SecretString>,
    http: reqwest::Client,
}

impl RegistryClient {
    pub fn new(host: &str, auth: Option<SecretString>) -> Result<Self> {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let scheme = if is_loopback(&host) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .timeout(std::time::Duration::from_secs(300))
            .build()?;
        Ok(Self {
            base: format!("{scheme}://{host}"),
            host,
            auth,
            http,
        })
    }

    fn request(&self, method: Method, url: &str) -> Result<RequestBuilder> {
        let mut request = self.http.request(method, url);
        if let Some(auth) = &self.auth {
            let mut value = HeaderValue::from_str(auth.expose_secret())
                .context("the registry credential is not a valid header value")?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// Pushes the image's blobs and manifest under `repository:tag`; returns the digest the
    /// registry reports, which must be the one computed here.
    pub async fn push(&self, repository: &str, image: &Image) -> Result<String> {
        let tag = image.tag();
        if let Some(existing) = self.manifest_digest(repository, &tag).await? {
            if existing == image.digest() {
                eprintln!(
                    "· {}/{repository}:{tag} is already in the registry",
                    self.host
                );
                return Ok(existing);
            }
            bail!(
                "{}/{repository}:{tag} already names {existing}, not {}: tags are immutable",
                self.host,
                image.digest()
            );
        }
        for (what, blob) in [("layer", &image.layer), ("config", &image.config)] {
            self.push_blob(repository, blob)
                .await
                .with_context(|| format!("cannot push the image {what} to {}", self.host))?;
        }
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let response = self
            .request(Method::PUT, &url)?
            .header(CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
            .body(image.manifest.bytes.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        let response = expect(response, &[StatusCode::CREATED], "put the manifest").await?;
        let digest = content_digest(&response).unwrap_or_else(|| image.digest().to_owned());
        if digest != image.digest() {
            bail!(
                "the registry stored the manifest as {digest}, not {}: it rewrote the manifest",
                image.digest()
            );
        }
        Ok(digest)
    }

    async fn push_blob(&self, repository: &str, blob: &Blob) -> Result<()> {
        let url = format!("{}/v2/{repository}/blobs/{}", self.base, blob.digest);
        let head = self.request(Method::HEAD, &url)?.send().await?;
        if head.status() == StatusCode::OK {
            return Ok(());
        }
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self.request(Method::POST, &start)?.send().await?;
        let response = expect(response, &[StatusCode::ACCEPTED], "start an upload").await?;
        let location = self.upload_location(&response)?;
        let response = self
            .request(Method::PATCH, &location)?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .await?;
        let response = expect(response, &[StatusCode::ACCEPTED], "upload a blob").await?;
        let location = self.upload_location(&response)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = format!("{location}{separator}digest={}", blob.digest);
        let response = self
            .request(Method::PUT, &done)?
            .header(CONTENT_TYPE, "application/octet-stream")
            .send()
            .await?;
        expect(response, &[StatusCode::CREATED], "finish an upload").await?;
        Ok(())
    }

    fn upload_location(&self, response: &Response) -> Result<String> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the registry gave no upload location")?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        })
    }

    /// The digest the registry serves for `reference` (a tag or a digest), or `None` when it
    /// has no such manifest.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<String>> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let response = self
            .request(Method::HEAD, &url)?
            .header(ACCEPT, MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect(response, &[StatusCode::OK], "read a manifest").await?;
        content_digest(&response)
            .map(Some)
            .context("the registry did not say the manifest's digest")
    }

    /// A manifest by digest, checked against that digest, and its config document.
    pub async fn manifest_and_config(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<(serde_json::Value, serde_json::Value)> {
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base);
        let manifest = self.fetch(&url, MANIFEST_MEDIA_TYPE, digest).await?;
        let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("the manifest names no config")?;
        let url = format!("{}/v2/{repository}/blobs/{config_digest}", self.base);
        let config = self.fetch(&url, "*/*", config_digest).await?;
        Ok((manifest, serde_json::from_slice(&config)?))
    }

    async fn fetch(&self, url: &str, accept: &str, digest: &str) -> Result<Vec<u8>> {
        let response = self
            .request(Method::GET, url)?
            .header(ACCEPT, accept)
            .send()
            .await?;
        let response = expect(response, &[StatusCode::OK], "read from the registry").await?;
        let bytes = response.bytes().await?.to_vec();
        let actual = super::oci::sha256_digest(&bytes);
        if actual != digest {
            bail!("{url} served content with digest {actual}, not {digest}");
        }
        Ok(bytes)
    }
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn content_digest(response: &Response) -> Option<String> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Passes a response with one of `ok`, or fails naming what was tried and the registry's own
/// error codes and messages.
async fn expect(response: Response, ok: &[StatusCode], what: &str) -> Result<Response> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    let status = response.status();
    let url = response.url().path().to_owned();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v["errors"].as_array().map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        " (the registry refused the credentials: for ECR, the caller needs ecr:GetAuthorizationToken and push rights on the repository)"
    } else {
        ""
    };
    bail!("cannot {what}: {status} from {url}: {detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_reached_without_tls() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "127.0.0.2",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com",
            "127.0.0.1.example.com:5000",
            "registry.local:5000",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        let ecr = RegistryClient::new(
            "https://123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/",
            None,
        )
        .expect("registry");
        assert_eq!(
            ecr.base,
            "https://123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(
            ecr.host,
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"
        );
    }
}
