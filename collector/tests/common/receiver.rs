//! A fake HTTP/1.1 receiver (HEC, webhook) whose answers a test chooses per request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub type Bodies = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 receiver: `answer(request number, body)` gives the status to return, or `None`
/// to read the request and never answer. Records the bodies it answered 2xx.
pub async fn receiver(
    answer: impl Fn(usize, &str) -> Option<u16> + Send + Sync + 'static,
) -> (u16, Bodies) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted: Bodies = Arc::default();
    let count = Arc::new(Mutex::new(0usize));
    let answer = Arc::new(answer);
    let acc = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acc, count, answer) = (acc.clone(), count.clone(), answer.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let body = String::from_utf8(body).unwrap();
                    let n = {
                        let mut c = count.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    let Some(status) = answer(n, &body) else {
                        // Hang: hold the connection, never answer.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    };
                    if (200..300).contains(&status) {
                        acc.lock().unwrap().push(body);
                    }
                    let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\n{{}}");
                    if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}
