//! The audit line of each registration survives the api's stop. The log leaves the request
//! path through a writer thread (`api::telemetry`); a SIGTERM, as ECS sends when it replaces a
//! task, must still see every queued line written before the process exits.

use std::time::Duration;

use shared_auth::Component;
use testkit::stack::Api;

/// Registrations sent at once, then the stop.
const SIGN_UPS: usize = 300;

#[tokio::test]
async fn no_registration_line_is_lost_when_the_api_is_stopped() {
    let mut api = Api::start("audit_log", &[]).await.expect("the api starts");
    let vars = api.shared_env.iter().cloned().collect();
    let contract = shared_auth::load_for(Component::Lambda, &vars)
        .expect("the sender's settings")
        .guard;
    let http = reqwest::Client::new();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..SIGN_UPS {
        let sub = format!("00000000-0000-4000-8000-{n:012}");
        let body = format!(
            r#"{{"sub":"{sub}","email":"user{n}@example.com","email_verified":true,"username":"user{n}"}}"#
        );
        let mut request = http
            .post(format!("{}{}", api.url, contract.path))
            .header("content-type", "application/json");
        let credentials = contract.credentials(
            std::slice::from_ref(&api.secret),
            &shared_auth::registration_id("audit-log", &sub),
            body.as_bytes(),
            shared_auth::unix::seconds(),
        );
        for (name, value) in credentials.iter() {
            request = request.header(name, value);
        }
        sends.spawn(async move { request.body(body).send().await.map(|r| r.status().as_u16()) });
    }
    let mut created = 0;
    while let Some(sent) = sends.join_next().await {
        let status = sent.expect("the task").expect("the api answers");
        assert_eq!(status, 201, "a new user is created");
        created += 1;
    }
    let exit = api.terminate(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the api stops cleanly on SIGTERM: {exit:?}; see {}",
        api.log.display()
    );
    let log = std::fs::read_to_string(&api.log).expect("the api's log");
    // The last line, logged as `main` returns: only the flush on exit writes it.
    assert!(
        log.lines()
            .last()
            .is_some_and(|l| l.contains("api stopped")),
        "the api's last line (\"api stopped\") was lost at exit; see {}",
        api.log.display()
    );
    let lines = log
        .lines()
        .filter(|l| l.contains("user registered"))
        .count();
    assert_eq!(
        lines,
        created,
        "{created} users were registered, {lines} audit lines written; see {}",
        api.log.display()
    );
}
