//! HTTP on a raw socket (bytes exactly as given) and through reqwest,
//! read into one response type.

use std::net::SocketAddr;

/// `Authorization: Bearer <token>` as a raw header line.
pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// A plain HTTP/1.1 client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A plain HTTP/1.1 client whose connections come from `ip` (any
/// 127.0.0.0/8 address on Linux): another client address as the gateway
/// sees it, for the per-address login throttle.
pub fn http_from(ip: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .local_address(ip)
        .build()
        .unwrap()
}

/// A response, read whole: off a raw socket ([`raw`], [`read_one`]) or
/// through reqwest ([`send`]).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// In the order received; names as sent (reqwest's are lower-case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// An RFC 6749 §5.2 error with the no-store headers.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        let body = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{body}");
        assert_eq!(self.json()["error"], error, "{body}");
        self.assert_no_store();
    }

    #[track_caller]
    pub fn assert_no_store(&self) {
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "status {}",
            self.status
        );
        assert_eq!(
            self.header("pragma"),
            Some("no-cache"),
            "status {}",
            self.status
        );
    }

    /// The access and refresh tokens of a 200 token response.
    #[track_caller]
    pub fn pair(&self) -> (String, String) {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        let j = self.json();
        (
            j["access_token"].as_str().unwrap().to_owned(),
            j["refresh_token"].as_str().unwrap().to_owned(),
        )
    }
}

/// Send a reqwest request and read its whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Resp {
        status,
        headers,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// Send `request` (a complete HTTP/1.1 request, bytes as given: no URL
/// normalization by a client library) and read one response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_one(&mut s).await
}

/// Read one response (head and `Content-Length` body) off `s`, leaving the
/// connection open.
pub async fn read_one(s: &mut tokio::net::TcpStream) -> Resp {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // The head byte by byte, so nothing past it is consumed.
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return parse_response(&buf),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let start = buf.len();
    buf.resize(start + len, 0);
    let mut got = start;
    while got < buf.len() {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    parse_response(&buf)
}

/// Parse one response: head, then what follows as the body.
pub fn parse_response(buf: &[u8]) -> Resp {
    let end = find(buf, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split a byte stream (pipelined answers on one connection) into
/// responses, each framed by its `Content-Length`.
pub fn responses(mut all: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(end) = find(all, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&all[..end]).to_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = (end + 4 + len).min(all.len());
        out.push(parse_response(&all[..total]));
        all = &all[total..];
    }
    out
}

/// `GET path` with optional extra header lines, over a raw socket.
pub async fn raw_get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    raw(addr, req.as_bytes()).await
}

/// Read from `s` until the peer closes it (EOF or reset) or `bound`
/// passes; returns what was read and whether it was closed.
pub async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    bound: std::time::Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (all, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}
