//! The world the runner starts things in: the applied state read back ([`Deployed`]), the
//! network twin built from it with every interface AWS would create at run time, the database
//! instance and the load balancer standing where the stack puts them, and the tasks and
//! functions started there ([`World`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::platform::credentials::Session;
use crate::platform::ecs::{self, Container, Placed};
use crate::platform::image::Image;
use crate::platform::lambda::Sandbox;
use crate::platform::{Difference, lambda};
use crate::services::Postgres;
use crate::tls::TestCa;
use crate::twin::{self, Placement, Twin};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use stack_model::Network;

/// Where a task finds the database's CA (written into its root file system).
pub const DB_CA_IN_TASK: &str = "/etc/tollgate/db-ca.pem";
/// How long a one-off task may run.
const TASK_LIMIT: Duration = Duration::from_secs(180);
/// The twin's WAF divides its rate rules' windows and limits by this.
pub const RATE_SCALE: u32 = 100;
/// ECS's stop timeout for the api's container (`stopTimeout` in infra/service.tf), and more.
const STOP_GRACE: Duration = Duration::from_secs(35);

/// The deployed environment as its state and moto hold it.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub env: String,
    pub region: String,
    /// moto, as `http://127.0.0.1:<port>`.
    pub moto: String,
    /// `terraform show -json` of the stack's state.
    pub state: Value,
    /// The managed resources by address.
    pub resources: BTreeMap<String, Value>,
    /// The account bootstrap's state (the roles' permissions boundaries).
    pub bootstrap: Value,
    /// Where `deploy` put the artifacts (`target/dist/<env>/`).
    pub dist: PathBuf,
    /// Where the runner keeps its files.
    pub work: PathBuf,
}

impl Deployed {
    /// The state of `env` in the checkout at `root`, as Terraform shows it now.
    pub fn read(
        root: &Path,
        env: &str,
        moto: &str,
        bootstrap: &Value,
        work: &Path,
    ) -> Result<Self> {
        let out = std::process::Command::new("terraform")
            .current_dir(root.join("target/tollgate/tf").join(env))
            .args(["show", "-json", "-no-color"])
            .output()
            .context("terraform runs")?;
        if !out.status.success() {
            bail!("terraform show: {}", String::from_utf8_lossy(&out.stderr));
        }
        let state: Value = serde_json::from_slice(&out.stdout)?;
        let resources = stack_model::resources(&state)
            .into_iter()
            .map(|r| (r.address, r.values))
            .collect();
        Ok(Deployed {
            env: env.to_owned(),
            region: "ap-northeast-1".to_owned(),
            moto: moto.to_owned(),
            state,
            resources,
            bootstrap: bootstrap.clone(),
            dist: root.join("target/dist").join(env),
            work: work.to_owned(),
        })
    }

    /// The same states (the stack's and the bootstrap's) less every resource whose address
    /// starts with `prefix`: what an apply that left it out would have made (a mutation a test
    /// expects the runner to catch). A security group rule leaves its group's read-back list
    /// too (`ingress`, `egress`: what a refresh records of every rule the group holds), as it
    /// would in AWS.
    pub fn without(&self, prefix: &str) -> Self {
        let mut less = self.clone();
        fn strip(module: &mut Value, prefix: &str, removed: &mut Vec<Value>) {
            if let Some(list) = module["resources"].as_array_mut() {
                list.retain(|r| {
                    let gone = r["address"].as_str().is_some_and(|a| a.starts_with(prefix));
                    if gone && r["type"] == "aws_security_group_rule" {
                        removed.push(r["values"].clone());
                    }
                    !gone
                });
            }
            for child in module["child_modules"].as_array_mut().into_iter().flatten() {
                strip(child, prefix, removed);
            }
        }
        let mut removed = Vec::new();
        strip(
            &mut less.state["values"]["root_module"],
            prefix,
            &mut removed,
        );
        strip(
            &mut less.bootstrap["values"]["root_module"],
            prefix,
            &mut removed,
        );
        less.resources.retain(|a, _| !a.starts_with(prefix));
        for rule in &removed {
            forget_in_group(&mut less.state["values"]["root_module"], rule);
        }
        less
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        crate::sdk_config(&shared_auth::AwsSettings {
            region: Some(self.region.clone()),
            endpoint_url: Some(self.moto.clone()),
        })
        .await
    }

