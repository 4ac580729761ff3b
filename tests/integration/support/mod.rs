//! Spawning the real thing for a test and talking to it, one concern per
//! file:
//!
//! - [`app`]: the gateway in this process, on a database of its own
//!   (`scopegate::testing`), with an echo upstream on port 0; what that
//!   database executed;
//! - [`wire`]: HTTP on a raw socket (bytes as given: no client library to
//!   fix them) and through reqwest, read into the one response type, [`Resp`];
//! - [`upstream`]: upstreams on port 0: the echo, and a recorder of what
//!   reached it;
//! - [`process`]: the `scopegate` binary as a child process;
//! - [`oauth`]: the token endpoint from a test's side (accounts, logins).

#![allow(dead_code)]

mod app;
mod oauth;
mod process;
mod upstream;
mod wire;

use std::time::Duration;

pub use app::*;
pub use oauth::*;
pub use process::*;
pub use upstream::*;
pub use wire::*;

/// How late a timeout, a deadline or a clock-based window may be observed
/// on a loaded 2-core machine: every timing bound is a configured value
/// plus this.
pub const MARGIN: Duration = Duration::from_secs(2);

/// Wait (polling, bounded by `5 * MARGIN`) until `ready` holds; `what`
/// says what never happened otherwise.
pub async fn until(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + 5 * MARGIN;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
