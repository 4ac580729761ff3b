//! The processes the harness starts: spawned, waited for (by connecting,
//! never by sleeping), and stopped when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped when dropped.
pub struct Killed(Child);

impl Killed {
    pub fn spawn(cmd: &mut Command, what: &str) -> Killed {
        match cmd.spawn() {
            Ok(c) => Killed(c),
            Err(e) => panic!("cannot start {what}: {e}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Panics if the process has exited (a target that died mid-run would
    /// otherwise show up as a wrk connection error far from its cause).
    pub fn assert_alive(&mut self, what: &str) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("{what} exited: {status}");
        }
    }
}

impl Drop for Killed {
    /// SIGTERM first (nginx's master must stop its workers itself; a
    /// SIGKILL would orphan them), SIGKILL only if it lingers.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Is `cmd` on the `PATH`?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Wait until something accepts connections on `port`.
pub fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: nothing listens on {port} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free loopback port.
pub fn port() -> u16 {
    scopegate::db::embedded::free_port().expect("a free loopback port")
}

/// First line of a command's output (stdout or stderr), for the report.
pub fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}
