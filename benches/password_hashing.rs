//! Password hashing throughput: what bounds the login rate.
//!
//! - `single/*`: one verification at a time through the pool (latency of
//!   one login's argon2 work, including the hop to the hashing thread and
//!   back), the dummy verification unknown usernames get, and the reference
//!   `argon2` verification without the pool (allocating its 19 MiB each
//!   time) for comparison;
//! - `pool/N`: N concurrent verifications through a pool of one thread per
//!   core; criterion's throughput figure is verifications (logins) per
//!   second.
//!
//! - `owasp_sets/*`: OWASP's five equivalent argon2id parameter sets
//!   (m = 47104 KiB t = 1, 19456/2, 12288/3, 9216/4, 7168/5; p = 1), each
//!   computed with its memory blocks reused as the pool does: one at a
//!   time (`single/M-T`: a login's latency) and one per core at once
//!   (`cores/M-T`: throughput when the cores share memory bandwidth and
//!   the last-level cache; criterion's throughput figure is hashes per
//!   second). The set in use was chosen from these
//!   (docs/security.md, "Password storage").
//!
//! Run: `cargo bench --bench password_hashing`.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordVerifier, Version};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use scopegate::accounts::password::{Hasher, OWASP_SETS};
use scopegate::accounts::Password;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher = Arc::new(Hasher::new(cores));
    let phc = rt
        .block_on(hasher.hash(Password::new("correct horse battery staple")))
        .expect("hash");

    let mut single = c.benchmark_group("single");
    single.sampling_mode(SamplingMode::Flat);
    single.sample_size(20);
    single.measurement_time(Duration::from_secs(8));
    single.bench_function("verify", |b| {
        b.to_async(&rt).iter(|| async {
            let ok = hasher
                .verify(Password::new("correct horse battery staple"), &phc)
                .await
                .expect("pool accepts one job");
            assert!(ok);
        })
    });
    single.bench_function("verify_dummy", |b| {
        b.to_async(&rt).iter(|| async {
            let ok = hasher
                .verify_dummy(Password::new("correct horse battery staple"))
                .await
                .expect("pool accepts one job");
            assert!(!ok);
        })
    });
    single.bench_function("reference_argon2_no_pool", |b| {
        let parsed = PasswordHash::new(&phc).expect("our PHC parses");
        b.iter(|| {
            Argon2::default()
                .verify_password(b"correct horse battery staple", &parsed)
                .expect("matches")
        })
    });
    single.finish();

    let mut pool = c.benchmark_group("pool");
    pool.sampling_mode(SamplingMode::Flat);
    pool.sample_size(10);
    pool.measurement_time(Duration::from_secs(10));
    // Up to the queue's capacity: nothing is refused.
    for n in [cores, hasher.queue_capacity()] {
        pool.throughput(Throughput::Elements(n as u64));
        pool.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.to_async(&rt).iter(|| {
                let hasher = hasher.clone();
                let phc = phc.clone();
                async move {
                    let jobs: Vec<_> = (0..n)
                        .map(|_| {
                            let hasher = hasher.clone();
                            let phc = phc.clone();
                            tokio::spawn(async move {
                                hasher
                                    .verify(Password::new("correct horse battery staple"), &phc)
                                    .await
                            })
                        })
                        .collect();
                    for j in jobs {
                        assert_eq!(j.await.expect("task"), Ok(true));
                    }
                }
            })
        });
    }
    pool.finish();
}

/// One argon2id computation with `blocks` reused (as the pool's threads do).
fn compute(argon: &Argon2<'_>, blocks: &mut [Block]) {
    let mut out = [0u8; 32];
    argon
        .hash_password_into_with_memory(
            b"correct horse battery staple",
            b"sixteen byte salt",
            &mut out,
            blocks,
        )
        .expect("valid parameters");
    std::hint::black_box(out);
}

fn owasp_sets(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("owasp_sets");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    for (m, t) in OWASP_SETS {
        let params = Params::new(m, t, 1, Some(32)).expect("OWASP parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut blocks = vec![Block::default(); params.block_count()];
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("single", format!("{m}-{t}")), |b| {
            b.iter(|| compute(&argon, &mut blocks))
        });
        // One thread per core, each with its own blocks, started together.
        group.throughput(Throughput::Elements(cores as u64));
        group.bench_function(BenchmarkId::new("cores", format!("{m}-{t}")), |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..cores {
                        let params = params.clone();
                        scope.spawn(move || {
                            let argon =
                                Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                            let mut blocks = vec![Block::default(); params.block_count()];
                            for _ in 0..iters {
                                compute(&argon, &mut blocks);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, owasp_sets);
criterion_main!(benches);