    /// A confirmed user in the stack's pool, and the PostConfirmation event Cognito sends.
    pub async fn sign_up(&self, prefix: &str) -> Result<SignedUp> {
        let cognito = aws_sdk_cognitoidentityprovider::Client::new(&self.sdk().await);
        let pool = self.attr("aws_cognito_user_pool.this", "id")?;
        let client = self.attr("aws_cognito_user_pool_client.app", "id")?;
        // The pool signs users up by their email address (infra/identity.tf).
        let email = format!(
            "{prefix}-{}@example.com",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let username = email.clone();
        use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
        let attributes = [("email", email.as_str()), ("email_verified", "true")].map(|(n, v)| {
            AttributeType::builder()
                .name(n)
                .value(v)
                .build()
                .expect("name and value")
        });
        cognito
            .admin_create_user()
            .user_pool_id(&pool)
            .username(&username)
            .set_user_attributes(Some(attributes.to_vec()))
            .message_action(MessageActionType::Suppress)
            .send()
            .await
            .context("cognito:AdminCreateUser")?;
        cognito
            .admin_set_user_password()
            .user_pool_id(&pool)
            .username(&username)
            .password(crate::cognito::PASSWORD)
            .permanent(true)
            .send()
            .await
            .context("cognito:AdminSetUserPassword")?;
        let user = cognito
            .admin_get_user()
            .user_pool_id(&pool)
            .username(&username)
            .send()
            .await
            .context("cognito:AdminGetUser")?;
        let event = crate::cognito::post_confirmation_event(
            &self.region,
            &pool,
            &client,
            &username,
            user.user_attributes(),
        );
        let sub = event["request"]["userAttributes"]["sub"]
            .as_str()
            .context("the user has no sub")?
            .to_owned();
        Ok(SignedUp {
            username,
            sub,
            event,
        })
    }

    /// `address`'s attribute `key`, a string.
    pub fn attr(&self, address: &str, key: &str) -> Result<String> {
        self.resources
            .get(address)
            .and_then(|r| r[key].as_str())
            .map(str::to_owned)
            .with_context(|| format!("{address}.{key} is not in the state"))
    }

    /// `address`'s attribute `key`, a list of strings.
    pub fn strings(&self, address: &str, key: &str) -> Vec<String> {
        self.resources
            .get(address)
            .and_then(|r| r[key].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    /// The ids of the resources whose address starts with `prefix` (`aws_subnet.private[`),
    /// in index order.
    pub fn ids(&self, prefix: &str) -> Vec<String> {
        self.resources
            .iter()
            .filter(|(a, _)| a.starts_with(prefix))
            .filter_map(|(_, r)| r["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The port the load balancer's target group sends to (the api's).
    pub fn api_port(&self) -> Result<u16> {
        self.resources["aws_lb_target_group.api"]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("the target group has no port")
    }

    /// A resource's name in this environment: `tollgate-<env>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("tollgate-{}-{suffix}", self.env)
    }
}

/// How much of the stack a world starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The migration task and the database (what the targeted apply made).
    Migration,
    /// Everything.
    Stack,
}

/// One row of the runner's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

impl Row {
    pub fn check(what: &str, ok: bool, detail: String) -> Self {
        Row {
            ok,
            what: what.to_owned(),
            detail,
        }
    }

    pub fn from(what: &str, result: Result<String>) -> Self {
        match result {
            Ok(detail) => Row::check(what, true, detail),
            Err(e) => Row::check(what, false, format!("{e:#}")),
        }
    }
}

/// The rows of one run, with the differences its processes got.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    pub differences: Vec<Difference>,
    pub function_differences: Vec<Difference>,
}

impl Report {
    pub fn new(title: &str) -> Self {
        Report {
            title: title.to_owned(),
            ..Report::default()
        }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn extend(&mut self, rows: Vec<Row>) {
        self.rows.extend(rows);
    }

    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.ok).collect()
    }

    /// The table, ✓/✗ per row, and every difference from AWS.
    pub fn text(&self) -> String {
        let width = self.rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
        let mut out = format!("{}:\n", self.title);
        for row in &self.rows {
            let mark = if row.ok { "✓" } else { "✗" };
            out.push_str(&format!("{mark}  {:<width$}  {}\n", row.what, row.detail));
        }
        for (who, list) in [
            ("tasks", &self.differences),
            ("functions", &self.function_differences),
        ] {
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("  the local world's differences for the {who}:\n"));
            for d in list {
                let value = if d.value.contains('\n') || d.value.len() > 72 {
                    format!("({} bytes)", d.value.len())
                } else {
                    d.value.clone()
                };
                out.push_str(&format!("    {} = {value}  ({})\n", d.name, d.why));
            }
        }
        out
    }
}

/// The load balancer standing in the twin.
#[derive(Debug, Clone)]
pub struct Alb {
    pub public: Ipv4Addr,
    pub dns_name: String,
    /// The api's public name (`https://<domain>` is what the functions call).
    pub domain: String,
}

/// The twin with the stack's processes.
pub struct World {
    /// Dropped before the twin: it runs in one of its namespaces.
    db: Postgres,
    pub twin: Twin,
    pub deployed: Deployed,
    /// The database instance's endpoint name and port, and the twin's address for it.
    db_name: (String, u16),
    db_address: Ipv4Addr,
    /// The twin's CA: the load balancer's certificate.
    ca: TestCa,
    pub alb: Option<Alb>,
    /// Tasks ECS placed: twin name → (placement, task definition family).
    tasks: BTreeMap<String, (Placed, String)>,
    /// Hosts whose credentials endpoint is served.
    credentials: BTreeSet<String>,
    images: BTreeMap<String, Image>,
    cluster: String,
    runs: usize,
    /// The twin's service of each task's latest run: host → service.
    running: BTreeMap<String, String>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("twin", &self.twin)
            .finish_non_exhaustive()
    }
}

