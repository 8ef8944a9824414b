//! The fault proxy's own tests: each mode, for new and open connections,
//! for every client and for one source IP.

use super::*;
use crate::{cluster_harness::wait_until, harness::DEADLINE};

/// An echo server on 127.0.0.1 whose threads end when it is dropped
/// and its clients have closed.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut back = conn.try_clone().unwrap();
                    let _ = std::io::copy(&mut conn, &mut back);
                });
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    let mut back = vec![0; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

/// Nothing has arrived to read now (without waiting for anything).
fn nothing_to_read(stream: &TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8];
    let read = (&*stream).read(&mut byte);
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "expected nothing to read, got {read:?}"
    );
    stream.set_nonblocking(false).unwrap();
}

/// The peer closed: end of stream or a reset.
fn closed(stream: &mut TcpStream) {
    let mut byte = [0u8];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        other => panic!("expected a closed connection, got {other:?}"),
    }
}

/// Wait until connecting to `addr` is refused. Not at once: a process
/// another test spawns holds a copy of every open socket between its
/// fork and its exec, the closed listener too, which accepts
/// meanwhile.
fn wait_refused(addr: &str) {
    wait_until(
        &format!("connecting to {addr} refused"),
        || match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
}

fn wait_stats(proxy: &FaultProxy, what: &str, pred: impl Fn(&ProxyStats) -> bool) {
    wait_until(what, || {
        let stats = proxy.stats();
        if pred(&stats) {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    })
}

#[test]
fn loopback_ips_are_distinct_and_not_the_default() {
    let ips: Vec<Ipv4Addr> = (0..10).map(|_| next_loopback_ip()).collect();
    for ip in &ips {
        let [a, b, c, d] = ip.octets();
        assert_eq!((a, b, c), (127, 0, 0));
        assert!((2..250).contains(&d), "{ip}");
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len());
}

#[test]
fn passes_and_delays_both_ways() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    assert!(proxy.addr().starts_with("127.0.0."));
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"hello");
    proxy.set_mode(Mode::Delay(Duration::from_millis(1)));
    round_trip(&mut stream, b"slow");
    proxy.set_mode(Mode::Pass);
    round_trip(&mut stream, b"again");
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.open), (1, 1));
    assert_eq!((stats.request_bytes, stats.reply_bytes), (14, 14));
}

#[test]
fn hold_queues_until_released_also_on_open_connections() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    let mut open = connect(&proxy);
    round_trip(&mut open, b"before");
    proxy.set_mode(Mode::Hold);
    open.write_all(b"held").unwrap();
    let mut new = connect(&proxy);
    new.write_all(b"queued").unwrap();
    wait_stats(&proxy, "both requests held", |s| s.held == 2);
    nothing_to_read(&open);
    nothing_to_read(&new);
    proxy.set_mode(Mode::Pass);
    let mut back = [0u8; 4];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held");
    let mut back = [0u8; 6];
    new.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"queued");
}

#[test]
fn held_replies_reach_the_target_first() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    proxy.set_modes(Mode::Pass, Mode::Hold);
    let mut stream = connect(&proxy);
    stream.write_all(b"request").unwrap();
    wait_stats(&proxy, "the reply held", |s| {
        s.request_bytes == 7 && s.held == 1
    });
    nothing_to_read(&stream);
    proxy.set_mode(Mode::Pass);
    let mut back = [0u8; 7];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"request");
}

#[test]
fn blackhole_discards_and_pass_resumes() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    let mut open = connect(&proxy);
    round_trip(&mut open, b"one");
    proxy.set_mode(Mode::Blackhole);
    open.write_all(b"lost").unwrap();
    let mut new = connect(&proxy);
    new.write_all(b"gone").unwrap();
    new.shutdown(Shutdown::Write).unwrap();
    wait_stats(&proxy, "8 bytes discarded", |s| s.discarded_bytes == 8);
    // Neither an answer nor a close: a hang.
    nothing_to_read(&open);
    nothing_to_read(&new);
    proxy.set_mode(Mode::Pass);
    round_trip(&mut open, b"two");
    // The held end of the half-closed one goes on now: it had nothing
    // for the target, so the proxy closes it.
    closed(&mut new);
}

