// SPDX-License-Identifier: MIT
//! detour-quinn-client: g3proxy's stream detour client, rebuilt on g3proxy's own stack (quinn,
//! rustls, tokio), run against a detour server so that the server is checked against a QUIC and
//! TLS implementation other than ours. Implements the client side of docs/protocol.md as g3proxy
//! behaves (`g3proxy/src/audit/detour/`): QUIC v1, no ALPN, two streams per task, PROXY v2.

mod task;
mod tls;

use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use quinn::{Connection, Endpoint, VarInt};

use task::{
    expect_echo, expect_end, open_streams, queue_fin, relay, request, request_continue, run_task,
    Task, PROTOCOLS,
};

const USAGE: &str = "\
usage: detour-quinn-client --server ADDR:PORT --ca FILE [options]

Plays g3proxy's stream detour client (quinn + rustls, as g3proxy) against a detour server and
checks every answer and every echoed byte. One line per check; exit 0 when all passed, 1 when
one failed, 2 on bad usage.

options:
  --server ADDR:PORT   the detour server (IPv4, or IPv6 in brackets)
  --ca FILE            PEM CA certificates that verify the server (g3proxy: ca_certificate)
  --tls-name NAME      name checked in the server certificate (default: the server's IP
                       address, verified against an IP subjectAltName, and no SNI is sent)
  --cert FILE --key FILE   client certificate and key for mutual TLS
  --alpn A[,B]         offer these ALPN names (g3proxy offers none); the server must select
                       one of them, or rustls closes the connection (RFC 9001 section 8.1)
  --expect WHAT        continue (default): the relay suite; bypass | block: every task must be
                       answered so and abandoned quietly; refused: the server must refuse the
                       handshake (mutual TLS without a client certificate); untrusted: this
                       client must refuse the server's certificate (wrong CA or name)
  --connections N      connections that each run 16 tasks in a row (default 3)
  --bytes N            bytes each way in the large transfer (default 4194304)
  --deadline SECS      give up after this long (default 120)
  --idle SECS          only this check: a connection idle for SECS serves a task afterwards
  --seed N             seed of the sizes and bytes (default: from the clock; printed first)
";

/// g3proxy's `connection_reuse_limit` default: tasks per connection, match ids 0..15.
const TASKS_PER_CONNECTION: u16 = 16;
/// Bound on one step that loopback completes in milliseconds; only a stuck server reaches it.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Continue,
    Bypass,
    Block,
    Refused,
    Untrusted,
}

impl Expect {
    /// The 2-byte action of the answer; g3proxy reads any value above 1 as block.
    fn matches(self, action: u16) -> bool {
        match self {
            Expect::Continue => action == 0,
            Expect::Bypass => action == 1,
            Expect::Block => action >= 2,
            Expect::Refused | Expect::Untrusted => false,
        }
    }
}

struct Options {
    server: SocketAddr,
    ca: String,
    tls_name: Option<String>,
    cert: Option<(String, String)>,
    alpn: Vec<String>,
    expect: Expect,
    connections: usize,
    bytes: usize,
    deadline: Duration,
    seed: Option<u64>,
    idle: Option<u64>,
}

/// Errors are messages for the check's output line.
type Result<T> = std::result::Result<T, String>;

