//! The optional shared-key handshake (HELO, PING, PONG), both sides.
//!
//! When a listener has a shared key it speaks first:
//!
//! ```text
//! server → HELO  ["HELO", {"nonce": bin16, "auth": bin16 salt or "", "keepalive": true}]
//! client → PING  ["PING", client_hostname, shared_key_salt,
//!                 sha512_hex(shared_key_salt + client_hostname + nonce + shared_key),
//!                 username, sha512_hex(auth_salt + username + password) or ""]
//! server → PONG  ["PONG", true, "", server_hostname,
//!                 sha512_hex(shared_key_salt + server_hostname + nonce + shared_key)]
//!            or  ["PONG", false, reason, "", ""]   and the server closes
//! ```
//!
//! `+` is byte concatenation and `sha512_hex` is the lowercase hex SHA-512
//! (128 characters). The PONG digest reuses the client's salt and the
//! server's nonce, with the server's own hostname: a client holding the key
//! can check that the server holds it too. Every field is taken as bytes,
//! str or bin alike (Fluent Bit sends its random salt as a str).
//!
//! This module does no I/O and draws no random numbers: the caller supplies
//! the nonce and salts (16 random bytes each) and frames the messages with
//! [`frame_len`](crate::frame_len). On the server, a PING arrives through
//! [`decode_frame`](crate::decode_frame) as [`FrameInfo::handshake`](crate::FrameInfo::handshake).

use sha2::{Digest, Sha512};

use crate::FluentError;
use crate::msgpack::{
    Reader, Value, write_array_len, write_bin, write_bool, write_map_len, write_str,
};

/// A client's PING, as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingMessage {
    /// The client's `self_hostname`.
    pub hostname: Vec<u8>,
    /// The client's random salt.
    pub shared_key_salt: Vec<u8>,
    /// `sha512_hex(shared_key_salt + hostname + nonce + shared_key)`.
    pub shared_key_hexdigest: Vec<u8>,
    /// Empty unless the client authenticates as a user.
    pub username: Vec<u8>,
    /// `sha512_hex(auth_salt + username + password)`, or empty.
    pub password_digest: Vec<u8>,
}

impl PingMessage {
    /// Whether the client proved it holds `shared_key`, given the nonce the
    /// server sent in its HELO.
    pub fn verify_shared_key(&self, nonce: &[u8], shared_key: &[u8]) -> bool {
        let expected = sha512_hex(&[&self.shared_key_salt, &self.hostname, nonce, shared_key]);
        hex_eq(&self.shared_key_hexdigest, &expected)
    }

    /// Whether `password` is the password of `self.username`, given the
    /// `auth` salt the server sent in its HELO.
    pub fn verify_password(&self, auth_salt: &[u8], password: &[u8]) -> bool {
        let expected = sha512_hex(&[auth_salt, &self.username, password]);
        hex_eq(&self.password_digest, &expected)
    }
}

/// Lowercase hex SHA-512 of the concatenated parts.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut s = String::with_capacity(128);
    for b in digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Compares a received hex digest with ours, ignoring case, in time that
/// does not depend on where they differ.
fn hex_eq(received: &[u8], expected: &str) -> bool {
    let expected = expected.as_bytes();
    if received.len() != expected.len() {
        return false;
    }
    received
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b))
        == 0
}

/// Server: appends the HELO. `nonce` is fresh random bytes (16 is usual);
/// `auth_salt` is random bytes when users must authenticate (Fluentd always
/// sends one), or empty, which is sent as `""`.
pub fn encode_helo(nonce: &[u8], auth_salt: &[u8], keepalive: bool, out: &mut Vec<u8>) {
    write_array_len(out, 2);
    write_str(out, b"HELO");
    write_map_len(out, 3);
    write_str(out, b"nonce");
    write_bin(out, nonce);
    write_str(out, b"auth");
    if auth_salt.is_empty() {
        write_str(out, b"");
    } else {
        write_bin(out, auth_salt);
    }
    write_str(out, b"keepalive");
    write_bool(out, keepalive);
}