#[test]
fn reset_and_refuse_close_open_connections() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    let mut open = connect(&proxy);
    round_trip(&mut open, b"x");
    proxy.set_mode(Mode::Reset);
    closed(&mut open);
    let mut reset = connect(&proxy);
    closed(&mut reset);

    proxy.set_mode(Mode::Pass);
    let mut open = connect(&proxy);
    round_trip(&mut open, b"y");
    proxy.set_mode(Mode::Refuse);
    closed(&mut open);
    wait_refused(&proxy.addr());

    proxy.set_mode(Mode::Pass);
    let mut again = connect(&proxy);
    round_trip(&mut again, b"z");
    wait_stats(&proxy, "the closed connections forgotten", |s| s.open == 1);
}

/// A connection to `addr` from source IP `ip`. Std cannot bind a TCP
/// socket before connecting it; tokio's socket can, and the stream is
/// used as a std one after.
fn connect_from(ip: Ipv4Addr, addr: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ip.into(), 0)).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        stream.into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

#[test]
fn a_rule_for_one_ip_cuts_only_its_clients() {
    let echo = Echo::start();
    let proxy = FaultProxy::to(&echo.addr.to_string());
    let (a, b) = (next_loopback_ip(), next_loopback_ip());
    let mut from_a = connect_from(a, &proxy.addr());
    let mut from_b = connect_from(b, &proxy.addr());
    round_trip(&mut from_a, b"a");
    round_trip(&mut from_b, b"b");

    // Reset for a: its open connection is closed, and so is a new one
    // at once; b's goes on.
    proxy.set_mode_for(a, Mode::Reset);
    closed(&mut from_a);
    let mut again = connect_from(a, &proxy.addr());
    closed(&mut again);
    round_trip(&mut from_b, b"still");

    // Refuse for one IP: the listener stays for the others, so a's
    // connections are closed when accepted.
    proxy.set_mode_for(a, Mode::Refuse);
    let mut refused = connect_from(a, &proxy.addr());
    closed(&mut refused);
    let mut new_b = connect_from(b, &proxy.addr());
    round_trip(&mut new_b, b"new");

    // Hold for a while the global mode passes; clearing the rule lets
    // the held bytes go on.
    proxy.set_mode_for(a, Mode::Hold);
    let mut held = connect_from(a, &proxy.addr());
    held.write_all(b"held").unwrap();
    // At least one chunk waits (a busy machine may read the 4 bytes
    // in two); what matters is checked next: nothing passes until the
    // rule is cleared, then every byte does.
    wait_stats(&proxy, "a's request held", |s| s.held >= 1);
    nothing_to_read(&held);
    round_trip(&mut from_b, b"passes");
    proxy.clear_mode_for(a);
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held");

    // A rule wins over the global mode.
    proxy.set_mode_for(b, Mode::Pass);
    proxy.set_mode(Mode::Reset);
    closed(&mut held);
    round_trip(&mut from_b, b"ruled");
    proxy.set_mode(Mode::Pass);
    proxy.clear_modes_for_all();
    let mut healed = connect_from(a, &proxy.addr());
    round_trip(&mut healed, b"healed");
}

#[test]
fn target_set_later_and_drop_closes_everything() {
    let echo = Echo::start();
    let proxy = FaultProxy::new();
    let mut early = connect(&proxy);
    early.write_all(b"nowhere").unwrap();
    closed(&mut early);
    proxy.set_target(&echo.addr.to_string());
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"there");
    proxy.set_mode(Mode::Hold);
    stream.write_all(b"held").unwrap();
    wait_stats(&proxy, "the request held", |s| s.held == 1);
    let addr = proxy.addr();
    drop(proxy);
    closed(&mut stream);
    wait_refused(&addr);
}
