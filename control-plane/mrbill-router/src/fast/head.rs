//! A client's request head as the fast path takes it: plain, or left to hyper.
//!
//! **Invariant:** the fast path takes only heads whose meaning no proxy can mistake: HTTP/1.1,
//! origin form, a path of RFC 3986 characters, at most one `Host` and one `Content-Length` (all
//! digits), no `Transfer-Encoding`, no `Expect`, no upgrade, and `Connection` naming nothing but
//! `keep-alive` / `close`. Anything else — a chunked body, a WebSocket handshake, a framing an
//! attacker could play one hop against the other with — goes to hyper, which answers it or
//! refuses it as it always has.

/// What the fast path needs of a plain request head (borrowed from the client's buffer).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plain<'b> {
    pub(super) method: &'b str,
    /// The path, without the query.
    pub(super) path: &'b str,
    pub(super) query: Option<&'b str>,
    pub(super) host: Option<&'b str>,
    /// The body's declared length (0 without one).
    pub(super) length: u64,
    /// The client asked to close the connection after the answer.
    pub(super) close: bool,
    /// It carries an `X-Forwarded-For` (believed only from a trusted proxy).
    pub(super) forwarded: bool,
    /// It carries a `traceparent` (its trace goes on through the router).
    pub(super) traced: bool,
}

/// The request's head if the fast path may take it.
pub(super) fn plain<'b>(req: &httparse::Request<'_, 'b>) -> Option<Plain<'b>> {
    if req.version != Some(1) {
        return None;
    }
    let method = req.method?;
    let target = req.path?;
    if method == "CONNECT" || !target.starts_with('/') || !target.bytes().all(in_target) {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut plain = Plain {
        method,
        path,
        query,
        host: None,
        length: 0,
        close: false,
        forwarded: false,
        traced: false,
    };
    let mut length = None;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            if plain.host.is_some() {
                return None;
            }
            plain.host = Some(std::str::from_utf8(header.value).ok()?);
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return None;
            }
            length = Some(digits(header.value)?);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in std::str::from_utf8(header.value).ok()?.split(',') {
                match token.trim() {
                    t if t.eq_ignore_ascii_case("close") => plain.close = true,
                    t if t.eq_ignore_ascii_case("keep-alive") => {}
                    _ => return None,
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return None;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            plain.forwarded = true;
        } else if name.eq_ignore_ascii_case("traceparent") {
            plain.traced = true;
        }
    }
    plain.length = length.unwrap_or(0);
    Some(plain)
}

/// A length of digits only (no sign, no spaces), at most 18 of them.
pub(super) fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// RFC 3986's characters of a path and query: unreserved, sub-delims, `:`, `@`, `/`, `?` and
/// percent-encodings. (A fragment, a space or anything outside ASCII is hyper's to judge.)
fn in_target(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Whether a client's header is the router's to drop before forwarding: hyper's path drops the
/// same ones (`proxy::DROPPED`: hop-by-hop headers and the ones only the router sets).
pub(super) fn dropped(name: &str) -> bool {
    crate::proxy::DROPPED
        .iter()
        .any(|n| n.as_str().len() == name.len() && n.as_str().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Option<Plain<'_>> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(head.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => plain(&req),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_requests_are_taken_with_what_the_proxy_needs() {
        let got = parse(
            "POST /t/acme/v1/pocs?x=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12\r\n\
             Connection: keep-alive, Close\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        );
        assert_eq!(
            got,
            Some(Plain {
                method: "POST",
                path: "/t/acme/v1/pocs",
                query: Some("x=1"),
                host: Some("a.test"),
                length: 12,
                close: true,
                forwarded: true,
                traced: false,
            })
        );
        let get = parse("GET /healthz HTTP/1.1\r\n\r\n").expect("plain");
        assert_eq!((get.length, get.close, get.host), (0, false, None));
    }

    #[test]
    fn anything_a_proxy_could_misread_is_left_to_hyper() {
        for head in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: keep-alive, x-secret\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        ] {
            assert_eq!(parse(head), None, "{head:?}");
        }
    }

    #[test]
    fn hop_by_hop_and_router_only_headers_are_dropped_and_nothing_else() {
        for name in [
            "Connection",
            "TE",
            "x-cell-id",
            "X-Forwarded-Prefix",
            "upgrade",
        ] {
            assert!(dropped(name), "{name}");
        }
        for name in [
            "accept",
            "authorization",
            "tee",
            "x-forwarded-proto",
            "host",
        ] {
            assert!(!dropped(name), "{name}");
        }
    }
}
