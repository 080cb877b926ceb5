//! The command line: one struct per task. Each task's module implements `run` on its struct,
//! so `main` only parses and dispatches.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Tollgate's build, test and deploy tasks"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    Setup(Setup),
    Test(Test),
    Up(Up),
    #[command(alias = "build")]
    Package(Package),
    Deploy(Deploy),
    Verify(Verify),
    RotateSecret(RotateSecret),
    Destroy(Destroy),
    Migrate(Migrate),
    SqlxPrepare(SqlxPrepare),
    Timing(Timing),
    Tidy(Tidy),
    Reconcile(Reconcile),
    Redrive(Redrive),
    Fuzz(Fuzz),
    Registry(ServeRegistry),
    Moto(Moto),
    Bench(Bench),
    Soak(Soak),
    Cost(Cost),
}

/// Bring what `up` and `test` (or `--for deploy`) need onto this machine: Python tools into the
/// project's own environments (~/.cache/tollgate/tools), Rust targets and components, system
/// packages (with apt-get as root or with passwordless sudo; otherwise one message naming them
/// all).
#[derive(Debug, Args)]
pub struct Setup {
    /// Only print what is present, where from, and what is missing; change nothing.
    #[arg(long)]
    pub check: bool,
    /// Whose needs: `test` (everything the two commands and `up --network` run), `up`, or `deploy`
    /// (what `package` and `deploy` run: the Lambda and image builds and Terraform; GitHub's
    /// deploy job uses it).
    #[arg(long = "for", value_enum, default_value = "test")]
    pub scope: Scope,
}

