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
//! Run: `cargo bench --bench password_hashing`.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use scopegate::accounts::password::Hasher;
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

criterion_group!(benches, bench);
criterion_main!(benches);