impl World {
    /// Places what `scope` starts (ECS places the tasks: `RunTask`), builds the twin from the
    /// state, serves AWS's endpoints on its internet, and starts the database instance (and,
    /// for the whole stack, the load balancer).
    pub async fn build(deployed: &Deployed, scope: Scope) -> Result<Self> {
        let network = Network::from_state(&deployed.state)?;
        let cluster = deployed.attr("aws_ecs_cluster.this", "name")?;
        let (placements, tasks) = Self::place(deployed, scope, &cluster).await?;
        let dir = deployed.work.join(match scope {
            Scope::Migration => "migration",
            Scope::Stack => "stack",
        });
        let twin = Twin::build(network, &placements, &dir)?;
        let moto: SocketAddr = deployed
            .moto
            .trim_start_matches("http://")
            .parse()
            .context("moto's endpoint is host:port")?;
        twin.serve_aws(SocketAddrV4::new(twin::AWS_PUBLIC, 443), moto)?;
        twin.inet_address(twin::ATTACKER)?;
        let db_name = (
            deployed.attr("aws_db_instance.this", "address")?,
            deployed.resources["aws_db_instance.this"]["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432),
        );
        let db_address = twin.host("db")?.address;
        let db = Postgres::start_as_instance(
            &twin.host("db")?.namespace,
            &db_address.to_string(),
            db_name.1,
            &[db_name.0.as_str()],
        )?;
        let mut world = World {
            db,
            twin,
            deployed: deployed.clone(),
            db_name,
            db_address,
            ca: TestCa::new("Tollgate twin CA")?,
            alb: None,
            tasks,
            credentials: BTreeSet::new(),
            images: BTreeMap::new(),
            cluster,
            runs: 0,
            running: BTreeMap::new(),
        };
        world.create_master_user().await?;
        if scope == Scope::Stack {
            world.start_load_balancer().await?;
            world.take_over_polling(false).await?;
        }
        Ok(world)
    }

    /// Where AWS would put what `scope` starts: the migration task (ECS places it, with
    /// `RunTask` as `deploy` runs it: the first private subnet, the api's security group), the
    /// database instance, and for the whole stack the service's tasks, both functions and the
    /// load balancer.
    async fn place(
        deployed: &Deployed,
        scope: Scope,
        cluster: &str,
    ) -> Result<(Vec<Placement>, BTreeMap<String, (Placed, String)>)> {
        let ecs_client = aws_sdk_ecs::Client::new(&deployed.sdk().await);
        let mut placements = Vec::new();
        let mut tasks = BTreeMap::new();
        let private = deployed.ids("aws_subnet.private[");
        let api_group = deployed.attr("aws_security_group.api", "id")?;
        let migrate_family = deployed.name("migrate");
        let placed = ecs::run_task(
            &deployed.moto,
            &deployed.region,
            cluster,
            &migrate_family,
            private.first().context("no private subnet in the state")?,
            std::slice::from_ref(&api_group),
            "tollgate-deploy",
        )
        .await?;
        placements.push(task_placement("migrate-1", &placed));
        tasks.insert("migrate-1".to_owned(), (placed, migrate_family));
        let db_subnets = deployed.strings("aws_db_subnet_group.this", "subnet_ids");
        placements.push(Placement {
            name: "db".into(),
            subnet: db_subnets
                .first()
                .context("the database has no subnet")?
                .clone(),
            address: None,
            groups: deployed.strings("aws_db_instance.this", "vpc_security_group_ids"),
            public: false,
        });
        if scope == Scope::Stack {
            Self::place_service(deployed, &ecs_client, cluster, &mut placements, &mut tasks)
                .await?;
            for (name, suffix) in [
                ("fn-signup", "post-confirm"),
                ("fn-rotate", "rotate-secret"),
            ] {
                let f = super::function_config(deployed, suffix).await?;
                placements.push(Placement {
                    name: name.into(),
                    subnet: f
                        .subnets
                        .first()
                        .context("the function has no subnet")?
                        .clone(),
                    address: None,
                    groups: f.groups.clone(),
                    public: false,
                });
            }
            placements.push(Placement {
                name: "alb".into(),
                subnet: deployed
                    .strings("aws_lb.this", "subnets")
                    .first()
                    .context("the load balancer has no subnet")?
                    .clone(),
                address: None,
                groups: deployed.strings("aws_lb.this", "security_groups"),
                public: true,
            });
        }
        Ok((placements, tasks))
    }

    /// The api service's tasks, as its scheduler places them: `desiredCount` tasks of its task
    /// definition, across its subnets, with its security groups.
    async fn place_service(
        deployed: &Deployed,
        ecs_client: &aws_sdk_ecs::Client,
        cluster: &str,
        placements: &mut Vec<Placement>,
        tasks: &mut BTreeMap<String, (Placed, String)>,
    ) -> Result<()> {
        let name = deployed.attr("aws_ecs_service.api", "name")?;
        let described = ecs_client
            .describe_services()
            .cluster(cluster)
            .services(&name)
            .send()
            .await
            .context("ecs:DescribeServices")?;
        let service = described.services().first().context("no api service")?;
        let network = service
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration())
            .context("the service has no awsvpc configuration")?;
        let definition = service
            .task_definition()
            .context("the service names no task definition")?
            .to_owned();
        let count = usize::try_from(service.desired_count()).unwrap_or(1).max(1);
        for i in 0..count {
            let subnet = &network.subnets()[i % network.subnets().len().max(1)];
            let placed = ecs::run_task(
                &deployed.moto,
                &deployed.region,
                cluster,
                &definition,
                subnet,
                network.security_groups(),
                &format!("ecs-svc/{name}"),
            )
            .await?;
            let host = format!("api-{}", i + 1);
            placements.push(task_placement(&host, &placed));
            tasks.insert(host, (placed, definition.clone()));
        }
        Ok(())
    }

    /// moto polls a queue with an enabled event source mapping itself, on every SendMessage,
    /// and feeds the batch to its stub of the function (no container: `MOTO_CONFIG`), which
    /// swallows it. The runner plays Lambda's poller with the real function instead: the
    /// mappings are off in moto while it runs (`enabled = false`) and on again after.
    async fn take_over_polling(&self, enabled: bool) -> Result<()> {
        let lambda = aws_sdk_lambda::Client::new(&self.deployed.sdk().await);
        for (address, mapping) in &self.deployed.resources {
            if !address.starts_with("aws_lambda_event_source_mapping.") {
                continue;
            }
            let uuid = mapping["uuid"]
                .as_str()
                .or(mapping["id"].as_str())
                .context("an event source mapping without uuid")?;
            lambda
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(enabled)
                .send()
                .await
                .with_context(|| format!("cannot set {address} enabled = {enabled}"))?;
        }
        Ok(())
    }

