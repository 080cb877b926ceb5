//! `cargo xtask moto`: moto_server on loopback, in the foreground until Ctrl-C, started and
//! configured exactly as the tests start theirs, so `deploy --env local` (and any manual run)
//! meets the same local AWS.

use anyhow::Result;
use testkit::services::Moto;

use crate::flags;
use crate::support::context::{interrupted, work_dir};

impl flags::Moto {
    pub fn run(self) -> Result<()> {
        let moto = Moto::start(&work_dir())?;
        eprintln!(
            "· local AWS at {}: TOLLGATE__AWS__ENDPOINT_URL={} for a contract that names another; Ctrl-C stops it",
            moto.endpoint(),
            moto.endpoint()
        );
        while !interrupted() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        drop(moto);
        Ok(())
    }
}
