// SPDX-License-Identifier: MIT
//! One stream detour task as g3proxy runs it (`g3proxy/src/audit/detour/stream.rs`): the north
//! and south streams, the PROXY v2 headers with g3proxy's TLVs (docs/protocol.md), the 4-byte
//! answer, the relay with every echoed byte checked, and g3proxy's way of closing.

use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Waker};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

use crate::{Client, Result, STEP_TIMEOUT};

/// g3proxy's `request_timeout` for the 4-byte answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What g3proxy knows about one inspected flow.
pub struct Task {
    pub match_id: u16,
    task_id: [u8; 16],
    client: SocketAddr,
    proxy: SocketAddr,
    pub username: Option<String>,
    pub upstream: String,
    protocol: &'static str,
    pub payload: Vec<u8>,
}

impl Task {
    pub fn new(client: &Client, match_id: u16, protocol: &'static str) -> Task {
        let mut task_id = [0u8; 16];
        task_id.copy_from_slice(&client.bytes(16));
        task_id[6] = task_id[6] & 0x0f | 0x40; // UUID version 4
        task_id[8] = task_id[8] & 0x3f | 0x80;
        let v6 = match_id % 3 == 1;
        let port = 40_000 + match_id;
        let (client_addr, proxy): (SocketAddr, SocketAddr) = if v6 {
            (
                format!("[2001:db8::10]:{port}").parse().unwrap(),
                "[2001:db8::1]:3128".parse().unwrap(),
            )
        } else {
            (([192, 0, 2, 10], port).into(), ([198, 51, 100, 1], 3128).into())
        };
        let (upstream, payload) = match protocol {
            "websocket" => ("example.com:443".to_string(), WEBSOCKET_PAYLOAD.to_vec()),
            "smtp" => ("mail.example.com:25".to_string(), Vec::new()),
            "imap" => ("[2001:db8::25]:993".to_string(), Vec::new()),
            _ => (format!("www{match_id}.example.com:443"), Vec::new()),
        };
        Task {
            match_id,
            task_id,
            client: client_addr,
            proxy,
            username: (match_id % 2 == 1)
                .then(|| ["alice", "zoë"][usize::from(match_id) / 2 % 2].into()),
            upstream,
            protocol,
            payload,
        }
    }

    /// PROXY v2 (signature, v2 PROXY, TCP over IPv4 or IPv6, length, addresses) plus TLVs.
    fn header(&self, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x21);
        let mut body = Vec::new();
        match (self.client.ip(), self.proxy.ip()) {
            (IpAddr::V4(c), IpAddr::V4(p)) => {
                h.push(0x11);
                body.extend_from_slice(&c.octets());
                body.extend_from_slice(&p.octets());
            }
            (IpAddr::V6(c), IpAddr::V6(p)) => {
                h.push(0x21);
                body.extend_from_slice(&c.octets());
                body.extend_from_slice(&p.octets());
            }
            _ => unreachable!("g3proxy cannot encode mixed families"),
        }
        body.extend_from_slice(&self.client.port().to_be_bytes());
        body.extend_from_slice(&self.proxy.port().to_be_bytes());
        for (kind, value) in tlvs {
            body.push(*kind);
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
        }
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(&body);
        h
    }

    /// North: E2 username (when authenticated), E3 task id, E0 upstream, E5 match id,
    /// E4 protocol, E6 payload length; in that order, as g3proxy's `encode_client_ppv2`.
    pub fn north_header(&self) -> Vec<u8> {
        let match_id = self.match_id.to_be_bytes();
        let payload_len = (self.payload.len() as u32).to_be_bytes();
        let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
        if let Some(user) = &self.username {
            tlvs.push((0xe2, user.as_bytes()));
        }
        tlvs.extend([
            (0xe3, &self.task_id[..]),
            (0xe0, self.upstream.as_bytes()),
            (0xe5, &match_id[..]),
            (0xe4, self.protocol.as_bytes()),
            (0xe6, &payload_len[..]),
        ]);
        self.header(&tlvs)
    }

    /// South: the same addresses and E5 alone.
    fn south_header(&self) -> Vec<u8> {
        self.header(&[(0xe5, &self.match_id.to_be_bytes())])
    }
}

pub const WEBSOCKET_PAYLOAD: &[u8] = b"/chat\r\nhost: example.com\r\norigin: https://example.com\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: chat\r\n\
sec-websocket-extensions: permessage-deflate\r\nsec-websocket-extensions: x-webkit-deflate-frame\r\n";

pub struct Streams {
    pub north_send: SendStream,
    pub north_recv: RecvStream,
    pub south_send: SendStream,
    pub south_recv: RecvStream,
}

/// North then south, back to back, as g3proxy's `handle_req` (the server sees neither until
/// something is written on it).
pub async fn open_streams(conn: &Connection) -> Result<Streams> {
    let (north_send, north_recv) = conn.open_bi().await.map_err(|e| format!("open north: {e}"))?;
    let (south_send, south_recv) = conn.open_bi().await.map_err(|e| format!("open south: {e}"))?;
    Ok(Streams { north_send, north_recv, south_send, south_recv })
}

/// quinn 0.11's synchronous `finish()` that g3proxy calls: the FIN is queued now; quinn 0.9's
/// `finish().await` would also wait for its acknowledgement.
pub fn queue_fin(send: &mut SendStream) {
    let _ = send.poll_finish(&mut Context::from_waker(Waker::noop()));
}

