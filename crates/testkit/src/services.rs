//! Local services on loopback, each owned by a guard that stops it when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::tls::TestCa;
pub use opskit::moto::{MOTO_CONFIG, MOTO_TRANSITIONS, configure_moto};
pub use opskit::process::outlive_interrupts;

/// The port moto_server uses unless it is taken.
pub const MOTO_PORT: u16 = 4566;

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it right away).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn wait_for_port(port: u16, timeout: Duration, what: &str, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{what} did not listen on 127.0.0.1:{port} within {}s; see {}",
        timeout.as_secs(),
        log.display()
    )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway PostgreSQL cluster under the system temp folder, on a free loopback port,
/// that accepts TCP connections over TLS only (as RDS with `rds.force_ssl`): its certificate
/// comes from a CA made for this cluster alone, which [`Postgres::ca_file`] holds for clients.
/// The superuser `postgres` needs no password; every other role authenticates with
/// SCRAM-SHA-256. Dropping it stops the server and deletes the cluster.
#[derive(Debug)]
pub struct Postgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres_user: bool,
    tls: bool,
    /// The address it listens on (127.0.0.1, or an address inside `netns`).
    host: String,
    /// Names its certificate holds besides `host`, 127.0.0.1 and localhost (a database
    /// endpoint's DNS name, say).
    names: Vec<String>,
    /// Whether clients may connect from any address (by password), not only the server's own.
    any_client: bool,
    /// The network namespace it runs in, if not this one.
    netns: Option<String>,
    pub port: u16,
}

/// How a cluster is set up beyond its address: a fixed port, more names in its certificate,
/// clients from anywhere.
#[derive(Debug, Default)]
struct Database {
    port: Option<u16>,
    names: Vec<String>,
    any_client: bool,
}

/// Who may connect, and how: TLS only over TCP; the superuser without a password (tests and
/// xtask administer the cluster), everyone else by password.
/// Without TLS (`host` rather than `hostssl`) only for proving that clients refuse a
/// plain-text server. Clients connect from the server's own address, or with `any_client`
/// from anywhere by password (the network decides who reaches it, as a security group does).
fn hba_for(tls: bool, host: &str, any_client: bool) -> String {
    let kind = if tls { "hostssl" } else { "host" };
    let clients = if any_client {
        "0.0.0.0/0".to_owned()
    } else {
        format!("{host}/32")
    };
    format!(
        "local all all trust\n{kind} all postgres {host}/32 trust\n{kind} all all {clients} scram-sha-256\n"
    )
}

impl Postgres {
    /// Creates and starts a new cluster that requires TLS. As root, runs it as the `postgres`
    /// user (the server refuses to run as root).
    pub fn start() -> Result<Self> {
        Self::start_with(true, "127.0.0.1", None, Database::default())
    }

    /// A cluster without TLS: only for proving that the api refuses one.
    pub fn start_plain() -> Result<Self> {
        Self::start_with(false, "127.0.0.1", None, Database::default())
    }

    /// A TLS cluster playing a database instance of the network twin: inside `netns` on
    /// `host:port`, its certificate also for the instance's endpoint `names`, open to clients
    /// from any address by password (the security groups decide who reaches it).
    pub fn start_as_instance(netns: &str, host: &str, port: u16, names: &[&str]) -> Result<Self> {
        Self::start_with(
            true,
            host,
            Some(netns.to_owned()),
            Database {
                port: Some(port),
                names: names.iter().map(|n| (*n).to_owned()).collect(),
                any_client: true,
            },
        )
    }

    fn start_with(tls: bool, host: &str, netns: Option<String>, db: Database) -> Result<Self> {
        let bin_dir = opskit::locate::postgres_binaries()?;
        let as_postgres_user = running_as_root();
        if as_postgres_user && cmd::which("runuser").is_none() {
            bail!(
                "running as root needs `runuser` (util-linux) to start PostgreSQL as the postgres user"
            );
        }
        let template = std::env::temp_dir().join("tollgate-pg.XXXXXX");
        let mut mktemp = owned_by_postgres(as_postgres_user, "mktemp");
        mktemp.arg("-d").arg(&template);
        let data_dir = PathBuf::from(
            cmd::output(&mut mktemp)
                .context(
                    "cannot create the cluster folder (as root, the `postgres` user must exist)",
                )?
                .trim(),
        );
        let pg = Postgres {
            data_dir,
            bin_dir,
            as_postgres_user,
            tls,
            host: host.to_owned(),
            names: db.names,
            any_client: db.any_client,
            netns,
            port: match db.port {
                Some(port) => port,
                None => free_port()?,
            },
        };
        eprintln!(
            "· PostgreSQL: creating a throwaway cluster in {}",
            pg.data_dir.display()
        );
        let mut initdb = pg.tool("initdb");
        initdb
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&pg.data_dir)
            .stdout(Stdio::null());
        cmd::run(&mut initdb).context("initdb failed")?;
        pg.configure_access()?;

