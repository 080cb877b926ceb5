//! A role's credentials as the platform hands them out: a session of the role from STS
//! (moto's `AssumeRole`), given to a Lambda function as `AWS_ACCESS_KEY_ID`, … and to an ECS
//! task through the credentials endpoint at `169.254.170.2`, which the SDKs' container
//! provider asks at `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (Amazon ECS Developer Guide,
//! *Task IAM role*).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use anyhow::{Context, Result, bail};

use crate::twin::Twin;

/// Where ECS serves a task its role's credentials.
pub const ECS_CREDENTIALS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// One session of a role.
#[derive(Clone)]
pub struct Session {
    pub role_arn: String,
    pub access_key_id: String,
    secret_access_key: String,
    session_token: String,
    pub expiration: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The text of the first `<tag>` in `xml`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.to_owned())
}

/// A query-protocol call to moto at `endpoint` for `service` (moto routes by the credential
/// scope and checks no signature); the answer's XML.
pub async fn query(endpoint: &str, service: &str, form: &[(&str, &str)]) -> Result<String> {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = reqwest::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body)
        .send()
        .await
        .with_context(|| format!("moto at {endpoint} does not answer"))?;
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        bail!("{service} answered {status}: {text}");
    }
    Ok(text)
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Session {
    /// `AssumeRole` of `role_arn` in the moto at `endpoint`.
    pub async fn assume(endpoint: &str, role_arn: &str, session_name: &str) -> Result<Self> {
        let xml = query(
            endpoint,
            "sts",
            &[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", role_arn),
                ("RoleSessionName", session_name),
                ("DurationSeconds", "3600"),
            ],
        )
        .await
        .with_context(|| format!("cannot assume {role_arn}"))?;
        let field = |tag: &str| {
            xml_text(&xml, tag).with_context(|| format!("AssumeRole answered without {tag}: {xml}"))
        };
        Ok(Session {
            role_arn: role_arn.to_owned(),
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: field("SessionToken")?,
            expiration: field("Expiration")?,
        })
    }

    /// The variables Lambda sets for the execution role's session.
    pub fn lambda_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.secret_access_key.clone(),
            ),
            ("AWS_SESSION_TOKEN".into(), self.session_token.clone()),
        ]
    }

    /// The credentials endpoint's answer (ECS's JSON shape).
    fn ecs_json(&self) -> String {
        serde_json::json!({
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.session_token,
            "Expiration": self.expiration,
            "RoleArn": self.role_arn,
        })
        .to_string()
    }

    /// Serves this session at `169.254.170.2:80` in `host`'s namespace, under `path` (the
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` the task gets), as ECS's agent does; any other
    /// path answers 404.
    pub fn serve_for_task(&self, twin: &Twin, host: &str, path: &str) -> Result<()> {
        let ns = twin.host(host)?.namespace.clone();
        crate::cmd::run(std::process::Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ECS_CREDENTIALS_ADDRESS}/32"),
            "dev",
            "lo",
        ]))?;
        let listener = twin.inside(Some(host), || {
            TcpListener::bind(SocketAddrV4::new(ECS_CREDENTIALS_ADDRESS, 80))
        })??;
        let (body, path) = (self.ecs_json(), path.to_owned());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut line = String::new();
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the head, unread: the answer closes the connection.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let asked = line.split_whitespace().nth(1).unwrap_or_default();
                let (status, text) = if asked == path {
                    ("200 OK", body.as_str())
                } else {
                    ("404 Not Found", "{}")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded_and_answers_read_by_tag() {
        assert_eq!(
            urlencode("arn:aws:iam::1:role/a b"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b"
        );
        let xml = "<R><Credentials><AccessKeyId>AKIA</AccessKeyId></Credentials></R>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("AKIA"));
        assert_eq!(xml_text(xml, "SessionToken"), None);
    }

    #[test]
    fn a_session_never_shows_its_secret() {
        let session = Session {
            role_arn: "arn:aws:iam::1:role/r".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
            session_token: "token-secret".into(),
            expiration: "2026-01-01T00:00:00Z".into(),
        };
        let shown = format!("{session:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("token-secret"),
            "{shown}"
        );
    }
}
