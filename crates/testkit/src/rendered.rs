//! What AWS would start from the deployed stack, started here: the deploy test hands this
//! runner the applied state, and it reads back from moto every task definition and function
//! configuration the stack rendered and starts each from the artifact `deploy` built and
//! pushed, with exactly that environment, secrets and role (`crate::platform`), in the
//! network built from that same state (`crate::twin`): the migration task, the api service's
//! tasks behind the load balancer, the sign-up function, the rotation function. Each must do
//! its job, and prints one row.
//!
//! The only differences from AWS are the local world's, listed once in [`differences`] and
//! printed: moto plays AWS's endpoints, the database's and the load balancer's certificates
//! come from a throwaway CA, and moto serves no DNS (the names go into `/etc/hosts`, which ECS
//! and Lambda write for their sandboxes too).

pub mod account;
mod edge;
mod faults;
pub mod flows;
mod heartbeat;
pub mod matrix;
mod metrics;
mod roles;
pub mod world;

pub use world::{Report, Row};

use std::time::Duration;

use crate::platform::Difference;
use crate::platform::ecs;
use crate::platform::lambda::{Function, Sandbox};
use crate::runtime_api::Outcome;
use anyhow::{Context, Result, bail};
use serde_json::Value;

use world::{Deployed, World};

/// The local world's differences from AWS, for the api's tasks (`task`), and for the
/// functions: every one named, with why. Nothing else a process gets differs from what the
/// stack rendered and the platform adds.
pub fn differences(world: &World) -> (Vec<Difference>, Vec<Difference>) {
    let endpoint = Difference::var(
        "TOLLGATE__AWS__ENDPOINT_URL",
        world.aws_endpoint(),
        "AWS's endpoints are moto, on the twin's internet (port 443, so the security groups' HTTPS rules apply)",
    );
    let task = vec![
        endpoint.clone(),
        Difference::var(
            "TOLLGATE__API__DB_CA_FILE",
            world::DB_CA_IN_TASK,
            "the database's certificate is signed by a throwaway CA, not RDS's (whose roots the api has compiled in)",
        ),
        Difference::var(
            "/etc/hosts",
            world.task_hosts_line(),
            "moto serves no DNS: the database endpoint's name, written where ECS writes a task's /etc/hosts",
        ),
    ];
    let function = vec![
        endpoint,
        Difference::var(
            "TOLLGATE__LAMBDA__PRIVATE_CA_PEM",
            "(the twin's CA)",
            "no public CA signs this world's load balancer: the functions trust its CA as they would a private CA's",
        ),
        Difference::var(
            "/etc/hosts",
            world.function_hosts_line(),
            "moto serves no DNS: the api's name as its alias record resolves, to the load balancer's public address",
        ),
        Difference::var(
            "(the retry queue's event source mapping)",
            "enabled = false in moto while the runner plays Lambda's poller",
            "moto polls the queue itself on every SendMessage and its stub of the function swallows the batch",
        ),
    ];
    (task, function)
}

/// Before the stack: `deploy --migration-only` applied the migration task and what it needs
/// (a targeted apply). The migration runs on exactly that: the network, roles and rules in
/// the state then, nothing the full apply adds later. Also proves that a task whose rendered
/// environment lacks a contract variable is caught, with the api's own message.
pub async fn migration_on_partial_state(deployed: &Deployed) -> Result<Report> {
    let mut world = World::build(deployed, world::Scope::Migration).await?;
    let mut report = Report::new("the migration, on the state the targeted apply left");
    report.differences = differences(&world).0;
    report.push(world.migrate(&[]).await);
    let without = ["TOLLGATE__GUARD__ALLOWED_CIDRS"];
    let caught = world.migrate(&without).await;
    report.push(Row::check(
        "caught: a task without a contract variable",
        !caught.ok && caught.detail.contains("guard.allowed_cidrs"),
        format!(
            "the rendered environment less {}: {}",
            without.join(", "),
            caught.detail
        ),
    ));
    report.extend(roles::execution_roles(deployed).await);
    world.stop().await;
    drop(world);
    report.extend(partial_apply_mutations(deployed).await?);
    Ok(report)
}

