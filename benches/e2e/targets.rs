//! The processes under test and how to reach them: the upstream (`scopegate
//! echo`, `--fixed` by default), nginx `proxy_pass` (the bar), the bare
//! hyper proxy (the reference for plain proxying) and `scopegate
//! serve`; nginx and scopegate once with access logs off and, for the
//! second row set, once more with them on (to files). The gateways reach
//! Postgres through the counting relay.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cpu::Charged;
use crate::knobs::{Knobs, Upstream};
use crate::load::Wrk;
use crate::pgrelay::Relay;
use crate::procs::{port, wait_port, Killed};

/// The path every HTTP/1.1 target is loaded on: the scoped route.
pub const SCOPED_PATH: &str = "/bench/items?id=42";
/// The public route's path on scopegate.
pub const PUBLIC_PATH: &str = "/public/items?id=42";

/// One way of loading one process.
pub struct Target<'a> {
    pub name: &'static str,
    /// The access-log row set it belongs to.
    pub logs: bool,
    pub url: String,
    pub token: Option<&'a str>,
    /// Whose CPU the run is charged to.
    pub charged: Charged,
    /// Its access log, if it writes one.
    pub log_file: Option<&'a Path>,
}

/// A proxy process and its port.
pub struct Server {
    pub proc: Killed,
    pub port: u16,
    /// The h2c port, where it differs from `port` (nginx).
    pub h2_port: u16,
    pub log_file: Option<PathBuf>,
}

/// A `scopegate serve` process.
pub struct Gateway {
    pub server: Server,
    pub config: PathBuf,
}

/// Everything running for the harness.
pub struct Stack {
    pub upstream: Server,
    pub nginx: Server,
    pub nginx_logs: Option<Server>,
    pub bare: Server,
    pub gw: Gateway,
    pub gw_logs: Option<Gateway>,
    /// The cached valid token with the scoped route's scope.
    pub token: String,
    /// The database gateways use, reached through `relay`.
    pub db: Database,
    /// Configurations and logs; the last field, so it is deleted after
    /// the processes using it have stopped.
    _dir: tempfile::TempDir,
}

/// The gateways' database.
pub struct Database {
    /// The test database's own URL (direct; not counted by the relay).
    pub direct_url: String,
    /// The same database through the relay (`key=value` form).
    pub relay_url: String,
    pub name: String,
    pub relay: Relay,
}

/// A `key=value` connection-string value, quoted (libpq's rules).
fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Database {
    pub fn new(direct_url: String, name: String, relay: Relay) -> Database {
        let relay_url = Self::url_via(&direct_url, &name, relay.addr());
        Database {
            direct_url,
            relay_url,
            name,
            relay,
        }
    }

    /// The database's URL through another relay at `addr`.
    pub fn relay_url_to(&self, addr: std::net::SocketAddr) -> String {
        Self::url_via(&self.direct_url, &self.name, addr)
    }

    fn url_via(direct_url: &str, name: &str, addr: std::net::SocketAddr) -> String {
        let cfg: tokio_postgres::Config = direct_url.parse().expect("the test URL parses");
        let mut url = format!(
            "host={} port={} dbname={} sslmode=disable",
            addr.ip(),
            addr.port(),
            quoted(name)
        );
        if let Some(user) = cfg.get_user() {
            url.push_str(&format!(" user={}", quoted(user)));
        }
        if let Some(pw) = cfg.get_password() {
            url.push_str(&format!(
                " password={}",
                quoted(&String::from_utf8_lossy(pw))
            ));
        }
        url
    }
}

fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

fn nginx_conf(
    dir: &Path,
    listen: u16,
    h2: Option<u16>,
    upstream: u16,
    log: Option<&Path>,
) -> String {
    // nginx ends a connection after `keepalive_requests` (1000) requests;
    // h2load does not reconnect (wrk does), and scopegate sets no such
    // limit, so both listeners lift it.
    let access_log = match log {
        Some(p) => format!("access_log {};", p.display()),
        None => "access_log off;".to_owned(),
    };
    let location =
        "location / {\n      proxy_pass http://up;\n      proxy_http_version 1.1;\n      \
                    proxy_set_header Connection \"\";\n    }";
    let h2_server = h2.map_or(String::new(), |p| {
        // `http2` on a plain listener: h2c with prior knowledge.
        format!(
            "  server {{\n    listen 127.0.0.1:{p} http2;\n    keepalive_requests 100000000;\n    \
             {location}\n  }}\n"
        )
    });
    format!(
        "worker_processes 2;\npid {d}/nginx-{listen}.pid;\nerror_log {d}/nginx-{listen}-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  {access_log}\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream up {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
           server {{\n    listen 127.0.0.1:{listen};\n    keepalive_requests 100000000;\n    \
           {location}\n  }}\n{h2_server}}}\n",
        d = dir.display()
    )
}