        let log = pg.data_dir.join("server.log");
        let tls = if pg.tls {
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        } else {
            ""
        };
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300{tls}",
            pg.port,
            pg.host,
            pg.data_dir.display()
        );
        let mut pg_ctl = pg.tool("pg_ctl");
        pg_ctl
            .args(["-w", "-t", "60", "-D"])
            .arg(&pg.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"])
            .stdout(Stdio::null());
        opskit::process::grouped(&mut pg_ctl);
        cmd::run(&mut pg_ctl)
            .with_context(|| format!("PostgreSQL did not start; see {}", log.display()))?;
        eprintln!("· PostgreSQL: listening on {}:{}", pg.host, pg.port);
        Ok(pg)
    }

    /// The superuser's URL: `verify-full` against this cluster's CA (or `disable` for a
    /// plain-text cluster).
    pub fn url(&self) -> String {
        self.url_for("postgres", "postgres")
    }

    /// The URL of `database` as `user` (no password: give it separately).
    pub fn url_for(&self, user: &str, database: &str) -> String {
        let base = format!("postgres://{user}@{}:{}/{database}", self.host, self.port);
        if self.tls {
            format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                self.ca_file().display()
            )
        } else {
            format!("{base}?sslmode=disable")
        }
    }

    /// The postmaster's process id (the first line of `postmaster.pid`): every backend is its
    /// child.
    pub fn server_pid(&self) -> Result<u32> {
        let file = self.data_dir.join("postmaster.pid");
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
            .with_context(|| format!("no process id in {}", file.display()))
    }

    /// Restarts the server as an operator's `pg_ctl restart` does (fast shutdown: every
    /// session is ended, in-flight transactions rolled back), with the options it ran with;
    /// returns once it accepts connections again.
    pub fn restart_fast(&self) -> Result<()> {
        let log = self.data_dir.join("server.log");
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .arg("restart")
            .stdout(Stdio::null());
        opskit::process::grouped(&mut pg_ctl);
        cmd::run(&mut pg_ctl)
            .with_context(|| format!("PostgreSQL did not restart; see {}", log.display()))
    }

    /// The PEM file of the CA that signed this cluster's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("ca.crt")
    }

    /// Writes pg_hba.conf and, with TLS, a new CA, the server's certificate and key.
    fn configure_access(&self) -> Result<()> {
        let hba = self.data_dir.join("pg_hba.conf");
        std::fs::write(&hba, hba_for(self.tls, &self.host, self.any_client))?;
        let mut owned = vec![hba];
        if self.tls {
            let ca = TestCa::new("Tollgate throwaway PostgreSQL CA")?;
            let mut names = vec![self.host.as_str(), "127.0.0.1", "localhost"];
            names.extend(self.names.iter().map(String::as_str));
            let server = ca.server_cert(&names)?;
            for (name, text, mode) in [
                ("ca.crt", ca.pem(), 0o644),
                ("server.crt", server.cert_pem, 0o644),
                ("server.key", server.key_pem, 0o600),
            ] {
                let path = self.data_dir.join(name);
                std::fs::write(&path, text)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                owned.push(path);
            }
        }
        if self.as_postgres_user {
            let (uid, gid) = postgres_ids()?;
            for path in owned {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .with_context(|| format!("cannot give {} to postgres", path.display()))?;
            }
        }
        Ok(())
    }

    /// A PostgreSQL program, run as the cluster's owner (in the cluster's namespace).
    fn tool(&self, name: &str) -> Command {
        let program = self.bin_dir.join(name).to_string_lossy().into_owned();
        let Some(netns) = &self.netns else {
            return owned_by_postgres(self.as_postgres_user, &program);
        };
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]);
        if self.as_postgres_user {
            command.args(["runuser", "-u", "postgres", "--"]);
        }
        command.arg(program);
        command
    }
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = cmd::output(Command::new("id").args([flag, "postgres"]))?;
        out.trim()
            .parse()
            .with_context(|| format!("`id {flag} postgres` printed {out:?}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// `program`, wrapped in `runuser -u postgres --` when running as root.
fn owned_by_postgres(as_postgres_user: bool, program: &str) -> Command {
    if !as_postgres_user {
        return Command::new(program);
    }
    let mut wrapped = Command::new("runuser");
    wrapped.args(["-u", "postgres", "--", program]);
    wrapped
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.data_dir)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Already stopped is fine; what matters is that nothing is left running.
        let _ = pg_ctl.status();
        if let Err(e) = std::fs::remove_dir_all(&self.data_dir) {
            eprintln!("warning: cannot remove {}: {e}", self.data_dir.display());
        } else {
            eprintln!("· PostgreSQL: stopped and removed");
        }
    }
}

