use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

type Req = Request<Empty<Bytes>>;

/// A listener on port 0 that counts the connections it accepts and
/// serves each with `serve`.
async fn listen<F, Fut>(serve: F) -> (Authority, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (authority, accepted)
}

/// An HTTP/1.1 upstream: `/len` answers with a Content-Length body,
/// `/chunked` with a chunked one, `/empty` 204, `/stream` a body that
/// never ends.
async fn upstream() -> (Authority, Arc<AtomicUsize>) {
    listen(|stream| async move {
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let body: crate::body::Body = match req.uri().path() {
                "/len" => crate::body::full("four"),
                "/chunked" => StreamBody::new(futures_util::stream::iter(
                    ["a", "b", "c"].map(|s| Ok(Frame::data(Bytes::from(s)))),
                ))
                .boxed_unsync(),
                "/stream" => StreamBody::new(futures_util::stream::unfold((), |()| async {
                    tokio::task::yield_now().await;
                    Some((Ok(Frame::data(Bytes::from_static(b"x"))), ()))
                }))
                .boxed_unsync(),
                _ => crate::body::empty(),
            };
            let mut res = Response::new(body);
            if req.uri().path() == "/empty" {
                *res.status_mut() = StatusCode::NO_CONTENT;
            }
            Ok::<_, Infallible>(res)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

fn request(method: &str, path: &str, upstream: &Authority) -> Req {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, upstream.as_str())
        .body(Empty::new())
        .unwrap()
}

async fn read_to_end(res: Response<PooledBody<Empty<Bytes>>>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn every_kind_of_response_end_returns_the_connection() {
    let (up, accepted) = upstream().await;
    let pool = Pool::default();
    for (method, path, body) in [
        ("GET", "/len", &b"four"[..]),
        ("GET", "/chunked", b"abc"),
        ("GET", "/empty", b""),
        ("HEAD", "/len", b""),
        ("GET", "/len", b"four"),
    ] {
        let res = pool.send(&up, request(method, path, &up)).await.unwrap();
        assert_eq!(read_to_end(res).await, body, "{method} {path}");
        assert_eq!(
            pool.idle_count(&up),
            1,
            "{method} {path} left no idle connection"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection carried all"
    );
}

#[tokio::test]
async fn an_empty_body_dropped_unread_returns_the_connection() {
    let (up, accepted) = upstream().await;
    let pool = Pool::default();
    for _ in 0..3 {
        let res = pool.send(&up, request("GET", "/empty", &up)).await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        drop(res);
        assert_eq!(pool.idle_count(&up), 1);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_midway_closes_its_connection() {
    let (up, accepted) = upstream().await;
    let pool = Pool::default();
    let mut body = pool
        .send(&up, request("GET", "/stream", &up))
        .await
        .unwrap()
        .into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(pool.idle_count(&up), 0);
    let res = pool.send(&up, request("GET", "/len", &up)).await.unwrap();
    assert_eq!(read_to_end(res).await, &b"four"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a second connection");
}

/// An upstream that answers one request per connection and then closes
/// it without saying so (no `Connection: close`), as a keep-alive timeout
/// does.
async fn closing_upstream() -> (Authority, Arc<AtomicUsize>) {
    listen(|mut stream| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request head was cut");
            head.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let (up, accepted) = closing_upstream().await;
    let pool = Pool::default();
    for i in 1..=3 {
        let res = pool.send(&up, request("GET", "/", &up)).await.unwrap();
        assert_eq!(read_to_end(res).await, &b"ok"[..], "request {i}");
        assert_eq!(accepted.load(Ordering::SeqCst), i);
    }
}

#[tokio::test]
async fn reaping_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        // The pool's end of the connection: EOF once it is reaped.
        stream.read(&mut buf).await.unwrap()
    });
    let pool = Pool::default();
    let res = pool.send(&up, request("GET", "/", &up)).await.unwrap();
    read_to_end(res).await;
    pool.reap(IDLE_TIMEOUT);
    assert_eq!(pool.idle_count(&up), 1, "not idle long enough to be reaped");
    pool.reap(Duration::ZERO);
    assert_eq!(pool.idle_count(&up), 0);
    assert_eq!(
        server.await.unwrap(),
        0,
        "the upstream saw the connection close"
    );
}

#[tokio::test]
async fn no_upstream_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let pool = Pool::<Empty<Bytes>>::default();
    let Err(e) = pool.send(&up, request("GET", "/", &up)).await else {
        panic!("a response from a closed port");
    };
    assert!(e.is_connect(), "{e}");
}
