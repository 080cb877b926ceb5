//! The heartbeat as the schedule runs it: its input read back from EventBridge Scheduler and
//! handed to the deployed sign-up function in one execution environment, while Cognito (played
//! here: moto fires no trigger) sends the PostConfirmation event of the user it confirms to
//! another, as `AdminConfirmSignUp` makes Cognito do. The heartbeat must say the trigger
//! registered its user, and leave neither the user nor its row behind.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::platform::lambda::Sandbox;
use crate::runtime_api::Outcome;

use super::faults::ScheduleTarget;
use super::world::{Row, World};

/// How long Cognito's part waits for the heartbeat's user to be confirmed.
const CONFIRMED_WITHIN: Duration = Duration::from_secs(30);

pub async fn run(world: &World, heartbeat: &Sandbox, trigger: &Sandbox) -> Row {
    Row::from(
        "heartbeat (the schedule's input)",
        beat(world, heartbeat, trigger).await,
    )
}

async fn beat(world: &World, heartbeat: &Sandbox, trigger: &Sandbox) -> Result<String> {
    let d = &world.deployed;
    let ScheduleTarget {
        name,
        expression,
        input,
    } = ScheduleTarget::read(world, "aws_scheduler_schedule.heartbeat").await?;
    let asked: Value = serde_json::from_str(&input)?;
    let pool = asked["user_pool_id"]
        .as_str()
        .context("the heartbeat's input names no user_pool_id")?
        .to_owned();
    let client = asked["client_id"].as_str().unwrap_or_default().to_owned();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&d.sdk().await);

    let running = heartbeat.invoke(input);
    let cognito_plays = crate::cognito::play_heartbeat_trigger(
        &cognito,
        &d.region,
        &pool,
        &client,
        CONFIRMED_WITHIN,
        |event| async move {
            match trigger.invoke(event.to_string()).await {
                Outcome::Response(_) => Ok(()),
                answer => bail!("the trigger failed the heartbeat's sign-up: {answer:?}"),
            }
        },
    );
    let (answer, sub) = tokio::join!(running, cognito_plays);
    let sub = sub?;
    let Outcome::Response(body) = answer else {
        bail!("the heartbeat's invocation failed: {answer:?}");
    };
    let report: Value = serde_json::from_str(&body)?;
    if report["result"] != "ok" || report["registered_via"] != "trigger" {
        bail!("the heartbeat reported {report}");
    }
    if report["cleaned_up"] != true {
        bail!("the heartbeat did not clean up: {report}");
    }
    let left = crate::cognito::heartbeat_users(&cognito, &pool).await?;
    if !left.is_empty() {
        bail!("{} heartbeat user(s) left in the pool", left.len());
    }
    let rows = world.rows_for(&sub).await?;
    if rows != 0 {
        bail!("{rows} rows left for the heartbeat's user {sub}");
    }
    Ok(format!(
        "{name} ({expression}): signed up, registered through the trigger in {} ms, read back and cleaned up (no user, no row)",
        report["latency_ms"]
    ))
}
