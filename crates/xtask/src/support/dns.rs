//! Whether the api's public name reaches the stack's ALB, compared by address: an alias record
//! and a CNAME alike. `verify` reports it; `deploy` attaches the rotation schedule (whose
//! configuration test calls `https://<domain>`) only once it holds.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Where a name leads, against the ALB's own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pointing {
    /// The name resolves to (some of) the ALB's addresses: how many it resolved to.
    AtAlb(usize),
    /// It resolves, elsewhere.
    Elsewhere(BTreeSet<IpAddr>),
    /// It does not resolve: why.
    Unresolved(String),
    /// The ALB's own name does not resolve here (a local AWS serves no DNS).
    AlbUnresolved,
}

async fn addresses(name: &str) -> std::io::Result<BTreeSet<IpAddr>> {
    tokio::net::lookup_host((name, 443))
        .await
        .map(|found| found.map(|a| a.ip()).collect())
}

/// Where `domain` leads compared with the ALB's DNS name `alb`.
pub async fn pointing(domain: &str, alb: &str) -> Pointing {
    let Ok(alb_addresses) = addresses(alb).await else {
        return Pointing::AlbUnresolved;
    };
    match addresses(domain).await {
        Ok(found) if !found.is_disjoint(&alb_addresses) => Pointing::AtAlb(found.len()),
        Ok(found) => Pointing::Elsewhere(found),
        Err(e) => Pointing::Unresolved(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_compared_with_the_albs_by_address() {
        // `localhost` and `127.0.0.1` share an address; a name that cannot exist resolves to
        // nothing (RFC 6761's `.invalid`).
        assert!(matches!(
            pointing("localhost", "127.0.0.1").await,
            Pointing::AtAlb(_)
        ));
        assert!(matches!(
            pointing("tollgate.invalid", "127.0.0.1").await,
            Pointing::Unresolved(_)
        ));
        assert_eq!(
            pointing("localhost", "tollgate-alb.invalid").await,
            Pointing::AlbUnresolved
        );
    }
}
