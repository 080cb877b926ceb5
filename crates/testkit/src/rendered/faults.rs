//! The sign-up function's ways of not losing a confirmed user, each provoked in the twin with
//! the deployed function: the api unreachable from its subnet (the trigger queues the
//! registration), the api and AWS's endpoints unreachable (it is `lost`, and Cognito still gets
//! its answer), the queued one failing on every receive (dead-lettered: `gave_up`), then the
//! sweep the schedule runs (its input read back from EventBridge Scheduler) registering both.
//! Lambda's SQS poller is played here (moto polls nothing): receive, invoke, delete what the
//! function did not report failed, and a message's backoff elapsed at once.

use std::time::{Duration, Instant};

use crate::platform::lambda::Sandbox;
use crate::queues::Queues;
use crate::runtime_api::Outcome;
use crate::twin;
use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::world::{Row, SignedUp, World};

/// Cognito waits this long for the trigger, whatever the function's timeout.
pub(super) const COGNITO_WAITS: Duration = Duration::from_secs(5);

pub async fn run(world: &World, function: &Sandbox) -> Vec<Row> {
    let mut rows = Vec::new();
    let queued = match trigger(world, function, false).await {
        Ok((user, row)) => {
            rows.push(row);
            Some(user)
        }
        Err(e) => {
            rows.push(Row::check(
                "trigger, api unreachable",
                false,
                format!("{e:#}"),
            ));
            None
        }
    };
    let lost = match trigger(world, function, true).await {
        Ok((user, row)) => {
            rows.push(row);
            Some(user)
        }
        Err(e) => {
            rows.push(Row::check(
                "trigger, api and SQS unreachable",
                false,
                format!("{e:#}"),
            ));
            None
        }
    };
    if let Some(user) = &queued {
        let cut = world.twin.cut(&function.host, alb(world));
        let drained = match cut {
            Ok(()) => drain_until_dead_lettered(world, function, user).await,
            Err(e) => Err(e),
        };
        let _ = world.twin.mend(&function.host, alb(world));
        rows.push(Row::from("drain, api unreachable", drained));
    }
    let users: Vec<&SignedUp> = queued.iter().chain(lost.iter()).collect();
    rows.push(Row::from(
        "sweep (the schedule's input)",
        sweep(world, function, &users).await,
    ));
    rows
}

pub(super) fn alb(world: &World) -> std::net::Ipv4Addr {
    world.alb.as_ref().map_or(twin::ATTACKER, |a| a.public)
}

/// A sign-up with the api cut off from the function's subnet (and, with `lost`, AWS's
/// endpoints too): Cognito must get its event back within its 5 s, and no row exists yet.
async fn trigger(world: &World, function: &Sandbox, lost: bool) -> Result<(SignedUp, Row)> {
    let what = if lost {
        "trigger, api and SQS unreachable"
    } else {
        "trigger, api unreachable"
    };
    let user = world
        .sign_up(if lost { "runner-lost" } else { "runner-queued" })
        .await?;
    world.twin.cut(&function.host, alb(world))?;
    if lost {
        world.twin.cut(&function.host, twin::AWS_PUBLIC)?;
    }
    let started = Instant::now();
    let answer = function.invoke(user.event.to_string()).await;
    let took = started.elapsed();
    if lost {
        world.twin.mend(&function.host, twin::AWS_PUBLIC)?;
    }
    world.twin.mend(&function.host, alb(world))?;
    let Outcome::Response(body) = answer else {
        bail!("the trigger failed the sign-up: {answer:?}");
    };
    if serde_json::from_str::<Value>(&body)? != user.event {
        bail!("Cognito would not get its event back: {body}");
    }
    if took >= COGNITO_WAITS {
        bail!(
            "the trigger answered after {} ms, past Cognito's 5 s",
            took.as_millis()
        );
    }
    let rows = world.rows_for(&user.sub).await?;
    if rows != 0 {
        bail!("{rows} rows for a user the api never saw");
    }
    let detail = if lost {
        format!(
            "lost, yet Cognito got its event back in {} ms (the sweep finds the user)",
            took.as_millis()
        )
    } else {
        format!(
            "queued: Cognito got its event back in {} ms",
            took.as_millis()
        )
    };
    Ok((user, Row::check(what, true, detail)))
}

