//! # api: Tollgate's HTTP service
//!
//! Runs on ECS Fargate behind the ALB. `POST /user` registers a user confirmed in Cognito and
//! accepts the post-confirm Lambda alone ([`guard`]: source address, then the shared secret,
//! both by the rules in `shared-auth`). `GET /users/me` serves app users holding a Cognito ID
//! token ([`jwt`]) and creates their row if the sign-up registration was lost. `DELETE` on the
//! guarded route, behind the same guard, is the heartbeat's read-and-delete of its synthetic
//! user ([`routes::heartbeat`]).

pub mod budget;
pub mod clock;
pub mod connection;
pub mod database;
pub mod domain;
pub mod error;
pub mod extract;
pub mod guard;
pub mod identity;
pub mod jwt;
pub mod refusals;
pub mod routes;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod users;

pub use clock::Clock;
pub use startup::{Application, build_state, router, shutdown_signal};
pub use state::AppState;
