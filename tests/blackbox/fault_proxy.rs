//! A TCP fault proxy for the cluster tests: it sits in front of a node's
//! API (the node advertises the proxy's address) and passes, delays,
//! holds, black-holes, resets or refuses connections, switchable at run
//! time for new and open connections alike, for every client or for the
//! clients of one source IP (every node binds a loopback IP of its own, so
//! the IP names the node: cut coordinator A from a store while coordinator
//! B still reaches it). Std threads only; dropping the proxy ends every
//! thread.

use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::cluster_harness::{lock, next_loopback_ip};

/// What a [`FaultProxy`] does with connections and the bytes on them. A
/// switch applies to new connections and to open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward each chunk read after this long (a slow link). Switching
    /// away ends a delay under way.
    Delay(Duration),
    /// Forward nothing until switched to another mode; bytes queue (in the
    /// proxy and the sockets' buffers) and then go on in order.
    Hold,
    /// Read and discard; never answer (the peer sees a hang; a connection
    /// made now is accepted but never reaches the target).
    Blackhole,
    /// Accept and close at once; open connections are closed.
    Reset,
    /// Listen no more: connecting is refused; open connections are closed.
    /// Switching to another mode listens again on the same address.
    Refuse,
}

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to target.
    Requests,
    /// Target to client.
    Replies,
}

/// What a pump does with a chunk (or an end of stream) after asking the
/// mode.
enum Step {
    Forward,
    Discard,
    Close,
}

/// Counts of a [`FaultProxy`]'s work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted (also those closed at once).
    pub accepted: u64,
    /// Connections open now.
    pub open: usize,
    /// Chunks waiting in [`Mode::Hold`] now (a held request shows here),
    /// and ends of streams kept back by a hold or a black hole.
    pub held: usize,
    /// Bytes forwarded to the target.
    pub request_bytes: u64,
    /// Bytes forwarded to clients.
    pub reply_bytes: u64,
    /// Bytes read and thrown away ([`Mode::Blackhole`]).
    pub discarded_bytes: u64,
}

/// One proxied connection's sockets (clones), to cut it from outside.
struct Conn {
    /// The client's IP, whose rule ([`FaultProxy::set_mode_for`]) applies.
    ip: IpAddr,
    sockets: Vec<TcpStream>,
    /// Pump threads still using it; at 0 it is forgotten.
    pumps: usize,
}

struct ProxyState {
    requests: Mode,
    replies: Mode,
    /// Rules per client IP, both ways; they override the global modes.
    per_ip: HashMap<IpAddr, Mode>,
    target: Option<String>,
    closing: bool,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    held: usize,
}

impl ProxyState {
    /// The mode of the bytes going `way` on a connection from `ip`: its
    /// IP's rule if there is one, else the global mode.
    fn mode(&self, way: Way, ip: IpAddr) -> Mode {
        if let Some(&mode) = self.per_ip.get(&ip) {
            return mode;
        }
        match way {
            Way::Requests => self.requests,
            Way::Replies => self.replies,
        }
    }

    /// Whether a connection from `ip` is to be closed (at accept, or now).
    fn closes(&self, ip: IpAddr) -> bool {
        matches!(self.mode(Way::Requests, ip), Mode::Reset | Mode::Refuse)
    }

