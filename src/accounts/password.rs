//! Password hashing: argon2id with one of OWASP's equivalent parameter
//! sets (m = 7168 KiB, t = 5, p = 1: of the five, the fastest to compute
//! here and the smallest in memory, `docs/security.md`, "Password
//! storage"), PHC strings, on a bounded pool of dedicated threads.
//!
//! Why a pool of its own rather than `spawn_blocking`:
//! - **Bounded**: `threads` jobs run at once and at most `queue` wait; when
//!   the queue is full a login is refused at once (503 + `Retry-After`)
//!   instead of piling up memory and latency.
//! - **Lowest priority**: each thread puts itself in `SCHED_IDLE` on Linux
//!   (`nice` 19 and `SCHED_BATCH` where that is refused): it runs only on
//!   what the proxy's async workers leave of the cores, and a waking
//!   worker preempts it at once; and after a job that got less than half
//!   a core it rests ([`yield_if_starved`]). On cores the proxy
//!   saturates, logins wait; the bounded queue then answers 503 +
//!   `Retry-After`.
//! - **Buffer reuse**: each thread keeps its 7 MiB of argon2 memory blocks
//!   between jobs (allocated on the first job) instead of allocating and
//!   zeroing a fresh buffer per hash.
//!
//! A stored hash made with other parameters still verifies (whatever its
//! parameters, within caps on memory, passes, lanes and their product, so a
//! hostile row cannot pin a hashing thread) and is replaced after the next
//! successful login ([`needs_rehash`]).
//!
//! Unknown usernames are verified against a dummy hash with the same
//! parameters ([`Hasher::verify_dummy`]), so a wrong username and a wrong
//! password cost the same time. The dummy is a well-formed PHC string with
//! a random salt and a random output: verification does the full argon2
//! computation and then compares with bytes no password produces, which is
//! exactly as slow as a real verification and needs no hashing at start-up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::TryRngCore;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::Password;

/// OWASP's argon2id set m = 7 MiB, t = 5 (equivalent to its first
/// recommendation, 19 MiB / t = 2, in the attacker's cost; measured here:
/// 12.9 ms per hash instead of 15.4 ms, 158 hashes/s on two cores instead
/// of 124, a third of the memory).
pub const M_COST_KIB: u32 = 7 * 1024;
pub const T_COST: u32 = 5;
/// OWASP's equivalent argon2id sets (memory KiB, passes; p = 1), the
/// current one among them; the benches measure each.
pub const OWASP_SETS: [(u32, u32); 5] = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)];
pub const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// Stored hashes asking for more memory than this are refused (a corrupt
/// or hostile row must not make a worker allocate gigabytes).
const MAX_M_COST_KIB: u32 = 256 * 1024;
/// ... or for more passes (OWASP's equivalent sets go up to t = 5),
const MAX_T_COST: u32 = 10;
/// ... or more lanes (they all have p = 1),
const MAX_P_COST: u32 = 8;
/// ... or more memory × passes, so that one verification of a stored hash,
/// however it was made, stays within about a second of one thread.
const MAX_WORK_KIB: u64 = 2 * MAX_M_COST_KIB as u64;
/// Queued jobs per thread before new ones are refused.
pub const QUEUE_PER_THREAD: usize = 4;

/// The parameters new hashes are made with.
pub fn params() -> Params {
    // Constant, valid parameters: this cannot fail.
    Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN))
        .expect("OWASP argon2 parameters are valid")
}

/// Was `phc` made with anything but the current algorithm, version,
/// parameters and output length? Such a hash still verifies, and is
/// replaced after the next successful login (so old-parameter accounts stop
/// being visible by their verification time). A string that is no argon2
/// PHC at all is `false`: nothing verifies against it.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(stored) = Params::try_from(&parsed) else {
        return false;
    };
    let current = params();
    algorithm != Algorithm::Argon2id
        || parsed.version != Some(Version::V0x13.into())
        || stored.m_cost() != current.m_cost()
        || stored.t_cost() != current.t_cost()
        || stored.p_cost() != current.p_cost()
        || parsed.hash.map(|h| h.len()) != Some(OUTPUT_LEN)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Every thread is busy and the queue is full: answer 503, retry later.
    #[error("password hashing is saturated")]
    Busy,
    /// The pool has shut down (the process is stopping).
    #[error("password hashing pool is gone")]
    Gone,
    /// The OS random number generator failed.
    #[error("cannot draw a random salt: {0}")]
    Random(String),
    #[error("argon2: {0}")]
    Argon2(String),
}

enum Job {
    Hash {
        password: Password,
        reply: oneshot::Sender<Result<String, HashError>>,
    },
    Verify {
        password: Password,
        phc: String,
        reply: oneshot::Sender<bool>,
    },
    /// Occupies the thread that takes it until released ([`Hasher::occupy`]).
    #[cfg(feature = "testing")]
    Hold {
        started: oneshot::Sender<()>,
        release: Receiver<()>,
    },
}