/// What the migration's targeted apply left out before its `depends_on` named what the task
/// needs at run time: the public subnets' route to the internet gateway (the NAT gateway's way
/// out) and the execution role's policy. Each, taken out of the state, must fail the run.
async fn partial_apply_mutations(deployed: &Deployed) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let without_route = deployed.without("aws_route_table_association.public");
    let mut world = World::build(&without_route, world::Scope::Migration).await?;
    let run = world.migrate(&[]).await;
    world.stop().await;
    drop(world);
    rows.push(Row::check(
        "caught: no route from the NAT gateway's subnet",
        !run.ok && run.detail.contains("Secrets Manager"),
        format!(
            "the state less aws_route_table_association.public: {}",
            run.detail
        ),
    ));
    // The execution role's managed policy is attached by the bootstrap (which makes the role).
    const EXECUTION_POLICY: &str = "aws_iam_role_policy_attachment.stack[\"api-execution/";
    let without_policy = deployed.without(EXECUTION_POLICY);
    let denied: Vec<Row> = roles::execution_roles(&without_policy)
        .await
        .into_iter()
        .filter(|r| !r.ok)
        .collect();
    rows.push(Row::check(
        "caught: an execution role without its policy",
        denied
            .iter()
            .any(|r| r.detail.contains("ecr:BatchGetImage")),
        format!(
            "the bootstrap's state less {EXECUTION_POLICY}…\"]: {}",
            denied
                .first()
                .map_or("nothing denied".to_owned(), |r| r.detail.clone())
        ),
    ));
    Ok(rows)
}

/// The whole stack as applied: the migration, the api's tasks behind the load balancer, the
/// sign-up function through the NAT gateway, the rotation function's four steps; then the
/// faults that make the functions hand off and lose registrations (each found again), every
/// execution role evaluated, and every alarm matched with a metric the binaries printed.
pub async fn whole_stack(deployed: &Deployed) -> Result<Report> {
    let mut world = World::build(deployed, world::Scope::Stack).await?;
    let mut report = Report::new("what the stack renders, started");
    (report.differences, report.function_differences) = differences(&world);
    report.push(world.migrate(&[]).await);
    report.push(world.serve().await);
    report.extend(edge::run(&world).await);
    report.extend(flows::run(&world));
    let post_confirm = std::sync::Arc::new(world.function("post-confirm").await?);
    report.push(sign_up(&world, &post_confirm).await);
    // The heartbeat: the schedule's input in one environment, the trigger it fires in another.
    match world.function_instance("post-confirm", 1).await {
        Ok(second) => report.push(heartbeat::run(&world, &post_confirm, &second).await),
        Err(e) => report.push(Row::check(
            "heartbeat (the schedule's input)",
            false,
            format!("cannot start a second environment of the function: {e:#}"),
        )),
    }
    // The rotation waits for every task's refresh; the faults run meanwhile.
    let rotation = std::sync::Arc::new(world.function("rotate-secret").await?);
    let (rotated, faults) = tokio::join!(
        rotate(&world, &rotation),
        faults::run(&world, &post_confirm)
    );
    report.push(rotated);
    report.extend(faults);
    // Then the fault matrix, briefly: sign-ups flowing while each fault is held a few seconds.
    let functions = matrix::Functions {
        sign_up: post_confirm.clone(),
        rotation,
    };
    match matrix::run(&mut world, &functions, matrix::Plan::short(), None).await {
        Ok(figures) => {
            eprintln!("{}", figures.table());
            report.extend(figures.rows());
        }
        Err(e) => report.push(Row::check("fault matrix", false, format!("{e:#}"))),
    }
    report.push(matrix::caught_without_the_sweep(&mut world, &functions).await);
    report.extend(roles::execution_roles(deployed).await);
    world.stop().await;
    let logs = world.logs();
    report.extend(metrics::alarms_watch_what_is_printed(deployed, &logs));
    report.extend(metrics::dashboards_graph_what_is_printed(deployed, &logs));
    report.push(metrics::the_old_alarms_are_caught(deployed, &logs));
    drop(world);
    report.push(
        flows::without_the_api_ingress(deployed).unwrap_or_else(|e| {
            Row::check(
                "caught: no ingress rule from the load balancer",
                false,
                format!("{e:#}"),
            )
        }),
    );
    Ok(report)
}

