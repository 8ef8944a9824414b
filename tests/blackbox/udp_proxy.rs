//! A UDP fault relay for the cluster tests: it sits in front of a node's
//! gossip socket (the node advertises the relay's address with
//! `--advertise-gossip`) and passes, drops or delays datagrams, for every
//! client or for the clients of one source IP, switchable at run time.
//!
//! A node answers a gossip datagram to the address it came from, so the
//! relay gives each client address an upstream socket of its own (on the
//! relay's IP, port 0): the target sees one peer per client and answers
//! it there, and the relay sends the answer on to that client from its
//! listening address. Every node binds a loopback IP of its own, so a
//! datagram's source IP names the node that sent it: a rule for that IP
//! cuts (or slows) one node's gossip to the target, and the target's
//! answers to it.
//!
//! Std threads only, and bounded: at most `max_flows` upstream sockets
//! (the least recently used one is closed to make room), one thread each,
//! and a queue of at most [`MAX_QUEUED`] delayed datagrams. Every thread
//! polls with a short read timeout and ends when the relay is dropped.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::cluster_harness::{lock, next_loopback_ip};

/// What a [`UdpFaultProxy`] does with datagrams, both ways: from clients
/// to the target and from the target back to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpMode {
    /// Relay every datagram at once.
    Pass,
    /// Discard every datagram (a partition: nothing arrives, nothing says
    /// so).
    Drop,
    /// Relay each datagram this long after it arrived (a slow link).
    /// Datagrams waiting when the mode changes follow the new mode: sent
    /// at once under [`UdpMode::Pass`], discarded under [`UdpMode::Drop`].
    Delay(Duration),
}

/// The default cap on upstream sockets (one per client address).
pub const DEFAULT_MAX_FLOWS: usize = 256;

/// The cap on datagrams waiting in a [`UdpMode::Delay`]; more are dropped.
pub const MAX_QUEUED: usize = 4096;

/// How often a thread blocked on a socket looks whether the relay is
/// being dropped (the sockets' read timeout).
const POLL: Duration = Duration::from_millis(50);

/// Counts of a [`UdpFaultProxy`]'s work, in datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpProxyStats {
    /// Received from clients on the listening socket.
    pub from_clients: u64,
    /// Sent to the target.
    pub to_target: u64,
    /// Received from the target (on the upstream sockets).
    pub from_target: u64,
    /// Sent back to clients.
    pub to_clients: u64,
    /// Discarded, either way: by [`UdpMode::Drop`], for want of a target,
    /// or with the delay queue full.
    pub dropped: u64,
    /// Waiting in a [`UdpMode::Delay`] now.
    pub queued: usize,
    /// Upstream sockets open now (one per client address).
    pub flows: usize,
    /// Upstream sockets closed to make room for a new client.
    pub evicted: u64,
}

/// Which way a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to target, on the client's upstream socket.
    ToTarget,
    /// Target to client, on the listening socket.
    ToClient(SocketAddr),
}

/// A datagram waiting in a delay.
struct Delayed {
    due: Instant,
    /// The client's IP, whose rule applies.
    ip: IpAddr,
    way: Way,
    socket: Arc<UdpSocket>,
    bytes: Vec<u8>,
}

/// One client address's upstream socket.
struct Flow {
    upstream: Arc<UdpSocket>,
    last_used: Instant,
    /// Set when evicted: its thread ends.
    closed: Arc<AtomicBool>,
}

struct State {
    global: UdpMode,
    /// Rules per client IP, both ways; they override the global mode.
    per_ip: HashMap<IpAddr, UdpMode>,
    target: Option<SocketAddr>,
    flows: HashMap<SocketAddr, Flow>,
    queue: Vec<Delayed>,
}

impl State {
    fn mode(&self, ip: IpAddr) -> UdpMode {
        self.per_ip.get(&ip).copied().unwrap_or(self.global)
    }
}