    /// moto's endpoint as the twin's processes reach it.
    pub fn aws_endpoint(&self) -> String {
        format!("http://{}:443", twin::AWS_PUBLIC)
    }

    /// What the tasks' `/etc/hosts` says beyond localhost.
    pub fn task_hosts_line(&self) -> String {
        format!("{} {}", self.db_address, self.db_name.0)
    }

    /// What the functions' `/etc/hosts` says beyond localhost.
    pub fn function_hosts_line(&self) -> String {
        match &self.alb {
            Some(alb) => format!("{} {} {}", alb.public, alb.domain, alb.dns_name),
            None => String::new(),
        }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The local world's differences with their real values (the CA's PEM in full).
    fn differences_for(&self, function: bool) -> Vec<Difference> {
        let (task, functions) = super::differences(self);
        let mut list = if function { functions } else { task };
        for d in &mut list {
            if d.name == "TOLLGATE__LAMBDA__PRIVATE_CA_PEM" {
                d.value = self.ca_pem();
            }
        }
        list
    }

    /// The RDS master user, as RDS creates it: its name and password from the secret RDS
    /// manages (moto made it), owner of the instance's database, allowed to create roles and
    /// databases but no superuser (`rds_superuser` is not one).
    async fn create_master_user(&self) -> Result<()> {
        let sm = aws_sdk_secretsmanager::Client::new(&self.deployed.sdk().await);
        let arn =
            self.deployed.resources["aws_db_instance.this"]["master_user_secret"][0]["secret_arn"]
                .as_str()
                .context("the instance has no managed master secret")?
                .to_owned();
        let text = shared_aws::versions::at_stage(&sm, &arn, "AWSCURRENT")
            .await?
            .context("the master secret has no value")?
            .value;
        let secret: Value = serde_json::from_str(secrecy::ExposeSecret::expose_secret(&text))
            .context("the master secret is not JSON")?;
        let user = secret["username"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.deployed.attr("aws_db_instance.this", "username").ok())
            .context("no master user name")?;
        let password = secret["password"]
            .as_str()
            .context("the master secret has no password")?
            .to_owned();
        let database = self.deployed.attr("aws_db_instance.this", "db_name")?;
        let statements = vec![
            format!(
                "CREATE ROLE \"{user}\" LOGIN CREATEROLE CREATEDB PASSWORD '{}'",
                password.replace('\'', "''")
            ),
            format!("CREATE DATABASE \"{database}\" OWNER \"{user}\""),
        ];
        self.admin("postgres", move |mut c| async move {
            use sqlx::Executor;
            for s in statements {
                c.execute(s.as_str()).await?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` with a superuser connection to `database`, from inside the database's own
    /// namespace (the only place the superuser may connect from).
    pub async fn admin<T, F, Fut>(&self, database: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(sqlx::PgConnection) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>>,
    {
        use sqlx::Connection;
        let url = self
            .db
            .url()
            .replacen("/postgres?", &format!("/{database}?"), 1);
        let twin = &self.twin;
        tokio::task::block_in_place(|| {
            twin.inside(Some("db"), move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let connection = sqlx::PgConnection::connect(&url).await?;
                    f(connection).await
                })
            })
        })?
    }

    /// Rows for `sub` in the stack's database.
    pub async fn rows_for(&self, sub: &str) -> Result<i64> {
        let database = self.deployed.attr("aws_db_instance.this", "db_name")?;
        let sub = sub.to_owned();
        self.admin(&database, move |mut c| async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
                    .bind(sub)
                    .fetch_one(&mut c)
                    .await?;
            Ok(n)
        })
        .await
    }

    fn image(&mut self, reference: &str) -> Result<Image> {
        if let Some(image) = self.images.get(reference) {
            return Ok(image.clone());
        }
        let dir = self
            .twin
            .dir()
            .join("images")
            .join(self.images.len().to_string());
        let image = Image::pull(reference, &dir)?;
        self.images.insert(reference.to_owned(), image.clone());
        Ok(image)
    }

    /// The task role's session, served at ECS's credentials endpoint in `host` (once).
    async fn serve_credentials(
        &mut self,
        host: &str,
        container: &Container,
        path: &str,
    ) -> Result<Option<Session>> {
        let Some(role) = &container.task_role_arn else {
            return Ok(None);
        };
        let session = Session::assume(&self.deployed.moto, role, host).await?;
        if self.credentials.insert(host.to_owned()) {
            session.serve_for_task(&self.twin, host, path)?;
        }
        Ok(Some(session))
    }

    /// Starts the container of `host`'s task as Fargate would; returns the service's name.
    async fn start_task(&mut self, host: &str, without: &[&str]) -> Result<(String, Container)> {
        let family = self
            .tasks
            .get(host)
            .with_context(|| format!("no task {host}"))?
            .1
            .clone();
        let container = super::container(&self.deployed, &family).await?;
        let image = self.image(&container.image)?;
        let path = format!("/v2/credentials/{host}");
        let session = self.serve_credentials(host, &container, &path).await?;
        let differences = self.differences_for(false);
        let files = vec![
            (
                "/etc/hosts".to_owned(),
                format!("127.0.0.1 localhost\n{}\n", self.task_hosts_line()),
            ),
            (
                DB_CA_IN_TASK.to_owned(),
                std::fs::read_to_string(self.db.ca_file())?,
            ),
        ];
        let start = ecs::Start {
            container: &container,
            image: &image,
            host,
            region: &self.deployed.region,
            session: session.as_ref(),
            differences: &differences,
            files: &files,
        };
        let sm = aws_sdk_secretsmanager::Client::new(&self.deployed.sdk().await);
        let mut env = ecs::environment(&start, &sm, &path).await?;
        env.retain(|(k, _)| !without.contains(&k.as_str()));
        self.runs += 1;
        let dir = ecs::task_dir(&self.twin, &format!("{host}-{}", self.runs));
        let command = ecs::command(&self.twin, &start, &env, &dir)?;
        let service = format!("{host}-run{}", self.runs);
        self.twin.spawn(&service, command)?;
        self.running.insert(host.to_owned(), service.clone());
        Ok((service, container))
    }

    /// The migration task, as `deploy` runs it before the service rolls: it must exit 0 and
    /// leave the schema and the serving login in place. `without` names variables taken out
    /// of its rendered environment (a test that a missing one is caught).
    pub async fn migrate(&mut self, without: &[&str]) -> Row {
        let started = Instant::now();
        let result: Result<String> = async {
            let (service, container) = self.start_task("migrate-1", without).await?;
            let process = self.twin.service(&service)?;
            let status = tokio::task::block_in_place(|| process.wait_for_exit(TASK_LIMIT));
            let log = std::fs::read_to_string(process.log()).unwrap_or_default();
            // Its one essential container ended: ECS stops the task.
            let arn = self.tasks["migrate-1"].0.arn.clone();
            ecs::stop_task(&self.deployed.moto, &self.deployed.region, &self.cluster, &arn, "Essential container in task exited").await?;
            match status {
                Some(s) if s.success() => {}
                Some(s) => bail!(
                    "{}:{} exited with {}: {}",
                    container.family,
                    container.revision,
                    s.code().map_or("a signal".into(), |c| c.to_string()),
                    last_error(&log)
                ),
                None => bail!("{} did not end within {} s", container.family, TASK_LIMIT.as_secs()),
            }
            let (applied, login) = self.schema().await?;
            let expected = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))?
                .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql")))
                .count() as i64;
            if applied != expected || !login {
                bail!("{applied} of {expected} migrations applied; serving login a member of tollgate_app: {login}");
            }
            Ok(format!(
                "{}:{} (`{}`) exited 0 in {:.1} s: {applied} migrations, `users`, the serving login in tollgate_app",
                container.family,
                container.revision,
                container.command.join(" "),
                started.elapsed().as_secs_f64()
            ))
        }
        .await;
        Row::from("migrate", result)
    }

    /// (migrations applied, whether the serving login is a member of tollgate_app).
    async fn schema(&self) -> Result<(i64, bool)> {
        let database = self.deployed.attr("aws_db_instance.this", "db_name")?;
        self.admin(&database, |mut c| async move {
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut c)
                    .await?;
            let login: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tollgate_api') \
                 AND pg_has_role('tollgate_api', 'tollgate_app', 'member') \
                 AND to_regclass('public.users') IS NOT NULL",
            )
            .fetch_one(&mut c)
            .await?;
            Ok((applied, login))
        })
        .await
    }

    /// The load balancer where the stack puts it: its listeners (HTTPS with a certificate for
    /// the api's name, HTTP redirecting), appending the caller to `X-Forwarded-For` and
    /// dropping invalid header names as the stack sets it, forwarding to the service's tasks.
    async fn start_load_balancer(&mut self) -> Result<()> {
        let signup = super::function_config(&self.deployed, "post-confirm").await?;
        let base = signup
            .environment
            .iter()
            .find(|(k, _)| k == "TOLLGATE__LAMBDA__API_BASE_URL")
            .map(|(_, v)| v.clone())
            .context("the sign-up function has no api base URL")?;
        let domain = base
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let dns_name = self.deployed.attr("aws_lb.this", "dns_name")?;
        // The name leads to the load balancer through the stack's alias record.
        if let Some(record) = self.deployed.resources.get("aws_route53_record.api[0]") {
            let alias = record["alias"][0]["name"].as_str().unwrap_or_default();
            if !alias.trim_end_matches('.').eq_ignore_ascii_case(&dns_name) {
                bail!("{domain}'s alias record leads to {alias}, not the load balancer {dns_name}");
            }
        }
        let host = self.twin.host("alb")?.clone();
        let public = host
            .public
            .context("the load balancer has no public address")?;
        let port = self.deployed.api_port()?;
        let targets: Vec<String> = self
            .tasks
            .iter()
            .filter(|(name, _)| name.starts_with("api-"))
            .map(|(_, (placed, _))| format!("{}:{port}", placed.address))
            .collect();
        let cert = self.ca.server_cert(&[domain.as_str(), dns_name.as_str()])?;
        let dir = self.twin.dir().join("alb");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("server.crt"), &cert.cert_pem)?;
        std::fs::write(dir.join("server.key"), &cert.key_pem)?;
        let idle = self.deployed.resources["aws_lb.this"]["idle_timeout"]
            .as_u64()
            .unwrap_or(60);
        let waf = self.start_waf().await?;
        std::fs::write(
            dir.join("nginx.conf"),
            twin::alb::nginx_conf(&dir, &targets, idle, waf),
        )?;
        let nginx = crate::cmd::which("nginx")
            .context("nginx plays the load balancer: apt-get install nginx-light")?;
        let mut command = self.twin.command("alb", nginx)?;
        command
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"));
        self.twin.spawn("alb", command)?;
        let entries = vec![(domain.clone(), public), (dns_name.clone(), public)];
        for h in ["fn-signup", "fn-rotate"] {
            self.twin.set_hosts(Some(h), &entries)?;
        }
        self.alb = Some(Alb {
            public,
            dns_name,
            domain,
        });
        Ok(())
    }

    /// The web ACL associated with the load balancer, evaluated in the load balancer's
    /// namespace for its nginx (`None` when no web ACL is associated). Its rate rules' windows
    /// and limits are divided by [`RATE_SCALE`], so a test reaches a limit at the same rate in
    /// seconds.
    async fn start_waf(&self) -> Result<Option<u16>> {
        let balancer = self.deployed.attr("aws_lb.this", "arn")?;
        let Some(acl) = self.deployed.resources.iter().find_map(|(a, r)| {
            (a.starts_with("aws_wafv2_web_acl_association.")
                && r["resource_arn"] == balancer.as_str())
            .then(|| r["web_acl_arn"].as_str().map(str::to_owned))
            .flatten()
        }) else {
            return Ok(None);
        };
        let name = self
            .deployed
            .resources
            .iter()
            .find(|(a, r)| a.starts_with("aws_wafv2_web_acl.") && r["arn"] == acl.as_str())
            .and_then(|(_, r)| r["name"].as_str())
            .context("the associated web ACL is not in the state")?
            .to_owned();
        let acl = twin::waf::read(&self.deployed.moto, &self.deployed.region, &name)
            .await?
            .with_rate_scale(RATE_SCALE);
        let listener = self
            .twin
            .inside(Some("alb"), || std::net::TcpListener::bind("127.0.0.1:0"))??;
        let port = listener.local_addr()?.port();
        twin::waf::serve(listener, acl)?;
        Ok(Some(port))
    }

    /// The service's tasks started, then `GET https://<domain>/readyz` from the internet
    /// through the load balancer until the database and the secret are ready.
    pub async fn serve(&mut self) -> Row {
        let result: Result<String> = async {
            let hosts: Vec<String> = self.tasks.keys().filter(|h| h.starts_with("api-")).cloned().collect();
            let mut family = String::new();
            for host in &hosts {
                let (_, container) = self.start_task(host, &[]).await?;
                family = format!("{}:{}", container.family, container.revision);
            }
            let alb = self.alb.clone().context("no load balancer")?;
            let url = format!("https://{}/readyz", alb.domain);
            let me: &World = self;
            let asked = url.clone();
            let body = super::eventually(Duration::from_secs(90), move || {
                let (url, alb) = (asked.clone(), alb.clone());
                async move {
                    let body = me.internet_request(&alb, &url, None).await?;
                    match (body.1["database"].as_bool(), body.1["secret"].as_bool()) {
                        (Some(true), Some(true)) => Ok(()),
                        _ => bail!("{url} → {} {}", body.0, body.1),
                    }
                }
            })
            .await;
            if let Err(e) = body {
                let logs: Vec<String> = hosts.iter().map(|h| self.twin.dir().join(format!("{h}-run*.log")).display().to_string()).collect();
                return Err(e).with_context(|| format!("see {}", logs.join(", ")));
            }
            let addresses: Vec<String> = hosts
                .iter()
                .map(|h| self.tasks[h].0.address.to_string())
                .collect();
            Ok(format!(
                "{} tasks of {family} ({}): GET {url} through the load balancer: database and secret ready",
                hosts.len(),
                addresses.join(", ")
            ))
        }
        .await;
        Row::from("api", result)
    }

    /// `GET` (or, with `post`, a `POST` of that body with those headers) of `url` from the
    /// internet (the attacker's address): the status and the JSON body.
    pub async fn internet_request(
        &self,
        _alb: &Alb,
        url: &str,
        post: Option<(Vec<(String, String)>, String)>,
    ) -> Result<(u16, Value)> {
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .unwrap_or_else(|| "/".to_owned());
        let call = match post {
            None => Call::get(&path),
            Some((headers, body)) => Call::post(&path, headers, body),
        };
        let answer = self
            .calls(From::Internet(twin::ATTACKER), vec![call])
            .await?
            .remove(0);
        Ok((answer.status, answer.json))
    }

    /// Each call, in order, from `from` to `https://<the api's name>` (resolved to the load
    /// balancer's public address, its certificate trusted): what came back.
    pub async fn calls(&self, from: From, calls: Vec<Call>) -> Result<Vec<Answer>> {
        let alb = self.alb.clone().context("no load balancer")?;
        let (ca, host) = (
            self.ca_pem(),
            match &from {
                From::Internet(_) => None,
                From::Host(h) => Some(h.clone()),
            },
        );
        let local = match from {
            From::Internet(address) => Some(address),
            From::Host(_) => None,
        };
        if let Some(address) = local {
            self.twin.inet_address(address)?;
        }
        tokio::task::block_in_place(|| {
            self.twin.inside(host.as_deref(), move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(send(alb, ca, local, calls))
            })
        })?
    }

    /// A function started as Lambda starts it, in its interface's namespace.
    pub async fn function(&mut self, suffix: &str) -> Result<Sandbox> {
        self.function_instance(suffix, 0).await
    }

    /// Another execution environment of a function ([`World::function`] is the first), for an
    /// invocation that runs while another is in progress, as Lambda runs them.
    pub async fn function_instance(&mut self, suffix: &str, instance: u32) -> Result<Sandbox> {
        self.start_function(suffix, instance, false).await
    }

    /// An execution environment of a function on a Lambda host whose wall clock can be stepped
    /// ([`Sandbox::step_clock`]).
    pub async fn function_on_steppable_clock(
        &mut self,
        suffix: &str,
        instance: u32,
    ) -> Result<Sandbox> {
        self.start_function(suffix, instance, true).await
    }

    async fn start_function(
        &mut self,
        suffix: &str,
        instance: u32,
        steppable_clock: bool,
    ) -> Result<Sandbox> {
        let function = super::function_config(&self.deployed, suffix).await?;
        let host = if suffix == "post-confirm" {
            "fn-signup"
        } else {
            "fn-rotate"
        };
        let zip = self.deployed.dist.join(if suffix == "post-confirm" {
            "bootstrap.zip"
        } else {
            "rotate-secret.zip"
        });
        let session = Session::assume(&self.deployed.moto, &function.role, &function.name).await?;
        let differences = self.differences_for(true);
        let region = self.deployed.region.clone();
        let start = lambda::Start {
            function: &function,
            zip: &zip,
            host,
            region: &region,
            session: &session,
            differences: &differences,
            instance,
            steppable_clock,
        };
        tokio::task::block_in_place(|| Sandbox::start(&mut self.twin, &start))
    }

    /// A confirmed user in the stack's pool, and the PostConfirmation event Cognito sends.
    pub async fn sign_up(&self, prefix: &str) -> Result<SignedUp> {
        self.deployed.sign_up(prefix).await
    }

    /// The stack's retry queue and its dead-letter queue.
    pub async fn queues(&self) -> Result<crate::queues::Queues> {
        let d = &self.deployed;
        crate::queues::Queues::existing(
            &d.sdk().await,
            &d.attr("aws_sqs_queue.retry", "url")?,
            &d.attr("aws_sqs_queue.dead_letters", "url")?,
        )
        .await
    }

    /// The api service's tasks, by twin host (`api-1`, …).
    pub fn api_hosts(&self) -> Vec<String> {
        self.tasks
            .keys()
            .filter(|h| h.starts_with("api-"))
            .cloned()
            .collect()
    }

    /// The database instance's address in the twin.
    pub fn db_address(&self) -> Ipv4Addr {
        self.db_address
    }

    /// Kills `host`'s running task at once (`SIGKILL`: what a Fargate host's loss does; no
    /// drain, requests in flight cut).
    pub fn kill_task(&mut self, host: &str) -> Result<()> {
        self.end_task(host, |process| process.stop())
    }

    /// Stops `host`'s running task as ECS stops one (`SIGTERM`, then `SIGKILL` after the stop
    /// timeout): the api stops accepting, finishes what it holds and exits.
    pub fn stop_task(&mut self, host: &str) -> Result<()> {
        self.end_task(host, |process| {
            tokio::task::block_in_place(|| process.terminate(STOP_GRACE));
        })
    }

    /// Ends `host`'s running task with `how` and forgets its service.
    fn end_task(
        &mut self,
        host: &str,
        how: impl FnOnce(&mut crate::process::Process),
    ) -> Result<()> {
        let service = self
            .running
            .remove(host)
            .with_context(|| format!("no task runs on {host}"))?;
        how(self.twin.service(&service)?);
        self.twin.remove_service(&service);
        Ok(())
    }

    /// Starts `host`'s task again (its replacement, at the same address, as the service's
    /// scheduler would place one) and waits until the load balancer's node can reach it.
    pub async fn replace_task(&mut self, host: &str) -> Result<()> {
        self.start_task(host, &[]).await?;
        let target = self.tasks[host].0.address;
        let port = self.deployed.api_port()?;
        let me: &World = self;
        super::eventually(Duration::from_secs(60), move || async move {
            let open = me.twin.inside(Some("alb"), move || {
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::from((target, port)),
                    Duration::from_millis(500),
                )
                .is_ok()
            })?;
            if !open {
                bail!("{target}:{port} does not accept yet");
            }
            Ok(())
        })
        .await
    }

    /// Restarts the database instance as a reboot does (fast shutdown: every session ended).
    pub fn restart_database(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.db.restart_fast())
    }

    /// Each of `subs`' rows in the stack's database, and the rows for `emails` (a
    /// registration stored twice under two ids shows there).
    pub async fn registered(
        &self,
        subs: Vec<String>,
        emails: Vec<String>,
    ) -> Result<(BTreeSet<String>, i64)> {
        let database = self.deployed.attr("aws_db_instance.this", "db_name")?;
        self.admin(&database, move |mut c| async move {
            let found: Vec<String> = sqlx::query_scalar(
                "SELECT cognito_sub::text FROM users WHERE cognito_sub = ANY($1::text[]::uuid[])",
            )
            .bind(&subs)
            .fetch_all(&mut c)
            .await?;
            let by_email: i64 =
                sqlx::query_scalar("SELECT count(*) FROM users WHERE email = ANY($1::text[])")
                    .bind(&emails)
                    .fetch_one(&mut c)
                    .await?;
            Ok((found.into_iter().collect(), by_email))
        })
        .await
    }

    pub fn guard_secret_arn(&self) -> Result<String> {
        self.deployed
            .attr("module.registration.aws_secretsmanager_secret.key", "arn")
    }

    /// The version holding `AWSCURRENT`.
    pub async fn current_version(&self, secret: &str) -> Result<String> {
        let sm = aws_sdk_secretsmanager::Client::new(&self.deployed.sdk().await);
        use shared_aws::versions::{CURRENT, Stages};
        Stages::describe(&sm, secret)
            .await?
            .holder(CURRENT)
            .map(str::to_owned)
            .context("no AWSCURRENT version")
    }

    /// Every log the world's processes wrote.
    pub fn logs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.twin.dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect()
    }