fn parse_options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let (mut server, mut ca, mut tls_name, mut cert, mut key) = (None, None, None, None, None);
    let mut opts = Options {
        server: ([127, 0, 0, 1], 2888).into(),
        ca: String::new(),
        tls_name: None,
        cert: None,
        alpn: Vec::new(),
        expect: Expect::Continue,
        connections: 3,
        bytes: 4 << 20,
        deadline: Duration::from_secs(120),
        seed: None,
        idle: None,
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|_| format!("{arg}: not a number: {value}"));
        match arg.as_str() {
            "--server" => {
                server =
                    Some(value.parse().map_err(|_| format!("--server: not ADDR:PORT: {value}"))?)
            }
            "--ca" => ca = Some(value),
            "--tls-name" => tls_name = Some(value),
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--alpn" => {
                opts.alpn = value.split(',').map(str::to_owned).collect();
                if opts.alpn.iter().any(|n| n.is_empty() || n.len() > 255) {
                    return Err(format!("--alpn: names of 1 to 255 bytes, not {value}"));
                }
            }
            "--connections" => opts.connections = number()?,
            "--bytes" => opts.bytes = number()?,
            "--deadline" => opts.deadline = Duration::from_secs(number()? as u64),
            "--seed" => opts.seed = Some(number()? as u64),
            "--idle" => opts.idle = Some(number()? as u64),
            "--expect" => {
                opts.expect = match value.as_str() {
                    "continue" => Expect::Continue,
                    "bypass" => Expect::Bypass,
                    "block" => Expect::Block,
                    "refused" => Expect::Refused,
                    "untrusted" => Expect::Untrusted,
                    _ => {
                        return Err(format!(
                            "--expect: continue, bypass, block, refused or untrusted, not {value}"
                        ))
                    }
                }
            }
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    opts.server = server.ok_or("--server is required")?;
    opts.ca = ca.ok_or("--ca is required")?;
    opts.tls_name = tls_name;
    opts.cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(opts)
}

// ---------------------------------------------------------------------------------------------
// QUIC: one connected UDP socket and endpoint per connection, g3proxy's transport settings.

struct Client {
    opts: Options,
    tls: Arc<rustls::ClientConfig>,
    verifier: Arc<tls::Verifier>,
    rng: Cell<u64>,
    /// What the server should have logged: `conn.open`, `resumed=true` and `task.end` lines.
    connections: Cell<usize>,
    resumed: Cell<usize>,
    answered: Cell<usize>,
}

struct Conn {
    endpoint: Endpoint,
    conn: Connection,
    resumed: bool,
}

impl Client {
    /// One connection, and whether it resumed a TLS session.
    async fn connect(&self) -> Result<Conn> {
        let (mut conns, resumed) = self.connect_many(1).await?;
        let mut c = conns.pop().expect("one connection");
        c.resumed = resumed == 1;
        Ok(c)
    }

    /// `n` connections at once (g3proxy's pool opens `min_idle_count` at start). A resumed
    /// handshake is one that did not verify a certificate, so with handshakes in parallel it is
    /// known per batch: how many of the `n` resumed.
    async fn connect_many(&self, n: usize) -> Result<(Vec<Conn>, usize)> {
        let before = self.verifier.full_handshakes();
        let mut conns = Vec::new();
        for c in join_all((0..n).map(|_| self.handshake())).await {
            conns.push(c?);
        }
        let resumed = n.saturating_sub(self.verifier.full_handshakes() - before);
        self.connections.set(self.connections.get() + n);
        self.resumed.set(self.resumed.get() + resumed);
        Ok((conns, resumed))
    }

    async fn handshake(&self) -> Result<Conn> {
        let server = self.opts.server;
        let local: SocketAddr =
            if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(server).map(|_| s))
            .map_err(|e| format!("udp socket: {e}"))?;
        let endpoint = Endpoint::new(Default::default(), None, socket, quinn::TokioRuntime)
            .map_err(|e| format!("endpoint: {e}"))?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(VarInt::from_u32(60_000).into()))
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into());
        let mut config = quinn::ClientConfig::new(self.tls.clone());
        config.transport_config(Arc::new(transport));
        let name = self.opts.tls_name.clone().unwrap_or_else(|| server.ip().to_string());
        let connecting =
            endpoint.connect_with(config, server, &name).map_err(|e| format!("connect: {e}"))?;
        let conn = tokio::time::timeout(STEP_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("no handshake with {server} within {STEP_TIMEOUT:?}"))?
            .map_err(|e| format!("handshake with {server}: {e}"))?;
        Ok(Conn { endpoint, conn, resumed: false })
    }

    /// xorshift64*: sizes, chunking and relayed bytes (no crate needed, seeded per run).
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&self, n: usize) -> usize {
        (self.random() % n.max(1) as u64) as usize
    }

    fn bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.random() as u8).collect()
    }
}

