//! Forged registrations, each sent for a new user and expected to be refused with nothing
//! stored. Loopback plays the ALB, so a spoofed `X-Forwarded-For` is judged as in the cloud.

use anyhow::{Result, bail};
use secrecy::SecretString;
use serde_json::json;
use shared_auth::GuardContract;

use super::rows_for;

#[derive(Debug, Clone, Copy)]
pub enum Attack {
    NoSignature,
    WrongSecret,
    StaleTimestamp,
    BodyAltered,
    SpoofedForwardedFor,
    PathVariant,
}

impl Attack {
    /// Every attack, with the name its line in the table carries.
    pub const ALL: [(&'static str, Attack); 6] = [
        ("forged: no signature", Attack::NoSignature),
        ("forged: wrong secret", Attack::WrongSecret),
        ("forged: stale timestamp", Attack::StaleTimestamp),
        ("forged: body altered after signing", Attack::BodyAltered),
        (
            "forged: spoofed X-Forwarded-For",
            Attack::SpoofedForwardedFor,
        ),
        ("forged: path variant /user/", Attack::PathVariant),
    ];

    /// A path variant never reaches the handler (404); everything else meets the guard (403).
    fn expected_status(self) -> u16 {
        match self {
            Attack::PathVariant => 404,
            _ => 403,
        }
    }
}

#[derive(Debug)]
pub struct Forger<'a> {
    pub http: &'a reqwest::Client,
    pub api_url: &'a str,
    pub contract: &'a GuardContract,
    pub secret: &'a SecretString,
}

impl Forger<'_> {
    /// Sends one forged registration for a new user and expects it refused with nothing stored.
    pub async fn attempt(&self, attack: Attack, db: &sqlx::PgPool) -> Result<String> {
        let sub = uuid::Uuid::new_v4().to_string();
        let status = self.send(attack, &sub).await?;
        let expected = attack.expected_status();
        let stored = rows_for(db, &sub).await?;
        if status != expected || stored != 0 {
            bail!("answered {status} and stored {stored} row(s); expected {expected} and none");
        }
        Ok(if expected == 404 {
            "404, never reaches the handler".into()
        } else {
            "403, nothing stored".into()
        })
    }

    async fn send(&self, attack: Attack, sub: &str) -> Result<u16> {
        let body = json!({"sub": sub, "email": "mallory@example.com", "email_verified": true, "username": "mallory"}).to_string();
        let now = shared_auth::unix::seconds();
        let path = match attack {
            Attack::PathVariant => format!("{}/", self.contract.path),
            _ => self.contract.path.clone(),
        };
        let (secret, ts) = match attack {
            Attack::WrongSecret => (testkit::secrets::new_secret()?, now),
            Attack::StaleTimestamp => (self.secret.clone(), now - 2 * self.contract.max_skew_s),
            _ => (self.secret.clone(), now),
        };
        let mut request = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("content-type", "application/json");
        if !matches!(attack, Attack::NoSignature) {
            for (name, value) in self
                .contract
                .credentials(
                    std::slice::from_ref(&secret),
                    &shared_auth::registration_id("attacks", sub),
                    body.as_bytes(),
                    ts,
                )
                .iter()
            {
                request = request.header(name, value);
            }
        }
        let sent = match attack {
            Attack::BodyAltered => body.replace("mallory@example.com", "mallory@evil.example"),
            _ => body,
        };
        if let Attack::SpoofedForwardedFor = attack {
            // Claims to come from loopback (allowed); the "ALB" appended the real, outside address.
            request = request.header("x-forwarded-for", "127.0.0.1, 198.51.100.7");
        }
        Ok(request.body(sent).send().await?.status().as_u16())
    }
}
