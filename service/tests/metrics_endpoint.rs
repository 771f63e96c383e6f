//! The real endpoint on an ephemeral loopback port: what a scraper, a browser and a hostile
//! client each get back.

use std::{sync::Arc, time::Duration};

use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use seawall_service::metrics::{serve, EXPOSITION_CONTENT_TYPE, MAX_REQUEST_BYTES, SHUTDOWN_GRACE};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

async fn start(
    registry: Registry,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Arc::new(registry), async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// Sends `request` raw and returns (status line, headers, body).
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read all of an oversized request.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a complete response, got {response:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn registry_with(gauge: &Gauge) -> Registry {
    let mut r = Registry::default();
    r.register(
        "seawall_containers_monitored",
        "Containers monitored",
        gauge.clone(),
    );
    r
}

#[tokio::test]
async fn a_scrape_gets_the_live_registry() {
    let gauge = Gauge::<i64>::default();
    gauge.set(4);
    let (addr, stop, server) = start(registry_with(&gauge)).await;
    let (status, headers, body) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(EXPOSITION_CONTENT_TYPE), "{headers}");
    assert!(
        headers.contains(&format!("content-length: {}", body.len())),
        "{headers}"
    );
    assert!(
        body.contains("# TYPE seawall_containers_monitored gauge"),
        "{body}"
    );
    assert!(
        body.contains("\nseawall_containers_monitored 4\n"),
        "{body}"
    );

    // A later scrape sees later updates: the registry is live, not a snapshot.
    gauge.set(5);
    let (_, _, body) = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(
        body.contains("\nseawall_containers_monitored 5\n"),
        "{body}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn only_get_and_head_of_metrics_are_served() {
    let (addr, stop, server) = start(registry_with(&Gauge::default())).await;

    let (status, _, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
    let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-length: "), "{headers}");
    assert!(body.is_empty());
    let (status, _, _) = exchange(addr, b"garbage\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while huge.len() <= MAX_REQUEST_BYTES {
        huge.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    huge.extend_from_slice(b"\r\n");
    let (status, _, _) = exchange(addr, &huge).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    // Still serving after all that.
    let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_does_not_block_other_scrapes_or_shutdown() {
    let (addr, stop, server) = start(registry_with(&Gauge::default())).await;
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    stop.send(()).unwrap();
    // The silent connection is cut after the grace period rather than holding shutdown.
    tokio::time::timeout(SHUTDOWN_GRACE * 3, server)
        .await
        .expect("shutdown is bounded")
        .unwrap();
}
