//! hyper answers one kind of bad request itself, before any handler runs: a request line
//! longer than it reads gets `414 URI Too Long` with an empty body. Every error berth
//! answers carries the JSON envelope (API.md), so connections are wrapped here and that
//! one answer is written as `414 uri_too_long` in the envelope instead.

use axum::serve::Listener;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The status line hyper writes for a request line it will not read.
const HYPER_TOO_LONG: &[u8] = b"HTTP/1.1 414 ";

const ENVELOPED_TOO_LONG: &str = concat!(
    "HTTP/1.1 414 URI Too Long\r\n",
    "connection: close\r\n",
    "content-type: application/json\r\n",
    "content-length: 94\r\n",
    "\r\n",
    r#"{"error":{"code":"uri_too_long","message":"the request's address is longer than berth reads"}}"#,
);

/// A listener whose connections answer hyper's own `414` in the JSON envelope.
pub struct EnvelopedListener<L>(pub L);

impl<L> Listener for EnvelopedListener<L>
where
    L: Listener,
    L::Io: Unpin,
{
    type Io = Enveloped<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, address) = self.0.accept().await;
        (Enveloped { inner: io, replacing: None }, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

pub struct Enveloped<T> {
    inner: T,
    /// How much of the enveloped answer is written, while it is being written.
    replacing: Option<usize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Enveloped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Enveloped<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() && buf.starts_with(HYPER_TOO_LONG) {
            this.replacing = Some(0);
        }
        let Some(written) = this.replacing.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        // hyper's answer (one buffer: this stream does not take vectored writes) is
        // swallowed whole once the enveloped one is out; the connection closes after it.
        let answer = ENVELOPED_TOO_LONG.as_bytes();
        while *written < answer.len() {
            *written += ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::ENVELOPED_TOO_LONG;

    #[test]
    fn the_enveloped_answer_says_its_own_length() {
        let (head, body) = ENVELOPED_TOO_LONG.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["error"]["code"], "uri_too_long");
    }
}

/// The peer of a connection accepted by an [`EnvelopedListener`], for handlers that keep
/// where a request came from (a browser sign-in).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub std::net::SocketAddr);

impl<'a, L> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, EnvelopedListener<L>>>
    for PeerAddress
where
    L: Listener<Addr = std::net::SocketAddr>,
    L::Io: Unpin,
{
    fn connect_info(stream: axum::serve::IncomingStream<'a, EnvelopedListener<L>>) -> PeerAddress {
        PeerAddress(*stream.remote_addr())
    }
}
