//! Sockets: `ws://` URLs, connecting from a chosen source address, the raw
//! WebSocket upgrade, and a tiny HTTP/1.1 POST (to create the room).
//!
//! Every client socket binds to one of 127.0.0.2..127.0.0.N before
//! connecting: one source address only has ~28k ephemeral ports, and the
//! tool opens tens of thousands of connections to one server port.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A parsed `ws://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `host:port` as written (for the Host header).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WsUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| anyhow!("only ws:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("no host in {url}");
        }
        let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
        Ok(Self { authority, path: path.to_string() })
    }

    pub fn resolve(&self) -> Result<SocketAddr> {
        self.authority
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.authority))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("no IPv4 address for {}", self.authority))
    }

    /// `ws://` URL with another path.
    pub fn with_path(&self, path: &str) -> String {
        format!("ws://{}{}", self.authority, path)
    }
}

/// The source addresses 127.0.0.2 ..= 127.0.0.(n+1).
pub fn source_addrs(n: usize) -> Vec<Ipv4Addr> {
    (0..n.clamp(1, 250)).map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8)).collect()
}

/// Connects to `dst` from `src` (port chosen by the kernel).
pub async fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if dst.ip().is_loopback() {
        sock.bind(SocketAddr::new(src.into(), 0)).with_context(|| format!("bind {src}"))?;
    }
    let stream = sock.connect(dst).await.context("connect")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends the HTTP upgrade and reads the 101 response. Returns bytes that
/// arrived after the response headers (the first frames).
pub async fn ws_upgrade(stream: &mut TcpStream, url: &WsUrl) -> Result<Vec<u8>> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        url.path, url.authority
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(end) = memmem::find(&buf, b"\r\n\r\n") {
            let status = status_code(&buf[..end])?;
            if status != 101 {
                let head = String::from_utf8_lossy(&buf[..end.min(200)]).into_owned();
                bail!("upgrade refused: HTTP {status}: {}", head.lines().next().unwrap_or(""));
            }
            return Ok(buf.split_off(end + 4));
        }
        if buf.len() > 16 * 1024 {
            bail!("upgrade response too long");
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed during upgrade");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn status_code(head: &[u8]) -> Result<u16> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = std::str::from_utf8(line).context("status line")?;
    let code = line.split_whitespace().nth(1).ok_or_else(|| anyhow!("bad status line {line:?}"))?;
    Ok(code.parse()?)
}

/// POSTs a JSON body; returns the status code and the response body.
pub async fn http_post_json(
    addr: SocketAddr,
    authority: &str,
    path_and_query: &str,
    body: &str,
) -> Result<(u16, String)> {
    http_json("POST", addr, authority, path_and_query, body).await
}

/// One HTTP/1.1 request with a JSON body (may be empty); returns the status code
/// and the response body.
pub async fn http_json(
    method: &str,
    addr: SocketAddr,
    authority: &str,
    path_and_query: &str,
    body: &str,
) -> Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        let req = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let end = memmem::find(&resp, b"\r\n\r\n").ok_or_else(|| anyhow!("no HTTP response headers"))?;
        let code = status_code(&resp[..end])?;
        let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
        let raw = &resp[end + 4..];
        let body = if head.contains("transfer-encoding: chunked") { dechunk(raw) } else { raw.to_vec() };
        Ok::<_, anyhow::Error>((code, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.context("HTTP request timed out")?
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = memmem::find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        let u = WsUrl::parse("ws://127.0.0.1:8080/ws").ok();
        assert_eq!(u, Some(WsUrl { authority: "127.0.0.1:8080".into(), path: "/ws".into() }));
        let u = WsUrl::parse("ws://localhost").ok();
        assert_eq!(u, Some(WsUrl { authority: "localhost:80".into(), path: "/".into() }));
        assert!(WsUrl::parse("wss://x/ws").is_err());
    }

    #[test]
    fn dechunks_and_encodes() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), b"Wikipedia");
        assert_eq!(urlencode("a+b/c=*"), "a%2Bb%2Fc%3D%2A");
    }
}