impl Conn {
    /// g3proxy retires a connection after its tasks with application code 0, "finished".
    async fn finish(self) {
        self.conn.close(0u32.into(), b"finished");
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.endpoint.wait_idle()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, outcome: Result<String>) {
        match outcome {
            Ok(detail) if detail.is_empty() => println!("ok    {name}"),
            Ok(detail) => println!("ok    {name}: {detail}"),
            Err(e) => {
                println!("FAIL  {name}: {e}");
                self.failed += 1;
            }
        }
    }
}

/// `n` tasks in a row on one connection (match ids 0..n-1), then the close g3proxy sends. With
/// more than 64 tasks, the streams outnumber the server's initial credit (MAX_STREAMS).
async fn in_a_row(client: &Client, n: u16) -> Result<String> {
    let c = client.connect().await?;
    for k in 0..n {
        let task = Task::new(client, k, PROTOCOLS[usize::from(k) % 4]);
        let s = open_streams(&c.conn).await?;
        run_task(client, task, s).await.map_err(|e| format!("task {k}: {e}"))?;
    }
    let resumed = c.resumed;
    c.finish().await;
    Ok(format!("resumed={resumed}"))
}

/// g3proxy's pool start: `min_idle_count` (32) connections at once, then a task on each, all
/// at the same time, then every connection retired.
async fn pool_start(client: &Client) -> Result<String> {
    let (conns, resumed) = client.connect_many(32).await?;
    let runs = conns.iter().map(|c| async move {
        let s = open_streams(&c.conn).await?;
        run_task(client, Task::new(client, 0, "http_2"), s).await
    });
    let failed: Vec<String> = join_all(runs).await.into_iter().filter_map(|r| r.err()).collect();
    join_all(conns.into_iter().map(|c| c.finish())).await;
    match failed.first() {
        None => Ok(format!("{resumed} of 32 resumed")),
        Some(e) => Err(format!("{} of 32 tasks failed; the first: {e}", failed.len())),
    }
}

/// 16 tasks at once: streams opened in task order (as g3proxy's connection loop does), then
/// all relayed together, so headers arrive interleaved and south streams out of order.
async fn sixteen_at_once(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let mut opened = Vec::new();
    for k in 0..TASKS_PER_CONNECTION {
        opened.push((
            Task::new(client, k, PROTOCOLS[usize::from(k) % 4]),
            open_streams(&c.conn).await?,
        ));
    }
    let mut failures = Vec::new();
    let runs = opened
        .into_iter()
        .map(|(task, s)| async { (task.match_id, run_task(client, task, s).await) });
    for (k, outcome) in join_all(runs).await {
        if let Err(e) = outcome {
            failures.push(format!("task {k}: {e}"));
        }
    }
    c.finish().await;
    match failures.len() {
        0 => Ok(String::new()),
        n => Err(format!("{n} of 16 failed: {}", failures[..n.min(3)].join("; "))),
    }
}

/// Polls the futures together on this task (no spawning: the client is single-threaded).
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().map(|o| o.unwrap()).collect()
}

/// SMTP: the remote's greeting goes out on south while north stays silent, and must come back;
/// then a short dialogue; then the remote ends first: FIN north and south, wait for south to end,
/// drop north (g3proxy's `relay_after_remote_closed`).
async fn remote_speaks_first(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let task = Task::new(client, 0, "smtp");
    let mut s = open_streams(&c.conn).await?;
    request_continue(client, &mut s, &task, &[]).await?;
    let dialogue: [(bool, &[u8]); 5] = [
        (false, b"220 mail.example.com ESMTP ready\r\n"),
        (true, b"EHLO client.example.org\r\n"),
        (false, b"250-mail.example.com\r\n250 SIZE 10240000\r\n"),
        (true, b"QUIT\r\n"),
        (false, b"221 2.0.0 bye\r\n"),
    ];
    for (from_client, line) in dialogue {
        let (send, recv, what) = if from_client {
            (&mut s.north_send, &mut s.north_recv, "north")
        } else {
            (&mut s.south_send, &mut s.south_recv, "south")
        };
        send.write_all(line).await.map_err(|e| format!("write {what}: {e}"))?;
        tokio::time::timeout(STEP_TIMEOUT, expect_echo(recv, line, what)).await.map_err(
            |_| {
                format!(
                    "{what} line not echoed within {STEP_TIMEOUT:?}: {}",
                    String::from_utf8_lossy(line).trim_end()
                )
            },
        )??;
    }
    queue_fin(&mut s.north_send);
    queue_fin(&mut s.south_send);
    expect_end(&mut s.south_recv, "south").await?;
    let _ = s.north_recv.stop(0u32.into());
    c.finish().await;
    Ok(String::new())
}

