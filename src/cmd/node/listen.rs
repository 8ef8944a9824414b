//! Listen addresses on the command line, and the ports file.
//!
//! A listener flag takes `HOST:PORT`, or a `PORT` alone, whose host is
//! `--bind`; port 0 lets the system pick, and `--ports-file` tells which
//! it picked. `fluent` and `syslog` also take `off`.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::Context;

/// A listener flag as written: where to listen, or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Do not listen.
    Off,
    /// A port on `--bind`.
    Port(u16),
    /// A full address.
    At(SocketAddr),
}

impl Listen {
    /// The address to bind, with `--bind` as the host of a bare port.
    pub fn resolve(&self, bind: IpAddr) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::Port(port) => Some(SocketAddr::new(bind, *port)),
            Listen::At(addr) => Some(*addr),
        }
    }
}

/// Parse a listener flag that cannot be turned off.
pub fn parse_listen(text: &str) -> Result<Listen, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Listen::Port(port));
    }
    text.parse().map(Listen::At).map_err(|e| {
        format!("{text:?} is not an address like 127.0.0.1:7650 or a port like 7650: {e}")
    })
}

/// Parse a listener flag that may be `off`.
pub fn parse_listen_or_off(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen::Off);
    }
    parse_listen(text).map_err(|e| format!("{e}; or off"))
}

/// Write the bound ports as a JSON object, atomically: a reader sees the
/// whole file or none.
pub fn write_ports_file(path: &Path, ports: &BTreeMap<&'static str, u16>) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(ports).expect("a map of ports serialises");
    std::fs::write(&tmp, format!("{text}\n"))
        .with_context(|| format!("write the ports file {} (--ports-file)", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("write the ports file {} (--ports-file)", path.display()))?;
    Ok(())
}

/// The address others use to reach `bound`: an unspecified host (0.0.0.0)
/// becomes loopback, which is right for one machine; `--advertise-*` says
/// otherwise.
pub fn reachable(bound: SocketAddr) -> SocketAddr {
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_takes_the_bind_address() {
        let bind: IpAddr = "127.0.0.11".parse().unwrap();
        let port = parse_listen("0").unwrap();
        assert_eq!(port.resolve(bind), Some("127.0.0.11:0".parse().unwrap()));
        let at = parse_listen("10.0.0.1:7650").unwrap();
        assert_eq!(at.resolve(bind), Some("10.0.0.1:7650".parse().unwrap()));
        assert_eq!(parse_listen_or_off("off").unwrap().resolve(bind), None);
        assert!(parse_listen("off").is_err());
        assert!(parse_listen("nowhere:x").unwrap_err().contains("nowhere:x"));
    }
}
