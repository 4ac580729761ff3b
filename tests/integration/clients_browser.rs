//! The login page in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver), from the authorize URL to the redirect with a
//! code; a screenshot of the filled-in page is saved under `target/`.
//!
//! chromedriver listens on a free loopback port and the test waits for its
//! `/status` to say ready (no sleeps); Chromium runs with a fresh profile
//! in a temporary folder and without background networking, so it talks
//! to nothing but the gateway. Without `chromedriver`/`chromium` on the
//! machine the test says so and passes, except under CI (`CI` set), where
//! `.ci/run` installs them and their absence is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::clients::new_client;
use crate::clients_authorize::{browser, CHALLENGE};
use crate::oauth::{encode, new_account, CONFIG};
use crate::support::spawn_app;

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many ports chromedriver is offered before the test gives up: a port
/// found free can be taken by someone else before chromedriver binds it
/// (it has no `--port=0`); it then exits at once, and we try another.
const DRIVER_PORT_TRIES: usize = 5;

/// Start chromedriver on a free port and wait until it reports ready; a
/// driver that exits (its port was taken meanwhile) is started again on
/// another port, and any other early exit fails the test at once.
async fn start_driver(binary: &Path) -> Driver {
    let http = browser();
    for _ in 0..DRIVER_PORT_TRIES {
        let port = scopegate::db::embedded::free_port().unwrap();
        // Its output in a file (a pipe nobody reads could fill and stall it).
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .unwrap();
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        loop {
            if let Some(status) = driver.child.try_wait().unwrap() {
                let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                if said.contains("Address already in use") || said.contains("port not available") {
                    break; // someone took the port: another one
                }
                panic!("chromedriver exited ({status}) before it was ready: {said}");
            }
            let ready = http
                .get(format!("{}/status", driver.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = ready {
                let body = r.bytes().await.unwrap_or_default();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if v["value"]["ready"] == true {
                        return driver;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("chromedriver found no free port in {DRIVER_PORT_TRIES} tries");
}

#[tokio::test]
async fn a_real_browser_logs_in_and_lands_on_the_redirect_with_a_code() {
    let (Some(driver_bin), Some(chromium)) = (
        find_binary(&["chromedriver"]),
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver and chromium are required under CI (.ci/run installs them)"
        );
        eprintln!("SKIPPED: no chromedriver/chromium on this machine (apt-get install chromium chromium-driver)");
        return;
    };
    let app = spawn_app(CONFIG).await;
    new_account(&app, "alice", "correct horse", &["orders:read"], &[]).await;
    // The echo upstream stands in for the application receiving the code.
    let redirect = format!("http://127.0.0.1:{}/cb", app.upstream.addr.port());
    let client = new_client(&app, "webapp", &["orders:read"], &[&redirect], true).await;
    let state = "st<b>&\"x";
    let authorize = format!(
        "{}?{}",
        app.url("/oauth/authorize"),
        encode(&[
            ("response_type", "code"),
            ("client_id", &client.client_id),
            ("redirect_uri", &redirect),
            ("scope", "orders:read"),
            ("state", state),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
    );

    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--window-size=800,700",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let b = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap();
    let result = async {
        b.goto(&authorize).await?;
        let title = b.title().await?;
        assert_eq!(title, "Sign in");
        let source = b.source().await?;
        assert!(source.contains("webapp") && !source.contains("<b>&"));
        b.find(Locator::Id("username"))
            .await?
            .send_keys("alice")
            .await?;
        b.find(Locator::Id("password"))
            .await?
            .send_keys("correct horse")
            .await?;
        let shot = b.screenshot().await?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("login-page.png"), &shot).unwrap();
        b.find(Locator::Id("sign-in")).await?.click().await?;
        // The redirect lands on the echo upstream: wait for its URL.
        let start = Instant::now();
        let url = loop {
            let url = b.current_url().await?;
            if url.as_str().starts_with(&redirect) {
                break url;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "stuck at {url}");
            tokio::task::yield_now().await;
        };
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert!(get("code").is_some_and(|c| c.starts_with("sgo_")), "{url}");
        assert_eq!(get("state").as_deref(), Some(state));
        assert_eq!(
            get("iss").as_deref(),
            Some(app.state.oauth.authorize.issuer.as_str())
        );
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = b.close().await;
    result.unwrap();
    let png =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/login-page.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