    /// Stops what runs as ECS and Lambda stop it (SIGTERM, then the stop timeout), so that
    /// what a process prints on its way out (the api's last metrics) is in its log; records
    /// the tasks as stopped in ECS.
    pub async fn stop(&mut self) {
        let services: Vec<String> = self
            .logs()
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|s| s != "alb")
            .collect();
        for service in services {
            if let Ok(process) = self.twin.service(&service) {
                tokio::task::block_in_place(|| process.terminate(STOP_GRACE));
            }
        }
        if self.alb.is_some()
            && let Err(e) = self.take_over_polling(true).await
        {
            eprintln!("· the runner could not enable the event source mappings again: {e:#}");
        }
        for (placed, _) in self.tasks.values() {
            let _ = ecs::stop_task(
                &self.deployed.moto,
                &self.deployed.region,
                &self.cluster,
                &placed.arn,
                "the runner ended",
            )
            .await;
        }
    }
}

/// Where a request is sent from: the internet (from one of its addresses), or an interface
/// of the twin (a function's, whose requests leave through the NAT gateway).
#[derive(Debug, Clone)]
pub enum From {
    Internet(Ipv4Addr),
    Host(String),
}

/// One HTTP request to the api's name.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: reqwest::Method,
    pub path: String,
    /// Sent as given, a name twice for two lines.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Call {
    pub fn get(path: &str) -> Self {
        Call {
            method: reqwest::Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn post(path: &str, headers: Vec<(String, String)>, body: String) -> Self {
        Call {
            method: reqwest::Method::POST,
            path: path.to_owned(),
            headers,
            body,
        }
    }
}

/// What came back: the status, the body, and the WAF rule that blocked it, if one did (the
/// twin's load balancer says which; the api never does).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub waf_rule: Option<String>,
}

