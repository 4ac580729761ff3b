//! A minimal blocking HTTP/1.1 client for the side traffic (logins, token
//! spraying): one request at a time on a kept-alive socket, the answer's
//! status, `Retry-After` and body length read with `Content-Length`
//! framing (what scopegate's own answers use).

use std::io::{Read, Write};
use std::net::TcpStream;

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The last answer's `Retry-After`, in seconds (delta form only).
    pub retry_after: Option<u64>,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(4096),
            retry_after: None,
        })
    }

    /// `POST path` with a form body; the status.
    pub fn post_form(&mut self, path: &str, body: &str) -> std::io::Result<u16> {
        write!(
            self.stream,
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        self.status()
    }

    /// `GET path` with a Bearer token; the status.
    pub fn get_bearer(&mut self, path: &str, token: &str) -> std::io::Result<u16> {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
        )?;
        self.status()
    }

    /// Read one answer; its status code.
    fn status(&mut self) -> std::io::Result<u16> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                // A header's value as a number (names lowercased above).
                let number = |name: &str| -> Option<u64> {
                    head.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                        .and_then(|v| v.trim().parse().ok())
                };
                let len = number("content-length")
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let code = head
                        .split(' ')
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    self.retry_after = number("retry-after");
                    self.buf.drain(..end + 4 + len);
                    return Ok(code);
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
