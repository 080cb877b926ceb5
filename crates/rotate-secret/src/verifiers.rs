//! Every api task, asked directly which secret versions it holds.
//!
//! Polling `/readyz` through the ALB reaches whichever task the ALB picks: a task whose refresh
//! failed could keep the old set unseen, refuse the promoted value, and send every sign-up it
//! serves down the slow path. So the rotation lists the service's running tasks from ECS and
//! asks each one at its private address (the function's security group may reach the api
//! port, and nothing else may but the ALB). Locally, where no ECS task runs, the api processes'
//! URLs are given instead.

use std::time::Duration;

use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::error::DisplayErrorContext;

/// Where the api's tasks are found.
#[derive(Debug, Clone)]
pub enum Verifiers {
    /// The running tasks of an ECS service, each at `http://<private address>:<port>`.
    Ecs {
        client: Ecs,
        cluster: String,
        service: String,
        port: u16,
    },
    /// Base URLs of api processes (local runs and tests).
    Fixed(Vec<String>),
}

/// The service's cluster, service and port, set by the stack on the deployed function.
pub const CLUSTER_VAR: &str = "TOLLGATE_ROTATION_ECS_CLUSTER";
pub const SERVICE_VAR: &str = "TOLLGATE_ROTATION_ECS_SERVICE";
pub const PORT_VAR: &str = "TOLLGATE_ROTATION_API_PORT";
/// Comma-separated base URLs of the api processes, for a local run.
pub const URLS_VAR: &str = "TOLLGATE_ROTATION_VERIFIERS";

/// What one task said, for the step's log and error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub url: String,
    /// `Ok(versions)`: the task's `secret_versions` from `/readyz`; `Err`: why not.
    pub versions: Result<serde_json::Value, String>,
}

impl Answer {
    /// Whether the task accepts version `id` (as pending, or already as current).
    pub fn holds(&self, id: &str) -> bool {
        self.versions
            .as_ref()
            .is_ok_and(|v| v["pending"] == id || v["current"] == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("ECS: {0}")]
    Ecs(String),
    #[error("the service `{0}` has no running task to ask")]
    NoTask(String),
    #[error(
        "the rotation function does not know where the api's tasks are: set {CLUSTER_VAR}, \
         {SERVICE_VAR} and {PORT_VAR} (the stack does), or {URLS_VAR} for a local run"
    )]
    Unset,
}

impl Verifiers {
    /// From the function's environment: the ECS service when the stack named it, the listed
    /// URLs, or (local only) `local_api`, the api the sender reaches.
    pub fn from_vars(
        vars: &impl Fn(&str) -> Option<String>,
        sdk: &aws_config::SdkConfig,
        local_api: Option<&str>,
    ) -> Result<Self, FindError> {
        let cluster = vars(CLUSTER_VAR).filter(|v| !v.is_empty());
        let service = vars(SERVICE_VAR).filter(|v| !v.is_empty());
        let port = vars(PORT_VAR).and_then(|p| p.parse().ok());
        if let (Some(cluster), Some(service), Some(port)) = (cluster, service, port) {
            return Ok(Verifiers::Ecs {
                client: Ecs::new(sdk),
                cluster,
                service,
                port,
            });
        }
        let urls: Vec<String> = vars(URLS_VAR)
            .unwrap_or_default()
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        match (urls.is_empty(), local_api) {
            (false, _) => Ok(Verifiers::Fixed(urls)),
            (true, Some(api)) => Ok(Verifiers::Fixed(vec![api.trim_end_matches('/').to_owned()])),
            (true, None) => Err(FindError::Unset),
        }
    }

    /// The base URL of every task running now.
    pub async fn urls(&self) -> Result<Vec<String>, FindError> {
        match self {
            Verifiers::Fixed(urls) => Ok(urls.clone()),
            Verifiers::Ecs {
                client,
                cluster,
                service,
                port,
            } => {
                let ips = running_tasks(client, cluster, service).await?;
                Ok(ips
                    .into_iter()
                    .map(|ip| format!("http://{ip}:{port}"))
                    .collect())
            }
        }
    }

    /// Asks every task now, one after another (a service has a handful).
    pub async fn ask(&self, http: &reqwest::Client) -> Result<Vec<Answer>, FindError> {
        let mut answers = Vec::new();
        for url in self.urls().await? {
            let versions = readyz(http, &url).await;
            answers.push(Answer { url, versions });
        }
        Ok(answers)
    }
}

