use super::*;
use argon2::PasswordVerifier;

#[tokio::test]
async fn hash_then_verify() {
    let h = Hasher::new(1);
    let phc = h.hash(Password::new("correct horse")).await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
    assert!(h
        .verify(Password::new("correct horse"), &phc)
        .await
        .unwrap());
    assert!(!h
        .verify(Password::new("correct horsf"), &phc)
        .await
        .unwrap());
    assert!(!h.verify(Password::new("x"), "not a phc").await.unwrap());
    assert!(!h
        .verify_dummy(Password::new("correct horse"))
        .await
        .unwrap());
    assert_eq!(
        h.computed(),
        5,
        "every verification costs one computation, a malformed hash too (timing says nothing)"
    );
    // The reference implementation agrees with our PHC strings.
    let parsed = PasswordHash::new(&phc).unwrap();
    assert!(Argon2::default()
        .verify_password(b"correct horse", &parsed)
        .is_ok());
}

/// The scheduling policy (`/proc/.../stat` field 41) of this process's
/// hashing threads.
#[cfg(target_os = "linux")]
fn hashing_thread_policies() -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("argon2-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesized name start at field 3.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(policy) = rest.split_whitespace().nth(41 - 3) {
            policies.push(policy.parse().unwrap());
        }
    }
    policies
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn hashing_threads_run_at_idle_priority() {
    let h = Hasher::new(2);
    h.hash(Password::new("x")).await.unwrap();
    // Threads other tests start lower themselves as they begin: wait
    // (bounded) until every hashing thread has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let policies = hashing_thread_policies();
        assert!(policies.len() >= 2, "{policies:?}");
        let idle = policies.iter().all(|p| *p == libc::SCHED_IDLE as u32);
        if idle {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{policies:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test]
async fn verifies_hashes_made_elsewhere() {
    use argon2::PasswordHasher;
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let other = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8192, 1, 1, None).unwrap(),
    )
    .hash_password(b"pw", &salt)
    .unwrap()
    .to_string();
    let h = Hasher::new(1);
    assert!(h.verify(Password::new("pw"), &other).await.unwrap());
    assert!(!h.verify(Password::new("pw2"), &other).await.unwrap());
}

#[tokio::test]
async fn only_hashes_with_other_parameters_need_a_rehash() {
    use argon2::PasswordHasher;
    let h = Hasher::new(1);
    let current = h.hash(Password::new("pw")).await.unwrap();
    assert!(!needs_rehash(&current));
    assert!(!needs_rehash(&dummy_phc()));
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let made_with = |alg, m, t, p, len| {
        Argon2::new(alg, Version::V0x13, Params::new(m, t, p, len).unwrap())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string()
    };
    for old in [
        made_with(Algorithm::Argon2id, 47104, 1, 1, Some(32)),
        made_with(Algorithm::Argon2id, M_COST_KIB, T_COST, 2, Some(32)),
        made_with(Algorithm::Argon2id, M_COST_KIB, T_COST, P_COST, Some(16)),
        made_with(Algorithm::Argon2i, M_COST_KIB, T_COST, P_COST, Some(32)),
    ] {
        assert!(needs_rehash(&old), "{old}");
    }
    assert!(!needs_rehash("not a phc"));
}

#[tokio::test]
async fn hostile_costs_are_refused_without_hashing() {
    // Well-formed PHC strings whose time or lane cost would pin a
    // thread: each is "no" at once, with no argon2 work.
    let h = Hasher::new(1);
    let salt = "c2NvcGVnYXRlZHVtbXk";
    let out = "3MQ1oDTdU0M7Ckfd3oC4RIJ9MUOe1NzBYdPu3uDHPQw";
    for params in [
        "m=64,t=11,p=1",
        "m=64,t=1000,p=1",
        "m=256,t=1,p=9",
        "m=262144,t=3,p=1",
    ] {
        let phc = format!("$argon2id$v=19${params}${salt}${out}");
        assert!(PasswordHash::new(&phc).is_ok(), "{phc}");
        assert!(!h.verify(Password::new("pw"), &phc).await.unwrap(), "{phc}");
    }
    assert_eq!(h.computed(), 0, "refused before any computation");
    // The parameter sets a hash may legitimately have still verify.
    let ok = format!("$argon2id$v=19$m=7168,t=5,p=1${salt}${out}");
    assert!(!h.verify(Password::new("pw"), &ok).await.unwrap());
    assert_eq!(h.computed(), 1);
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once() {
    // One thread, one waiting place: of 8 concurrent jobs most are refused.
    let h = Arc::new(Hasher::with_queue(1, 1));
    let phc = h.hash(Password::new("a")).await.unwrap();
    let mut refused = 0;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let h = h.clone();
        let phc = phc.clone();
        tasks.push(tokio::spawn(async move {
            h.verify(Password::new("a"), &phc).await
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            Ok(ok) => assert!(ok),
            Err(HashError::Busy) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused >= 5,
        "at most 1 running + 1 queued (+1 slack) of 8: {refused} refused"
    );
    assert_eq!(h.refused(), refused);
}

#[test]
fn the_set_in_use_is_one_of_owasps() {
    assert!(OWASP_SETS.contains(&(M_COST_KIB, T_COST)));
    assert_eq!(P_COST, 1);
}

/// A job whose pool got less than half a core rests its thread for
/// `YIELD_FACTOR` × its wall time; one that got more does not.
#[test]
fn a_starved_job_yields_and_a_fed_one_does_not() {
    let wall = Duration::from_millis(20);
    let t = Instant::now();
    yield_if_starved(wall, wall / 4, 1);
    assert!(t.elapsed() >= wall * YIELD_FACTOR, "{:?}", t.elapsed());

    let t = Instant::now();
    let (two, one) = (Duration::from_secs(2), Duration::from_secs(1));
    yield_if_starved(two, two, 1);
    yield_if_starved(two, one, 1);
    // Four jobs each with a third of a core: the pool had more than one.
    yield_if_starved(two, two / 3, 4);
    // Unreadable CPU time: no judgement.
    yield_if_starved(two, Duration::ZERO, 1);
    assert!(t.elapsed() < one, "{:?}", t.elapsed());

    // A very long starved job rests MAX_REST, not three times its length.
    let t = Instant::now();
    yield_if_starved(Duration::from_secs(60), one, 1);
    let rested = t.elapsed();
    assert!(
        rested >= MAX_REST && rested < Duration::from_secs(30),
        "{rested:?}"
    );
}

#[test]
fn thread_cpu_time_advances_with_work() {
    let before = thread_cpu_time();
    let mut x = 0u64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(20) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    assert!(thread_cpu_time() > before);
}