/// Lambda's poller on the retry queue while the api stays unreachable: the registration is
/// retried on each receive and dead-lettered with its reason on the last one the function
/// allows (`TOLLGATE__DEPLOY__RETRY_MAX_RECEIVES`).
async fn drain_until_dead_lettered(
    world: &World,
    function: &Sandbox,
    user: &SignedUp,
) -> Result<String> {
    let queues = world.queues().await?;
    let max = super::number_in(
        &function.function.environment,
        "TOLLGATE__DEPLOY__RETRY_MAX_RECEIVES",
    )
    .and_then(|n| u32::try_from(n).ok())
    .context("the function has no TOLLGATE__DEPLOY__RETRY_MAX_RECEIVES")?;
    let mut receives = 0;
    for _ in 0..=max {
        let Some(message) = receive(&queues, &user.sub).await? else {
            break;
        };
        receives = message.receives;
        let (_, failed) = hand_to(&queues, vec![message.clone()], function).await?;
        if failed == 0 {
            break;
        }
        // The function set the message's backoff; the time passes here at once.
        queues.show_again(&message.receipt).await?;
    }
    let dead = queues.peek_all(&queues.dead).await?;
    let Some(letter) = dead.iter().find(|b| b.contains(&user.sub)) else {
        bail!("after {receives} receives the registration is not in the dead-letter queue");
    };
    if receives != max {
        bail!("dead-lettered after {receives} receives, not the {max} the function allows");
    }
    let reason = serde_json::from_str::<Value>(letter)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no reason)".into());
    Ok(format!(
        "retried on receives 1 to {}, dead-lettered on receive {max} with its reason: {reason}",
        max - 1
    ))
}

/// Lambda's poller handing `batch` of the retry queue to the function: (handed, failed).
pub(super) async fn hand_to(
    queues: &Queues,
    batch: Vec<crate::queues::Received>,
    function: &Sandbox,
) -> Result<(usize, usize)> {
    queues
        .hand_over(batch, |event| async move {
            match function.invoke(event.to_string()).await {
                Outcome::Response(body) => Ok(serde_json::from_str(&body)?),
                other => bail!("the queue's batch failed as a whole: {other:?}"),
            }
        })
        .await
}

/// The retry queue's message for `sub`, as the poller receives it; any other message it meets
/// is made visible again at once (bounded: twenty receives).
async fn receive(queues: &Queues, sub: &str) -> Result<Option<crate::queues::Received>> {
    for _ in 0..20 {
        let batch = queues.receive(&queues.retry, 60).await?;
        if batch.is_empty() {
            return Ok(None);
        }
        let mut found = None;
        for m in batch {
            if found.is_none() && m.body.contains(sub) {
                found = Some(m);
            } else {
                queues.show_again(&m.receipt).await?;
            }
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The sweep, as the schedule invokes it: its input read back from EventBridge Scheduler.
/// Every user signed up here must then have exactly one row.
async fn sweep(world: &World, function: &Sandbox, users: &[&SignedUp]) -> Result<String> {
    let (name, expression) = run_sweep(world, function).await?;
    for user in users {
        let rows = world.rows_for(&user.sub).await?;
        if rows != 1 {
            bail!("{rows} rows for {} after the sweep", user.username);
        }
    }
    Ok(format!(
        "{name} ({expression}) registered the {} users the trigger could not: one row each",
        users.len()
    ))
}

/// One run of the sweep schedule's target: its input read back from EventBridge Scheduler and
/// handed to the function, as the schedule does. The schedule's name and expression.
pub(super) async fn run_sweep(world: &World, function: &Sandbox) -> Result<(String, String)> {
    let target = ScheduleTarget::read(world, "aws_scheduler_schedule.sweep").await?;
    match function.invoke(target.input).await {
        Outcome::Response(_) => Ok((target.name, target.expression)),
        other => bail!("the sweep failed: {other:?}"),
    }
}

/// A schedule of the stack as EventBridge Scheduler holds it: what it would invoke its target
/// with, and how often.
pub(super) struct ScheduleTarget {
    pub name: String,
    pub expression: String,
    pub input: String,
}

impl ScheduleTarget {
    /// The schedule at Terraform `address`, read back from moto.
    pub(super) async fn read(world: &World, address: &str) -> Result<Self> {
        let d = &world.deployed;
        let name = d.attr(address, "name")?;
        let schedule = scheduler_get(&d.moto, &name).await?;
        let input = schedule["Target"]["Input"]
            .as_str()
            .with_context(|| format!("{name}'s target has no input"))?
            .to_owned();
        let expression = schedule["ScheduleExpression"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        Ok(Self {
            name,
            expression,
            input,
        })
    }
}

/// `GetSchedule` (EventBridge Scheduler's REST API; moto checks no signature and routes by the
/// credential scope).
async fn scheduler_get(moto: &str, name: &str) -> Result<Value> {
    let answer = reqwest::Client::new()
        .get(format!("{moto}/schedules/{name}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/ap-northeast-1/scheduler/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("scheduler:GetSchedule {name} answered {status}: {body}");
    }
    Ok(body)
}
