//! The fault matrix: sign-ups flowing through the deployed network while one fault after
//! another is injected, each with time to recover before the next. The sign-ups are real
//! users of the stack's pool; the deployed function gets Cognito's PostConfirmation event for
//! each, through its subnet, the NAT gateway and the load balancer to the api's tasks, which
//! store in the database instance. After each fault the retry queue is drained by the same
//! function (Lambda's poller played) and, for what is still missing, the sweep runs as its
//! schedule would. Every user is then looked for in the database.
//!
//! Per fault: sign-ups attempted, registered, lost, duplicated (a user with more than one
//! row, by id or by address), errors a user would have seen (the trigger failed, changed
//! Cognito's event, or answered after Cognito's 5 s), how long after the fault ended until a
//! sign-up registered directly again, and how each registration arrived: `direct` (by the
//! trigger), `queue` (the retry queue), `sweep`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::faults::{COGNITO_WAITS, alb, hand_to, run_sweep};
use super::world::{Deployed, Row, World};
use crate::platform::lambda::Sandbox;
use crate::queues::Queues;
use crate::runtime_api::Outcome;
use crate::twin::{self, Poor};
use shared_auth::rotation::Step;

/// The poor path between the NAT gateway and the load balancer: a third of the packets lost,
/// the rest at 16 kbit/s (the load balancer's certificate chain alone then takes over a
/// second each way).
const POOR: Poor = Poor {
    loss_percent: 30,
    kbit: 16,
};
/// The longest the retry queue may take to empty after a fault.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// Sign-ups one fault's driver may make at most (a bound on its loop).
const MOST_PER_FAULT: usize = 20_000;
/// How much further than the api's `max_skew_s` the host's clock is stepped ahead (past
/// SigV4's 5 minutes too, at the default `max_skew_s`).
const SKEW_PAST_THE_LIMIT: Duration = Duration::from_secs(60);
/// The execution environment on the host whose clock steps (0 is the matrix's, 1 the
/// heartbeat's).
const SKEWED_INSTANCE: u32 = 2;
/// The shortest a database outage is held: longer than the api's pool waits for a connection
/// and than the trigger's whole budget, as a failover's is.
const DATABASE_OUTAGE: Duration = Duration::from_secs(20);

/// How long each fault's phases last, and how often a user signs up.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Sign-ups flowing before the fault.
    pub before: Duration,
    /// The fault held (an event fault, such as a restart, holds for as long as it takes).
    pub fault: Duration,
    /// Sign-ups flowing after the fault ended: the time to recover in.
    pub after: Duration,
    /// One sign-up begins this often (one function instance: the next waits for the last).
    pub every: Duration,
}

impl Plan {
    /// A few seconds per fault, for the deploy test and `up --network`: the held faults last
    /// past Cognito's 5 s, so a partition outlasts a trigger's whole budget.
    pub fn short() -> Self {
        Plan {
            before: Duration::from_secs(2),
            fault: Duration::from_secs(7),
            after: Duration::from_secs(6),
            every: Duration::from_millis(250),
        }
    }

    /// `minutes` shared by `faults` faults: a sixth of each fault's share before it, half
    /// held, the rest after.
    pub fn lasting(minutes: u64, faults: usize) -> Self {
        let share = Duration::from_secs(minutes * 60) / u32::try_from(faults.max(1)).unwrap_or(1);
        let before = share / 6;
        let fault = share / 2;
        Plan {
            before,
            fault,
            after: share.saturating_sub(before + fault),
            every: Duration::from_millis(250),
        }
    }
}

