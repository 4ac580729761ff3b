//! Clock skew between the gateway and the database (`docs/security.md`,
//! "Faults", F12, and "Clocks"): `serve` run under libfaketime, its wall
//! clock hours off the database's (monotonic time left alone, as on a real
//! host whose clock is wrong or is stepped). Token lifetimes are the
//! database's: tokens written by the database's clock live exactly as long
//! there, whatever the gateway's clock says, and a backwards jump of the
//! gateway's clock never extends a cached token.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use scopegate::testing::TestDb;

use crate::support::{account_in, login_at};
use crate::support::{bearer, echo, insert_token, raw_get, Serve, MARGIN};

/// `tokens.access_ttl_secs` in these tests: short, so the tests wait
/// seconds.
const TTL: Duration = Duration::from_secs(3);

/// Hours the gateway's clock is off in the fixed-offset runs.
const SKEW_HOURS: i64 = 3;

/// libfaketime (Debian package `faketime`), if installed. `None` outside
/// CI skips the test; under CI (`CI=true`, set by `.ci/run`, which
/// installs it) its absence fails the test.
fn libfaketime() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/lib/faketime", "/usr/local/lib/faketime"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    let found = dirs
        .iter()
        .flat_map(|d| [d.join("libfaketimeMT.so.1"), d.join("libfaketime.so.1")])
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "libfaketime is not installed (apt-get install faketime); CI must run the clock-skew test"
        );
        eprintln!("SKIPPED: libfaketime is not installed (apt-get install faketime)");
    }
    found
}

const CONFIG: &str = r#"
[tokens]
access_ttl_secs = 3

[cache]
negative_ttl_secs = 1

[login]
max_failures = 1000
max_failures_per_ip = 1000

[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
scopes = ["api"]
"#;

/// `serve` on `db` with libfaketime preloaded and `faketime` (the
/// `FAKETIME*` variables) in its environment; monotonic time is real.
fn serve_skewed(
    db: &TestDb,
    lib: &std::path::Path,
    upstream: std::net::SocketAddr,
    faketime: &[(&str, &str)],
) -> Serve {
    let config = CONFIG.replace("UPSTREAM", &format!("http://{upstream}"));
    let lib = lib.to_string_lossy().into_owned();
    let mut env: Vec<(&str, Option<&str>)> = vec![
        ("NO_COLOR", Some("1")),
        ("LD_PRELOAD", Some(&lib)),
        ("FAKETIME_DONT_FAKE_MONOTONIC", Some("1")),
        ("FAKETIME", None),
    ];
    env.extend(faketime.iter().map(|(k, v)| (*k, Some(*v))));
    Serve::start_with(&db.url, &config, &[], &env)
}

/// How far the gateway's wall clock is ahead of ours (negative: behind),
/// in whole seconds: the timestamp of the log line its answer to a probe
/// produced, read against our clock. (Not the `Date` header: hyper caches
/// it per thread until the clock passes the next second, so after a
/// backwards jump it stands still.)
async fn gateway_skew(gw: &mut Serve, probe: &str) -> i64 {
    let r = raw_get(gw.addr, "/nowhere", &format!("X-Request-Id: {probe}\r\n")).await;
    assert_eq!(r.status, 404);
    let ours = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let line = gw.wait_for_line(MARGIN, |l| l.contains(probe));
    unix_seconds(&line).unwrap_or_else(|| panic!("no timestamp: {line}")) - ours
}

/// The UNIX seconds of the RFC 3339 timestamp (UTC) a text log line
/// starts with: `2026-12-07T03:31:31.076936Z ...`.
fn unix_seconds(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> { line.get(from..from + len)?.parse().ok() };
    if b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

#[track_caller]
fn assert_skew(skew: i64, expected: i64) {
    assert!(
        (skew - expected).abs() <= 5,
        "the gateway's clock is {skew} s off ours, not {expected} s: libfaketime did not take"
    );
}

/// Seconds `token` (an access token) has left by the database's clock.
async fn db_seconds_left(db: &TestDb, token: &str) -> i64 {
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(token));
    db.pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT expires - scopegate_unix_now() FROM access_tokens WHERE token = $1",
            &[&hash],
        )
        .await
        .unwrap()
        .get(0)
}