/// The private addresses of the service's running tasks; at least one.
async fn running_tasks(
    client: &Ecs,
    cluster: &str,
    service: &str,
) -> Result<Vec<String>, FindError> {
    let ecs = |e: String| FindError::Ecs(e);
    let arns = client
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .map_err(|e| ecs(DisplayErrorContext(&e).to_string()))?
        .task_arns
        .unwrap_or_default();
    if arns.is_empty() {
        return Err(FindError::NoTask(service.to_owned()));
    }
    let described = client
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| ecs(DisplayErrorContext(&e).to_string()))?;
    let ips: Vec<String> = described
        .tasks()
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .filter_map(private_address)
        .collect();
    if ips.is_empty() {
        return Err(FindError::NoTask(service.to_owned()));
    }
    Ok(ips)
}

/// A task's private IPv4 address, from its network interface attachment (awsvpc mode).
fn private_address(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .map(str::to_owned)
}

/// The client that asks the tasks: plain HTTP (their private addresses serve no TLS), never
/// following a redirect, the contract's connect timeout.
pub fn client(settings: &shared_auth::LambdaSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .user_agent(concat!(
            "tollgate-rotate-secret/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

async fn readyz(http: &reqwest::Client, base: &str) -> Result<serde_json::Value, String> {
    let response = http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(body["secret_versions"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    async fn sdk() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn the_stack_names_the_service_a_local_run_names_urls_and_nothing_is_refused() {
        let sdk = sdk().await;
        let vars = |m: HashMap<&'static str, &'static str>| {
            move |k: &str| m.get(k).map(|v| (*v).to_owned())
        };
        let ecs = Verifiers::from_vars(
            &vars(HashMap::from([
                (CLUSTER_VAR, "c"),
                (SERVICE_VAR, "s"),
                (PORT_VAR, "8080"),
            ])),
            &sdk,
            None,
        )
        .expect("ecs");
        assert!(matches!(ecs, Verifiers::Ecs { port: 8080, .. }));
        let listed = Verifiers::from_vars(
            &vars(HashMap::from([(URLS_VAR, "http://a:1/, http://b:2")])),
            &sdk,
            Some("http://ignored"),
        )
        .expect("urls");
        assert_eq!(
            listed.urls().await.expect("urls"),
            ["http://a:1", "http://b:2"]
        );
        let local = Verifiers::from_vars(&vars(HashMap::new()), &sdk, Some("http://api:8080/"))
            .expect("local");
        assert_eq!(local.urls().await.expect("urls"), ["http://api:8080"]);
        assert!(matches!(
            Verifiers::from_vars(&vars(HashMap::new()), &sdk, None),
            Err(FindError::Unset)
        ));
    }

    #[test]
    fn a_task_holds_a_version_as_pending_or_current_only() {
        let answer = |v: Result<serde_json::Value, String>| Answer {
            url: "http://t".into(),
            versions: v,
        };
        let ok = |p: &str, c: &str| answer(Ok(serde_json::json!({"pending": p, "current": c})));
        assert!(ok("v2", "v1").holds("v2"));
        assert!(ok("", "v2").holds("v2"));
        assert!(!ok("", "v1").holds("v2"));
        assert!(!answer(Err("connection refused".into())).holds("v2"));
    }

    /// The address is read from the task's network interface attachment as DescribeTasks gives
    /// it on Fargate (awsvpc); a task without one (not yet attached) is not asked.
    #[test]
    fn a_task_is_asked_at_the_address_of_its_network_interface() {
        use aws_sdk_ecs::types::{Attachment, KeyValuePair, Task};
        let detail =
            |name: &str, value: &str| KeyValuePair::builder().name(name).value(value).build();
        let attached = Task::builder()
            .attachments(
                Attachment::builder()
                    .r#type("ElasticNetworkInterface")
                    .details(detail("subnetId", "subnet-1"))
                    .details(detail("privateIPv4Address", "10.0.3.17"))
                    .build(),
            )
            .build();
        assert_eq!(private_address(&attached).as_deref(), Some("10.0.3.17"));
        let pending = Task::builder()
            .attachments(
                Attachment::builder()
                    .r#type("ElasticNetworkInterface")
                    .build(),
            )
            .build();
        assert_eq!(private_address(&pending), None);
        assert_eq!(private_address(&Task::builder().build()), None);
    }
}
