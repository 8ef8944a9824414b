//! Connecting to a destination named `HOST:PORT`: every address the name
//! resolves to is tried in turn, as `TcpStream::connect` does, but each
//! for at most the connect timeout. A name often resolves to `::1` or an
//! IPv6 address first while the ingester listens on IPv4 only; trying
//! only the first address would retry a refused one forever.

use std::{
    io,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Connect to the first address of `addr` that accepts; the error is the
/// last address's, naming it, or `NotFound` when the name has none.
pub(crate) fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    connect_any(addr.to_socket_addrs()?, timeout).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => io::Error::new(err.kind(), format!("no address for {addr}")),
        _ => err,
    })
}

fn connect_any(
    targets: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let mut last = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = Some(io::Error::new(err.kind(), format!("{target}: {err}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// An address nothing listens on: a port the kernel handed out and
    /// took back.
    fn refusing() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn an_address_that_refuses_is_passed_over_for_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let stream = connect_any([refusing(), listening], TIMEOUT).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), listening);
    }

    #[test]
    fn when_every_address_refuses_the_error_names_the_last() {
        let last = refusing();
        let err = connect_any([refusing(), last], TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains(&last.to_string()), "{err}");
    }

    #[test]
    fn a_name_without_addresses_is_not_found() {
        let err = connect_any([], TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