/// A websocket task: the summary payload after the header, then frames both ways.
async fn websocket(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let task = Task::new(client, 0, "websocket");
    let payload = task.payload.len();
    let mut s = open_streams(&c.conn).await?;
    request_continue(client, &mut s, &task, &[]).await?;
    let mut to_remote = vec![0x82, 0xfe, 0x01, 0x00]; // masked binary frame, 256 bytes
    to_remote.extend(client.bytes(4 + 256));
    let mut to_client = vec![0x81, 0x05];
    to_client.extend_from_slice(b"hello");
    relay(client, s, (&to_remote, 0), &to_client, false).await?;
    c.finish().await;
    Ok(format!("{payload}-byte payload"))
}

/// A few MiB each way on one task, both directions at once.
async fn large(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let task = Task::new(client, 0, "http_2");
    let mut s = open_streams(&c.conn).await?;
    request_continue(client, &mut s, &task, &[]).await?;
    let (to_remote, to_client) = (client.bytes(client.opts.bytes), client.bytes(client.opts.bytes));
    let start = Instant::now();
    relay(client, s, (&to_remote, 0), &to_client, false).await?;
    let seconds = start.elapsed().as_secs_f64();
    c.finish().await;
    let mib = client.opts.bytes as f64 / f64::from(1 << 20);
    Ok(format!(
        "{mib:.1} MiB each way in {:.0} ms ({:.0} MiB/s each way)",
        seconds * 1e3,
        mib / seconds
    ))
}

/// The largest north header g3proxy sends: its encoder holds 536 bytes, which a 253-byte host
/// name and a long user name fill exactly.
async fn largest_header(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let mut task = Task::new(client, 1, "http_2"); // IPv6 addresses
    let host = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
    task.upstream = format!("{host}:443");
    task.username = Some(String::new());
    task.username = Some("u".repeat(536 - task.north_header().len()));
    let size = task.north_header().len();
    let s = open_streams(&c.conn).await?;
    run_task(client, task, s).await?;
    c.finish().await;
    Ok(format!("{size} bytes"))
}

/// Tasks g3proxy gives up on, each followed by a task that must work: streams that end with
/// nothing on them (it could not encode the header), a task answered continue and dropped before
/// the south header (its client went away), and one dropped right after the south header. Each
/// drop is FIN on both sends and STOP_SENDING on both receives; the server must end them quietly.
async fn quiet_abort(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let conn = &c.conn;
    let next = |k: u16| async move {
        let s = open_streams(conn).await?;
        run_task(client, Task::new(client, k, "http_2"), s)
            .await
            .map_err(|e| format!("task {k}: {e}"))
    };
    drop(open_streams(&c.conn).await?); // match id 0: nothing written
    next(1).await?;
    let mut s = open_streams(&c.conn).await?;
    match request(client, &mut s, &Task::new(client, 2, "smtp")).await? {
        0 => drop(s),
        action => return Err(format!("task 2: answered action {action}")),
    }
    next(3).await?;
    let mut s = open_streams(&c.conn).await?;
    request_continue(client, &mut s, &Task::new(client, 4, "smtp"), b"EHLO").await?;
    drop(s);
    next(5).await?;
    c.finish().await;
    Ok(String::new())
}

/// A pooled connection left idle for `secs` (g3proxy keeps idle connections up to 300 s, with a
/// keep-alive PING every 10 s) must still serve a task.
async fn idle(client: &Client, secs: u64) -> Result<String> {
    let c = client.connect().await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    if let Some(e) = c.conn.close_reason() {
        return Err(format!("the connection died while idle: {e}"));
    }
    let s = open_streams(&c.conn).await?;
    run_task(client, Task::new(client, 0, "http_2"), s).await?;
    c.finish().await;
    Ok(String::new())
}

