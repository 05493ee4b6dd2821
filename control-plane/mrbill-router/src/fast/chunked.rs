//! Where a chunked body ends (RFC 9112 §7.1). The fast path passes a cell's chunked answer to
//! the client as it comes, byte for byte; this only follows the framing, so the router knows
//! when the answer is over and the connection can take the next one.

/// The framing did not follow RFC 9112 §7.1: the answer cannot be delimited.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// How far into a chunked body the bytes seen so far reach.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk's size (hex digits so far, their value).
    #[default]
    SizeStart,
    Size {
        digits: u8,
        size: u64,
    },
    /// After the size: extensions (or whitespace) up to the line's CR.
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, then an empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// At most this many hex digits in a size (a 64-bit length).
const MAX_DIGITS: u8 = 15;

impl Chunked {
    /// Follows `bytes`, the next ones of the body: `Some(n)` when the body ends after the first
    /// `n` of them, `None` when all of them are the body's and more is to come.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut at = 0;
        while at < bytes.len() {
            if let State::Data { left } = self.state {
                let take = left.min((bytes.len() - at) as u64);
                at += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data { left: left - take }
                };
                continue;
            }
            self.state = step(self.state, bytes[at])?;
            at += 1;
            if self.state == State::Done {
                return Ok(Some(at));
            }
        }
        Ok(None)
    }
}

fn step(state: State, byte: u8) -> Result<State, Malformed> {
    let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
    Ok(match (state, byte) {
        (State::SizeStart, b) => State::Size {
            digits: 1,
            size: hex(b).ok_or(Malformed)?,
        },
        (State::Size { digits, size }, b) if b.is_ascii_hexdigit() => {
            if digits >= MAX_DIGITS {
                return Err(Malformed);
            }
            State::Size {
                digits: digits + 1,
                size: size * 16 + hex(b).ok_or(Malformed)?,
            }
        }
        (State::Size { size, .. } | State::Extension { size }, b'\r') => State::SizeLf { size },
        (State::Size { size, .. } | State::Extension { size }, b';' | b' ' | b'\t') => {
            State::Extension { size }
        }
        (State::Extension { size }, b) if b != b'\n' => State::Extension { size },
        (State::SizeLf { size: 0 }, b'\n') => State::TrailerStart,
        (State::SizeLf { size }, b'\n') => State::Data { left: size },
        (State::DataCr, b'\r') => State::DataLf,
        (State::DataLf, b'\n') => State::SizeStart,
        (State::TrailerStart, b'\r') => State::EndLf,
        (State::TrailerStart | State::TrailerLine, b) if b != b'\r' && b != b'\n' => {
            State::TrailerLine
        }
        (State::TrailerLine, b'\r') => State::TrailerLf,
        (State::TrailerLf, b'\n') => State::TrailerStart,
        (State::EndLf, b'\n') => State::Done,
        _ => return Err(Malformed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `piece` bytes; where the body ends.
    fn end(body: &[u8], piece: usize) -> Result<Option<usize>, Malformed> {
        let mut chunked = Chunked::default();
        let mut seen = 0;
        for part in body.chunks(piece) {
            if let Some(n) = chunked.feed(part)? {
                return Ok(Some(seen + n));
            }
            seen += part.len();
        }
        Ok(None)
    }

    #[test]
    fn the_end_is_found_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n1a;name=v\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        for piece in 1..body.len() {
            assert_eq!(
                end(body, piece),
                Ok(Some(body.len() - 4)),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn trailers_belong_to_the_body() {
        let body = b"2\r\nok\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n";
        assert_eq!(end(body, 3), Ok(Some(body.len())));
    }

    #[test]
    fn an_unfinished_body_asks_for_more() {
        assert_eq!(end(b"5\r\nhel", 2), Ok(None));
        assert_eq!(end(b"0\r\n", 2), Ok(None));
    }

    #[test]
    fn broken_framing_is_refused() {
        for body in [
            &b"z\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"5\nhello\r\n",
            b"0\r\n\n",
            b"ffffffffffffffff\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                end(body, 1),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
