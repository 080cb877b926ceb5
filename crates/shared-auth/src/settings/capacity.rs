//! How many connections PostgreSQL on RDS accepts per instance class, and the budget every
//! connection the stack opens must fit into: a scale-out past it fails with SQLSTATE 53300
//! ("too many connections"), a failure no test on a local cluster would show.
//!
//! RDS sets `max_connections` to `LEAST({DBInstanceClassMemory/9531392}, 5000)` by default
//! (AWS Prescriptive Guidance, *Tuning PostgreSQL parameters: max_connections*,
//! <https://docs.aws.amazon.com/prescriptive-guidance/latest/tuning-postgresql-parameters/max-connections.html>).
//! `DBInstanceClassMemory` is the class's memory less what RDS keeps for the operating system
//! and its own processes, which AWS does not publish; values read off running instances
//! (2 GiB → 198, 4 GiB → 413, 8 GiB → 856) are 88–95 % of the formula on the nominal memory,
//! so the table counts 85 %, erring low. Of those connections, PostgreSQL holds
//! `superuser_reserved_connections` (3) and RDS `rds.rds_superuser_reserved_connections` (2)
//! for administrators.

/// The api task's memory (MiB), as Terraform sets it (`api_task_memory_mib`, rendered from
/// here).
pub const API_TASK_MEMORY_MIB: u64 = 512;
/// What one open connection costs the api besides its read buffer (hyper's connection state,
/// the task, the socket's user-space side), erring high.
pub const CONNECTION_OVERHEAD_BYTES: u64 = 16 * 1024;
/// The share of the task's memory hostile connections may take at most, in percent: the
/// rest is the service's own working set and headroom.
pub const CONNECTION_MEMORY_PERCENT: u64 = 50;

/// The most `max_connections` connections, each holding `max_header_bytes` of unfinished
/// headers, can make the task hold.
pub fn connection_memory_bytes(max_connections: u32, max_header_bytes: usize) -> u64 {
    u64::from(max_connections) * (max_header_bytes as u64 + CONNECTION_OVERHEAD_BYTES)
}

/// Bytes of instance memory per connection in RDS's default `max_connections` formula.
pub const BYTES_PER_CONNECTION: u64 = 9_531_392;
/// RDS's ceiling on the default `max_connections`.
pub const MAX_CONNECTIONS_CEILING: u32 = 5_000;
/// Share of the class's nominal memory counted as `DBInstanceClassMemory`, in percent.
pub const CLASS_MEMORY_PERCENT: u64 = 85;
/// Slots PostgreSQL and RDS keep for superusers (3 + 2): never the api's.
pub const SUPERUSER_RESERVED: u32 = 5;

/// Connections the stack opens besides the api tasks' pools, each named.
pub const HEADROOM: [(&str, u32); 3] = [
    ("the migration (a pool of one)", 1),
    ("a database-credential rotation", 2),
    ("an operator's session", 3),
];

/// The instance classes whose memory the budget knows, in GiB. Another class is refused
/// with this list: add it here (with its memory) rather than guess.
pub const CLASSES: &[(&str, u64)] = &[
    ("db.t4g.micro", 1),
    ("db.t4g.small", 2),
    ("db.t4g.medium", 4),
    ("db.t4g.large", 8),
    ("db.t4g.xlarge", 16),
    ("db.t4g.2xlarge", 32),
    ("db.t3.micro", 1),
    ("db.t3.small", 2),
    ("db.t3.medium", 4),
    ("db.t3.large", 8),
    ("db.m6g.large", 8),
    ("db.m6g.xlarge", 16),
    ("db.m6g.2xlarge", 32),
    ("db.m7g.large", 8),
    ("db.m7g.xlarge", 16),
    ("db.m7g.2xlarge", 32),
    ("db.r6g.large", 16),
    ("db.r6g.xlarge", 32),
    ("db.r7g.large", 16),
    ("db.r7g.xlarge", 32),
];

/// RDS's default `max_connections` for `class`, as the table estimates it.
pub fn max_connections(class: &str) -> Option<u32> {
    let (_, gib) = CLASSES.iter().find(|(name, _)| *name == class)?;
    let memory = gib * (1 << 30) * CLASS_MEMORY_PERCENT / 100;
    let formula = memory / BYTES_PER_CONNECTION;
    Some(u32::try_from(formula).map_or(MAX_CONNECTIONS_CEILING, |n| n.min(MAX_CONNECTIONS_CEILING)))
}

/// The most api tasks running at once: `max_count`, and during a deployment ECS starts the new
/// tasks beside the old up to `maximum_percent` of the count (rounded down, as ECS does:
/// Amazon ECS Developer Guide, *Deployment configuration*, `maximumPercent`).
pub fn tasks_during_deployment(max_count: u32, maximum_percent: u32) -> u32 {
    let tasks = u64::from(max_count) * u64::from(maximum_percent.max(100)) / 100;
    u32::try_from(tasks).unwrap_or(u32::MAX).max(max_count)
}

/// The connections left for the api tasks on `class`: `max_connections` less the superuser
/// slots and the [`HEADROOM`].
pub fn for_api_tasks(class: &str) -> Option<u32> {
    let headroom: u32 = HEADROOM.iter().map(|(_, n)| n).sum();
    max_connections(class).map(|max| max.saturating_sub(SUPERUSER_RESERVED + headroom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_stays_below_what_running_instances_report() {
        // `SHOW max_connections` on instances of 2, 4 and 8 GiB.
        for (class, observed) in [
            ("db.t4g.small", 198),
            ("db.t4g.medium", 413),
            ("db.t4g.large", 856),
        ] {
            let estimate = max_connections(class).expect("known class");
            assert!(
                estimate <= observed && estimate * 100 >= observed * 85,
                "{class}: {estimate} vs {observed}"
            );
        }
        assert_eq!(max_connections("db.t4g.micro"), Some(95));
        assert_eq!(for_api_tasks("db.t4g.micro"), Some(95 - 5 - 6));
        assert_eq!(max_connections("db.x9.huge"), None);
    }
}