/// Every task answered with the expected action, then abandoned as g3proxy does after bypass or
/// block: FIN on both streams (south never written), receive sides dropped.
async fn answered(client: &Client, at_once: bool) -> Result<String> {
    let expect = client.opts.expect;
    let c = client.connect().await?;
    let mut opened = Vec::new();
    for k in 0..TASKS_PER_CONNECTION {
        let task = Task::new(client, k, PROTOCOLS[usize::from(k) % 4]);
        let mut s = open_streams(&c.conn).await?;
        if at_once {
            opened.push((task, s));
            continue;
        }
        let action = request(client, &mut s, &task).await.map_err(|e| format!("task {k}: {e}"))?;
        if !expect.matches(action) {
            return Err(format!("task {k}: answered action {action}, expected {expect:?}"));
        }
        drop(s); // abandoned: FIN on both (south never written), STOP_SENDING on both
    }
    let runs = opened
        .into_iter()
        .map(|(task, mut s)| async move { (task.match_id, request(client, &mut s, &task).await) });
    for (k, outcome) in join_all(runs).await {
        let action = outcome.map_err(|e| format!("task {k}: {e}"))?;
        if !expect.matches(action) {
            return Err(format!("task {k}: answered action {action}, expected {expect:?}"));
        }
    }
    // The connection must still be usable: a 17th request on it must be answered.
    let mut s = open_streams(&c.conn).await?;
    let action = request(client, &mut s, &Task::new(client, TASKS_PER_CONNECTION, "imap")).await?;
    if !expect.matches(action) {
        return Err(format!("task 16: answered action {action}"));
    }
    drop(s);
    c.finish().await;
    Ok(String::new())
}

/// Mutual TLS without a client certificate: the server must close the connection with a TLS
/// alert (a QUIC CRYPTO_ERROR, 0x100 + alert) before answering anything. In TLS 1.3 the client's
/// handshake completes first, so the refusal arrives on the first request.
async fn refused(client: &Client) -> Result<String> {
    let c = client.connect().await?;
    let mut s = open_streams(&c.conn).await?;
    if let Ok(action) = request(client, &mut s, &Task::new(client, 0, "http_2")).await {
        return Err(format!(
            "the server answered a task (action {action}) without a client certificate"
        ));
    }
    match c.conn.close_reason() {
        Some(quinn::ConnectionError::ConnectionClosed(close))
            if (0x100..0x200).contains(&u64::from(close.error_code)) =>
        {
            Ok(format!("closed with TLS alert {}", u64::from(close.error_code) & 0xff))
        }
        other => Err(format!("expected a close with a TLS alert, got {other:?}")),
    }
}

/// The server's certificate does not chain to --ca or does not name the address: this client
/// (g3proxy's check) must refuse the handshake with a certificate error.
async fn untrusted(client: &Client) -> Result<String> {
    match client.connect().await {
        Ok(_) => Err("the handshake succeeded".to_string()),
        Err(e) if e.contains("certificate") => Ok(e),
        Err(e) => Err(format!("failed, but not on the certificate: {e}")),
    }
}