fn start_nginx(dir: &Path, upstream: u16, logs: bool, h2: bool) -> Server {
    let listen = port();
    let h2_port = if h2 { port() } else { listen };
    let log = logs.then(|| log_file(dir, &format!("nginx-{listen}-access")));
    let conf = dir.join(format!("nginx-{listen}.conf"));
    let text = nginx_conf(dir, listen, h2.then_some(h2_port), upstream, log.as_deref());
    std::fs::write(&conf, text).expect("write nginx.conf");
    let error_log = dir.join(format!("nginx-{listen}-startup.log"));
    let proc = Killed::spawn(
        Command::new("nginx")
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null()),
        "nginx",
    );
    wait_port(listen, "nginx");
    if h2 {
        wait_port(h2_port, "nginx h2c");
    }
    Server {
        proc,
        port: listen,
        h2_port,
        log_file: log,
    }
}

fn scopegate_config(dir: &Path, listen: u16, admin: u16, upstream: u16) -> PathBuf {
    let path = dir.join(format!("scopegate-{listen}.toml"));
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n\
         [cache]\nmax_staleness_secs = 5\n\n\
         [[routes]]\nname = \"bench\"\npath = \"/bench\"\nupstream = \"http://127.0.0.1:{upstream}\"\n\
         scopes = [\"bench:read\"]\n\n\
         [[routes]]\nname = \"public\"\npath = \"/public\"\nupstream = \"http://127.0.0.1:{upstream}\"\n\
         public = true\n"
    );
    std::fs::write(&path, text).expect("write scopegate.toml");
    path
}

