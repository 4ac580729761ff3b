//! An embedded Postgres cluster for `scopegate dev` and the test harness.
//!
//! We drive the server binaries the machine already has (`initdb`,
//! `pg_ctl`, `postgres`) instead of downloading any. They are found through
//! `SCOPEGATE_PG_BINDIR`, `PATH`, `pg_config --bindir`, or the usual package
//! folders (`/usr/lib/postgresql/<version>/bin`, Homebrew). When none has
//! them, [`EmbeddedError::BinariesMissing`] says what to install.
//!
//! Postgres refuses to run as root, so as root every command runs as the
//! `postgres` user through `runuser`, and the data folder is handed to it.
//! The cluster listens on 127.0.0.1 only (no Unix socket), on a port chosen
//! when it is created. It accepts no connection without the superuser's
//! password (`scram-sha-256` on TCP, `peer` locally): the password is drawn
//! from the OS CSPRNG when the cluster is created and kept in
//! `<data_dir>.password`, readable by its creator only (0600), so another
//! OS user on the machine cannot connect (`docs/security.md`, "Development
//! cluster"). It is a local development and test database, never a
//! production one. The test harness also has it serve TLS
//! ([`Cluster::start_with_tls`]); `dev` does not. Commands are started in their own
//! process group so that a Ctrl-C in the terminal reaches scopegate, which
//! then stops the server cleanly, rather than killing Postgres under it.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The account Postgres runs as when we are root.
const SERVICE_USER: &str = "postgres";
/// Superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (looked in {searched}). \
         Install them: `apt-get install postgresql` on Debian/Ubuntu, `dnf install postgresql-server` on Fedora, \
         `brew install postgresql` on macOS; or point SCOPEGATE_PG_BINDIR at the folder that has them, \
         or set database.url / SCOPEGATE_DATABASE_URL to use an existing server"
    )]
    BinariesMissing { searched: String },
    #[error("running as root, but there is no `{SERVICE_USER}` user to run Postgres as (Postgres refuses to run as root); create it or run scopegate as an ordinary user")]
    NoServiceUser,
    #[error("the `{SERVICE_USER}` user cannot reach {path}: make every parent folder traversable (chmod o+x) or put the project elsewhere")]
    Inaccessible { path: PathBuf },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

mod binaries;

pub use binaries::{Binaries, Search};