/// The fault matrix alone on the whole stack as applied (`cargo xtask soak --faults`): the
/// migration, the api's tasks behind the load balancer, the sign-up function through the NAT
/// gateway, then every fault of [`matrix::FAULTS`] held as `plan` says with sign-ups flowing.
/// The rows of the start-up and the figures; fails only when the world cannot be started.
pub async fn fault_matrix(
    deployed: &Deployed,
    plan: matrix::Plan,
    which: Option<&[matrix::Fault]>,
) -> Result<(Report, matrix::Matrix)> {
    let mut world = World::build(deployed, world::Scope::Stack).await?;
    let mut report = Report::new("the fault matrix, on what the stack renders");
    (report.differences, report.function_differences) = differences(&world);
    report.push(world.migrate(&[]).await);
    report.push(world.serve().await);
    if !report.failures().is_empty() {
        world.stop().await;
        bail!("the stack did not start:\n{}", report.text());
    }
    let functions = matrix::Functions {
        sign_up: std::sync::Arc::new(world.function("post-confirm").await?),
        rotation: std::sync::Arc::new(world.function("rotate-secret").await?),
    };
    let figures = matrix::run(&mut world, &functions, plan, which).await;
    world.stop().await;
    let figures = figures?;
    report.extend(figures.rows());
    Ok((report, figures))
}

/// A user signs up: Cognito (played here, as moto fires no trigger) sends the function its
/// PostConfirmation event; it must come back unchanged and the user be registered once.
async fn sign_up(world: &World, function: &Sandbox) -> Row {
    let what = "post-confirm";
    let result: Result<String> = async {
        let user = world.sign_up("runner-ada").await?;
        let started = std::time::Instant::now();
        let answer = function.invoke(user.event.to_string()).await;
        let Outcome::Response(body) = answer else {
            bail!("the trigger did not answer: {answer:?}");
        };
        let body: Value = serde_json::from_str(&body)?;
        if body != user.event {
            bail!("Cognito would not get its event back: {body}");
        }
        let rows = world.rows_for(&user.sub).await?;
        if rows != 1 {
            bail!("{rows} rows for {} after the trigger", user.sub);
        }
        Ok(format!(
            "{} ({}): registered through the NAT gateway in {} ms, 1 row",
            function.function.name,
            function.host,
            started.elapsed().as_millis()
        ))
    }
    .await;
    Row::from(what, result)
}

/// Secrets Manager's four steps, played as Secrets Manager plays them (one token, in order),
/// against the running tasks and through the load balancer; the token must end up
/// `AWSCURRENT` and every task must hold it.
async fn rotate(world: &World, function: &Sandbox) -> Row {
    let result: Result<String> = async {
        let token = uuid::Uuid::new_v4().to_string();
        let secret = world.guard_secret_arn()?;
        let started = std::time::Instant::now();
        for step in shared_auth::rotation::Step::ALL {
            let event = serde_json::json!({
                "Step": step.name(),
                "SecretId": secret,
                "ClientRequestToken": token,
            });
            match function.invoke(event.to_string()).await {
                Outcome::Response(_) => {}
                other => bail!("{} failed: {other:?}", step.name()),
            }
        }
        let current = world.current_version(&secret).await?;
        if current != token {
            bail!("AWSCURRENT is {current}, not the rotation's {token}");
        }
        Ok(format!(
            "{}: createSecret → setSecret → testSecret → finishSecret in {:.0} s; {token} is AWSCURRENT",
            function.function.name,
            started.elapsed().as_secs_f64()
        ))
    }
    .await;
    Row::from("rotate-secret", result)
}

/// Waits until `check` passes (up to `limit`), polling every half second.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = std::time::Instant::now();
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() >= limit => {
                return Err(e).context(format!("still failing after {} s", limit.as_secs()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The function's configuration, as Lambda holds it.
pub async fn function_config(deployed: &Deployed, suffix: &str) -> Result<Function> {
    let lambda = aws_sdk_lambda::Client::new(&deployed.sdk().await);
    Function::describe(&lambda, &format!("tollgate-{}-{suffix}", deployed.env)).await
}

/// The task definition `family`, as ECS holds it.
/// The number a rendered environment (a task definition's or a function's) sets `key` to.
pub fn number_in(environment: &[(String, String)], key: &str) -> Option<u64> {
    environment
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

pub async fn container(deployed: &Deployed, family: &str) -> Result<ecs::Container> {
    let ecs = aws_sdk_ecs::Client::new(&deployed.sdk().await);
    ecs::Container::describe(&ecs, family).await
}