/// `scopegate serve`; with `logs`, at the default level (`info`: one
/// access-log line per request) with stderr appended to a file, otherwise
/// at `warn` (no access log).
fn start_gateway(dir: &Path, db: &Database, upstream: u16, logs: bool) -> Gateway {
    let listen = port();
    let config = scopegate_config(dir, listen, port(), upstream);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopegate"));
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .env("SCOPEGATE_DATABASE_URL", &db.relay_url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    let log = if logs {
        let path = log_file(dir, &format!("scopegate-{listen}"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("create the scopegate log file");
        cmd.env_remove("SCOPEGATE_LOG").stderr(file);
        Some(path)
    } else {
        cmd.env("SCOPEGATE_LOG", "warn").stderr(Stdio::inherit());
        None
    };
    let proc = Killed::spawn(&mut cmd, "scopegate serve");
    wait_port(listen, "scopegate serve");
    Gateway {
        server: Server {
            proc,
            port: listen,
            h2_port: listen,
            log_file: log,
        },
        config,
    }
}

/// `url` loaded with the knobs' duration, connections and wrk threads.
fn knobs_wrk<'a>(url: &'a str, token: Option<&'a str>, knobs: &Knobs) -> Wrk<'a> {
    Wrk {
        url,
        token,
        secs: knobs.secs,
        conns: knobs.conns,
        threads: knobs.wrk_threads,
    }
}

impl Stack {
    /// Start every process the chosen parts need.
    pub fn start(knobs: &Knobs, db: Database, token: String) -> Stack {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let bin = env!("CARGO_BIN_EXE_scopegate");

        let up_port = port();
        let mut cmd = Command::new(bin);
        cmd.args(["echo", "--listen", &format!("127.0.0.1:{up_port}")]);
        if knobs.upstream == Upstream::Fixed {
            cmd.arg("--fixed");
        }
        let upstream = Server {
            proc: Killed::spawn(cmd.stderr(Stdio::null()), "the upstream"),
            port: up_port,
            h2_port: up_port,
            log_file: None,
        };
        wait_port(up_port, "the upstream");

        let with_logs = knobs.wants("main") && knobs.logs.on();
        let nginx = start_nginx(dir.path(), up_port, false, true);
        let nginx_logs = with_logs.then(|| start_nginx(dir.path(), up_port, true, false));

        let bare_port = port();
        let bare = Server {
            proc: Killed::spawn(
                Command::new(std::env::current_exe().expect("the bench binary's path"))
                    .args([
                        "bare-proxy",
                        &format!("127.0.0.1:{bare_port}"),
                        &format!("127.0.0.1:{up_port}"),
                    ])
                    .env("E2E_BARE_TOKENS", &token),
                "the bare proxy",
            ),
            port: bare_port,
            h2_port: bare_port,
            log_file: None,
        };
        wait_port(bare_port, "the bare proxy");

        let gw = start_gateway(dir.path(), &db, up_port, false);
        let gw_logs = with_logs.then(|| start_gateway(dir.path(), &db, up_port, true));
        Stack {
            upstream,
            nginx,
            nginx_logs,
            bare,
            gw,
            gw_logs,
            token,
            db,
            _dir: dir,
        }
    }

    /// The gateway's scoped route with the cached token, loaded as the
    /// knobs say; `url` holds [`Stack::scoped_url`].
    pub fn scoped_wrk<'a>(&'a self, url: &'a str, knobs: &Knobs) -> Wrk<'a> {
        knobs_wrk(url, Some(&self.token), knobs)
    }

    /// The URL of the gateway's scoped route.
    pub fn scoped_url(&self) -> String {
        format!("http://127.0.0.1:{}{SCOPED_PATH}", self.gw.server.port)
    }

    /// nginx's URL for the same path (access log off).
    pub fn nginx_url(&self) -> String {
        Self::url(self.nginx.port, SCOPED_PATH)
    }

    /// nginx at [`Stack::nginx_url`], loaded as the knobs say; `url`
    /// holds that URL.
    pub fn nginx_wrk<'a>(&self, url: &'a str, knobs: &Knobs) -> Wrk<'a> {
        knobs_wrk(url, None, knobs)
    }

    /// Panics if a process died.
    pub fn assert_alive(&mut self) {
        self.upstream.proc.assert_alive("the upstream");
        self.nginx.proc.assert_alive("nginx");
        if let Some(n) = &mut self.nginx_logs {
            n.proc.assert_alive("nginx (access log on)");
        }
        self.bare.proc.assert_alive("the bare proxy");
        self.gw.server.proc.assert_alive("scopegate");
        if let Some(g) = &mut self.gw_logs {
            g.server.proc.assert_alive("scopegate (access log on)");
        }
    }

    pub fn upstream_charged(&self) -> Charged {
        Charged::Process(self.upstream.proc.pid())
    }

    fn url(port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{port}{path}")
    }

    /// direct, nginx, bare, scopegate (cached token, scoped route):
    /// HTTP/1.1 on each one's port, or h2c.
    pub fn basic_targets(&self, h2: bool) -> Vec<Target<'_>> {
        let p = |s: &Server| if h2 { s.h2_port } else { s.port };
        vec![
            Target {
                name: "direct",
                logs: false,
                url: Self::url(p(&self.upstream), SCOPED_PATH),
                token: None,
                charged: self.upstream_charged(),
                log_file: None,
            },
            Target {
                name: "nginx",
                logs: false,
                url: Self::url(p(&self.nginx), SCOPED_PATH),
                token: None,
                charged: Charged::Tree(self.nginx.proc.pid()),
                log_file: None,
            },
            Target {
                name: "bare",
                logs: false,
                url: Self::url(p(&self.bare), SCOPED_PATH),
                token: Some(&self.token),
                charged: Charged::Process(self.bare.proc.pid()),
                log_file: None,
            },
            Target {
                name: "scopegate",
                logs: false,
                url: Self::url(p(&self.gw.server), SCOPED_PATH),
                token: Some(&self.token),
                charged: Charged::Process(self.gw.server.proc.pid()),
                log_file: None,
            },
        ]
    }

    /// scopegate's public route, no token.
    fn public(gw: &Gateway, logs: bool) -> Target<'_> {
        Target {
            name: "scopegate-public",
            logs,
            url: Self::url(gw.server.port, PUBLIC_PATH),
            token: None,
            charged: Charged::Process(gw.server.proc.pid()),
            log_file: gw.server.log_file.as_deref(),
        }
    }

    /// The main comparison's rows: with logs off, the basic targets and
    /// scopegate's public route; with logs on, nginx and both scopegate
    /// routes again (the processes that write access logs).
    pub fn main_targets(&self, knobs: &Knobs) -> Vec<Target<'_>> {
        let mut all = Vec::new();
        if knobs.logs.off() {
            all.extend(self.basic_targets(false));
            all.push(Self::public(&self.gw, false));
        }
        if let (Some(nginx), Some(gw)) = (&self.nginx_logs, &self.gw_logs) {
            all.push(Target {
                name: "nginx",
                logs: true,
                url: Self::url(nginx.port, SCOPED_PATH),
                token: None,
                charged: Charged::Tree(nginx.proc.pid()),
                log_file: nginx.log_file.as_deref(),
            });
            all.push(Target {
                name: "scopegate",
                logs: true,
                url: Self::url(gw.server.port, SCOPED_PATH),
                token: Some(&self.token),
                charged: Charged::Process(gw.server.proc.pid()),
                log_file: gw.server.log_file.as_deref(),
            });
            all.push(Self::public(gw, true));
        }
        all
    }
}
