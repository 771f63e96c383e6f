//! RFC 5424 syslog over TCP (RFC 6587 octet counting: `LEN SP MSG`) or UDP (one per datagram).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::{format, SinkError};
use crate::config::{SyslogFormat, SyslogProtocol};
use crate::store::Record;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver that takes no bytes for this long is treated as gone: the connection is dropped
/// and the batch retried, so a stalled reader cannot hold the sink task in one write forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SyslogSink {
    address: String,
    protocol: SyslogProtocol,
    format: SyslogFormat,
    facility: u8,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl SyslogSink {
    pub fn new(
        address: String,
        protocol: SyslogProtocol,
        format: SyslogFormat,
        facility: u8,
    ) -> Self {
        SyslogSink {
            address,
            protocol,
            format,
            facility: facility.min(23),
            tcp: None,
            udp: None,
        }
    }

    pub async fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let cef = self.format == SyslogFormat::Cef;
        let messages = records
            .iter()
            .map(|r| format::rfc5424(r, self.facility, cef));
        match self.protocol {
            SyslogProtocol::Tcp => {
                if self.tcp.is_none() {
                    let s =
                        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                            .await
                            .map_err(|_| {
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "connect timed out",
                                )
                            })??;
                    self.tcp = Some(s);
                }
                let mut buf = Vec::new();
                for m in messages {
                    buf.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                }
                let stream = self.tcp.as_mut().expect("connected above");
                let res = tokio::time::timeout(WRITE_TIMEOUT, async {
                    stream.write_all(&buf).await?;
                    stream.flush().await
                })
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the receiver took nothing for 30 s",
                    ))
                });
                if res.is_err() {
                    // Reconnect on the next attempt; the whole batch is re-sent.
                    self.tcp = None;
                }
                res?;
            }
            SyslogProtocol::Udp => {
                if self.udp.is_none() {
                    let bind = if self.address.starts_with('[') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    };
                    let s = UdpSocket::bind(bind).await?;
                    s.connect(&self.address).await?;
                    self.udp = Some(s);
                }
                let sock = self.udp.as_ref().expect("bound above");
                for m in messages {
                    sock.send(m.as_bytes()).await?;
                }
            }
        }
        Ok(())
    }
}