async fn send(
    alb: Alb,
    ca: String,
    local: Option<Ipv4Addr>,
    calls: Vec<Call>,
) -> Result<Vec<Answer>> {
    let root = reqwest::Certificate::from_pem(ca.as_bytes())?;
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve(&alb.domain, SocketAddr::from((alb.public, 443)))
        .timeout(Duration::from_secs(10));
    if let Some(address) = local {
        builder = builder.local_address(std::net::IpAddr::V4(address));
    }
    let http = builder.build()?;
    let mut answers = Vec::new();
    for call in calls {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &call.headers {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                reqwest::header::HeaderValue::from_str(value)?,
            );
        }
        let response = http
            .request(call.method, format!("https://{}{}", alb.domain, call.path))
            .headers(headers)
            .body(call.body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let waf_rule = response
            .headers()
            .get(twin::waf::RULE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json = response.json::<Value>().await.unwrap_or(Value::Null);
        answers.push(Answer {
            status,
            json,
            waf_rule,
        });
    }
    Ok(answers)
}

/// A user Cognito confirmed.
#[derive(Debug, Clone)]
pub struct SignedUp {
    pub username: String,
    pub sub: String,
    pub event: Value,
}

fn task_placement(name: &str, placed: &Placed) -> Placement {
    Placement {
        name: name.to_owned(),
        subnet: placed.subnet.clone(),
        address: Some(placed.address),
        groups: placed.groups.clone(),
        public: false,
    }
}

/// The api's own message from a log: its `error:` line, else the log's last line.
pub fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(no output)")
        .to_owned()
}