/// Run the workspace tests with the services they need (PostgreSQL, moto_server).
///
/// Starts a throwaway PostgreSQL cluster unless DATABASE_URL is set, and moto_server unless
/// TOLLGATE_TEST_AWS_ENDPOINT is set; exports both; runs `cargo test --workspace`; stops what
/// it started. Arguments after `--` go to `cargo test --workspace` (and run it alone, without
/// the deploy test beside the rest): choose tests by target and name (`-- --test integration
/// delivery::`), not by package, which would build a second dependency tree.
#[derive(Debug, Args)]
pub struct Test {
    /// Fail rather than update Cargo.lock (cargo's `--locked`, given to every `cargo test`), as
    /// CI wants, keeping the split run.
    #[arg(long)]
    pub locked: bool,
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Run the whole sign-up flow locally: moto, PostgreSQL, the api, the Lambda binary; then show
/// a real sign-up go through and forged registrations fail.
#[derive(Debug, Args)]
pub struct Up {
    /// Run the flow once and exit with its status instead of staying up.
    #[arg(long, conflicts_with = "no_lambda")]
    pub once: bool,
    /// Start moto, PostgreSQL and the api only, and stay up: for working on the Lambda under
    /// `cargo lambda watch` (writes target/tollgate/post-confirm.env for it).
    #[arg(long)]
    pub no_lambda: bool,
    /// The staging contract as checked in, deployed to a local AWS of its own, and everything
    /// it renders started in the network built from its state, as AWS would start it (root
    /// only; builds the arm64 release artifacts): every row printed, the stack destroyed.
    #[arg(long, conflicts_with_all = ["no_lambda", "once"])]
    pub network: bool,
}

/// Build the Lambda's bootstrap.zip for Amazon Linux 2023 and the api's OCI image (no
/// container engine needed) into target/dist/<env>/, with SHA-256 sums.
#[derive(Debug, Args)]
pub struct Package {
    #[arg(long, default_value = "local")]
    pub env: String,
    /// Also push the api image to the environment's registry (ECR, or `deploy.registry`) and
    /// print its reference by digest.
    #[arg(long)]
    pub push: bool,
    /// Put this static api binary in the image instead of building one (e.g. a CI artifact
    /// built for the environment's `deploy.api_architecture`, *-linux-musl).
    #[arg(long, value_name = "PATH")]
    pub api_binary: Option<std::path::PathBuf>,
}

/// Build, then create or update an environment's whole stack with Terraform.
#[derive(Debug, Args)]
pub struct Deploy {
    #[arg(long)]
    pub env: String,
    /// Show the plan and stop.
    #[arg(long)]
    pub plan: bool,
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// Put this static api binary in the image instead of building one.
    #[arg(long, value_name = "PATH")]
    pub api_binary: Option<std::path::PathBuf>,
    /// Stop after the migrations: the migration task and what it needs applied (a targeted
    /// apply), run and waited for; the service keeps the tasks it has. On a local AWS, which
    /// runs no task, stop after that apply, so a test can run the task itself on exactly what
    /// the apply left.
    #[arg(long, conflicts_with = "plan")]
    pub migration_only: bool,
}

/// Run a container registry on loopback for `--env local` (`deploy.registry`) until Ctrl-C:
/// Debian's `docker-registry` (CNCF distribution), its storage under target/tollgate/registry/.
#[derive(Debug, Args)]
pub struct ServeRegistry {}

/// Run moto_server (the local AWS) on 127.0.0.1:4566 until Ctrl-C, started and configured as
/// the tests start theirs (testkit's `MOTO_ENV` and `MOTO_CONFIG`): what `deploy --env local`
/// and the manual runs in the README need.
#[derive(Debug, Args)]
pub struct Moto {}

/// Read the deployed stack back through the AWS APIs and prove it matches the contract.
#[derive(Debug, Args)]
pub struct Verify {
    #[arg(long)]
    pub env: String,
}

/// Rotate the guard secret by Secrets Manager's protocol (RotateSecret) and follow it to the end.
#[derive(Debug, Args)]
pub struct RotateSecret {
    #[arg(long)]
    pub env: String,
    /// Instead of rotating, stop accepting the version before the current one now rather than
    /// at the end of its grace (guard.previous_grace_s): after a leak, rotate, then revoke.
    #[arg(long)]
    pub revoke_previous: bool,
}

/// Delete every resource of an environment.
#[derive(Debug, Args)]
pub struct Destroy {
    #[arg(long)]
    pub env: String,
    /// Destroy without asking.
    #[arg(long)]
    pub yes: bool,
}

/// Apply migrations/ to an environment's database (DATABASE_URL, else the env's setting).
#[derive(Debug, Args)]
pub struct Migrate {
    /// Environment whose settings to use (deploy/<env>.toml).
    #[arg(long, default_value = "local")]
    pub env: String,
}

/// Refresh `.sqlx/`, the offline cache of the api's compile-time checked queries, against a
/// throwaway PostgreSQL with `migrations/` applied. `--check` fails instead when it is stale.
#[derive(Debug, Args)]
pub struct SqlxPrepare {
    /// Compare only: fail if `.sqlx/` differs from what the queries and migrations give.
    #[arg(long)]
    pub check: bool,
}

/// Check the house rules (crates/xtask/tests/tidy.rs): function length, no module circles, no
/// test kit in a shipped build, one reader of a secret, one builder of a guarded request's
/// credentials, a `//!` on every file, and the rest. Each rule says what to do when it fails.
#[derive(Debug, Args)]
pub struct Tidy {}

/// Measure whether verifying a credential leaks how close a forgery came: Welch's t-test of
/// verification times for credentials differing in the first versus the last byte, both modes.
#[derive(Debug, Args)]
pub struct Timing {
    /// Samples of each kind (10⁶ gives the usual |t| < 4.5 bar its meaning).
    #[arg(long, default_value_t = 1_000_000)]
    pub samples: usize,
}

/// Register every confirmed user of the user pool that the api may have missed, by replaying
/// Cognito's PostConfirmation event through the Lambda (idempotent: present users answer 200).
///
/// In AWS the deployed function is invoked; with `--env local` the post-confirm binary runs
/// here under a local Lambda Runtime API against `--api-url`.
#[derive(Debug, Args)]
pub struct Reconcile {
    #[arg(long)]
    pub env: String,
    /// The user pool; default: the deployed stack's `user_pool_id` output.
    #[arg(long)]
    pub user_pool_id: Option<String>,
    /// Local only: the api to register with; default `lambda.api_base_url`.
    #[arg(long)]
    pub api_url: Option<String>,
}

/// Move the registrations in the dead-letter queue back to the retry queue, where the sign-up
/// function takes them again (after fixing what sent them there: each holds its reason).
#[derive(Debug, Args)]
pub struct Redrive {
    #[arg(long)]
    pub env: String,
    /// The dead-letter queue's URL; default: the deployed stack's `dead_letter_queue_url`.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The retry queue's URL; default: the deployed stack's `retry_queue_url`.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
}

/// Run every fuzz target of the contract's parsers for a bounded time each (nightly and
/// cargo-fuzz needed).
#[derive(Debug, Args)]
pub struct Fuzz {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// Measure performance as ratios against references in the same run (api under wrk vs
/// GET /healthz and pgbench; the Lambda vs a bare lambda_runtime echo). Prints a table, or JSON.
#[derive(Debug, Args)]
pub struct Bench {
    /// Seconds per load run (each wrk and pgbench run).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Open connections during each wrk run.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Cold starts of each Lambda function (the median is reported).
    #[arg(long, default_value_t = 21)]
    pub cold_starts: usize,
    /// Rounds of the api's runs and their references; each goal row is the median of the
    /// rounds' ratios, printed with their spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=15))]
    pub pairs: u64,
    /// Measure only these parts (repeatable; all of them when not given).
    #[arg(long, value_enum)]
    pub only: Vec<BenchPart>,
    /// Print JSON (for tracking) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure this api binary (e.g. an older commit's release build) instead of this
    /// checkout's, for before/after figures.
    #[arg(long, value_name = "PATH")]
    pub api_binary: Option<std::path::PathBuf>,
    /// The builds measured: `release` (the profiles that ship: `release` for the api,
    /// `lambda-release` for the functions) or `dev` (the tests' build, nothing to compile after
    /// `cargo xtask test`; CI uses it to prove the bench runs, its figures are not the product's).
    #[arg(long, value_enum, default_value_t = Builds::Release)]
    pub build: Builds,
}

/// Estimate each environment's monthly cost standing still and per million sign-ups, from its
/// contract, the stack and the region's price table (deploy/prices/<region>.toml).
#[derive(Debug, Args)]
pub struct Cost {
    /// The environments (repeatable); staging and production when not given.
    #[arg(long)]
    pub env: Vec<String>,
}

/// A part of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPart {
    /// The api's routes against their references.
    Http,
    /// The Lambda's start against the naive function and the echo.
    Lambda,
    /// The api's and the function's capacity held to their CPU share in AWS.
    Capacity,
}

/// Hold the load for N minutes on loopback: sign-ups through the real Lambda binary,
/// `/users/me` with real tokens and a forged flood at once, a guard-secret and a database
/// password rotation on the way; then count every sign-up's outcome and judge the api's
/// memory, descriptors and log. Fails on a lost, duplicated or refused sign-up.
#[derive(Debug, Args)]
pub struct Soak {
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub minutes: u64,
    /// Sign-ups per second (Cognito's default SignUp + ConfirmSignUp ceiling is 50 requests/s).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub sign_ups_per_s: u32,
    /// `GET /users/me` requests per second.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub me_per_s: u32,
    /// The builds run: `dev` (the tests' build, as `up`; nothing to compile after `cargo xtask
    /// test`) or `release` (the profiles that ship: the api's `release`, the function's
    /// `lambda-release`, for this host), for the product's memory and latency figures.
    #[arg(long, value_enum, default_value_t = Builds::Dev)]
    pub build: Builds,
    /// Print JSON (for tracking) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The fault matrix instead: the staging contract deployed to a local AWS of its own and
    /// started in the network built from its state (root only, as `up --network`), then
    /// sign-ups through it while each fault is held in turn (a poor path, a partition, an api
    /// task killed and one replaced, the database restarted and unreachable, Secrets Manager
    /// unreachable, the hand-off unreachable, the function's host clock ahead, a rotation
    /// failing at testSecret and at finishSecret), `--minutes` shared among them; its pace and
    /// builds are its own. Fails on a registration lost or duplicated, an error a user would
    /// see, or sign-ups that never register directly again (crates/xtask/RELIABILITY.md).
    #[arg(long, conflicts_with_all = ["sign_ups_per_s", "me_per_s", "build"])]
    pub faults: bool,
    /// With `--faults`: this fault alone (repeat for more; by the names of the matrix's
    /// table, e.g. `clock-ahead`).
    #[arg(long, value_name = "FAULT", requires = "faults")]
    pub only: Vec<String>,
}

/// Which builds `cargo xtask bench` and `soak` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builds {
    Release,
    Dev,
}

