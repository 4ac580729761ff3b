//! Section S, HTTP/2 attacks over raw frames (RFC 9113), which a
//! well-behaved client library would never send: rapid reset,
//! CONTINUATION flood, an HPACK bomb, too many concurrent streams (slow and
//! silent clients: `slow`). Each must leave the gateway serving, and
//! nothing but complete, valid requests may reach the upstream.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{recorder, spawn_app_to, Recorder, TestApp, CATCH_ALL};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const REFUSED_STREAM: u32 = 0x7;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field with a literal name; `first` is 0x00 (without
/// indexing) or 0x40 (with incremental indexing; 6-bit prefix).
fn literal(out: &mut Vec<u8>, first: u8, name: &str, value: &str) {
    int(out, first, if first == 0x40 { 6 } else { 4 }, 0);
    int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// A request header block for `GET path`.
fn request_block(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, 0, ":method", "GET");
    literal(&mut b, 0, ":scheme", "http");
    literal(&mut b, 0, ":path", path);
    literal(&mut b, 0, ":authority", "t");
    b
}

/// A connection past the preface and our (empty) SETTINGS.
async fn open(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

/// The frames the server sends until it closes the connection or `bound`
/// passes: (type, flags, stream, payload), and whether it closed.
async fn frames(s: &mut TcpStream, bound: Duration) -> (Vec<(u8, u8, u32, Vec<u8>)>, bool) {
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut out = Vec::new();
    let mut rest = &buf[..];
    while rest.len() >= 9 {
        let len = (rest[0] as usize) << 16 | (rest[1] as usize) << 8 | rest[2] as usize;
        if rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    (out, closed)
}

/// Did the server send GOAWAY with this error code?
fn goaway_with(got: &[(u8, u8, u32, Vec<u8>)], code: u32) -> bool {
    got.iter()
        .any(|f| f.0 == GOAWAY && f.3.len() >= 8 && f.3[4..8] == code.to_be_bytes())
}

/// A normal h2 request on a fresh connection still gets its 200.
async fn still_serves(app: &TestApp) {
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://t/ok").body(()).unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), res)
        .await
        .expect("no answer after the attack")
        .unwrap();
    assert_eq!(res.status(), 200);
}

pub async fn app() -> (TestApp, Recorder) {
    let rec = recorder().await;
    let app = spawn_app_to(CATCH_ALL, rec.addr).await;
    (app, rec)
}

/// Rapid reset (CVE-2023-44487): thousands of streams opened and reset at
/// once. The connection is sent GOAWAY (ENHANCE_YOUR_CALM), the work is
/// bounded, and the gateway keeps serving.
///
/// Case S1.
#[tokio::test]
async fn s01_rapid_reset_is_bounded() {
    let (app, rec) = app().await;
    let mut s = open(&app).await;
    let block = request_block("/reset");
    let start = Instant::now();
    let mut batch = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    // The server may close before all of it is written.
    let _ = s.write_all(&batch).await;
    let (got, _) = frames(&mut s, Duration::from_secs(3)).await;
    // hyper's h2 answers the flood with GOAWAY ENHANCE_YOUR_CALM after a
    // few dozen resets; none of the reset requests reached the upstream.
    assert!(goaway_with(&got, ENHANCE_YOUR_CALM), "no GOAWAY: {got:?}");
    assert!(rec.seen().len() <= 100, "{}", rec.seen().len());
    assert!(start.elapsed() < Duration::from_secs(20));
    still_serves(&app).await;
}

/// CONTINUATION flood: a header block that never ends. The connection is
/// closed long before the flood is over, and no request is made of it.
///
/// Case S2.
#[tokio::test]
async fn s02_continuation_flood_is_cut_off() {
    let (app, rec) = app().await;
    let mut s = open(&app).await;
    s.write_all(&frame(HEADERS, 0, 1, &request_block("/flood")))
        .await
        .unwrap();
    let mut crumb = Vec::new();
    literal(&mut crumb, 0, "x-flood", &"a".repeat(1000));
    let cont = frame(CONTINUATION, 0, 1, &crumb);
    let mut sent = 0usize;
    let mut cut_off = false;
    // Up to 64 MiB of CONTINUATION frames.
    for _ in 0..(64 << 20) / cont.len() {
        if s.write_all(&cont).await.is_err() {
            cut_off = true;
            break;
        }
        sent += cont.len();
    }
    if !cut_off {
        let (_, closed) = frames(&mut s, Duration::from_secs(5)).await;
        cut_off = closed;
    }
    assert!(cut_off, "the flood ran to its end ({sent} bytes)");
    // Cut off within a few header lists' worth, not after 64 MiB.
    assert!(sent < 4 << 20, "{sent} bytes accepted");
    assert!(rec.seen().is_empty());
    still_serves(&app).await;
}

/// HPACK bomb: one 4 KiB field put in the dynamic table, then referenced
/// by its one-byte index thousands of times (16 MB decoded), then a
/// plainly oversized header list. The connection is closed with GOAWAY,
/// nothing is answered 200, nothing reaches the upstream.
///
/// Case S3.
#[tokio::test]
async fn s03_hpack_bomb_and_oversized_header_lists_are_refused() {
    let (app, rec) = app().await;
    let mut s = open(&app).await;
    let mut block = request_block("/bomb");
    literal(&mut block, 0x40, "x-bomb", &"b".repeat(4000));
    // Index 62: the newest dynamic table entry (RFC 7541 §2.3.3).
    block.extend(std::iter::repeat_n(0x80 | 62, 4000));
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .unwrap();
    let mut big = request_block("/big");
    literal(&mut big, 0, "x-big", &"c".repeat(15000));
    literal(&mut big, 0, "x-big2", &"c".repeat(15000));
    let (first, rest) = big.split_at(10000);
    let _ = s.write_all(&frame(HEADERS, END_STREAM, 3, first)).await;
    let _ = s
        .write_all(&frame(CONTINUATION, END_HEADERS, 3, rest))
        .await;
    let (got, closed) = frames(&mut s, Duration::from_secs(2)).await;
    // The decoded list passes max_header_bytes: GOAWAY ENHANCE_YOUR_CALM and
    // the connection closed.
    assert!(closed && goaway_with(&got, ENHANCE_YOUR_CALM), "{got:?}");
    for (kind, _, stream, payload) in &got {
        if *kind == HEADERS {
            // 0x88 is `:status: 200` from the static table.
            assert_ne!(
                payload.first(),
                Some(&0x88),
                "stream {stream} was answered 200"
            );
        }
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
    still_serves(&app).await;
}

/// More concurrent streams than the advertised 100: each one past it is
/// refused (RST_STREAM REFUSED_STREAM, RFC 9113 §5.1.2), the connection
/// stays, and the upstream gets exactly the 100 admitted.
///
/// Case S4.
#[tokio::test]
async fn s04_too_many_concurrent_streams_are_refused() {
    let (app, rec) = app().await;
    let mut s = open(&app).await;
    let mut batch = Vec::new();
    for i in 0..150u32 {
        // Open streams: headers without END_STREAM, a body still to come.
        batch.extend(frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &request_block("/open"),
        ));
    }
    s.write_all(&batch).await.unwrap();
    let (got, closed) = frames(&mut s, Duration::from_secs(2)).await;
    let refused = got
        .iter()
        .filter(|f| f.0 == RST_STREAM && f.3 == REFUSED_STREAM.to_be_bytes())
        .count();
    // Streams past the 100th are refused one by one; the connection stays.
    assert_eq!(
        refused,
        50,
        "frames {:?}",
        got.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    assert!(!closed && !goaway_with(&got, ENHANCE_YOUR_CALM));
    rec.arrived(100, Duration::from_secs(5)).await;
    assert_eq!(rec.seen().len(), 100);
    // Finish one stream: it is served normally.
    let _ = s.write_all(&frame(DATA, END_STREAM, 1, b"")).await;
    still_serves(&app).await;
}
