//! The rotation finds the api's tasks the way the deployed function does, with ListTasks and
//! DescribeTasks on moto's ECS. A service with no running task holds the rotation back: there
//! is no one to ask, so nothing may pass. (moto 5.2.1 cannot start an awsvpc task: its RunTask
//! fails building the task's network interface, so the addresses themselves are read in the
//! unit tests of `verifiers`, from the shape DescribeTasks gives; see infra/README.md.)

use std::collections::HashMap;

use rotate_secret::verifiers::{CLUSTER_VAR, FindError, PORT_VAR, SERVICE_VAR, Verifiers};

#[tokio::test]
async fn a_service_without_running_tasks_holds_the_rotation_back() {
    let sdk = shared_aws::sdk_config(&testkit::local_aws()).await;
    let cluster = format!("verifiers-{}", uuid::Uuid::new_v4().simple());
    aws_sdk_ecs::Client::new(&sdk)
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("cluster");
    let vars = |m: HashMap<&'static str, String>| move |k: &str| m.get(k).cloned();
    let verifiers = Verifiers::from_vars(
        &vars(HashMap::from([
            (CLUSTER_VAR, cluster.clone()),
            (SERVICE_VAR, "api".to_owned()),
            (PORT_VAR, "8080".to_owned()),
        ])),
        &sdk,
        None,
    )
    .expect("from the stack's variables");
    match verifiers.urls().await {
        Err(FindError::NoTask(service)) => assert_eq!(service, "api"),
        other => panic!("no task runs: the rotation must say so, not pass: {other:?}"),
    }
    let http = reqwest::Client::new();
    assert!(
        verifiers.ask(&http).await.is_err(),
        "asking no one is not an answer"
    );
}

/// Outside local the function's client for the guarded route speaks HTTPS only, but a task's
/// private address serves plain HTTP (as the ALB reaches it): the tasks are asked with a client
/// of their own. The runner of the deploy test found the rotation stuck at setSecret on every
/// deploy when one client did both.
#[tokio::test]
async fn the_tasks_are_asked_over_plain_http_where_the_api_client_speaks_https_only() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten().take(2) {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let body = r#"{"secret_versions":{"current":"v1","pending":"v2"}}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let settings = shared_auth::LambdaSettings::default();
    let sdk = shared_aws::sdk_config(&testkit::local_aws_region()).await;
    let verifiers = Verifiers::from_vars(&|_: &str| None, &sdk, Some(&url)).expect("urls");
    let api_client =
        lambda_support::http::client(&settings, true, "test").expect("the guarded route's client");
    let refused = verifiers.ask(&api_client).await.expect("asked");
    assert!(
        refused[0].versions.is_err(),
        "an HTTPS-only client cannot ask a task: {refused:?}"
    );
    let tasks = rotate_secret::verifiers::client(&settings).expect("the tasks' client");
    let answers = verifiers.ask(&tasks).await.expect("asked");
    assert!(answers[0].holds("v2"), "{answers:?}");
}