/// Are we root (and must therefore run Postgres as another user)?
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn service_user_ids() -> Result<(u32, u32), EmbeddedError> {
    let name = std::ffi::CString::new(SERVICE_USER).map_err(|_| EmbeddedError::NoServiceUser)?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage that is
    // valid until the next getpw* call; we copy the two ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(EmbeddedError::NoServiceUser);
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

/// A server certificate for [`Cluster::start_with_tls`].
pub struct ServerCert {
    /// The server's certificate, then any intermediates, PEM.
    pub chain_pem: String,
    /// Its private key, PEM.
    pub key_pem: crate::config::Secret,
}

/// A cluster on disk; [`Cluster::start`] runs it, [`Cluster::stop`] stops it.
pub struct Cluster {
    bins: Binaries,
    data_dir: PathBuf,
    port: u16,
    as_root: bool,
    /// The superuser's password (`None`: a cluster made before passwords,
    /// with `trust` authentication).
    password: Option<crate::config::Secret>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("as_root", &self.as_root)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Open the cluster in `data_dir`, creating it with `initdb` when the
    /// folder holds none. Returns the cluster and whether it was created.
    ///
    /// The port is chosen when the cluster is created and kept in
    /// `<data_dir>.port`; when that port is taken later, a new one is chosen.
    pub fn open_or_init(bins: Binaries, data_dir: &Path) -> Result<(Cluster, bool), EmbeddedError> {
        let as_root = running_as_root();
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let data_dir = std::path::absolute(data_dir)?;
        let created = !data_dir.join("PG_VERSION").is_file();
        let port_file = port_file(&data_dir);
        let stored = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok());
        let mut cluster = Cluster {
            bins,
            data_dir: data_dir.clone(),
            port: stored.unwrap_or(0),
            as_root,
            password: None,
        };
        if created {
            cluster.password = Some(cluster.initdb()?);
        } else {
            cluster.password = std::fs::read_to_string(sibling(&data_dir, "password"))
                .ok()
                .map(|p| crate::config::Secret::new(p.trim()));
        }
        if cluster.port == 0 || (!cluster.is_running() && !port_is_free(cluster.port)) {
            cluster.port = free_port()?;
            std::fs::write(&port_file, cluster.port.to_string())?;
        }
        Ok((cluster, created))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Does the cluster require a password (it was made with one)?
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// A connection string for `dbname` as the superuser (with its
    /// password: treat it as a secret).
    pub fn url(&self, dbname: &str) -> String {
        let mut url = self.base_url();
        url.push_str(dbname);
        url.push_str("?connect_timeout=5");
        url
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/`, no database.
    pub fn base_url(&self) -> String {
        let auth = match &self.password {
            // The password is alphanumeric: no escaping needed.
            Some(p) => format!("{SUPERUSER}:{}", p.expose()),
            None => SUPERUSER.to_owned(),
        };
        format!("postgres://{auth}@127.0.0.1:{}/", self.port)
    }

    /// `initdb` with a fresh superuser password; returns it (also written
    /// to `<data_dir>.password`, mode 0600).
    fn initdb(&self) -> Result<crate::config::Secret, EmbeddedError> {
        std::fs::create_dir_all(&self.data_dir)?;
        if self.as_root {
            let (uid, gid) = service_user_ids()?;
            std::os::unix::fs::chown(&self.data_dir, Some(uid), Some(gid))?;
            // Postgres wants 0700 on its data folder.
            std::fs::set_permissions(
                &self.data_dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
            let probe = self
                .command(
                    "test".as_ref(),
                    ["-w".as_ref(), self.data_dir.as_os_str()],
                    false,
                )
                .output()?;
            if !probe.status.success() {
                return Err(EmbeddedError::Inaccessible {
                    path: self.data_dir.clone(),
                });
            }
        }
        let password = random_password()?;
        let password_file = sibling(&self.data_dir, "password");
        write_private(&password_file, password.expose(), None)?;
        // initdb (run as the service user) reads the password from a file
        // of its own, removed as soon as it is done.
        let pwfile = sibling(&self.data_dir, "pwfile");
        let owner = if self.as_root {
            Some(service_user_ids()?)
        } else {
            None
        };
        write_private(&pwfile, password.expose(), owner)?;
        let mut pwfile_arg = std::ffi::OsString::from("--pwfile=");
        pwfile_arg.push(&pwfile);
        let out = self
            .command(
                self.bins.tool("initdb").as_os_str(),
                [
                    "-D".as_ref(),
                    self.data_dir.as_os_str(),
                    "-U".as_ref(),
                    SUPERUSER.as_ref(),
                    "--auth-local=peer".as_ref(),
                    "--auth-host=scram-sha-256".as_ref(),
                    pwfile_arg.as_os_str(),
                    "--encoding=UTF8".as_ref(),
                    "--locale=C".as_ref(),
                    "--no-sync".as_ref(),
                ],
                true,
            )
            .output();
        let _ = std::fs::remove_file(&pwfile);
        check("initdb", out?)?;
        Ok(password)
    }

    /// Stop the server (if running) and delete the cluster: its data
    /// folder and the files kept beside it.
    pub fn destroy(self) -> Result<(), EmbeddedError> {
        self.stop(false)?;
        for name in ["password", "port", "pwfile"] {
            let _ = std::fs::remove_file(sibling(&self.data_dir, name));
        }
        match std::fs::remove_dir_all(&self.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Is a server running on this data folder?
    pub fn is_running(&self) -> bool {
        self.command(
            self.bins.tool("pg_ctl").as_os_str(),
            ["status".as_ref(), "-D".as_ref(), self.data_dir.as_os_str()],
            true,
        )
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    }

    /// Start the server and wait until it accepts connections. Returns
    /// false when it was already running (started by someone else: leave
    /// it running on exit).
    ///
    /// `throwaway` clusters (tests) run without fsync: faster, and their
    /// data is deleted afterwards anyway.
    pub fn start(&self, throwaway: bool) -> Result<bool, EmbeddedError> {
        self.start_serving(throwaway, None)
    }

    /// [`Cluster::start`], serving TLS as well (`ssl=on`) with `cert`, so
    /// that clients can be tested against every `sslmode`. The certificate
    /// and key are written into the data folder as `server.crt` and
    /// `server.key` (Postgres's defaults), owned by the user Postgres runs
    /// as, the key readable by it only (Postgres refuses a key others can
    /// read).
    pub fn start_with_tls(
        &self,
        throwaway: bool,
        cert: &ServerCert,
    ) -> Result<bool, EmbeddedError> {
        self.start_serving(throwaway, Some(cert))
    }

    fn start_serving(
        &self,
        throwaway: bool,
        tls: Option<&ServerCert>,
    ) -> Result<bool, EmbeddedError> {
        if self.is_running() {
            return Ok(false);
        }
        let log = self.data_dir.join("server.log");
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300",
            self.port
        );
        if throwaway {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if let Some(cert) = tls {
            let owner = if self.as_root {
                Some(service_user_ids()?)
            } else {
                None
            };
            write_private(&self.data_dir.join("server.crt"), &cert.chain_pem, owner)?;
            write_private(
                &self.data_dir.join("server.key"),
                cert.key_pem.expose(),
                owner,
            )?;
            opts.push_str(" -c ssl=on");
        }
        let out = self
            .command(
                self.bins.tool("pg_ctl").as_os_str(),
                [
                    "start".as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "-D".as_ref(),
                    self.data_dir.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    opts.as_ref(),
                ],
                true,
            )
            .output()?;
        check("pg_ctl start", out).map_err(|e| match e {
            EmbeddedError::Command { what, detail } => EmbeddedError::Command {
                what,
                detail: format!("{detail} (server log: {})", log.display()),
            },
            other => other,
        })?;
        Ok(true)
    }

    /// Stop the server: `fast` (disconnect clients, clean shutdown) or,
    /// with `immediate`, abort (throwaway test clusters).
    pub fn stop(&self, immediate: bool) -> Result<(), EmbeddedError> {
        if !self.is_running() {
            return Ok(());
        }
        let mode = if immediate { "immediate" } else { "fast" };
        let out = self
            .command(
                self.bins.tool("pg_ctl").as_os_str(),
                [
                    "stop".as_ref(),
                    "-w".as_ref(),
                    "-D".as_ref(),
                    self.data_dir.as_os_str(),
                    "-m".as_ref(),
                    mode.as_ref(),
                ],
                true,
            )
            .output()?;
        check("pg_ctl stop", out)
    }

    /// Build a command, through `runuser` when we are root. Stdin is closed,
    /// output captured, and the child gets its own process group so a
    /// terminal's Ctrl-C does not reach the server behind our back.
    fn command<'a>(
        &self,
        program: &OsStr,
        args: impl IntoIterator<Item = &'a OsStr>,
        quiet_cwd: bool,
    ) -> Command {
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(SERVICE_USER).arg("--").arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if quiet_cwd {
            // The service user may not be able to read our working folder.
            cmd.current_dir(&self.data_dir);
        }
        cmd
    }
}

fn port_file(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "port")
}

/// `<data_dir>.<ext>`: a file kept beside the data folder.
fn sibling(data_dir: &Path, ext: &str) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(ext);
    data_dir.with_file_name(name)
}

/// Write `content` to a new file only its owner can read (0600), owned by
/// `owner` (uid, gid) when given.
fn write_private(path: &Path, content: &str, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// 32 letters and digits from the OS CSPRNG (no modulo bias).
fn random_password() -> Result<crate::config::Secret, EmbeddedError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut buf).map_err(|e| {
            std::io::Error::other(format!("the OS random number generator failed: {e}"))
        })?;
        for b in buf {
            if out.len() < 32 && usize::from(b) < 62 * 4 {
                out.push(char::from(ALPHABET[usize::from(b) % 62]));
            }
        }
    }
    Ok(crate::config::Secret::new(out))
}

fn check(what: &str, out: Output) -> Result<(), EmbeddedError> {
    if out.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(EmbeddedError::Command {
        what: what.to_owned(),
        detail,
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, EmbeddedError> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_file_sits_beside_the_data_dir() {
        assert_eq!(
            port_file(Path::new("/x/.scopegate/postgres")),
            PathBuf::from("/x/.scopegate/postgres.port")
        );
    }
}