/// One fault of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The path between the NAT gateway and the load balancer loses and delays packets.
    PoorPath,
    /// The api unreachable from the function's subnet: packets dropped, no answer.
    Partition,
    /// An api task killed (`SIGKILL`) during the sign-ups, replaced when the fault ends.
    ApiKilled,
    /// An api task stopped as ECS stops one in a deployment (`SIGTERM`: it drains), replaced
    /// when the fault ends.
    ApiReplaced,
    /// The database instance restarted (fast shutdown), as a reboot does.
    DatabaseRestarted,
    /// The database unreachable from the api's tasks.
    DatabaseUnreachable,
    /// Secrets Manager unreachable from the api's tasks.
    SecretsUnreachable,
    /// The api and SQS both unreachable from the function: the trigger can hand nothing off.
    HandOffUnreachable,
    /// The wall clock of the Lambda host the sign-ups land on steps ahead, past the api's
    /// `max_skew_s` (and SigV4's 5 minutes), on an environment that has served before; then
    /// back, as NTP puts it right.
    ClockAhead,
    /// A guard-secret rotation whose `testSecret` fails (the api unreachable from the rotation
    /// function), then retried from the start with the same token, as Secrets Manager does.
    RotationTestFails,
    /// A rotation whose `finishSecret` fails (Secrets Manager unreachable from the rotation
    /// function), then retried with the same token.
    RotationFinishUnreachable,
}

/// Every fault, in the order the matrix injects them.
pub const FAULTS: [Fault; 11] = [
    Fault::PoorPath,
    Fault::Partition,
    Fault::ApiKilled,
    Fault::ApiReplaced,
    Fault::DatabaseRestarted,
    Fault::DatabaseUnreachable,
    Fault::SecretsUnreachable,
    Fault::HandOffUnreachable,
    Fault::ClockAhead,
    Fault::RotationTestFails,
    Fault::RotationFinishUnreachable,
];

/// The started functions the matrix drives.
#[derive(Debug, Clone)]
pub struct Functions {
    /// The sign-up function (the trigger, the queue's consumer, the sweep).
    pub sign_up: Arc<Sandbox>,
    /// The guard secret's rotation function.
    pub rotation: Arc<Sandbox>,
}