/// Writes the north header and payload, reads the 4-byte answer, checks the match id.
pub async fn request(client: &Client, s: &mut Streams, task: &Task) -> Result<u16> {
    let mut head = task.north_header();
    head.extend_from_slice(&task.payload);
    s.north_send.write_all(&head).await.map_err(|e| format!("write north header: {e}"))?;
    let mut answer = [0u8; 4];
    tokio::time::timeout(ANSWER_TIMEOUT, s.north_recv.read_exact(&mut answer))
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| format!("read answer: {e}"))?;
    client.answered.set(client.answered.get() + 1);
    let match_id = u16::from_be_bytes([answer[0], answer[1]]);
    if match_id != task.match_id {
        return Err(format!("invalid match id: answered {match_id}, task has {}", task.match_id));
    }
    Ok(u16::from_be_bytes([answer[2], answer[3]]))
}

/// The request answered continue, then the south header; `early` client bytes go out on north
/// before the south header, as they may arrive when a packet is lost.
pub async fn request_continue(
    client: &Client,
    s: &mut Streams,
    task: &Task,
    early: &[u8],
) -> Result<()> {
    match request(client, s, task).await? {
        0 => {}
        action => return Err(format!("answered action {action}, expected 0 (continue)")),
    }
    s.north_send.write_all(early).await.map_err(|e| format!("write north: {e}"))?;
    s.south_send
        .write_all(&task.south_header())
        .await
        .map_err(|e| format!("write south header: {e}"))
}

async fn send_chunks(
    client: &Client,
    send: &mut SendStream,
    data: &[u8],
    what: &str,
) -> Result<()> {
    let mut at = 0;
    while at < data.len() {
        let n = (1 + client.below(32 << 10)).min(data.len() - at);
        send.write_all(&data[at..at + n]).await.map_err(|e| format!("write {what}: {e}"))?;
        at += n;
    }
    Ok(())
}

/// Reads exactly `expected` back and compares byte for byte.
pub async fn expect_echo(recv: &mut RecvStream, expected: &[u8], what: &str) -> Result<()> {
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    while got < expected.len() {
        let want = buf.len().min(expected.len() - got);
        match recv.read(&mut buf[..want]).await {
            Ok(Some(n)) => {
                if let Some(i) = (0..n).find(|&i| buf[i] != expected[got + i]) {
                    return Err(format!("{what} echo differs at byte {}", got + i));
                }
                got += n;
            }
            Ok(None) => {
                return Err(format!("{what} ended after {got} of {} echoed bytes", expected.len()))
            }
            Err(e) => {
                return Err(format!("{what} after {got} of {} echoed bytes: {e}", expected.len()))
            }
        }
    }
    Ok(())
}

/// The receive side must end (FIN) with nothing more on it.
pub async fn expect_end(recv: &mut RecvStream, what: &str) -> Result<()> {
    match tokio::time::timeout(STEP_TIMEOUT, recv.read(&mut [0u8; 1])).await {
        Err(_) => Err(format!("{what} did not end within {STEP_TIMEOUT:?}")),
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(_))) => Err(format!("{what} carries more than was sent")),
        Ok(Err(e)) => Err(format!("{what} did not end cleanly: {e}")),
    }
}

/// Client bytes on north (past the `sent` already written) and remote bytes on south at the same
/// time, each echo checked, then the close g3proxy makes when the client ends: FIN on south and
/// north, wait for the north receive side to end, drop the south receive side (STOP_SENDING 0).
/// With `eager`, the close starts once the client is done, while south echoes are on the way.
pub async fn relay(
    client: &Client,
    mut s: Streams,
    (to_remote, sent): (&[u8], usize),
    to_client: &[u8],
    eager: bool,
) -> Result<()> {
    let Streams { north_send, north_recv, south_send, south_recv } = &mut s;
    // Four independent copies, as g3proxy relays: writing must never wait for reading.
    let south_echo = async {
        if !eager {
            expect_echo(south_recv, to_client, "south").await?;
        }
        Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT * 3, async {
        tokio::try_join!(
            send_chunks(client, north_send, &to_remote[sent..], "north"),
            expect_echo(north_recv, to_remote, "north"),
            send_chunks(client, south_send, to_client, "south"),
            south_echo
        )
    })
    .await
    .map_err(|_| {
        let (north, south) = (to_remote.len(), to_client.len());
        format!("relay of {north} bytes north and {south} south stalled for {:?}", STEP_TIMEOUT * 3)
    })??;
    queue_fin(&mut s.south_send);
    queue_fin(&mut s.north_send);
    expect_end(&mut s.north_recv, "north").await?;
    let _ = s.south_recv.stop(0u32.into());
    Ok(())
}

/// A whole continued task with random sizes. Every fourth sends client bytes before the south
/// header; every fourth closes eagerly.
pub async fn run_task(client: &Client, task: Task, mut s: Streams) -> Result<()> {
    let to_remote = client.bytes(client.below(64 << 10));
    let to_client = client.bytes(client.below(64 << 10));
    let early = if task.match_id % 4 == 1 { to_remote.len().min(1000) } else { 0 };
    request_continue(client, &mut s, &task, &to_remote[..early]).await?;
    relay(client, s, (&to_remote, early), &to_client, task.match_id % 4 == 3).await
}

pub const PROTOCOLS: [&str; 4] = ["http_2", "websocket", "smtp", "imap"];
