//! A dojo's WebSocket once the cell answered 101: bytes copied both ways unread, except that
//! the router follows the frame boundaries of what the cell sends. When the dojo's room moves
//! to another replica (the replica set changed), the router stops taking bytes from the old
//! replica at the next frame boundary and ends the client's socket with a close frame 1012
//! ("service restart": reconnect), as the replica itself does when a room is taken from it —
//! so the client reconnects at once, to the room's new replica, and resyncs.
//!
//! Frames from a server are not masked; a close frame may come between the fragments of a
//! message (RFC 6455 §5.4), so any boundary will do.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a frame already under way may take to finish once the room moved.
const FINISH_FRAME: Duration = Duration::from_secs(1);

/// Close 1012 with a reason, as dojo-service sends it.
const CLOSE_MOVED: &[u8] = b"\x88\x1d\x03\xf4room moved; reconnect there";

/// Where a byte stream of WebSocket frames is: inside a frame, or between two.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// The header read so far of the next frame.
    header: Vec<u8>,
    /// Bytes of the current frame's payload still to come.
    remaining: u64,
}

impl Frames {
    pub(crate) fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(payload) = payload_len(&self.header) {
                self.remaining = payload;
                self.header.clear();
            }
        }
    }

    pub(crate) fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.header.is_empty()
    }
}

/// The payload length once `header` holds a whole frame header.
fn payload_len(header: &[u8]) -> Option<u64> {
    let [_, second, rest @ ..] = header else {
        return None;
    };
    let masked = second & 0x80 != 0;
    let (extended, len) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let mask = if masked { 4 } else { 0 };
    if rest.len() < extended + mask {
        return None;
    }
    Some(len.unwrap_or_else(|| {
        rest[..extended]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }))
}

/// Copies a dojo socket both ways until either side ends, or until `moved` resolves: then
/// the cell's current frame is let through, the client gets close 1012, and both end.
/// Returns whether it ended because the room moved.
pub(crate) async fn dojo<C, S>(client: C, cell: S, moved: impl Future<Output = ()>) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_cell, mut to_cell) = tokio::io::split(cell);
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_cell).await;
        false
    };
    let down = async {
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 16 * 1024];
        tokio::pin!(moved);
        let mut finish_by = None;
        loop {
            if finish_by.is_some() && frames.at_boundary() {
                let _ = to_client.write_all(CLOSE_MOVED).await;
                let _ = to_client.shutdown().await;
                return true;
            }
            let read = match finish_by {
                // Reads only, never a write, are given up for the move (cancel-safe).
                None => tokio::select! {
                    biased;
                    () = &mut moved => {
                        finish_by = Some(tokio::time::Instant::now() + FINISH_FRAME);
                        continue;
                    }
                    read = from_cell.read(&mut buf) => read,
                },
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, from_cell.read(&mut buf)).await {
                        Ok(read) => read,
                        // The frame never finished: the client's socket just ends.
                        Err(_) => return true,
                    }
                }
            };
            let n = match read {
                Ok(0) | Err(_) => return finish_by.is_some(),
                Ok(n) => n,
            };
            frames.advance(&buf[..n]);
            if to_client.write_all(&buf[..n]).await.is_err() {
                return finish_by.is_some();
            }
        }
    };
    tokio::select! {
        moved = up => moved,
        moved = down => moved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: usize) -> Vec<u8> {
        let mut out = vec![0x82];
        match payload {
            0..=125 => out.push(payload as u8),
            126..=65535 => {
                out.push(126);
                out.extend((payload as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend((payload as u64).to_be_bytes());
            }
        }
        out.extend(std::iter::repeat_n(7u8, payload));
        out
    }

    #[test]
    fn boundaries_are_found_whatever_the_reads_cut() {
        let stream: Vec<u8> = [0, 5, 125, 126, 300, 70_000]
            .iter()
            .flat_map(|n| frame(*n))
            .collect();
        let ends: Vec<usize> = [0, 5, 125, 126, 300, 70_000]
            .iter()
            .scan(0, |at, n| {
                *at += frame(*n).len();
                Some(*at)
            })
            .collect();
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut frames = Frames::default();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                frames.advance(piece);
                at += piece.len();
                assert_eq!(
                    frames.at_boundary(),
                    ends.contains(&at),
                    "chunk {chunk} at {at}"
                );
            }
        }
    }

    #[test]
    fn the_close_frame_says_1012() {
        assert_eq!(CLOSE_MOVED[0], 0x88);
        assert_eq!(usize::from(CLOSE_MOVED[1]), CLOSE_MOVED.len() - 2);
        assert_eq!(u16::from_be_bytes([CLOSE_MOVED[2], CLOSE_MOVED[3]]), 1012);
        let mut frames = Frames::default();
        frames.advance(CLOSE_MOVED);
        assert!(frames.at_boundary());
    }
}
