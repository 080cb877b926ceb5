//! The HTTP client both functions call the api with.

use std::time::Duration;

use shared_auth::LambdaSettings;

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("lambda.private_ca_pem holds no certificate rustls accepts as a root: {0}")]
    PrivateCa(String),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// TLS for the api's HTTPS: Mozilla's root set compiled in (`webpki-roots`), already parsed.
/// The system store costs a read and a parse of every certificate at each cold start (on
/// Debian 150 files, 3 ms; BENCHMARKS.md), and the ALB's certificate, from ACM or another
/// public CA, chains to a root in this set. An ALB certificate from a private CA needs that
/// CA's certificate, `private_ca_pem` (`lambda.private_ca_pem`). The set is as new as the last
/// `cargo update`.
pub fn tls_config(private_ca_pem: Option<&str>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = private_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ClientError::PrivateCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::PrivateCa(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::PrivateCa("no PEM certificate".into()));
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("aws-lc-rs implements TLS 1.2 and 1.3"))
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// The client: connection pool kept across invocations, rustls with the compiled-in public
/// roots and the contract's private CA, if any ([`tls_config`]); never follows a redirect (it
/// would carry the credential wherever `Location` points), and speaks only HTTPS unless
/// `https_only` is off (local runs). `user_agent` names the function.
pub fn client(
    settings: &LambdaSettings,
    https_only: bool,
    user_agent: &str,
) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(settings.private_ca_pem.as_deref())?)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https_only)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(user_agent)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("a CA").pem()
    }

    #[test]
    fn a_private_ca_joins_the_public_roots_and_nothing_else_does() {
        // The public roots alone, then with the private CA: one more root either way.
        tls_config(None).expect("the compiled-in roots");
        tls_config(Some(&ca_pem())).expect("a PEM CA certificate is added");
        for bad in [
            "",
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(tls_config(Some(bad)), Err(ClientError::PrivateCa(_))),
                "`{bad}` was taken as a root"
            );
        }
        let settings = LambdaSettings {
            private_ca_pem: Some("garbage".into()),
            ..LambdaSettings::default()
        };
        let refused = client(&settings, true, "test").expect_err("a bad CA is refused");
        assert!(
            refused.to_string().contains("lambda.private_ca_pem"),
            "{refused}"
        );
    }
}
