//! The `scopegate` binary as a child process.

use std::net::SocketAddr;

use scopegate::testing::TestDb;

/// The `scopegate` binary, run from the repository (where `config/` is),
/// with none of the environment that would point it elsewhere
/// (`SCOPEGATE_CONFIG`, `SCOPEGATE_DATABASE_URL`, `SCOPEGATE_LISTEN`).
pub fn scopegate() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"));
    c.env_remove("SCOPEGATE_CONFIG")
        .env_remove("SCOPEGATE_DATABASE_URL")
        .env_remove("SCOPEGATE_LISTEN")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A loopback port that refuses connections for as long as the returned
/// socket lives: bound (so nobody else can take it) but not listening.
/// Unlike a port that "was free a moment ago", it cannot turn out to be
/// someone else's server.
pub fn refusing_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}

/// A `scopegate serve` process on its own config file, with its stderr
/// (the log) read line by line; killed when dropped (pass or fail).
pub struct Serve {
    pub child: std::process::Child,
    /// The proxy listener's address, from the readiness line.
    pub addr: std::net::SocketAddr,
    /// The admin listener's address, from the same line.
    pub admin: std::net::SocketAddr,
    pub config: std::path::PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stderr line read so far, in order.
    pub log: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Start `serve` on `db` with `config_text` (its listeners forced to
    /// port 0) and wait for its readiness line ("scopegate listening").
    pub fn start(db: &TestDb, config_text: &str) -> Serve {
        Serve::start_with(&db.url, config_text, &[], &[("NO_COLOR", Some("1"))])
    }

    /// [`Serve::start`] with `SCOPEGATE_DATABASE_URL` set to `url` (e.g.
    /// [`TestDb::url_to`], with TLS parameters).
    pub fn start_on(url: &scopegate::config::Secret, config_text: &str) -> Serve {
        Serve::start_with(url, config_text, &[], &[("NO_COLOR", Some("1"))])
    }

    /// [`Serve::start_on`] with `args` before the `serve` command (e.g.
    /// `--log-format json`) and `env` set (`None`: removed) in the
    /// process's environment. The readiness line is read in either log
    /// format.
    pub fn start_with(
        url: &scopegate::config::Secret,
        config_text: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Serve {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gw.toml");
        std::fs::write(&config, Self::with_port_zero(config_text)).unwrap();
        let mut command = scopegate();
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("serve")
            .env("SCOPEGATE_DATABASE_URL", url.expose())
            .env("SCOPEGATE_LOG", "info")
            .env_remove("SCOPEGATE_LOG_FORMAT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            config,
            lines,
            log: Vec::new(),
            _dir: dir,
        };
        let line = serve.wait_for_line(std::time::Duration::from_secs(30), |l| {
            l.contains("scopegate listening")
        });
        let addresses = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(json) => (
                json["proxy"].as_str().unwrap().to_owned(),
                json["admin"].as_str().unwrap().to_owned(),
            ),
            Err(_) => {
                let (_, rest) = line.split_once("scopegate listening proxy=").unwrap();
                let proxy = rest.split(' ').next().unwrap().to_owned();
                let (_, rest) = line.split_once(" admin=").unwrap();
                (proxy, rest.split(' ').next().unwrap().to_owned())
            }
        };
        serve.addr = addresses.0.parse().unwrap();
        serve.admin = addresses.1.parse().unwrap();
        serve
    }

    /// `[server]` listeners on port 0, whatever the text says.
    fn with_port_zero(text: &str) -> String {
        let body = text.replace("[server]\n", "");
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{body}")
    }

    /// Replace the config file (listeners again on port 0).
    pub fn rewrite_config(&self, config_text: &str) {
        std::fs::write(&self.config, Self::with_port_zero(config_text)).unwrap();
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The next log line that satisfies `pred`, within `within`; panics
    /// (with what was seen) when the log ends or time runs out.
    pub fn wait_for_line(
        &mut self,
        within: std::time::Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                    seen.push(line);
                }
                Err(e) => panic!("no such log line ({e}); saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
