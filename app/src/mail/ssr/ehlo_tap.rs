//! A plain connection that keeps what lettre reads while it greets and says EHLO. lettre keeps
//! only the extensions it uses from that reply, and PIPELINING is not among them; without this a
//! connection would need a second EHLO, one more round trip, to learn it.
//!
//! Plain connections only: lettre does implicit TLS inside its own connect, and after STARTTLS
//! the reply is read through TLS above this stream (and what the server said before TLS must be
//! forgotten, RFC 3207 section 4.2).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// The most a connection keeps: a greeting and an EHLO reply are a few hundred bytes.
const KEEP: usize = 16 * 1024;

/// What a [`Tapped`] stream has read, until it is taken.
#[derive(Clone, Debug)]
pub struct Seen(Arc<Mutex<Option<Vec<u8>>>>);

impl Seen {
    /// What was read so far; the stream keeps nothing after this.
    pub fn take(&self) -> Vec<u8> {
        self.0.lock().expect("tap lock").take().unwrap_or_default()
    }
}

/// A TCP stream whose reads are also kept in [`Seen`] until it is taken.
#[derive(Debug)]
pub struct Tapped {
    inner: TcpStream,
    seen: Seen,
}

impl Tapped {
    pub fn new(inner: TcpStream) -> (Self, Seen) {
        let seen = Seen(Arc::new(Mutex::new(Some(Vec::new()))));
        (Self { inner, seen: seen.clone() }, seen)
    }
}

/// Connects to the first of `addresses` that answers, each tried for at most `limit` (as
/// lettre's own connect does), with Nagle off: each write is a whole command or message.
pub async fn connect(addresses: &[SocketAddr], limit: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for address in addresses {
        match tokio::time::timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Ok(Err(err)) => last = err,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        }
    }
    Err(last)
}

impl AsyncRead for Tapped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Some(kept) = this.seen.0.lock().expect("tap lock").as_mut()
        {
            let read = &buf.filled()[before..];
            kept.extend_from_slice(&read[..read.len().min(KEEP.saturating_sub(kept.len()))]);
        }
        polled
    }
}

impl AsyncWrite for Tapped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for Tapped {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// The text lines of the EHLO reply in what a connection read before its first command of its
/// own: the greeting (220) comes first, then the reply (250), whose first line names the server.
pub fn ehlo_lines(seen: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(seen)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("250"))
        .map(|line| line.get(4..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::ehlo_lines;

    #[test]
    fn the_ehlo_reply_is_read_after_a_greeting_of_several_lines() {
        let seen = b"220-mail.example.com ESMTP\r\n220 no UCE\r\n250-mail.example.com\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 HELP\r\n";
        assert_eq!(ehlo_lines(seen).collect::<Vec<_>>(), ["mail.example.com", "SIZE 1000", "PIPELINING", "HELP"]);
    }

    #[test]
    fn a_reply_that_is_not_text_has_no_lines() {
        assert_eq!(ehlo_lines(b"220 x\r\n250-\xff\xfe\r\n250 PIPELINING\r\n").count(), 0);
        assert_eq!(ehlo_lines(b"220 only a greeting\r\n").count(), 0);
    }
}
