//! # testkit: what Tollgate's tests and `cargo xtask` share
//!
//! Dev-only: a dev-dependency of the crates' tests and a dependency of xtask, never of a
//! deployable (`api`, `post-confirm`). One copy of each piece:
//!
//! - [`cmd`], [`aws`], [`process`], [`runtime_api`]: `opskit`'s, which the deploy path shares
//!   (re-exported here, so a test names one kit);
//! - [`services`]: PostgreSQL (TLS required, throwaway CA from [`tls`]) and moto_server on
//!   loopback, owned by guards that stop them;
//! - [`receiver`]: a scripted `POST /user` that verifies signatures as the api does;
//! - [`reference`]: the Standard Webhooks reference library for Python, to sign and verify with;
//! - [`cognito`]: a user pool in moto, sign-up and confirmation, the PostConfirmation event;
//! - [`secrets`]: new random secrets and writing them as Secrets Manager versions;
//! - [`queues`]: the retry and dead-letter queues in moto, and Lambda's SQS poller played here;
//! - [`stack`]: the real api and sign-up function binaries, as the other crates' tests run them;
//! - [`platform`]: what AWS would start from the stack (ECS tasks, Lambda functions), started
//!   from their artifacts with exactly their rendered environment, secrets and role;
//! - [`rendered`] (feature `platform`): everything a deployed stack renders, started in the
//!   twin built from its state, each with a row saying what it did;
//! - [`twin`]: the network a Terraform state describes (subnets, route tables, NAT and internet
//!   gateways, security groups), built in network namespaces;
//! - [`iam`]: IAM's policy evaluation (explicit deny, identity ∩ boundary, conditions), so a
//!   test can ask what the rendered policies allow.

pub mod cognito;
pub mod iam;
pub mod platform;
pub mod queues;
pub mod receiver;
pub mod reference;
#[cfg(feature = "platform")]
pub mod rendered;
pub mod secrets;
pub mod services;
pub mod stack;
pub mod tls;
pub mod twin;

pub use opskit::{aws, cmd, process, runtime_api};

pub use shared_aws::sdk_config;

/// The variable naming the local AWS endpoint (moto_server) the tests use.
pub const AWS_ENDPOINT_VAR: &str = "TOLLGATE_TEST_AWS_ENDPOINT";

/// The moto_server the tests use: `cargo xtask test` starts one and sets
/// `TOLLGATE_TEST_AWS_ENDPOINT`. Panics with how to get one when it is not set.
pub fn aws_endpoint() -> String {
    std::env::var(AWS_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{AWS_ENDPOINT_VAR} is not set. Run the tests with `cargo xtask test` (it starts \
             moto_server), or start `moto_server -p 4566` (pip install 'moto[server]') and set it."
        )
    })
}

/// `aws` settings for the test moto_server.
pub fn local_aws() -> shared_auth::AwsSettings {
    shared_auth::AwsSettings {
        endpoint_url: Some(aws_endpoint()),
        ..local_aws_region()
    }
}

/// The tests' region, with no endpoint: for a test that runs a moto_server of its own.
pub fn local_aws_region() -> shared_auth::AwsSettings {
    shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: None,
    }
}

/// The PostgreSQL server the tests use: `cargo xtask test` starts one and sets DATABASE_URL.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the tests with `cargo xtask test` (it starts PostgreSQL), \
             or point DATABASE_URL at a PostgreSQL server you run."
        )
    })
}

/// A new, empty database on the test server ([`database_url`]), named for `label`; returns its
/// URL (the same server, user and TLS settings).
pub async fn fresh_database(label: &str) -> String {
    use sqlx::Connection;
    let base = database_url();
    let name = format!("tollgate_{label}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let (before, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = before
        .rsplit_once('/')
        .expect("DATABASE_URL names a database");
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}
