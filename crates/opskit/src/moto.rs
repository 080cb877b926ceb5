//! A moto_server as the stack needs it: its run-time configuration, applied by the tests'
//! servers, by `cargo xtask moto` and by every cloud task pointed at a local AWS.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// moto's run-time configuration (`POST /moto-api/config`): Lambda without Docker, so an
/// invocation (Secrets Manager's rotation test of the configuration) answers as a stub
/// instead of failing for want of a container engine.
pub const MOTO_CONFIG: &str = r#"{"lambda":{"use_docker":false}}"#;

/// moto's state transitions (`POST /moto-api/state-manager/set-transition`): an ECS task stays
/// `RUNNING` until it is stopped, as in ECS. moto's default moves it on at every
/// `DescribeTasks` (RUNNING, DEACTIVATING, STOPPING, …), so the rotation function, which
/// lists the service's running tasks, would find none.
pub const MOTO_TRANSITIONS: &str =
    r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#;

/// Applies [`MOTO_CONFIG`] and [`MOTO_TRANSITIONS`] to the moto_server at `endpoint`
/// (`http://host:port`).
pub fn configure_moto(endpoint: &str) -> Result<()> {
    for (path, body) in [
        ("/moto-api/config", MOTO_CONFIG),
        ("/moto-api/state-manager/set-transition", MOTO_TRANSITIONS),
    ] {
        moto_api(endpoint, path, body)?;
    }
    Ok(())
}

fn moto_api(endpoint: &str, path: &str, body: &str) -> Result<()> {
    use std::io::{Read, Write};
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&host)
        .with_context(|| format!("cannot reach moto_server at {endpoint}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        bail!(
            "moto_server at {endpoint} refused {path}: {}",
            answer.lines().next().unwrap_or("(no answer)")
        );
    }
    Ok(())
}
