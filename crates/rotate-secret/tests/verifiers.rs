//! The rotation finds the api's tasks the way the deployed function does, with ListTasks and
//! DescribeTasks on moto's ECS. A service with no running task holds the rotation back: there
//! is no one to ask, so nothing may pass. (moto 5.2.1 cannot start an awsvpc task: its RunTask
//! fails building the task's network interface, so the addresses themselves are read in the
//! unit tests of `verifiers`, from the shape DescribeTasks gives; see infra/README.md.)

use std::collections::HashMap;

use rotate_secret::verifiers::{CLUSTER_VAR, FindError, PORT_VAR, SERVICE_VAR, Verifiers};

#[tokio::test]
async fn a_service_without_running_tasks_holds_the_rotation_back() {
    let sdk = shared_auth::aws::sdk_config(&testkit::local_aws()).await;
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
