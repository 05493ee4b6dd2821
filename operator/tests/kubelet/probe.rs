//! HTTP status checks from blocking code (probes, the bucket stand-in's CreateBucket).

/// A GET's status from a blocking context (the kubelet runs outside async code).
pub fn http_status(url: &str) -> std::io::Result<u16> {
    request("GET", url)
}

/// An empty PUT's status (S3's CreateBucket, unsigned: the emulator takes it).
pub fn http_put(url: &str) -> std::io::Result<u16> {
    request("PUT", url)
}

fn request(method: &str, url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not HTTP"))
}