/// A task's needs: `Test` needs what `Up` needs and more (`up --network`, which deploys the
/// stack and starts what it renders, needs all of it); `Deploy` (`package`, `deploy` and
/// GitHub's deploy job) only what builds and applies the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// `cargo xtask up`: the local AWS and the database.
    Up,
    /// `cargo xtask test` and `cargo xtask up --network`: all of `Up`'s, and what the tests,
    /// the bench, a deploy and the network twin run.
    Test,
    /// `cargo xtask package` and `deploy`: the release builds for Lambda and the image, and
    /// Terraform; no local AWS, database or test tool.
    Deploy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_matrix_refuses_the_loopback_soaks_knobs_it_would_ignore() {
        for knob in [
            ["--sign-ups-per-s", "5"],
            ["--me-per-s", "10"],
            ["--build", "release"],
        ] {
            let mut args = vec!["xtask", "soak", "--faults"];
            args.extend(knob);
            let error = Xtask::try_parse_from(&args).expect_err("a knob --faults ignores");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}: {error}"
            );
        }
        for fine in [
            vec!["xtask", "soak", "--faults", "--minutes", "10", "--json"],
            vec!["xtask", "soak", "--me-per-s", "10"],
        ] {
            Xtask::try_parse_from(&fine).unwrap_or_else(|e| panic!("{fine:?}: {e}"));
        }
    }
}