/// Server: appends the PONG for an accepted PING: the server's hostname and
/// the digest proving the server holds the key too.
pub fn encode_pong_ok(
    server_hostname: &str,
    ping: &PingMessage,
    nonce: &[u8],
    shared_key: &[u8],
    out: &mut Vec<u8>,
) {
    let digest = sha512_hex(&[
        &ping.shared_key_salt,
        server_hostname.as_bytes(),
        nonce,
        shared_key,
    ]);
    write_array_len(out, 5);
    write_str(out, b"PONG");
    write_bool(out, true);
    write_str(out, b"");
    write_str(out, server_hostname.as_bytes());
    write_str(out, digest.as_bytes());
}

/// Server: appends the PONG refusing a PING (then close the connection).
pub fn encode_pong_refused(reason: &str, out: &mut Vec<u8>) {
    write_array_len(out, 5);
    write_str(out, b"PONG");
    write_bool(out, false);
    write_str(out, reason.as_bytes());
    write_str(out, b"");
    write_str(out, b"");
}

/// A server's HELO, as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    /// The nonce to mix into the PING digest.
    pub nonce: Vec<u8>,
    /// The salt for the password digest; empty when the server sent `""`.
    pub auth_salt: Vec<u8>,
    /// Whether the server keeps the connection open after a frame.
    pub keepalive: bool,
}

/// A server's PONG, as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// Whether the server accepted the PING.
    pub auth_ok: bool,
    /// Why not, when it did not.
    pub reason: String,
    /// The server's hostname.
    pub server_hostname: Vec<u8>,
    /// `sha512_hex(shared_key_salt + server_hostname + nonce + shared_key)`.
    pub shared_key_hexdigest: Vec<u8>,
}

impl Pong {
    /// Whether the server accepted us and proved it holds `shared_key`.
    pub fn verify(&self, shared_key_salt: &[u8], nonce: &[u8], shared_key: &[u8]) -> bool {
        let expected = sha512_hex(&[shared_key_salt, &self.server_hostname, nonce, shared_key]);
        self.auth_ok && hex_eq(&self.shared_key_hexdigest, &expected)
    }
}

fn bad(what: &'static str, reason: &'static str) -> FluentError {
    FluentError::BadMessage { what, reason }
}

/// Reads the next value as bytes (str or bin).
fn bytes<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    reason: &'static str,
) -> Result<&'a [u8], FluentError> {
    match r.next()? {
        Value::Str(b) | Value::Bin(b) => Ok(b),
        _ => Err(bad(what, reason)),
    }
}

/// Reads `[<word>, ...]` and returns the array's length.
fn open<'a>(frame: &'a [u8], word: &'static str) -> Result<(Reader<'a>, u32), FluentError> {
    let mut r = Reader::new(frame, "the frame");
    let Value::Array(n) = r.next()? else {
        return Err(bad(word, "not an array"));
    };
    if n == 0 || r.next()?.bytes() != Some(word.as_bytes()) {
        return Err(bad(word, "first element is not the message name"));
    }
    Ok((r, n))
}

/// Client: parses a HELO frame.
pub fn decode_helo(frame: &[u8]) -> Result<Helo, FluentError> {
    let (mut r, n) = open(frame, "HELO")?;
    if n < 2 {
        return Err(bad("HELO", "no options map"));
    }
    let Value::Map(pairs) = r.next()? else {
        return Err(bad("HELO", "options is not a map"));
    };
    let mut helo = Helo {
        nonce: Vec::new(),
        auth_salt: Vec::new(),
        keepalive: true,
    };
    let mut nonce = false;
    for _ in 0..pairs {
        let key_start = r.pos();
        let key = r.next()?;
        match key.bytes() {
            Some(b"nonce") => {
                helo.nonce = bytes(&mut r, "HELO", "nonce is not bytes")?.to_vec();
                nonce = true;
            }
            Some(b"auth") => helo.auth_salt = bytes(&mut r, "HELO", "auth is not bytes")?.to_vec(),
            Some(b"keepalive") => helo.keepalive = r.next()? != Value::Bool(false),
            _ => {
                r.rewind(key_start);
                r.skip(2, 32)?;
                r.skip(2, 32)?;
            }
        }
    }
    if !nonce {
        return Err(bad("HELO", "no nonce"));
    }
    Ok(helo)
}