/// How moto_server is started, and why: each stands in for an AWS behaviour moto does not
/// have by itself (infra/README.md lists them).
pub const MOTO_ENV: [(&str, &str, &str); 3] = [
    (
        "MOTO_IAM_LOAD_MANAGED_POLICIES",
        "true",
        "AWS-managed IAM policies (AWSLambdaVPCAccessExecutionRole, …), which the stack attaches",
    ),
    (
        "MOTO_ECS_SERVICE_RUNNING",
        "2",
        "ECS services report two running tasks (moto runs none), so the stack's wait for a steady service (api_min_count = 2) ends",
    ),
    (
        "MOTO_ACM_VALIDATION_WAIT",
        "0",
        "a DNS-validated certificate is issued at once, as ACM does once the validation record resolves",
    ),
];

/// moto_server on loopback: a local AWS for Secrets Manager, Cognito and the Terraform stack.
/// Dropping it stops the server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto_server on 127.0.0.1:4566, or on a free port when 4566 is taken.
    pub fn start(log_dir: &Path) -> Result<Self> {
        Self::start_with(log_dir, None)
    }

    /// A moto_server whose every request is in the account `account` (`MOTO_ACCOUNT_ID`): the
    /// AWS account of another environment, which shares nothing with the default one.
    pub fn start_in_account(log_dir: &Path, account: &str) -> Result<Self> {
        Self::start_with(log_dir, Some(account))
    }

    fn start_with(log_dir: &Path, account: Option<&str>) -> Result<Self> {
        let program = cmd::which("moto_server").context(
            "moto_server not found.\n  Install it: `pip install 'moto[server]'` \
             (then make sure pip's bin folder is on PATH), or\n  \
             point the tests at one you run: TOLLGATE_TEST_AWS_ENDPOINT=http://127.0.0.1:4566",
        )?;
        // The well-known port for the default account (what a person points tools at); any
        // free one for another account's, so two tests starting theirs at once never race for
        // 4566 (the loser's wait would succeed on the winner's port).
        let port = if account.is_none() && port_is_free(MOTO_PORT) {
            MOTO_PORT
        } else if account.is_some() {
            free_port()?
        } else {
            let port = free_port()?;
            eprintln!("· moto_server: 127.0.0.1:{MOTO_PORT} is taken, using {port}");
            port
        };
        std::fs::create_dir_all(log_dir)?;
        let log = log_dir.join(format!("moto-{port}.log"));
        let out = File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(MOTO_ENV.iter().map(|(k, v, _)| (k, v)))
            .envs(account.map(|a| ("MOTO_ACCOUNT_ID", a)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        opskit::process::grouped(&mut command);
        cmd::echo(&command);
        let child = command.spawn().context("cannot start moto_server")?;
        let moto = Moto { child, port, log };
        wait_for_port(port, Duration::from_secs(60), "moto_server", &moto.log)?;
        configure_moto(&moto.endpoint())?;
        eprintln!("· moto_server: listening on {}", moto.endpoint());
        Ok(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("· moto_server: stopped");
    }
}

/// A container registry on loopback (CNCF distribution: Debian's `docker-registry`, or
/// `registry` from Homebrew's `distribution`), with its storage in `storage`. Plain HTTP and
/// no credentials: loopback only. Dropping it stops the server; the storage stays.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl LocalRegistry {
    /// Starts a registry on 127.0.0.1:`port` (a free port when `None`).
    pub fn start(storage: &Path, port: Option<u16>) -> Result<Self> {
        let program = cmd::which("docker-registry")
            .or_else(|| cmd::which("registry"))
            .context(
                "no container registry binary (docker-registry) found.\n  Install it: \
                 `apt-get install docker-registry` (Debian/Ubuntu) or `brew install distribution`",
            )?;
        let port = match port {
            Some(port) if !port_is_free(port) => bail!(
                "127.0.0.1:{port} is taken: stop what listens there, or set TOLLGATE__DEPLOY__REGISTRY to another host:port"
            ),
            Some(port) => port,
            None => free_port()?,
        };
        std::fs::create_dir_all(storage)?;
        let storage = storage
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", storage.display()))?;
        let config = storage.join(format!("config-{port}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.join("data").display()
            ),
        )?;
        let log = storage.join(format!("registry-{port}.log"));
        let out = File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let mut command = Command::new(program);
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        opskit::process::grouped(&mut command);
        cmd::echo(&command);
        let child = command.spawn().context("cannot start the registry")?;
        let registry = LocalRegistry { child, port, log };
        wait_for_port(port, Duration::from_secs(30), "the registry", &registry.log)?;
        eprintln!("· registry: listening on {}", registry.host());
        Ok(registry)
    }

    /// `127.0.0.1:<port>`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("· registry: stopped");
    }
}