    /// Close every open connection (their pumps then end).
    fn cut_all(&self) {
        for conn in self.conns.values() {
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Close the open connections whose mode closes them now.
    fn cut_closing(&self) {
        for conn in self.conns.values().filter(|c| self.closes(c.ip)) {
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

struct Shared {
    state: Mutex<ProxyState>,
    changed: Condvar,
    accepted: AtomicU64,
    request_bytes: AtomicU64,
    reply_bytes: AtomicU64,
    discarded_bytes: AtomicU64,
    /// Every pump thread; joined when the proxy is dropped.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, ProxyState> {
        lock(&self.state)
    }

    /// What to do with a chunk going `way` on a connection from `ip` (or,
    /// with `eof`, with the end of the stream): waits while the mode holds
    /// it, or for a delay.
    fn step(&self, way: Way, ip: IpAddr, eof: bool) -> Step {
        let mut state = self.state();
        loop {
            if state.closing {
                return Step::Close;
            }
            match state.mode(way, ip) {
                Mode::Pass => return Step::Forward,
                Mode::Reset | Mode::Refuse => return Step::Close,
                // An end passed on would be an answer (a close): a black
                // hole keeps it, like a hold.
                Mode::Blackhole if !eof => return Step::Discard,
                Mode::Hold | Mode::Blackhole => {
                    state.held += 1;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    state.held -= 1;
                }
                Mode::Delay(delay) => {
                    // The pace of a slow link, not a wait for anything; a
                    // switch of mode ends it.
                    let (after, waited) = self
                        .changed
                        .wait_timeout_while(state, delay, |s| {
                            !s.closing && s.mode(way, ip) == Mode::Delay(delay)
                        })
                        .unwrap_or_else(|p| p.into_inner());
                    state = after;
                    if waited.timed_out() {
                        return Step::Forward;
                    }
                }
            }
        }
    }

    /// Register a socket of connection `id` from client `ip`, and one more
    /// pump if `pump`. Callers hold the lock they checked `closing` (and
    /// the mode) under: a proxy being dropped, or a rule cutting this
    /// client, then either cuts this socket or was seen.
    fn register(state: &mut ProxyState, id: u64, ip: IpAddr, socket: &TcpStream, pump: bool) {
        let conn = state.conns.entry(id).or_insert(Conn {
            ip,
            sockets: Vec::new(),
            pumps: 0,
        });
        if let Ok(clone) = socket.try_clone() {
            conn.sockets.push(clone);
        }
        conn.pumps += usize::from(pump);
    }

    /// A pump of connection `id` ended; the last one closes its sockets.
    fn pump_done(&self, id: u64) {
        let mut state = self.state();
        let last = state.conns.get_mut(&id).is_some_and(|conn| {
            conn.pumps -= 1;
            conn.pumps == 0
        });
        if last && let Some(conn) = state.conns.remove(&id) {
            for socket in conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    fn spawn(self: &Arc<Self>, work: impl FnOnce(Arc<Shared>) + Send + 'static) {
        let shared = Arc::clone(self);
        let thread = std::thread::spawn(move || work(shared));
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

/// The listener's thread; stopped (and the listener closed) by
/// [`FaultProxy::stop_listening`].
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A TCP proxy on a loopback IP of its own whose behaviour a test switches
/// at run time ([`Mode`]). Connections reach the target only once a chunk
/// is to be forwarded. Std threads only; every thread ends when it is
/// dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<Acceptor>>,
}

impl Default for FaultProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultProxy {
    /// A proxy in [`Mode::Pass`] with no target yet: until
    /// [`set_target`](Self::set_target), connections are closed when they
    /// would reach it. Use this when the target needs the proxy's address
    /// to start (`--advertise-api`).
    pub fn new() -> FaultProxy {
        let listener = TcpListener::bind((next_loopback_ip(), 0)).expect("bind the proxy");
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(Shared {
                state: Mutex::new(ProxyState {
                    requests: Mode::Pass,
                    replies: Mode::Pass,
                    per_ip: HashMap::new(),
                    target: None,
                    closing: false,
                    conns: HashMap::new(),
                    next_conn: 0,
                    held: 0,
                }),
                changed: Condvar::new(),
                accepted: AtomicU64::new(0),
                request_bytes: AtomicU64::new(0),
                reply_bytes: AtomicU64::new(0),
                discarded_bytes: AtomicU64::new(0),
                threads: Mutex::new(Vec::new()),
            }),
            acceptor: Mutex::new(None),
        };
        proxy.listen(listener);
        proxy
    }

    /// A proxy in [`Mode::Pass`] to `target`.
    pub fn to(target: &str) -> FaultProxy {
        let proxy = Self::new();
        proxy.set_target(target);
        proxy
    }

    /// Its address, `127.0.0.x:port`, the same in every mode.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Where new connections go from now on (open ones keep theirs).
    pub fn set_target(&self, target: &str) {
        self.shared.state().target = Some(target.to_string());
    }

    /// The mode of both ways, for every client without a rule of its own
    /// ([`set_mode_for`](Self::set_mode_for)).
    pub fn set_mode(&self, mode: Mode) {
        {
            let mut state = self.shared.state();
            (state.requests, state.replies) = (mode, mode);
            state.cut_closing();
        }
        self.shared.changed.notify_all();
        match mode {
            Mode::Refuse => self.stop_listening(),
            _ => self.start_listening(),
        }
    }

    /// A mode for each way: e.g. requests [`Mode::Pass`] and replies
    /// [`Mode::Hold`] (the target does the work, the client hears nothing).
    /// [`Mode::Reset`] and [`Mode::Refuse`] are for both ways
    /// ([`set_mode`](Self::set_mode)).
    pub fn set_modes(&self, requests: Mode, replies: Mode) {
        for mode in [requests, replies] {
            assert!(
                !matches!(mode, Mode::Reset | Mode::Refuse),
                "{mode:?} applies to whole connections: use set_mode"
            );
        }
        {
            let mut state = self.shared.state();
            (state.requests, state.replies) = (requests, replies);
        }
        self.shared.changed.notify_all();
        self.start_listening();
    }

    /// A rule for the clients of source IP `ip` (a node's `--bind` IP):
    /// `mode`, both ways, on their new and open connections, whatever the
    /// global mode (except that a global [`Mode::Refuse`] closes the
    /// listener for every client). There is one listener for every
    /// client, so [`Mode::Refuse`] for one IP cannot refuse the connection:
    /// it closes it at once when accepted, as [`Mode::Reset`] does (the
    /// client sees its request fail before any answer).
    pub fn set_mode_for(&self, ip: Ipv4Addr, mode: Mode) {
        {
            let mut state = self.shared.state();
            state.per_ip.insert(IpAddr::V4(ip), mode);
            state.cut_closing();
        }
        self.shared.changed.notify_all();
    }

    /// Drop the rule of `ip`: its clients follow the global mode again.
    pub fn clear_mode_for(&self, ip: Ipv4Addr) {
        {
            let mut state = self.shared.state();
            state.per_ip.remove(&IpAddr::V4(ip));
            state.cut_closing();
        }
        self.shared.changed.notify_all();
    }

    /// Drop every rule per IP ([`clear_mode_for`](Self::clear_mode_for)
    /// each).
    pub fn clear_modes_for_all(&self) {
        {
            let mut state = self.shared.state();
            state.per_ip.clear();
            state.cut_closing();
        }
        self.shared.changed.notify_all();
    }

    /// Its counts now.
    pub fn stats(&self) -> ProxyStats {
        let state = self.shared.state();
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            open: state.conns.len(),
            held: state.held,
            request_bytes: self.shared.request_bytes.load(Ordering::SeqCst),
            reply_bytes: self.shared.reply_bytes.load(Ordering::SeqCst),
            discarded_bytes: self.shared.discarded_bytes.load(Ordering::SeqCst),
        }
    }

    /// Run the accept loop on `listener`.
    fn listen(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::clone(&self.shared);
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || accept_loop(listener, shared, stopped));
        *lock(&self.acceptor) = Some(Acceptor { stop, thread });
    }

    /// Listen again if [`Mode::Refuse`] closed the listener.
    fn start_listening(&self) {
        if lock(&self.acceptor).is_some() {
            return;
        }
        // The address is on an IP of our own, so it is normally free again.
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("listen again on the proxy's {}: {e}", self.addr));
        self.listen(listener);
    }

    /// Close the listener (connecting is refused from when this returns).
    fn stop_listening(&self) {
        let acceptor = lock(&self.acceptor).take();
        if let Some(acceptor) = acceptor {
            acceptor.stop.store(true, Ordering::SeqCst);
            // Wake the blocked accept; the loop then sees the stop.
            let _ = TcpStream::connect(self.addr);
            let _ = acceptor.thread.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            state.closing = true;
            state.cut_all();
        }
        self.shared.changed.notify_all();
        self.stop_listening();
        // Every pump ends now: its sockets are shut down and every wait
        // sees `closing`. Pumps start no new pumps once closing.
        loop {
            let threads = std::mem::take(&mut *lock(&self.shared.threads));
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(peer) = client.peer_addr() else {
            continue;
        };
        let ip = peer.ip();
        let id = {
            let mut state = shared.state();
            if state.closing || state.closes(ip) {
                continue;
            }
            state.next_conn += 1;
            let id = state.next_conn;
            Shared::register(&mut state, id, ip, &client, true);
            id
        };
        shared.spawn(move |shared| pump_requests(shared, id, ip, client));
    }
}

/// Client to target, on the connection's first thread: connects to the
/// target when the first chunk is to go there, and starts the replies'
/// pump then.
fn pump_requests(shared: Arc<Shared>, id: u64, ip: IpAddr, mut client: TcpStream) {
    let mut server: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // An error ends the stream like an end does.
        let n = client.read(&mut buf).unwrap_or_default();
        let step = shared.step(Way::Requests, ip, n == 0);
        match step {
            Step::Close => break,
            Step::Discard => {
                shared.discarded_bytes.fetch_add(n as u64, Ordering::SeqCst);
                continue;
            }
            Step::Forward if n == 0 => {
                // Pass the half-close on; the reply may still come.
                if let Some(server) = &server {
                    let _ = server.shutdown(Shutdown::Write);
                }
                shared.pump_done(id);
                return;
            }
            Step::Forward => {}
        }
        if server.is_none() {
            match connect_target(&shared, id, ip, &client) {
                Some(connected) => server = Some(connected),
                None => break,
            }
        }
        let Some(to) = server.as_mut() else { break };
        // Counted before the write: whoever sees the bytes' effect sees
        // them counted.
        shared.request_bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Closed by the mode, the proxy, or an error: close both ends.
    let _ = client.shutdown(Shutdown::Both);
    if let Some(server) = &server {
        let _ = server.shutdown(Shutdown::Both);
    }
    shared.pump_done(id);
}

/// Connect connection `id` to the target and start its replies' pump;
/// `None` if there is no target, it is unreachable, or the proxy closes.
fn connect_target(
    shared: &Arc<Shared>,
    id: u64,
    ip: IpAddr,
    client: &TcpStream,
) -> Option<TcpStream> {
    let target = shared.state().target.clone()?;
    let server = TcpStream::connect(&target).ok()?;
    let (from, to) = (server.try_clone().ok()?, client.try_clone().ok()?);
    {
        let mut state = shared.state();
        if state.closing || state.closes(ip) {
            return None;
        }
        Shared::register(&mut state, id, ip, &server, true);
    }
    shared.spawn(move |shared| pump_replies(shared, id, ip, from, to));
    Some(server)
}

/// Target to client.
fn pump_replies(
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
    mut server: TcpStream,
    mut client: TcpStream,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // An error ends the stream like an end does.
        let n = server.read(&mut buf).unwrap_or_default();
        match shared.step(Way::Replies, ip, n == 0) {
            Step::Close => break,
            Step::Discard => {
                shared.discarded_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
            Step::Forward if n == 0 => {
                let _ = client.shutdown(Shutdown::Write);
                shared.pump_done(id);
                return;
            }
            Step::Forward => {
                shared.reply_bytes.fetch_add(n as u64, Ordering::SeqCst);
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    shared.pump_done(id);
}

#[cfg(test)]
mod tests;
