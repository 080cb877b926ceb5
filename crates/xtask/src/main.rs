//! `cargo xtask`: Tollgate's automation, as plain Rust instead of shell scripts.
//!
//! Two rooms: [`tasks`], one module per task (`setup`, `test`, `up`, `package`, `deploy`, `verify`,
//! `rotate_secret`, `destroy`, `migrate`, `reconcile`, `sqlx_prepare`, `timing`, `fuzz`,
//! `registry`, `moto`, `bench`), each a `run` that reads as a list of named steps; and
//! [`support`], what several tasks use. [`flags`] is the command line. Every external command
//! is echoed before it runs (`$ pg_ctl …`), so a reader sees exactly what happens. Services started here (PostgreSQL, moto_server, a registry) come from
//! `testkit` and are owned by guards that stop them on every exit path, Ctrl-C included.

mod flags;
mod support;
mod tasks;

use std::process::ExitCode;

use clap::Parser;
use testkit::cmd;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    support::context::handle_interrupts();
    let result = match flags.task {
        flags::Task::Test(task) => task.run(),
        flags::Task::Up(task) => task.run(),
        flags::Task::Setup(task) => task.run(),
        flags::Task::Package(task) => task.run(),
        flags::Task::Deploy(task) => task.run(),
        flags::Task::Verify(task) => task.run(),
        flags::Task::RotateSecret(task) => task.run(),
        flags::Task::Destroy(task) => task.run(),
        flags::Task::Migrate(task) => task.run(),
        flags::Task::SqlxPrepare(task) => task.run(),
        flags::Task::Timing(task) => task.run(),
        flags::Task::Reconcile(task) => task.run(),
        flags::Task::Redrive(task) => task.run(),
        flags::Task::Fuzz(task) => task.run(),
        flags::Task::Registry(task) => task.run(),
        flags::Task::Moto(task) => task.run(),
        flags::Task::Bench(task) => task.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", cmd::paint("31", "error"));
            ExitCode::FAILURE
        }
    }
}
