//! CPU and memory accounting from `/proc`: what a process (all its
//! threads; for nginx the master and its workers) has spent, read before
//! and after each load run.

use std::path::Path;

/// Whose CPU a target is charged with.
#[derive(Debug, Clone, Copy)]
pub enum Charged {
    /// One process, every thread.
    Process(u32),
    /// A process and its direct children (nginx's master and workers).
    Tree(u32),
}

impl Charged {
    fn pids(self) -> Vec<u32> {
        match self {
            Charged::Process(pid) => vec![pid],
            Charged::Tree(pid) => {
                let mut all = vec![pid];
                all.extend(children(pid));
                all
            }
        }
    }

    /// CPU seconds (user + system, all threads) spent so far.
    pub fn cpu_seconds(self) -> f64 {
        self.pids().into_iter().map(cpu_seconds).sum()
    }

    /// Resident memory of the (main) process.
    pub fn memory(self) -> Memory {
        let pid = match self {
            Charged::Process(p) | Charged::Tree(p) => p,
        };
        memory(pid)
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The fields of `/proc/PID/stat` after the command name (which may
/// contain spaces and parentheses, so split after the last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process in seconds: the kernel sums them over every
/// thread of the process, live and exited (proc(5)). 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    // After the name: state(3) ppid(4) ... utime(14) stime(15), so
    // indices 11 and 12 of what follows the name.
    let Some(f) = stat_fields(pid) else {
        return 0.0;
    };
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

/// Direct children of `pid`, found by their parent pid.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            stat_fields(p)
                .and_then(|f| f.get(1).and_then(|v| v.parse::<u32>().ok()))
                .is_some_and(|ppid| ppid == pid)
        })
        .collect()
}

/// Resident set size now and at its peak, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

/// `VmRSS` and `VmHWM` of `/proc/PID/status`.
pub fn memory(pid: u32) -> Memory {
    read_memory(Path::new(&format!("/proc/{pid}/status")))
}

/// The bench process's own memory.
pub fn own_memory() -> Memory {
    read_memory(Path::new("/proc/self/status"))
}

fn read_memory(path: &Path) -> Memory {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Memory {
        rss: kib("VmRSS:"),
        hwm: kib("VmHWM:"),
    }
}