/// Use `token` every 100 ms from `since` until the gateway refuses it
/// (401); how long after `since` that was. Every answer before is 200.
async fn refused_after(gw: &Serve, token: &str, since: Instant) -> Duration {
    let header = bearer(token);
    loop {
        let r = raw_get(gw.addr, "/api", &header).await;
        match r.status {
            200 => {}
            401 => return since.elapsed(),
            s => panic!("status {s} for a token that is valid or expired"),
        }
        assert!(
            since.elapsed() < TTL + MARGIN,
            "still accepted {:?} after issue, its lifetime is {TTL:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A lifetime `took` measured from just before a token was written: the
/// database writes `floor(now) + ttl`, so it lives more than `TTL - 1 s`.
#[track_caller]
fn assert_lifetime(took: Duration, what: &str) {
    assert!(
        took > TTL - Duration::from_secs(1),
        "{what}: refused after {took:?}, its lifetime is {TTL:?}"
    );
}

/// F12: a gateway whose wall clock is 3 hours ahead of, then behind, the
/// database's. Issued through it, a token's `expires` is the database's
/// now + `access_ttl_secs`; that token, and one another replica wrote
/// (the database's clock), are accepted for exactly their lifetime by the
/// database's clock and then refused; a token the database calls expired
/// is refused at once, and a long-lived one accepted.
#[tokio::test]
async fn f12_token_lifetimes_follow_the_database_clock_whatever_the_gateway_clock() {
    let Some(lib) = libfaketime() else { return };
    let db = TestDb::new().await;
    let up = echo().await;
    account_in(&db, "rita", "pw", &["api"]).await;
    for hours in [SKEW_HOURS, -SKEW_HOURS] {
        let offset = format!("{hours:+}h");
        let mut gw = serve_skewed(&db, &lib, up.addr, &[("FAKETIME", &offset)]);
        assert_skew(
            gateway_skew(&mut gw, &format!("probe{hours}")).await,
            hours * 3600,
        );

        // Issued through the skewed gateway.
        let issued_at = Instant::now();
        let r = login_at(gw.addr, "rita", "pw").await;
        let (access, _) = r.pair();
        assert_eq!(r.json()["expires_in"], TTL.as_secs(), "{offset}");
        let left = db_seconds_left(&db, &access).await;
        assert!(
            (TTL.as_secs() as i64 - 1..=TTL.as_secs() as i64).contains(&left),
            "{offset}: written with {left} s left by the database's clock"
        );
        // Written by another replica (the database's clock).
        let written_at = Instant::now();
        let other = insert_token(&db, "other", &["api"], TTL.as_secs() as i64).await;
        let expired = insert_token(&db, "late", &["api"], -5).await;
        let long = insert_token(&db, "long", &["api"], 3600).await;

        assert_eq!(
            raw_get(gw.addr, "/api", &bearer(&expired)).await.status,
            401,
            "{offset}"
        );
        assert_eq!(
            raw_get(gw.addr, "/api", &bearer(&long)).await.status,
            200,
            "{offset}"
        );
        let (a, b) = tokio::join!(
            refused_after(&gw, &access, issued_at),
            refused_after(&gw, &other, written_at)
        );
        assert_lifetime(a, &format!("{offset}, issued by the gateway"));
        assert_lifetime(b, &format!("{offset}, written by another replica"));
        // Refused from the cache and from the database alike: the
        // gateway's own clock cannot revive them.
        assert_eq!(raw_get(gw.addr, "/api", &bearer(&access)).await.status, 401);
        assert_eq!(raw_get(gw.addr, "/api", &bearer(&long)).await.status, 200);
    }
}

/// F12: the gateway's wall clock jumps 2 hours back while a token is in
/// its cache (libfaketime re-reading its offset from a file): the token
/// is still refused once its lifetime by the database's clock is over,
/// from the cache and from the database alike.
#[tokio::test]
async fn f12_a_backwards_clock_jump_never_extends_a_cached_token() {
    let Some(lib) = libfaketime() else { return };
    let db = TestDb::new().await;
    let up = echo().await;
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "+0\n").unwrap();
    let offset_path = offset_file.to_string_lossy().into_owned();
    let mut gw = serve_skewed(
        &db,
        &lib,
        up.addr,
        &[
            ("FAKETIME_TIMESTAMP_FILE", &offset_path),
            ("FAKETIME_NO_CACHE", "1"),
        ],
    );
    assert_skew(gateway_skew(&mut gw, "probe-before").await, 0);
    let written_at = Instant::now();
    let token = insert_token(&db, "rita", &["api"], TTL.as_secs() as i64).await;
    // Cached.
    assert_eq!(raw_get(gw.addr, "/api", &bearer(&token)).await.status, 200);

    // Replaced whole (libfaketime re-reads it on every clock read).
    let next = dir.path().join("faketime.next");
    std::fs::write(&next, "-2h\n").unwrap();
    std::fs::rename(&next, &offset_file).unwrap();
    assert_skew(gateway_skew(&mut gw, "probe-after").await, -7200);
    let took = refused_after(&gw, &token, written_at).await;
    assert_lifetime(took, "across a backwards jump");
    // Past the cache's negative entry (`negative_ttl_secs`), the database
    // is asked again: still refused (its clock decides, not the
    // gateway's, now 2 hours behind).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(raw_get(gw.addr, "/api", &bearer(&token)).await.status, 401);
}

#[test]
fn log_timestamps_read_as_unix_seconds() {
    assert_eq!(unix_seconds("1970-01-01T00:00:00.000001Z  INFO x"), Some(0));
    assert_eq!(unix_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
    assert_eq!(
        unix_seconds("2026-12-07T03:31:31.076936Z WARN"),
        Some(1_796_614_291)
    );
    assert_eq!(unix_seconds("not a timestamp"), None);
}