/// The hashing pool. Cheap to share (`Arc`); the threads stop when it is
/// dropped.
pub struct Hasher {
    queue: SyncSender<Job>,
    threads: usize,
    capacity: usize,
    dummy: String,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    /// argon2 computations performed.
    computed: AtomicU64,
    /// Jobs refused because the queue was full.
    refused: AtomicU64,
    /// Jobs accepted and not yet taken by a thread.
    queued: AtomicU64,
    /// Jobs running now.
    running: AtomicUsize,
}

impl Hasher {
    /// `threads` dedicated threads (at least 1) and a queue of
    /// [`QUEUE_PER_THREAD`] × `threads` jobs.
    pub fn new(threads: usize) -> Hasher {
        Self::with_queue(threads, threads.max(1) * QUEUE_PER_THREAD)
    }

    /// `threads` threads and at most `queue` (at least 1) waiting jobs.
    pub fn with_queue(threads: usize, queue: usize) -> Hasher {
        let threads = threads.max(1);
        let queue = queue.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(Stats::default());
        for i in 0..threads {
            let rx = rx.clone();
            let stats = stats.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(rx, stats));
            if let Err(e) = spawned {
                // Fewer threads still work (at least if one started); say so.
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Hasher {
            queue: tx,
            threads,
            capacity: queue,
            dummy: dummy_phc(),
            stats,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs that may wait besides the running ones.
    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }

    /// argon2 computations performed so far (a test hook and a metric).
    pub fn computed(&self) -> u64 {
        self.stats.computed.load(Ordering::Relaxed)
    }

    /// Jobs refused because the pool was saturated.
    pub fn refused(&self) -> u64 {
        self.stats.refused.load(Ordering::Relaxed)
    }

    /// Jobs a thread is working on right now.
    pub fn running(&self) -> usize {
        self.stats.running.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread right now (a metric).
    pub fn queue_depth(&self) -> u64 {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// `Busy` when the queue is full now, so a login can be refused
    /// before it reads the account (the queue is checked again when the
    /// job is submitted).
    pub fn admit(&self) -> Result<(), HashError> {
        if self.stats.queued.load(Ordering::Relaxed) >= self.capacity as u64 {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        }
        Ok(())
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        // Counted before it is sent, so a thread taking it at once never
        // sees the count below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.queue.try_send(job);
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(HashError::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(HashError::Gone),
        }
    }

    /// A PHC string for `password` with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        rx.await.map_err(|_| HashError::Gone)?
    }

    /// Does `password` match the PHC string `phc`? A malformed `phc` is
    /// simply "no" (after as much work as a real one). `Err` only when the
    /// pool cannot take the job.
    pub async fn verify(&self, password: Password, phc: &str) -> Result<bool, HashError> {
        if PasswordHash::new(phc).is_err() {
            // Not a PHC string (an OAuth client's service account): nothing
            // matches it, at the cost of a real verification all the same.
            return self.verify_dummy(password).await;
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc: phc.to_owned(),
            reply,
        })?;
        rx.await.map_err(|_| HashError::Gone)
    }

    /// The same work as [`Hasher::verify`] against a hash nothing matches:
    /// for unknown usernames and inactive accounts, so timing is uniform.
    /// Always `Ok(false)` unless the pool is saturated.
    pub async fn verify_dummy(&self, password: Password) -> Result<bool, HashError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc: self.dummy.clone(),
            reply,
        })?;
        rx.await.map_err(|_| HashError::Gone).map(|_| false)
    }
}

/// Test hook (feature `testing`): one hashing thread held by
/// [`Hasher::occupy`] until this guard is dropped.
#[cfg(feature = "testing")]
pub struct Occupied {
    _release: mpsc::Sender<()>,
}

#[cfg(feature = "testing")]
impl Hasher {
    /// Occupy one hashing thread until the returned guard is dropped, so a
    /// test can make jobs wait in the queue (the `hash_queue_depth` metric)
    /// without racing argon2. Resolves once a thread holds it.
    pub async fn occupy(&self) -> Result<Occupied, HashError> {
        let (started, running) = oneshot::channel();
        let (release, held) = mpsc::channel();
        self.submit(Job::Hold {
            started,
            release: held,
        })?;
        running.await.map_err(|_| HashError::Gone)?;
        Ok(Occupied { _release: release })
    }
}

/// A PHC string with the current parameters, a random salt and a random
/// (unreachable) output.
fn dummy_phc() -> String {
    let mut salt = [0u8; SALT_LEN];
    let mut out = [0u8; OUTPUT_LEN];
    // If the OS RNG fails here it fails for tokens too; a fixed dummy still
    // costs the same to verify.
    let _ = rand::rngs::OsRng.try_fill_bytes(&mut salt);
    let _ = rand::rngs::OsRng.try_fill_bytes(&mut out);
    phc_string(&salt, &out).unwrap_or_else(|_| {
        "$argon2id$v=19$m=7168,t=5,p=1$c2NvcGVnYXRlZHVtbXk$3MQ1oDTdU0M7Ckfd3oC4RIJ9MUOe1NzBYdPu3uDHPQw".into()
    })
}