impl Fault {
    /// The fault named `name` (as [`Fault::name`] spells it).
    pub fn named(name: &str) -> Result<Fault> {
        FAULTS
            .into_iter()
            .find(|f| f.name() == name)
            .with_context(|| {
                let names: Vec<&str> = FAULTS.iter().map(|f| f.name()).collect();
                format!(
                    "no fault `{name}` in the matrix; its faults: {}",
                    names.join(", ")
                )
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::PoorPath => "poor-path",
            Fault::Partition => "partition",
            Fault::ApiKilled => "api-killed",
            Fault::ApiReplaced => "api-replaced",
            Fault::DatabaseRestarted => "database-restarted",
            Fault::DatabaseUnreachable => "database-unreachable",
            Fault::SecretsUnreachable => "secrets-unreachable",
            Fault::HandOffUnreachable => "hand-off-unreachable",
            Fault::ClockAhead => "clock-ahead",
            Fault::RotationTestFails => "rotation-test-fails",
            Fault::RotationFinishUnreachable => "rotation-finish-unreachable",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            Fault::PoorPath => {
                "NAT gateway ↔ load balancer: 30 % of packets lost, the rest at 16 kbit/s"
            }
            Fault::Partition => "the function's packets to the load balancer dropped",
            Fault::ApiKilled => "api-1 killed (SIGKILL), replaced when the fault ends",
            Fault::ApiReplaced => {
                "api-1 stopped as a deployment stops it (SIGTERM, drained), then replaced"
            }
            Fault::DatabaseRestarted => "the database instance restarted (fast shutdown)",
            Fault::DatabaseUnreachable => "the api's packets to the database dropped",
            Fault::SecretsUnreachable => "the api's packets to Secrets Manager dropped",
            Fault::HandOffUnreachable => {
                "the function's packets to the load balancer and to SQS dropped"
            }
            Fault::ClockAhead => {
                "the function's host clock stepped past max_skew_s ahead (and past SigV4's 5 min), then back"
            }
            Fault::RotationTestFails => {
                "a rotation's testSecret failed (the api unreachable from it), then retried"
            }
            Fault::RotationFinishUnreachable => {
                "a rotation's finishSecret failed (Secrets Manager unreachable from it), then retried"
            }
        }
    }

    /// An event, over once it happened (nothing to hold).
    fn is_event(self) -> bool {
        matches!(
            self,
            Fault::DatabaseRestarted | Fault::RotationTestFails | Fault::RotationFinishUnreachable
        )
    }

    /// How long the fault is held: the plan's time, longer where the fault needs it to mean
    /// anything (the database out for [`DATABASE_OUTAGE`] at least; Secrets Manager out across
    /// one of the api's secret refreshes, whose interval its task definition says).
    async fn hold(self, world: &World, plan: &Plan) -> Result<Duration> {
        Ok(match self {
            Fault::DatabaseUnreachable => plan.fault.max(DATABASE_OUTAGE),
            Fault::SecretsUnreachable => {
                let refresh = api_setting(world, "TOLLGATE__API__SECRET_REFRESH_S").await?;
                plan.fault.max(Duration::from_secs(refresh + 5))
            }
            _ => plan.fault,
        })
    }

    /// The (host, destination) pairs whose packets the fault drops while it is held.
    fn dropped(self, world: &World, function: &str) -> Vec<(String, Ipv4Addr)> {
        let apis = world.api_hosts();
        match self {
            Fault::Partition => vec![(function.to_owned(), alb(world))],
            Fault::HandOffUnreachable => vec![
                (function.to_owned(), alb(world)),
                (function.to_owned(), twin::AWS_PUBLIC),
            ],
            Fault::DatabaseUnreachable => {
                apis.into_iter().map(|h| (h, world.db_address())).collect()
            }
            Fault::SecretsUnreachable => apis.into_iter().map(|h| (h, twin::AWS_PUBLIC)).collect(),
            Fault::PoorPath
            | Fault::ApiKilled
            | Fault::ApiReplaced
            | Fault::ClockAhead
            | Fault::DatabaseRestarted
            | Fault::RotationTestFails
            | Fault::RotationFinishUnreachable => Vec::new(),
        }
    }

    /// Injects the fault; a rotation fault runs its failing attempt here and returns its token.
    async fn begin(
        self,
        world: &mut World,
        functions: &Functions,
        serving: &Serving,
    ) -> Result<Option<String>> {
        let function = functions.sign_up.host.as_str();
        for (host, to) in self.dropped(world, function) {
            world.twin.blackhole(&host, to)?;
        }
        match self {
            Fault::RotationTestFails | Fault::RotationFinishUnreachable => {
                return failing_rotation(self, world, &functions.rotation)
                    .await
                    .map(Some);
            }
            Fault::PoorPath => {
                for nat in world.twin.nat_hosts() {
                    world.twin.degrade(&nat, alb(world), POOR)?;
                }
            }
            Fault::ClockAhead => {
                let max_skew = api_setting(world, "TOLLGATE__GUARD__MAX_SKEW_S").await?;
                let host = world
                    .function_on_steppable_clock("post-confirm", SKEWED_INSTANCE)
                    .await?;
                // An environment that has served before holds the secret: one probe reads it.
                let probe = host.invoke(shared_auth::PROBE_EVENT.to_owned()).await;
                if !matches!(probe, Outcome::Response(_)) {
                    bail!("the environment's first probe failed: {probe:?}");
                }
                host.step_clock(Duration::from_secs(max_skew) + SKEW_PAST_THE_LIMIT)
                    .await?;
                serving.switch(Arc::new(host));
            }
            Fault::ApiKilled => world.kill_task(&first_api(world)?)?,
            Fault::ApiReplaced => world.stop_task(&first_api(world)?)?,
            Fault::DatabaseRestarted => world.restart_database()?,
            _ => {}
        }
        Ok(None)
    }

    /// Ends the fault; every part is undone even when one fails. A rotation is retried.
    async fn end(
        self,
        world: &mut World,
        functions: &Functions,
        serving: &Serving,
        token: Option<&str>,
    ) -> Result<()> {
        let function = functions.sign_up.host.as_str();
        let mut errors = Vec::new();
        for (host, to) in self.dropped(world, function) {
            if let Err(e) = world.twin.heal(&host, to) {
                errors.push(format!("{e:#}"));
            }
        }
        match self {
            Fault::PoorPath => {
                for nat in world.twin.nat_hosts() {
                    if let Err(e) = world.twin.mend_path(&nat, alb(world), POOR) {
                        errors.push(format!("{e:#}"));
                    }
                }
            }
            // NTP puts the clock right; the host serves on, so the offset it learnt must heal.
            Fault::ClockAhead => {
                if let Err(e) = serving.current().step_clock(Duration::ZERO).await {
                    errors.push(format!("{e:#}"));
                }
            }
            Fault::ApiKilled | Fault::ApiReplaced => {
                let host = first_api(world)?;
                if let Err(e) = world.replace_task(&host).await {
                    errors.push(format!("{e:#}"));
                }
            }
            Fault::RotationTestFails | Fault::RotationFinishUnreachable => {
                if let Some(token) = token
                    && let Err(e) = retried_rotation(world, &functions.rotation, token).await
                {
                    errors.push(format!("{e:#}"));
                }
            }
            _ => {}
        }
        if !errors.is_empty() {
            bail!("the fault could not be undone: {}", errors.join("; "));
        }
        Ok(())
    }
}

/// A number the api's task definition sets in its environment.
async fn api_setting(world: &World, key: &str) -> Result<u64> {
    let api = super::container(&world.deployed, &world.deployed.name("api")).await?;
    super::number_in(&api.environment, key)
        .with_context(|| format!("the api's task has no number {key}"))
}

/// The execution environment Cognito's invocations land on: the matrix's function, or for a
/// while another (a host whose clock is off).
#[derive(Clone)]
struct Serving(Arc<Mutex<Arc<Sandbox>>>);

impl Serving {
    fn new(function: Arc<Sandbox>) -> Self {
        Serving(Arc::new(Mutex::new(function)))
    }