/// Removes `rule` (an `aws_security_group_rule`'s values) from its group's read-back `ingress`
/// or `egress` list, in `module` and its children: the entries with its ports, protocol and
/// source (a group, or the same ranges).
fn forget_in_group(module: &mut Value, rule: &Value) {
    let key = if rule["type"] == "ingress" {
        "ingress"
    } else {
        "egress"
    };
    for r in module["resources"].as_array_mut().into_iter().flatten() {
        if r["type"] != "aws_security_group" || r["values"]["id"] != rule["security_group_id"] {
            continue;
        }
        if let Some(list) = r["values"][key].as_array_mut() {
            list.retain(|entry| {
                let same = ["from_port", "to_port", "protocol"]
                    .iter()
                    .all(|k| entry[*k] == rule[*k]);
                let source = match rule["source_security_group_id"].as_str() {
                    Some(group) if !group.is_empty() => entry["security_groups"]
                        .as_array()
                        .is_some_and(|g| g.iter().any(|g| g == group)),
                    _ => entry["cidr_blocks"] == rule["cidr_blocks"],
                };
                !(same && source)
            });
        }
    }
    for child in module["child_modules"].as_array_mut().into_iter().flatten() {
        forget_in_group(child, rule);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// A refreshed state lists a separate rule in its group's `ingress` too: leaving the rule
    /// out must leave it out there as well, or the mutation changes nothing the twin reads.
    #[test]
    fn a_rule_left_out_leaves_its_groups_read_back_list() {
        let from_alb = json!({"from_port": 8080, "to_port": 8080, "protocol": "tcp", "security_groups": ["sg-alb"], "cidr_blocks": []});
        let from_rotation = json!({"from_port": 8080, "to_port": 8080, "protocol": "tcp", "security_groups": ["sg-rot"], "cidr_blocks": []});
        let mut module = json!({"resources": [], "child_modules": [{"resources": [
            {"type": "aws_security_group", "values": {"id": "sg-api", "ingress": [from_alb, from_rotation], "egress": []}},
            {"type": "aws_security_group", "values": {"id": "sg-other", "ingress": [from_alb], "egress": []}},
        ]}]});
        let rule = json!({"type": "ingress", "security_group_id": "sg-api", "source_security_group_id": "sg-alb", "from_port": 8080, "to_port": 8080, "protocol": "tcp", "cidr_blocks": []});
        super::forget_in_group(&mut module, &rule);
        let groups = &module["child_modules"][0]["resources"];
        assert_eq!(groups[0]["values"]["ingress"], json!([from_rotation]));
        assert_eq!(
            groups[1]["values"]["ingress"],
            json!([from_alb]),
            "another group keeps its own"
        );
    }
}
