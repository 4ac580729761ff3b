//! Real OAuth client libraries (Authlib, requests-oauthlib) against the
//! real gateway: `tests/python/authlib_flows.py`, run by `python3` with
//! the gateway's address and the registered clients in its environment.
//! Skips, saying so, only when `python3 -c "import authlib"` fails
//! (`.ci/run` installs it).

use crate::clients::new_client;
use crate::oauth::new_account;
use crate::support::spawn_app;

const ROUTES: &str = r#"
[login]
max_failures = 1000
hash_concurrency = 2

[[routes]]
name = "orders"
path = "/api/orders"
upstream = "UPSTREAM"
scopes = ["orders:read"]
"#;

async fn authlib_available() -> bool {
    tokio::process::Command::new("python3")
        .args(["-c", "import authlib, requests, requests_oauthlib"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn authlib_and_requests_oauthlib_complete_every_flow() {
    if !authlib_available().await {
        // On a developer's machine without them the test says so and
        // passes; under CI (`CI` set), where .ci/run installs them, it fails.
        assert!(
            std::env::var_os("CI").is_none(),
            "authlib, requests and requests-oauthlib are required under CI (.ci/run installs them)"
        );
        eprintln!(
            "SKIPPED: python3 cannot import authlib, requests and requests_oauthlib \
             (pip install authlib requests requests-oauthlib)"
        );
        return;
    }
    let app = spawn_app(ROUTES).await;
    new_account(&app, "alice", "correct horse", &["orders:read"], &[]).await;
    let cc = new_client(&app, "backend", &["orders:read"], &[], false).await;
    let redirect = "http://127.0.0.1:8765/callback";
    let public = new_client(&app, "spa", &["orders:read"], &[redirect], true).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/authlib_flows.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("SCOPEGATE_URL", app.url(""))
        .env("ROUTE", "/api/orders/1")
        .env("CC_CLIENT_ID", &cc.client_id)
        .env("CC_CLIENT_SECRET", cc.secret.as_deref().unwrap())
        .env("CC_SERVICE_ACCOUNT", "client:backend")
        .env("PUBLIC_CLIENT_ID", &public.client_id)
        .env("REDIRECT_URI", redirect)
        .env("USERNAME", "alice")
        .env("PASSWORD", "correct horse")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python flows failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all flows passed"), "{stdout}");
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count() >= 20,
        "{stdout}"
    );
}