    fn current(&self) -> Arc<Sandbox> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lands the invocations on `function` from now on; returns the one they landed on.
    fn switch(&self, function: Arc<Sandbox>) -> Arc<Sandbox> {
        std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(|e| e.into_inner()),
            function,
        )
    }
}

fn first_api(world: &World) -> Result<String> {
    world
        .api_hosts()
        .into_iter()
        .next()
        .context("the service has no task")
}

/// One rotation step of `token`, as Secrets Manager invokes it: whether it succeeded, and why
/// not.
async fn step(world: &World, rotation: &Sandbox, step: Step, token: &str) -> Result<(), String> {
    let secret = world.guard_secret_arn().map_err(|e| format!("{e:#}"))?;
    let event = json!({"Step": step.name(), "SecretId": secret, "ClientRequestToken": token});
    match rotation.invoke(event.to_string()).await {
        Outcome::Response(_) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A rotation's first attempt, failing at the fault's step: `testSecret` with the api cut off
/// from the rotation function, or `finishSecret` with Secrets Manager cut off. The steps
/// before it must succeed, and the faulted one must fail. Returns the attempt's token.
async fn failing_rotation(fault: Fault, world: &World, rotation: &Sandbox) -> Result<String> {
    let token = uuid::Uuid::new_v4().to_string();
    let (fails, cut) = if fault == Fault::RotationTestFails {
        (Step::Test, alb(world))
    } else {
        (Step::Finish, twin::AWS_PUBLIC)
    };
    for s in Step::ALL {
        if s == fails {
            world.twin.blackhole(&rotation.host, cut)?;
            let outcome = step(world, rotation, s, &token).await;
            world.twin.heal(&rotation.host, cut)?;
            return match outcome {
                Err(_) => Ok(token),
                Ok(()) => bail!("{} succeeded with {cut} unreachable", s.name()),
            };
        }
        step(world, rotation, s, &token)
            .await
            .map_err(|e| anyhow::anyhow!("{} failed before the fault: {e}", s.name()))?;
    }
    bail!("no step to fail")
}

/// Secrets Manager's retry of a rotation that failed: every step again with the same token.
/// The token must end up `AWSCURRENT`.
async fn retried_rotation(world: &World, rotation: &Sandbox, token: &str) -> Result<()> {
    for s in Step::ALL {
        step(world, rotation, s, token)
            .await
            .map_err(|e| anyhow::anyhow!("the retried {} failed: {e}", s.name()))?;
    }
    let current = world.current_version(&world.guard_secret_arn()?).await?;
    if current != token {
        bail!("AWSCURRENT is {current} after the retry, not its token {token}");
    }
    Ok(())
}

/// One sign-up: when its trigger began, how long it took, and what a user would have seen.
#[derive(Debug, Clone)]
struct Attempt {
    sub: String,
    email: String,
    at: Instant,
    took: Duration,
    /// Why the user would have seen an error, if they would have.
    shown: Option<String>,
}

/// What one fault did to the sign-ups.
#[derive(Debug, Clone)]
pub struct Figures {
    pub fault: Fault,
    pub attempted: usize,
    pub registered: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub errors_shown: usize,
    /// The first error a user would have seen, if any.
    pub first_error: Option<String>,
    /// From the fault's end to the first sign-up registered by its trigger (`None`: none was).
    pub recovery: Option<Duration>,
    pub direct: usize,
    pub queue: usize,
    pub sweep: usize,
    /// The trigger's slowest answer.
    pub slowest: Duration,
}

impl Figures {
    fn holds(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.errors_shown == 0
            && self.recovery.is_some()
            && self.attempted > 0
    }

    pub fn json(&self) -> Value {
        json!({
            "fault": self.fault.name(),
            "what": self.fault.what(),
            "attempted": self.attempted,
            "registered": self.registered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "errors_shown": self.errors_shown,
            "first_error": self.first_error,
            "recovery_s": self.recovery.map(|d| d.as_secs_f64()),
            "arrived": {"direct": self.direct, "queue": self.queue, "sweep": self.sweep},
            "slowest_answer_ms": self.slowest.as_millis() as u64,
        })
    }
}

/// The whole matrix's figures.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub plan: Plan,
    pub faults: Vec<Figures>,
}

impl Matrix {
    /// One row per fault: it holds when nothing was lost or duplicated, no user saw an error,
    /// and sign-ups registered directly again after the fault.
    pub fn rows(&self) -> Vec<Row> {
        self.faults
            .iter()
            .map(|f| {
                let mut detail = format!(
                    "{}: {} attempted, {} registered ({} direct, {} queue, {} sweep), {} lost, {} duplicated, {} errors shown; {}; slowest answer {} ms",
                    f.fault.what(),
                    f.attempted,
                    f.registered,
                    f.direct,
                    f.queue,
                    f.sweep,
                    f.lost,
                    f.duplicated,
                    f.errors_shown,
                    f.recovery.map_or("no direct registration after it".to_owned(), |d| {
                        format!("direct again {:.1} s after its end", d.as_secs_f64())
                    }),
                    f.slowest.as_millis()
                );
                if let Some(e) = &f.first_error {
                    detail.push_str(&format!("; first error: {e}"));
                }
                Row::check(&format!("fault: {}", f.fault.name()), f.holds(), detail)
            })
            .collect()
    }

    /// A Markdown table of the figures.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| fault | attempted | registered | lost | duplicated | errors shown | direct again after | direct / queue / sweep | slowest answer |\n|---|---:|---:|---:|---:|---:|---:|---|---:|\n",
        );
        for f in &self.faults {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} ms |\n",
                f.fault.name(),
                f.attempted,
                f.registered,
                f.lost,
                f.duplicated,
                f.errors_shown,
                f.recovery
                    .map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
                f.direct,
                f.queue,
                f.sweep,
                f.slowest.as_millis()
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "plan": {
                "before_s": self.plan.before.as_secs_f64(),
                "fault_s": self.plan.fault.as_secs_f64(),
                "after_s": self.plan.after.as_secs_f64(),
                "every_ms": self.plan.every.as_millis() as u64,
            },
            "faults": self.faults.iter().map(Figures::json).collect::<Vec<_>>(),
            "holds": self.faults.iter().all(Figures::holds),
        })
    }
}