fn phc_string(salt: &[u8], out: &[u8]) -> Result<String, HashError> {
    let err = |e: argon2::password_hash::Error| HashError::Argon2(e.to_string());
    let salt = SaltString::encode_b64(salt).map_err(err)?;
    let params = ParamsString::try_from(&params()).map_err(err)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out).map_err(err)?),
    };
    Ok(hash.to_string())
}

/// Lower this thread's priority so hashing yields to the proxy (public
/// for the load harness, whose hashing threads must run as these do).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread with valid arguments; on
    // Linux `setpriority(PRIO_PROCESS, 0)` and `sched_setscheduler(0)` act on
    // the calling thread only. Failure is harmless (we keep the default).
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let _ = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            let _ = libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

/// How long a hashing thread rests after a job that got less than half a
/// core while it ran, in multiples of that job's wall time,
const YIELD_FACTOR: u32 = 3;
/// ... and at most (so logins resume soon after a long saturation ends).
const MAX_REST: Duration = Duration::from_secs(1);

/// The calling thread's CPU time so far (zero where it cannot be read,
/// which turns [`yield_if_starved`] off).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant every Linux kernel since 2.6.12 knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Hashing yields to proxying (`docs/security.md`, "Password storage").
/// The threads are `SCHED_IDLE`: they run only on what nothing else
/// wants. A job whose thread got less than half a core while it ran, with
/// `concurrent` jobs sharing what was left (so the pool as a whole got
/// less than half a core), means the cores are wanted; the thread then
/// rests for [`YIELD_FACTOR`] × the job's wall time, at most [`MAX_REST`].
/// A starved hash runs in many short slices between the proxy's, and each
/// slice walks megabytes of argon2 memory through the core's caches the
/// proxy then has to refill: fewer slices, less p99.
fn yield_if_starved(wall: Duration, cpu: Duration, concurrent: u32) {
    if cpu > Duration::ZERO && cpu * concurrent.max(1) * 2 < wall {
        std::thread::sleep((wall * YIELD_FACTOR).min(MAX_REST));
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>, stats: Arc<Stats>) {
    lower_priority();
    // Allocated on the first job, kept for the thread's life.
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => {
                    stats.queued.fetch_sub(1, Ordering::Relaxed);
                    job
                }
                Err(_) => return, // the Hasher is gone
            }
        };
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        let started_beside = stats.running.fetch_add(1, Ordering::Relaxed) + 1;
        let hashed = run(job, &mut blocks, &stats);
        let ended_beside = stats.running.fetch_sub(1, Ordering::Relaxed);
        if hashed {
            let concurrent = u32::try_from(started_beside.max(ended_beside)).unwrap_or(u32::MAX);
            yield_if_starved(
                wall.elapsed(),
                thread_cpu_time().saturating_sub(cpu),
                concurrent,
            );
        }
    }
}

/// Run one job; whether it computed a hash (a job whose request went away
/// is skipped).
fn run(job: Job, blocks: &mut Vec<Block>, stats: &Stats) -> bool {
    match job {
        Job::Hash { password, reply } => {
            if reply.is_closed() {
                return false;
            }
            stats.computed.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(hash_with(blocks, &password));
            true
        }
        Job::Verify {
            password,
            phc,
            reply,
        } => {
            if reply.is_closed() {
                return false;
            }
            let _ = reply.send(verify_with(blocks, &password, &phc, &stats.computed));
            true
        }
        #[cfg(feature = "testing")]
        Job::Hold { started, release } => {
            let _ = started.send(());
            // Returns when the `Occupied` guard (the sender) is dropped.
            let _ = release.recv();
            false
        }
    }
}

fn ensure_blocks(blocks: &mut Vec<Block>, count: usize) -> &mut [Block] {
    if blocks.len() < count {
        blocks.resize(count, Block::default());
    }
    &mut blocks[..count]
}

fn hash_with(blocks: &mut Vec<Block>, password: &Password) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| HashError::Random(e.to_string()))?;
    let params = params();
    let count = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            &salt,
            &mut out,
            ensure_blocks(blocks, count),
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    phc_string(&salt, &out)
}

/// May a stored hash with these parameters be verified at all (a hostile
/// row must not pin a hashing thread)?
fn within_caps(p: &Params) -> bool {
    p.m_cost() <= MAX_M_COST_KIB
        && p.t_cost() <= MAX_T_COST
        && p.p_cost() <= MAX_P_COST
        && u64::from(p.m_cost()) * u64::from(p.t_cost()) <= MAX_WORK_KIB
}

/// Verify against any argon2 PHC string (whatever its parameters, within
/// [`within_caps`]), reusing `blocks`.
fn verify_with(
    blocks: &mut Vec<Block>,
    password: &Password,
    phc: &str,
    computed: &AtomicU64,
) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    // The output length comes from the stored hash.
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if !within_caps(&params) {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let count = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    computed.fetch_add(1, Ordering::Relaxed);
    if argon
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            salt,
            &mut out,
            ensure_blocks(blocks, count),
        )
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests;