/// Client: appends the PING answering `helo`. `shared_key_salt` is fresh
/// random bytes (keep them to check the PONG); `user` is `(username,
/// password)` when the server asks for user authentication.
pub fn encode_ping(
    helo: &Helo,
    client_hostname: &str,
    shared_key_salt: &[u8],
    shared_key: &[u8],
    user: Option<(&str, &str)>,
    out: &mut Vec<u8>,
) {
    let host = client_hostname.as_bytes();
    let digest = sha512_hex(&[shared_key_salt, host, &helo.nonce, shared_key]);
    write_array_len(out, 6);
    write_str(out, b"PING");
    write_str(out, host);
    write_bin(out, shared_key_salt);
    write_str(out, digest.as_bytes());
    match user {
        Some((name, password)) if !helo.auth_salt.is_empty() => {
            let pass = sha512_hex(&[&helo.auth_salt, name.as_bytes(), password.as_bytes()]);
            write_str(out, name.as_bytes());
            write_str(out, pass.as_bytes());
        }
        _ => {
            write_str(out, b"");
            write_str(out, b"");
        }
    }
}

/// Client: parses a PONG frame.
pub fn decode_pong(frame: &[u8]) -> Result<Pong, FluentError> {
    let (mut r, n) = open(frame, "PONG")?;
    if n < 5 {
        return Err(bad("PONG", "fewer than 5 elements"));
    }
    let Value::Bool(auth_ok) = r.next()? else {
        return Err(bad("PONG", "auth result is not a bool"));
    };
    let reason = bytes(&mut r, "PONG", "reason is not a string")?;
    let reason = String::from_utf8_lossy(reason).into_owned();
    let server_hostname = bytes(&mut r, "PONG", "hostname is not a string")?.to_vec();
    let shared_key_hexdigest = bytes(&mut r, "PONG", "digest is not a string")?.to_vec();
    Ok(Pong {
        auth_ok,
        reason,
        server_hostname,
        shared_key_hexdigest,
    })
}

