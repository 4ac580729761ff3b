//! Upstreams on port 0: the echo (it answers with what it received) and
//! a recorder (it keeps what it received, body bytes included).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::MARGIN;

/// A running echo upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

pub async fn echo() -> Upstream {
    let listener = scopegate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(scopegate::server::serve(
        listener,
        Arc::new(scopegate::echo::Echo),
        Default::default(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Upstream { addr, _stop: tx }
}

/// The request the echo upstream saw, from its JSON answer.
pub struct Seen(pub serde_json::Value);

impl Seen {
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.0["headers"][name].as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
    pub fn has(&self, name: &str) -> bool {
        self.0["headers"].get(name).is_some()
    }
}

/// What a [`Recorder`] upstream received in one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The gateway's end of the connection the request came on.
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Body bytes received, counted as they arrive (also when the body
    /// ends in an error).
    pub body_bytes: u64,
    /// `None` while the body is still arriving; then whether it ended
    /// cleanly.
    pub body_complete: Option<bool>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream that records every request it receives (head, and how much
/// body arrived) and answers `200 {"path": ..., "body_length": ...}`;
/// `x-echo-delay-ms` delays the answer, `x-echo-bytes: N` answers N bytes.
pub struct Recorder {
    pub addr: SocketAddr,
    log: Arc<Log>,
    _stop: watch::Sender<bool>,
}

/// What the recorder received, and a signal for each change to it.
#[derive(Default)]
struct Log {
    seen: std::sync::Mutex<Vec<Recorded>>,
    changed: watch::Sender<()>,
}

impl Log {
    /// Change the record and wake whoever waits on it.
    fn update<T>(&self, f: impl FnOnce(&mut Vec<Recorded>) -> T) -> T {
        let out = f(&mut self.seen.lock().unwrap());
        self.changed.send_replace(());
        out
    }
}

impl Recorder {
    /// Every request received so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.log.seen.lock().unwrap().clone()
    }

    /// Every request received, as soon as `ready` holds for them (woken by
    /// each change, not polled); fails after `bound`.
    pub async fn until(
        &self,
        bound: Duration,
        ready: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let mut changed = self.log.changed.subscribe();
        let wait = async {
            loop {
                // Marked seen before the check: a change after it wakes us.
                changed.borrow_and_update();
                let seen = self.seen();
                if ready(&seen) {
                    return seen;
                }
                // The sender lives in `self`: this cannot fail meanwhile.
                let _ = changed.changed().await;
            }
        };
        match tokio::time::timeout(bound, wait).await {
            Ok(seen) => seen,
            Err(_) => panic!("after {bound:?} the upstream saw {:?}", self.seen()),
        }
    }

    /// Every request received, once at least `n` have arrived (their
    /// bodies may still be arriving); bounded by `bound`.
    pub async fn arrived(&self, n: usize, bound: Duration) -> Vec<Recorded> {
        self.until(bound, |seen| seen.len() >= n).await
    }

    /// Every request received, once at least `n` have arrived and each has
    /// been read to its end (cleanly or not); bounded.
    pub async fn settled(&self, n: usize) -> Vec<Recorded> {
        self.until(5 * MARGIN, |seen| {
            seen.len() >= n && seen.iter().all(|r| r.body_complete.is_some())
        })
        .await
    }
}

struct Recording(Arc<Log>);

impl scopegate::server::Handler for Recording {
    async fn handle(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        conn: scopegate::server::Conn,
    ) -> http::Response<scopegate::body::Body> {
        use http_body_util::BodyExt;
        let index = self.0.update(|seen| {
            seen.push(Recorded {
                peer: conn.peer,
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body_bytes: 0,
                body_complete: None,
            });
            seen.len() - 1
        });
        let header_u64 = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let delay = header_u64("x-echo-delay-ms");
        let download = header_u64("x-echo-bytes");
        let path = req.uri().path().to_owned();
        let mut body = req.into_body();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        self.0
                            .update(|seen| seen[index].body_bytes += d.len() as u64);
                    }
                }
                Err(_) => {
                    complete = false;
                    break;
                }
            }
        }
        let len = self.0.update(|seen| {
            seen[index].body_complete = Some(complete);
            seen[index].body_bytes
        });
        if let Some(ms) = delay {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if let Some(n) = download {
            let mut r = http::Response::new(scopegate::body::full(vec![b'x'; n as usize]));
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
            return r;
        }
        http::Response::new(scopegate::body::json(
            &serde_json::json!({"path": path, "body_length": len}),
        ))
    }
}

pub async fn recorder() -> Recorder {
    let listener = scopegate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Log::default());
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(scopegate::server::serve(
        listener,
        Arc::new(Recording(log.clone())),
        Default::default(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Recorder {
        addr,
        log,
        _stop: tx,
    }
}
