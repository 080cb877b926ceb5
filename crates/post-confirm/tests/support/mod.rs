//! Shared test support: a scripted receiver and a local Lambda Runtime API.
pub mod receiver;
pub mod runtime_api;
