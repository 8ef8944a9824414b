//! Connecting to a destination named `HOST:PORT`: every address the name
//! resolves to is tried in turn, as `TcpStream::connect` does, but each
//! for at most the connect timeout (so a name whose N addresses all drop
//! packets takes N timeouts to fail). A name often resolves to `::1` or an
//! IPv6 address first while the ingester listens on IPv4 only; trying
//! only the first address would retry a refused one forever.

use std::{
    io,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Connect to the first address of `addr` that accepts. The error is the
/// last address's, naming it (each one before it is logged at debug), or
/// `NotFound` when the name has no address.
pub(crate) fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    connect_any(addr, addr.to_socket_addrs()?, timeout)
}

/// Try `targets`, the addresses of `name`, in order.
fn connect_any(
    name: &str,
    targets: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let mut last = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                tracing::debug!(%target, error = %err, "cannot connect to this address of the destination");
                last = Some(io::Error::new(err.kind(), format!("{target}: {err}")));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("no address for {name}"))
    }))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// `N` distinct addresses nothing listens on: ports the kernel handed
    /// out and took back (held together while chosen, so all differ).
    fn refusing<const N: usize>() -> [SocketAddr; N] {
        let held: Vec<TcpListener> = (0..N)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        std::array::from_fn(|i| held[i].local_addr().unwrap())
    }

    #[test]
    fn an_address_that_refuses_is_passed_over_for_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let [refused] = refusing();
        let stream = connect_any("test", [refused, listening], TIMEOUT).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), listening);
    }

    #[test]
    fn when_every_address_refuses_the_error_names_the_last() {
        let [first, last] = refusing();
        let err = connect_any("test", [first, last], TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains(&last.to_string()), "{err}");
    }

    #[test]
    fn no_address_is_not_found() {
        let err = connect_any("nowhere:1", [], TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nowhere:1"), "{err}");
    }

    #[test]
    fn a_destination_is_connected_by_its_name() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect(&format!("127.0.0.1:{port}"), TIMEOUT).unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        let err = connect("no-port-given", TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
