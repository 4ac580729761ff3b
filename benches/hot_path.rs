//! The per-request authorization work, measured alone: path normalization,
//! route matching, a token cache hit, the scope check, and all four
//! together (the targets: a cache lookup under 1 µs, and under 1 µs for
//! the whole hot path).
//!
//! Baseline in the same run: what any bearer-checking proxy must do at
//! least — SHA-256 the token and look it up in a `HashMap` (the
//! like-for-like nginx/hyper comparison runs did a map lookup).
//!
//! Needs the Postgres server binaries (a throwaway cluster fills the cache).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use scopegate::config::{Config, EnvOverrides};
use scopegate::gateway::authorize::authorize;
use scopegate::gateway::normalize::normalize_path;
use scopegate::gateway::route::{RouteMatch, RouteTable};
use scopegate::testing::{insert_token, TestDb};
use scopegate::tokens::cache::Validator;

/// The client address every validation in these benchmarks comes from.
const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn routes() -> Config {
    let mut toml = String::new();
    for (i, svc) in [
        "users", "orders", "billing", "search", "catalog", "reports", "media", "auth", "mail",
        "chat",
    ]
    .iter()
    .enumerate()
    {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{svc}\"\npath = \"/api/{svc}\"\nupstream = \"http://127.0.0.1:{}\"\nscopes = [\"{svc}:read\"]\n\n\
             [[routes]]\nname = \"{svc}-admin\"\npath = \"/api/{svc}/admin\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"http://127.0.0.1:{}\"\nscopes = [\"{svc}:admin\"]\n\n",
            9000 + i,
            9100 + i
        ));
    }
    Config::parse(&toml, "bench.toml", &EnvOverrides::default()).expect("bench config")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = routes();
    let table = RouteTable::new(config.routes.clone());
    let (validator, token) = rt.block_on(async {
        let db = TestDb::new().await;
        let pool = db.pool();
        let token = insert_token(
            &pool,
            "bench",
            &["orders:read", "users:read", "chat:read"],
            3600,
        )
        .await;
        let mut cache = config.cache.clone();
        cache.max_staleness = std::time::Duration::from_secs(3600);
        let v = Validator::new(pool, &cache);
        v.validate(&token, LOCAL).await.expect("token valid");
        (v, token)
    });
    let path = "/api/orders/12345/items";

    let mut map: HashMap<[u8; 32], (i32, String)> = HashMap::new();
    for i in 0..10_000 {
        let t = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
        map.insert(scopegate::tokens::hash(&t), (i, "user".into()));
    }
    map.insert(scopegate::tokens::hash(&token), (0, "bench".into()));

    let mut g = c.benchmark_group("hot_path");
    g.bench_function("baseline_sha256_hashmap", |b| {
        b.iter(|| black_box(map.get(&scopegate::tokens::hash(black_box(&token)))).is_some())
    });
    g.bench_function("normalize", |b| {
        b.iter(|| normalize_path(black_box(path)).is_ok())
    });
    g.bench_function("route_find", |b| {
        b.iter(|| {
            matches!(
                table.find(
                    black_box(Some("api.example.com")),
                    &Method::GET,
                    black_box(path)
                ),
                RouteMatch::Found(_)
            )
        })
    });
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { validator.validate(black_box(&token), LOCAL).await.is_ok() })
    });
    let RouteMatch::Found(route) = table.find(None, &Method::GET, path) else {
        panic!("bench route missing")
    };
    let identity = rt.block_on(validator.validate(&token, LOCAL)).unwrap();
    g.bench_function("authorize", |b| {
        b.iter(|| black_box(authorize(black_box(identity.scope()), &route.config.access)))
    });
    g.bench_function("all_phases", |b| {
        b.to_async(&rt).iter(|| async {
            let p = normalize_path(black_box(path)).unwrap();
            let RouteMatch::Found(r) = table.find(Some("api.example.com"), &Method::GET, &p) else {
                unreachable!()
            };
            let id = validator.validate(black_box(&token), LOCAL).await.unwrap();
            black_box(authorize(id.scope(), &r.config.access))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