async fn run(client: &Client) -> usize {
    let mut report = Report { failed: 0 };
    let server = client.opts.server;
    match client.opts.expect {
        Expect::Refused => {
            report.check(
                "mutual TLS: a client without a certificate is refused",
                refused(client).await,
            );
            return report.failed;
        }
        Expect::Untrusted => {
            report.check("an untrusted server certificate is refused", untrusted(client).await);
            return report.failed;
        }
        _ => {}
    }
    if let Some(secs) = client.opts.idle {
        let name = format!("a connection idle for {secs} s on keep-alives serves a task");
        report.check(&name, idle(client, secs).await);
        return report.failed;
    }
    let handshake = async {
        let c = client.connect().await?;
        let alpn = c
            .conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok());
        let alpn = alpn.and_then(|d| d.protocol).map(|p| String::from_utf8_lossy(&p).into_owned());
        let offered = &client.opts.alpn;
        let alpn = match alpn {
            None if offered.is_empty() => "no ALPN".to_owned(),
            // rustls refuses the handshake itself when it offered and nothing was selected.
            None => return Err(format!("ALPN {offered:?} offered and none selected")),
            Some(p) if offered.is_empty() => {
                return Err(format!("ALPN {p:?} selected though none was offered"))
            }
            Some(p) if !offered.contains(&p) => {
                return Err(format!("ALPN {p:?} selected, not one of the offered {offered:?}"))
            }
            Some(p) => format!("ALPN {p} selected"),
        };
        let name = client.opts.tls_name.clone().unwrap_or_else(|| format!("IP {}", server.ip()));
        c.finish().await;
        Ok(format!(
            "{name} verified, {alpn}, mutual TLS {}",
            if client.opts.cert.is_some() { "on" } else { "off" }
        ))
    };
    report.check("handshake: QUIC v1, TLS 1.3, server certificate", handshake.await);
    if client.opts.expect != Expect::Continue {
        let expect = format!("{:?}", client.opts.expect).to_lowercase();
        report.check(
            &format!("16 tasks in a row answered {expect}, abandoned quietly"),
            answered(client, false).await,
        );
        report.check(
            &format!("16 tasks at once answered {expect}, abandoned quietly"),
            answered(client, true).await,
        );
    } else {
        for n in 1..=client.opts.connections {
            report.check(
                &format!("connection {n}: 16 tasks in a row, closed \"finished\""),
                in_a_row(client, TASKS_PER_CONNECTION).await,
            );
        }
        report.check(
            "100 tasks in a row on one connection (200 streams: MAX_STREAMS raised)",
            in_a_row(client, 100).await,
        );
        report
            .check("pool start: 32 connections at once, a task on each", pool_start(client).await);
        report.check("16 tasks at once on one connection", sixteen_at_once(client).await);
        report.check(
            "smtp: the remote speaks first and ends first",
            remote_speaks_first(client).await,
        );
        report.check("websocket: summary payload, frames echoed", websocket(client).await);
        report.check("large transfer", large(client).await);
        report.check("a 536-byte north header", largest_header(client).await);
        report.check("abandoned tasks end quietly; the next task works", quiet_abort(client).await);
    }
    let resumption = async {
        let first = client.connect().await?;
        first.finish().await;
        let second = client.connect().await?;
        let resumed = second.resumed;
        second.finish().await;
        if resumed {
            Ok("the second connection resumed without a certificate".to_string())
        } else {
            Err("the server did not resume the TLS session (full handshake again)".to_string())
        }
    };
    report.check("session resumption on a new connection", resumption.await);
    report.failed
}

fn main() {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("detour-quinn-client: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let (tls, verifier) = match tls::config(&opts.ca, opts.cert.as_ref(), &opts.alpn) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("detour-quinn-client: {e}");
            std::process::exit(2);
        }
    };
    // xorshift needs a seed other than 0.
    let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos());
    let seed = opts.seed.unwrap_or(clock.unwrap_or(1) as u64 % 1_000_000_000).max(1);
    println!("detour-quinn-client: server {} expect {:?} seed {seed}", opts.server, opts.expect);
    let deadline = opts.deadline;
    let client = Client {
        opts,
        tls,
        verifier,
        rng: Cell::new(seed),
        connections: Cell::new(0),
        resumed: Cell::new(0),
        answered: Cell::new(0),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let failed = runtime.block_on(async { tokio::time::timeout(deadline, run(&client)).await });
    println!(
        "totals: connections={} resumed={} answered={}",
        client.connections.get(),
        client.resumed.get(),
        client.answered.get()
    );
    match failed {
        Err(_) => {
            println!("FAIL  deadline: not done within {deadline:?}");
            std::process::exit(1);
        }
        Ok(0) => println!("all checks passed"),
        Ok(n) => {
            println!("{n} check(s) failed");
            std::process::exit(1);
        }
    }
}