struct Shared {
    ip: Ipv4Addr,
    max_flows: usize,
    listen: Arc<UdpSocket>,
    state: Mutex<State>,
    /// Told of mode changes, new delayed datagrams and the drop.
    changed: Condvar,
    closing: AtomicBool,
    from_clients: AtomicU64,
    to_target: AtomicU64,
    from_target: AtomicU64,
    to_clients: AtomicU64,
    dropped: AtomicU64,
    evicted: AtomicU64,
    /// Every thread but the two the proxy holds; joined at the drop.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Send `bytes` going `way` (to the target now, if there is one).
    /// Errors (a full buffer, an ICMP from an earlier send) lose the
    /// datagram, as a network would.
    fn send(&self, way: Way, socket: &UdpSocket, target: Option<SocketAddr>, bytes: &[u8]) {
        let (to, counter) = match way {
            Way::ToTarget => match target {
                Some(target) => (target, &self.to_target),
                None => {
                    self.dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            Way::ToClient(client) => (client, &self.to_clients),
        };
        // Counted before the send: whoever sees its effect sees it counted.
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = socket.send_to(bytes, to);
    }

    /// Relay, drop or delay a datagram of client `ip` going `way` on
    /// `socket`, as the mode says.
    fn route(&self, way: Way, ip: IpAddr, socket: &Arc<UdpSocket>, bytes: &[u8]) {
        let mut state = self.state();
        match state.mode(ip) {
            UdpMode::Pass => {
                let target = state.target;
                drop(state);
                self.send(way, socket, target, bytes);
            }
            UdpMode::Drop => {
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
            UdpMode::Delay(_) if state.queue.len() >= MAX_QUEUED => {
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
            UdpMode::Delay(delay) => {
                state.queue.push(Delayed {
                    due: Instant::now() + delay,
                    ip,
                    way,
                    socket: Arc::clone(socket),
                    bytes: bytes.to_vec(),
                });
                drop(state);
                self.changed.notify_all();
            }
        }
    }

    /// The upstream socket of `client`, opened (with its thread) if it
    /// has none; `None` if it cannot be opened.
    fn flow(self: &Arc<Self>, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        let mut state = self.state();
        let now = Instant::now();
        if let Some(flow) = state.flows.get_mut(&client) {
            flow.last_used = now;
            return Some(Arc::clone(&flow.upstream));
        }
        if state.flows.len() >= self.max_flows {
            let oldest = state
                .flows
                .iter()
                .min_by_key(|(_, flow)| flow.last_used)
                .map(|(addr, _)| *addr);
            if let Some(flow) = oldest.and_then(|addr| state.flows.remove(&addr)) {
                flow.closed.store(true, Ordering::SeqCst);
                self.evicted.fetch_add(1, Ordering::SeqCst);
            }
        }
        let upstream = UdpSocket::bind((self.ip, 0)).ok()?;
        upstream.set_read_timeout(Some(POLL)).ok()?;
        let upstream = Arc::new(upstream);
        let closed = Arc::new(AtomicBool::new(false));
        state.flows.insert(
            client,
            Flow {
                upstream: Arc::clone(&upstream),
                last_used: now,
                closed: Arc::clone(&closed),
            },
        );
        drop(state);
        let shared = Arc::clone(self);
        let socket = Arc::clone(&upstream);
        let thread = std::thread::spawn(move || replies(shared, client, socket, closed));
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Some(upstream)
    }
}

/// Whether a socket error is the read timeout (look again) rather than a
/// datagram's.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Receive on `socket` until a datagram comes (`Some`) or the relay is
/// being dropped or `closed` is set (`None`).
fn receive(
    shared: &Shared,
    socket: &UdpSocket,
    closed: Option<&AtomicBool>,
    buf: &mut [u8],
) -> Option<(usize, SocketAddr)> {
    loop {
        if shared.closing() || closed.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return None;
        }
        match socket.recv_from(buf) {
            Ok(got) => return Some(got),
            Err(e) if timed_out(&e) => {}
            // E.g. an ICMP error of an earlier send: nothing to relay. A
            // socket that fails at once every time must not spin.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Clients to the target, on the listening socket's thread.
fn inbound(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let listen = Arc::clone(&shared.listen);
    while let Some((n, client)) = receive(&shared, &listen, None, &mut buf) {
        if shared.closing() {
            return;
        }
        shared.from_clients.fetch_add(1, Ordering::SeqCst);
        match shared.flow(client) {
            Some(upstream) => shared.route(Way::ToTarget, client.ip(), &upstream, &buf[..n]),
            None => {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The target to `client`, on its upstream socket's thread.
fn replies(
    shared: Arc<Shared>,
    client: SocketAddr,
    upstream: Arc<UdpSocket>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let listen = Arc::clone(&shared.listen);
    while let Some((n, _)) = receive(&shared, &upstream, Some(&closed), &mut buf) {
        shared.from_target.fetch_add(1, Ordering::SeqCst);
        shared.route(Way::ToClient(client), client.ip(), &listen, &buf[..n]);
    }
}

/// Sends delayed datagrams when they are due, or when their mode changed.
fn delayer(shared: Arc<Shared>) {
    let mut state = shared.state();
    loop {
        if shared.closing() {
            return;
        }
        let now = Instant::now();
        let queue = std::mem::take(&mut state.queue);
        let (go, stay): (Vec<Delayed>, Vec<Delayed>) =
            queue.into_iter().partition(|d| match state.mode(d.ip) {
                UdpMode::Delay(_) => d.due <= now,
                UdpMode::Pass | UdpMode::Drop => true,
            });
        state.queue = stay;
        if go.is_empty() {
            // Until the next one is due, or something changes.
            let next = state.queue.iter().map(|d| d.due).min();
            state = match next {
                Some(due) => {
                    let wait = due.saturating_duration_since(now);
                    shared
                        .changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
            };
            continue;
        }
        let decided: Vec<(bool, Delayed)> = go
            .into_iter()
            .map(|d| (state.mode(d.ip) != UdpMode::Drop, d))
            .collect();
        let target = state.target;
        drop(state);
        for (send, delayed) in decided {
            if send {
                shared.send(delayed.way, &delayed.socket, target, &delayed.bytes);
            } else {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
        state = shared.state();
    }
}

/// A UDP relay on a loopback IP of its own whose behaviour a test switches
/// at run time ([`UdpMode`]), globally or per client IP. Until it has a
/// target, datagrams from clients are dropped. Std threads only; every
/// thread ends when it is dropped.
pub struct UdpFaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Default for UdpFaultProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpFaultProxy {
    /// A relay in [`UdpMode::Pass`] with no target yet (set it with
    /// [`set_target`](Self::set_target)): use this when the target needs
    /// the relay's address to start (`--advertise-gossip`).
    pub fn new() -> UdpFaultProxy {
        Self::with_max_flows(DEFAULT_MAX_FLOWS)
    }

    /// A relay in [`UdpMode::Pass`] to `target`.
    pub fn to(target: &str) -> UdpFaultProxy {
        let proxy = Self::new();
        proxy.set_target(target);
        proxy
    }

    /// [`new`](Self::new) with at most `max` upstream sockets (at least 1).
    pub fn with_max_flows(max: usize) -> UdpFaultProxy {
        let ip = next_loopback_ip();
        let listen = UdpSocket::bind((ip, 0)).expect("bind the UDP proxy");
        listen
            .set_read_timeout(Some(POLL))
            .expect("a read timeout on the UDP proxy");
        let addr = listen.local_addr().unwrap();
        let shared = Arc::new(Shared {
            ip,
            max_flows: max.max(1),
            listen: Arc::new(listen),
            state: Mutex::new(State {
                global: UdpMode::Pass,
                per_ip: HashMap::new(),
                target: None,
                flows: HashMap::new(),
                queue: Vec::new(),
            }),
            changed: Condvar::new(),
            closing: AtomicBool::new(false),
            from_clients: AtomicU64::new(0),
            to_target: AtomicU64::new(0),
            from_target: AtomicU64::new(0),
            to_clients: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let threads = vec![
            std::thread::spawn({
                let shared = Arc::clone(&shared);
                move || inbound(shared)
            }),
            std::thread::spawn({
                let shared = Arc::clone(&shared);
                move || delayer(shared)
            }),
        ];
        UdpFaultProxy {
            addr,
            shared,
            threads,
        }
    }

    /// Its address, `127.0.0.x:port`, the same in every mode.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Its IP: the source IP of what it sends to the target.
    pub fn ip(&self) -> Ipv4Addr {
        self.shared.ip
    }

    /// Where datagrams go from now on (`ip:port`), also those of clients
    /// it relayed for before (e.g. after the target restarted on another
    /// port).
    pub fn set_target(&self, target: &str) {
        let target: SocketAddr = target
            .parse()
            .unwrap_or_else(|e| panic!("a UDP proxy target is ip:port, not {target:?}: {e}"));
        self.shared.state().target = Some(target);
    }

    fn change(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.shared.state());
        self.shared.changed.notify_all();
    }

    /// The mode of every client without a rule of its own
    /// ([`set_mode_for`](Self::set_mode_for)).
    pub fn set_mode(&self, mode: UdpMode) {
        self.change(|state| state.global = mode);
    }

    /// A rule for the clients of source IP `ip` (a node's `--bind` IP):
    /// `mode` for the datagrams they send and for the target's answers to
    /// them, whatever the global mode.
    pub fn set_mode_for(&self, ip: Ipv4Addr, mode: UdpMode) {
        self.change(|state| {
            state.per_ip.insert(IpAddr::V4(ip), mode);
        });
    }

    /// Drop the rule of `ip`: its clients follow the global mode again.
    pub fn clear_mode_for(&self, ip: Ipv4Addr) {
        self.change(|state| {
            state.per_ip.remove(&IpAddr::V4(ip));
        });
    }

    /// Drop every rule per IP.
    pub fn clear_modes_for_all(&self) {
        self.change(|state| state.per_ip.clear());
    }

    /// Its counts now.
    pub fn stats(&self) -> UdpProxyStats {
        let state = self.shared.state();
        let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
        UdpProxyStats {
            from_clients: count(&self.shared.from_clients),
            to_target: count(&self.shared.to_target),
            from_target: count(&self.shared.from_target),
            to_clients: count(&self.shared.to_clients),
            dropped: count(&self.shared.dropped),
            queued: state.queue.len(),
            flows: state.flows.len(),
            evicted: count(&self.shared.evicted),
        }
    }
}

impl Drop for UdpFaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Under the lock: the delayer either sees `closing` or waits
        // already, and then hears this.
        drop(self.shared.state());
        self.shared.changed.notify_all();
        // The socket threads see `closing` at their next read timeout.
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // Only the inbound thread starts flows, and it has ended.
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cluster_harness::wait_until, harness::DEADLINE};

    /// A UDP echo server on a loopback IP of its own; its thread ends when
    /// it is dropped.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let socket = UdpSocket::bind((next_loopback_ip(), 0)).unwrap();
            socket.set_read_timeout(Some(POLL)).unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stopped.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
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
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// A client socket on a loopback IP of its own.
    fn client() -> UdpSocket {
        let socket = UdpSocket::bind((next_loopback_ip(), 0)).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        socket
    }

    fn ip_of(socket: &UdpSocket) -> Ipv4Addr {
        match socket.local_addr().unwrap().ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => panic!("{ip} is not IPv4"),
        }
    }

    /// Receive one datagram; it must come from `from`.
    fn receive_from(socket: &UdpSocket, from: &str) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, sender) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(sender.to_string(), from);
        buf[..n].to_vec()
    }

    /// Send `bytes` through `proxy` and get them back.
    fn round_trip(socket: &UdpSocket, proxy: &UdpFaultProxy, bytes: &[u8]) {
        socket.send_to(bytes, proxy.addr()).unwrap();
        assert_eq!(receive_from(socket, &proxy.addr()), bytes);
    }

    /// Nothing has arrived to read now (without waiting for anything).
    fn nothing_to_read(socket: &UdpSocket) {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        let read = socket.recv_from(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "expected nothing to read, got {read:?}"
        );
        socket.set_nonblocking(false).unwrap();
    }

    fn wait_stats(proxy: &UdpFaultProxy, what: &str, pred: impl Fn(&UdpProxyStats) -> bool) {
        wait_until(what, || {
            let stats = proxy.stats();
            if pred(&stats) {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        });
    }

    #[test]
    fn passes_each_client_its_own_answers() {
        let echo = Echo::start();
        let proxy = UdpFaultProxy::to(&echo.addr.to_string());
        assert!(proxy.addr().starts_with("127.0.0."));
        let (a, b) = (client(), client());
        round_trip(&a, &proxy, b"from a");
        round_trip(&b, &proxy, b"from b");
        round_trip(&a, &proxy, b"again a");
        let stats = proxy.stats();
        assert_eq!(stats.flows, 2, "{stats:?}");
        assert_eq!(
            (
                stats.from_clients,
                stats.to_target,
                stats.from_target,
                stats.to_clients
            ),
            (3, 3, 3, 3)
        );
        assert_eq!(stats.dropped, 0);
    }

    #[test]
    fn the_target_sees_the_proxy_and_answers_go_back_through_it() {
        // A target that answers by hand: it sees the proxy's IP, and what it
        // sends to that address reaches the client as from the proxy.
        let target = client();
        let proxy = UdpFaultProxy::new();
        let a = client();
        a.send_to(b"lost", proxy.addr()).unwrap();
        wait_stats(&proxy, "a datagram dropped for want of a target", |s| {
            s.dropped == 1
        });
        proxy.set_target(&target.local_addr().unwrap().to_string());
        a.send_to(b"hello", proxy.addr()).unwrap();
        let mut buf = [0u8; 64];
        let (n, upstream) = target.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(upstream.ip(), IpAddr::V4(proxy.ip()));
        target.send_to(b"unasked", upstream).unwrap();
        assert_eq!(receive_from(&a, &proxy.addr()), b"unasked");
    }

    #[test]
    fn drop_discards_both_ways_and_pass_resumes() {
        let target = client();
        let proxy = UdpFaultProxy::to(&target.local_addr().unwrap().to_string());
        let a = client();
        a.send_to(b"first", proxy.addr()).unwrap();
        let mut buf = [0u8; 64];
        let (_, upstream) = target.recv_from(&mut buf).unwrap();

        proxy.set_mode(UdpMode::Drop);
        a.send_to(b"lost", proxy.addr()).unwrap();
        target.send_to(b"lost too", upstream).unwrap();
        wait_stats(&proxy, "both datagrams dropped", |s| s.dropped == 2);
        let stats = proxy.stats();
        assert_eq!((stats.to_target, stats.to_clients), (1, 0), "{stats:?}");
        nothing_to_read(&a);
        nothing_to_read(&target);

        proxy.set_mode(UdpMode::Pass);
        a.send_to(b"through", proxy.addr()).unwrap();
        let (n, _) = target.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"through");
        target.send_to(b"back", upstream).unwrap();
        assert_eq!(receive_from(&a, &proxy.addr()), b"back");
    }

    #[test]
    fn a_rule_for_one_ip_cuts_only_its_clients() {
        let echo = Echo::start();
        let proxy = UdpFaultProxy::to(&echo.addr.to_string());
        let (a, b) = (client(), client());
        round_trip(&a, &proxy, b"a");
        round_trip(&b, &proxy, b"b");

        proxy.set_mode_for(ip_of(&a), UdpMode::Drop);
        a.send_to(b"cut", proxy.addr()).unwrap();
        wait_stats(&proxy, "a's datagram dropped", |s| s.dropped == 1);
        round_trip(&b, &proxy, b"still through");
        nothing_to_read(&a);

        // The rule wins over the global mode, both ways round.
        proxy.set_mode(UdpMode::Drop);
        proxy.set_mode_for(ip_of(&b), UdpMode::Pass);
        round_trip(&b, &proxy, b"ruled through");
        proxy.set_mode(UdpMode::Pass);
        proxy.clear_mode_for(ip_of(&b));

        proxy.clear_mode_for(ip_of(&a));
        round_trip(&a, &proxy, b"healed");
        assert_eq!(proxy.stats().dropped, 1);
    }

    #[test]
    fn delay_queues_and_a_switch_of_mode_ends_it() {
        let echo = Echo::start();
        let proxy = UdpFaultProxy::to(&echo.addr.to_string());
        let a = client();
        proxy.set_mode(UdpMode::Delay(Duration::from_millis(1)));
        round_trip(&a, &proxy, b"slow");

        // A delay no test waits out: the datagram waits until the switch.
        proxy.set_mode(UdpMode::Delay(Duration::from_secs(3600)));
        a.send_to(b"parked", proxy.addr()).unwrap();
        wait_stats(&proxy, "the datagram queued", |s| s.queued == 1);
        nothing_to_read(&a);
        proxy.set_mode(UdpMode::Pass);
        assert_eq!(receive_from(&a, &proxy.addr()), b"parked");

        // Under a rule of a's it waits too, and Drop then discards it.
        proxy.set_mode_for(ip_of(&a), UdpMode::Delay(Duration::from_secs(3600)));
        a.send_to(b"doomed", proxy.addr()).unwrap();
        wait_stats(&proxy, "the datagram queued", |s| s.queued == 1);
        proxy.set_mode_for(ip_of(&a), UdpMode::Drop);
        wait_stats(&proxy, "the queued datagram dropped", |s| {
            s.queued == 0 && s.dropped == 1
        });
        proxy.clear_mode_for(ip_of(&a));
        round_trip(&a, &proxy, b"after");
    }

    #[test]
    fn upstream_sockets_are_capped_and_the_oldest_makes_room() {
        let echo = Echo::start();
        let proxy = UdpFaultProxy::with_max_flows(2);
        proxy.set_target(&echo.addr.to_string());
        let clients: Vec<UdpSocket> = (0..3).map(|_| client()).collect();
        for round in 0..2 {
            for (i, socket) in clients.iter().enumerate() {
                round_trip(socket, &proxy, format!("{round} {i}").as_bytes());
                assert!(proxy.stats().flows <= 2);
            }
        }
        let stats = proxy.stats();
        assert_eq!(stats.flows, 2, "{stats:?}");
        // Each new client evicted the least recently used one.
        assert_eq!(stats.evicted, 4, "{stats:?}");
    }

    #[test]
    fn dropping_the_proxy_ends_its_threads_and_frees_its_address() {
        let echo = Echo::start();
        let proxy = UdpFaultProxy::to(&echo.addr.to_string());
        let a = client();
        round_trip(&a, &proxy, b"one");
        proxy.set_mode(UdpMode::Delay(Duration::from_secs(3600)));
        a.send_to(b"parked", proxy.addr()).unwrap();
        wait_stats(&proxy, "the datagram queued", |s| s.queued == 1);
        let addr = proxy.addr();
        // Returns once every thread has ended (it joins them all), and its
        // sockets are closed: its address is free again. Not at once, maybe:
        // a process another test spawns holds a copy of every open socket
        // between its fork and its exec.
        drop(proxy);
        wait_until(&format!("{addr} free again"), || {
            UdpSocket::bind(&addr).map_err(|e| format!("{e}"))
        });
    }
}
