//! What both ends know of the heartbeat and of a registration's way in.
//!
//! The heartbeat is a synthetic sign-up the sign-up function makes on a schedule in every
//! deployed environment: it signs up a user whose address is in [`EMAIL_DOMAIN`], confirms it
//! (which fires the PostConfirmation trigger), reads the registration back through the
//! guarded route and deletes it, in the database and in the user pool.
//!
//! [`EMAIL_DOMAIN`] is under `.invalid`, which RFC 2606 reserves: no mail is ever delivered
//! there, so no person can confirm an address in it, and a row with such an address can only
//! be the heartbeat's. The sweep passes such users by, and the database refuses to delete any
//! other row through the heartbeat's route (`migrations/`).

use serde::{Deserialize, Serialize};

/// The domain of every heartbeat user's address, and of no one else's.
pub const EMAIL_DOMAIN: &str = "heartbeat.tollgate.invalid";

/// Whether `email` is a heartbeat user's (compared without regard to case, as mail domains are).
pub fn is_heartbeat_email(email: &str) -> bool {
    email.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.eq_ignore_ascii_case(EMAIL_DOMAIN)
    })
}

/// A fresh heartbeat address, unique by `nonce`.
pub fn email(nonce: &str) -> String {
    format!("heartbeat-{nonce}@{EMAIL_DOMAIN}")
}

/// The event that asks the sign-up function for one heartbeat, with the pool and its app client
/// (the schedule's input): `{"tollgate":"heartbeat","user_pool_id":…,"client_id":…}`.
pub const EVENT_KIND: &str = "heartbeat";

/// Which of the sign-up function's ways delivered a registration, as the signed body of
/// `POST /user` says (`via`), and `jit` for a row `GET /users/me` provisioned from a token. The
/// api stores the first one (`users.registered_via`): the heartbeat tells a registration the
/// trigger made from one that only a later path, or the app, made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Trigger,
    Queue,
    Sweep,
    Jit,
}

impl Via {
    pub const ALL: [Via; 4] = [Via::Trigger, Via::Queue, Via::Sweep, Via::Jit];

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Trigger => "trigger",
            Via::Queue => "queue",
            Via::Sweep => "sweep",
            Via::Jit => "jit",
        }
    }

    pub fn parse(s: &str) -> Option<Via> {
        Via::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The body of the heartbeat's read-and-delete (`DELETE` on the guarded route): the `sub` of
/// the heartbeat user whose row is to be read and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forget {
    pub sub: String,
}

/// The api's answer to a [`Forget`] that found the row: how it had been registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    pub sub: String,
    /// `None` for a row registered before the column existed.
    pub registered_via: Option<Via>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_in_the_reserved_domain_are_the_heartbeats() {
        assert!(is_heartbeat_email(&email("0f3c")));
        assert!(is_heartbeat_email("x@HEARTBEAT.tollgate.INVALID"));
        for other in [
            "ada@example.com",
            "@heartbeat.tollgate.invalid",
            "x@heartbeat.tollgate.invalid.example.com",
            "x@sub.heartbeat.tollgate.invalid",
            "x@tollgate.invalid",
            "heartbeat.tollgate.invalid",
            "",
        ] {
            assert!(!is_heartbeat_email(other), "{other}");
        }
    }

    #[test]
    fn each_way_in_reads_back_as_itself_and_nothing_else_parses() {
        for via in Via::ALL {
            assert_eq!(Via::parse(via.as_str()), Some(via));
            let json = serde_json::to_string(&via).expect("json");
            assert_eq!(json, format!("\"{}\"", via.as_str()));
        }
        for other in ["", "Trigger", "direct", "jit "] {
            assert_eq!(Via::parse(other), None, "{other}");
        }
    }
}