/// Server side of [`decode_frame`](crate::decode_frame): the five fields
/// after `"PING"`.
pub(crate) fn parse_ping(r: &mut Reader<'_>) -> Result<PingMessage, FluentError> {
    let mut field = |reason| bytes(r, "PING", reason).map(<[u8]>::to_vec);
    Ok(PingMessage {
        hostname: field("hostname is not a string")?,
        shared_key_salt: field("shared key salt is not bytes")?,
        shared_key_hexdigest: field("shared key digest is not a string")?,
        username: field("username is not a string")?,
        password_digest: field("password digest is not a string")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Scratch, decode_frame, frame_len};

    #[test]
    fn digest_is_salt_hostname_nonce_key_in_that_order() {
        // Computed independently: SHA-512 of the concatenated string.
        let by_hand = {
            let digest = Sha512::digest(b"SALTclient.exampleNONCEsecret");
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            sha512_hex(&[b"SALT", b"client.example", b"NONCE", b"secret"]),
            by_hand
        );
        assert_eq!(by_hand.len(), 128);
        // The SHA-512 of "abc" (FIPS 180-2 test vector), to pin the hash itself.
        assert_eq!(
            sha512_hex(&[b"a", b"bc"]),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn full_handshake_both_sides() {
        let nonce = [7u8; 16];
        let auth_salt = [9u8; 16];
        let client_salt = [3u8; 16];
        let key = b"shared-secret";

        let mut helo_frame = Vec::new();
        encode_helo(&nonce, &auth_salt, true, &mut helo_frame);
        assert_eq!(
            frame_len(&helo_frame, &Limits::default()),
            Ok(Some(helo_frame.len()))
        );
        let helo = decode_helo(&helo_frame).unwrap();
        assert_eq!(
            helo,
            Helo {
                nonce: nonce.to_vec(),
                auth_salt: auth_salt.to_vec(),
                keepalive: true
            }
        );

        let mut ping_frame = Vec::new();
        encode_ping(
            &helo,
            "client.example",
            &client_salt,
            key,
            Some(("alice", "pw")),
            &mut ping_frame,
        );
        let info = decode_frame(&ping_frame, &Limits::default(), &mut Scratch::new(), |_| {
            panic!("no events")
        })
        .unwrap();
        let ping = info.handshake.expect("a PING");
        assert_eq!(ping.hostname, b"client.example");
        assert_eq!(
            ping.shared_key_hexdigest,
            sha512_hex(&[&client_salt, b"client.example", &nonce, key]).into_bytes()
        );
        assert!(ping.verify_shared_key(&nonce, key));
        assert!(!ping.verify_shared_key(&nonce, b"wrong"));
        assert!(!ping.verify_shared_key(&[0; 16], key));
        assert!(ping.verify_password(&auth_salt, b"pw"));
        assert!(!ping.verify_password(&auth_salt, b"nope"));

        let mut pong_frame = Vec::new();
        encode_pong_ok("server.example", &ping, &nonce, key, &mut pong_frame);
        let pong = decode_pong(&pong_frame).unwrap();
        assert!(pong.auth_ok);
        assert_eq!(pong.server_hostname, b"server.example");
        assert_eq!(
            pong.shared_key_hexdigest,
            sha512_hex(&[&client_salt, b"server.example", &nonce, key]).into_bytes()
        );
        assert!(pong.verify(&client_salt, &nonce, key));
        assert!(!pong.verify(&client_salt, &nonce, b"wrong"));

        let mut refused = Vec::new();
        encode_pong_refused("shared_key mismatch", &mut refused);
        let pong = decode_pong(&refused).unwrap();
        assert!(!pong.auth_ok);
        assert_eq!(pong.reason, "shared_key mismatch");
        assert!(!pong.verify(&client_salt, &nonce, key));
    }

    #[test]
    fn ping_as_fluent_bit_sends_it() {
        // Fluent Bit: every field a str, the 16-byte salt raw inside a str,
        // uppercase digests accepted too.
        let salt = [0xffu8; 16];
        let nonce = b"0123456789abcdef";
        let digest = sha512_hex(&[&salt, b"fb", nonce, b"k"]).to_uppercase();
        let mut frame = vec![0x96];
        write_str(&mut frame, b"PING");
        write_str(&mut frame, b"fb");
        write_str(&mut frame, &salt);
        write_str(&mut frame, digest.as_bytes());
        write_str(&mut frame, b"");
        write_str(&mut frame, b"");
        let info = decode_frame(&frame, &Limits::default(), &mut Scratch::new(), |_| {}).unwrap();
        assert!(info.handshake.unwrap().verify_shared_key(nonce, b"k"));
    }

    #[test]
    fn helo_without_user_auth_and_bad_messages() {
        let mut frame = Vec::new();
        encode_helo(b"n", b"", false, &mut frame);
        let helo = decode_helo(&frame).unwrap();
        assert!(helo.auth_salt.is_empty() && !helo.keepalive);
        let mut ping = Vec::new();
        encode_ping(&helo, "h", b"s", b"k", Some(("u", "p")), &mut ping);
        let info = decode_frame(&ping, &Limits::default(), &mut Scratch::new(), |_| {}).unwrap();
        assert!(info.handshake.unwrap().password_digest.is_empty());

        assert!(decode_helo(&[0x92, 0xa4, b'P', b'O', b'N', b'G', 0x80]).is_err());
        assert!(decode_helo(&[0x92, 0xa4, b'H', b'E', b'L', b'O', 0x80]).is_err());
        assert!(decode_pong(&[0x91, 0xa4, b'P', b'O', b'N', b'G']).is_err());
    }
}