/// Runs each of `which` (in [`FAULTS`]'s order, every one for `None`) with sign-ups flowing,
/// on the world's running api and the started sign-up `function`.
pub async fn run(
    world: &mut World,
    functions: &Functions,
    plan: Plan,
    which: Option<&[Fault]>,
) -> Result<Matrix> {
    let queues = world.queues().await?;
    let mut faults = Vec::new();
    for fault in FAULTS
        .into_iter()
        .filter(|f| which.is_none_or(|w| w.contains(f)))
    {
        eprintln!("· fault matrix: {} ({})", fault.name(), fault.what());
        let figures = one(world, functions, fault, &plan, &queues, Backstop::Sweep)
            .await
            .with_context(|| format!("the fault {}", fault.name()))?;
        faults.push(figures);
    }
    Ok(Matrix { plan, faults })
}

/// Whether the sweep runs for what the retry queue did not register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backstop {
    Sweep,
    /// The sweep left out: what the matrix must then count as lost.
    None,
}

/// The check itself checked: the hand-off fault with the sweep left out must lose the users the
/// trigger could neither register nor queue, and its row must say ✗.
pub async fn caught_without_the_sweep(world: &mut World, functions: &Functions) -> Row {
    let what = "caught: the matrix without the sweep";
    let result: Result<String> = async {
        let queues = world.queues().await?;
        let plan = Plan::short();
        let fault = Fault::HandOffUnreachable;
        let figures = one(world, functions, fault, &plan, &queues, Backstop::None).await?;
        let row = &Matrix {
            plan,
            faults: vec![figures.clone()],
        }
        .rows()[0];
        if figures.lost == 0 || row.ok {
            bail!("{} lost, row ✓: {}", figures.lost, row.detail);
        }
        // The users it left are registered by the next sweep, as the schedule's would.
        run_sweep(world, &functions.sign_up).await?;
        Ok(format!(
            "{}: {} lost without the sweep, its row ✗",
            fault.name(),
            figures.lost
        ))
    }
    .await;
    Row::from(what, result)
}

async fn one(
    world: &mut World,
    functions: &Functions,
    fault: Fault,
    plan: &Plan,
    queues: &Queues,
    backstop: Backstop,
) -> Result<Figures> {
    let function = &functions.sign_up;
    let serving = Serving::new(function.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let driver = tokio::spawn(drive(
        world.deployed.clone(),
        serving.clone(),
        plan.every,
        format!("fault-{}", fault.name()),
        stop.clone(),
    ));
    let hold = fault.hold(world, plan).await;
    tokio::time::sleep(plan.before).await;
    let begun = match hold {
        Ok(hold) => {
            let begun = fault.begin(world, functions, &serving).await;
            if begun.is_ok() && !fault.is_event() {
                tokio::time::sleep(hold).await;
            }
            begun
        }
        Err(e) => Err(e),
    };
    let token = begun.as_ref().ok().cloned().flatten();
    let ended = fault
        .end(world, functions, &serving, token.as_deref())
        .await;
    let over = Instant::now();
    tokio::time::sleep(plan.after).await;
    stop.store(true, Ordering::SeqCst);
    let attempts = driver.await.context("the sign-up driver")??;
    let last = serving.switch(function.clone());
    if !Arc::ptr_eq(&last, function) {
        world.twin.remove_service(last.service());
    }
    begun.context("injecting the fault")?;
    ended?;
    settle(world, function, queues, (fault, backstop), attempts, over).await
}

/// Signs users up back to back, one every `every` at most, until `stop`.
async fn drive(
    deployed: Deployed,
    serving: Serving,
    every: Duration,
    label: String,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Attempt>> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut made = Vec::new();
    while !stop.load(Ordering::SeqCst) && made.len() < MOST_PER_FAULT {
        tick.tick().await;
        let user = deployed.sign_up(&label).await?;
        let at = Instant::now();
        let answer = serving.current().invoke(user.event.to_string()).await;
        let took = at.elapsed();
        let shown = match answer {
            Outcome::Response(body)
                if serde_json::from_str::<Value>(&body).ok().as_ref() == Some(&user.event) =>
            {
                (took >= COGNITO_WAITS)
                    .then(|| format!("answered after {} ms, past Cognito's 5 s", took.as_millis()))
            }
            Outcome::Response(body) => Some(format!("Cognito's event came back changed: {body}")),
            other => Some(format!("the trigger failed: {other:?}")),
        };
        made.push(Attempt {
            sub: user.sub,
            email: user.username,
            at,
            took,
            shown,
        });
    }
    Ok(made)
}

/// Finds every attempt's registration: first as the trigger left it, then after the retry
/// queue is drained, then after the sweep.
async fn settle(
    world: &World,
    function: &Sandbox,
    queues: &Queues,
    (fault, backstop): (Fault, Backstop),
    attempts: Vec<Attempt>,
    over: Instant,
) -> Result<Figures> {
    let subs: Vec<String> = attempts.iter().map(|a| a.sub.clone()).collect();
    let emails: Vec<String> = attempts.iter().map(|a| a.email.clone()).collect();
    let (direct, _) = world.registered(subs.clone(), emails.clone()).await?;
    drain(queues, function).await?;
    let (queued, _) = world.registered(subs.clone(), emails.clone()).await?;
    let swept = if queued.len() < subs.len() && backstop == Backstop::Sweep {
        run_sweep(world, function).await?;
        world.registered(subs.clone(), emails.clone()).await?.0
    } else {
        queued.clone()
    };
    let (_, by_email) = world.registered(subs.clone(), emails).await?;
    let recovery = attempts
        .iter()
        .filter(|a| a.at >= over && a.shown.is_none() && direct.contains(&a.sub))
        .map(|a| a.at - over)
        .min();
    let registered = swept.len();
    let count = |set: &BTreeSet<String>, less: &BTreeSet<String>| {
        set.iter().filter(|s| !less.contains(*s)).count()
    };
    Ok(Figures {
        fault,
        attempted: attempts.len(),
        registered,
        lost: attempts.len() - registered,
        duplicated: usize::try_from(by_email)
            .unwrap_or(0)
            .saturating_sub(registered),
        errors_shown: attempts.iter().filter(|a| a.shown.is_some()).count(),
        first_error: attempts.iter().find_map(|a| a.shown.clone()),
        recovery,
        direct: direct.len(),
        queue: count(&queued, &direct),
        sweep: count(&swept, &queued),
        slowest: attempts.iter().map(|a| a.took).max().unwrap_or_default(),
    })
}

/// Lambda's poller on the retry queue until it is empty: each batch handed to the function,
/// what it reported failed made visible again after a second (its backoff, shortened).
async fn drain(queues: &Queues, function: &Sandbox) -> Result<usize> {
    let started = Instant::now();
    let mut handed = 0;
    while started.elapsed() < DRAIN_LIMIT {
        let batch = queues.receive(&queues.retry, 60).await?;
        if batch.is_empty() {
            if queues.count(&queues.retry).await? == 0 {
                return Ok(handed);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        handed += batch.len();
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
        let (_, failed) = hand_to(queues, batch, function).await?;
        if failed > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for receipt in receipts {
                // The handled ones are deleted; their receipts fail here, which is fine.
                let _ = queues.show_again(&receipt).await;
            }
        }
    }
    bail!(
        "the retry queue still held registrations after {} s",
        DRAIN_LIMIT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(lost: usize, duplicated: usize, errors: usize, recovered: bool) -> Figures {
        Figures {
            fault: Fault::Partition,
            attempted: 10,
            registered: 10 - lost,
            lost,
            duplicated,
            errors_shown: errors,
            first_error: None,
            recovery: recovered.then(|| Duration::from_millis(300)),
            direct: 6,
            queue: 4 - lost,
            sweep: 0,
            slowest: Duration::from_millis(4200),
        }
    }

    #[test]
    fn a_fault_holds_only_with_nothing_lost_duplicated_or_shown_and_a_recovery() {
        assert!(figures(0, 0, 0, true).holds());
        for (f, why) in [
            (figures(1, 0, 0, true), "a lost registration"),
            (figures(0, 1, 0, true), "a duplicate"),
            (figures(0, 0, 1, true), "an error shown"),
            (
                figures(0, 0, 0, false),
                "no direct registration after the fault",
            ),
        ] {
            assert!(!f.holds(), "{why} must fail the fault's row");
            let matrix = Matrix {
                plan: Plan::short(),
                faults: vec![f],
            };
            assert!(!matrix.rows()[0].ok, "{why}: the row says ✗");
            assert_eq!(matrix.json()["holds"], false, "{why}: the JSON says so");
        }
    }

    #[test]
    fn every_fault_has_a_distinct_name_and_a_lasting_plan_shares_the_minutes() {
        let names: BTreeSet<&str> = FAULTS.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), FAULTS.len());
        let plan = Plan::lasting(10, FAULTS.len());
        let per = plan.before + plan.fault + plan.after;
        let total = per * FAULTS.len() as u32;
        assert!(
            total <= Duration::from_secs(600) && total >= Duration::from_secs(590),
            "{total:?}"
        );
        assert!(
            Plan::short().fault > COGNITO_WAITS,
            "a partition outlasts the trigger"
        );
    }
}
