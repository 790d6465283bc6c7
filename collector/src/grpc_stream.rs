//! Client-streaming gRPC requests read message by message straight from the HTTP/2 body.
//!
//! tonic's `Streaming` keeps a buffer per stream as large as the largest message it has
//! read, for as long as the stream is open. A collector has a stream open per proxy,
//! thousands of them, each idle between its proxy's flushes: those buffers were a large
//! part of its memory. Here a message takes no buffer while it arrives in one frame, and
//! one of its own size while it spans several; nothing is kept between messages.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::Status;
use tonic::codegen::{Body, StdError, http};

/// The gRPC message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

pub struct MessageStream<B> {
    body: B,
    /// Data received and not yet handed out, in order.
    chunks: VecDeque<Bytes>,
    buffered: usize,
    max_message: usize,
}

impl<B> MessageStream<B>
where
    B: Body + Unpin,
    B::Error: Into<StdError>,
{
    pub fn new(body: B, max_message: usize) -> Self {
        MessageStream {
            body,
            chunks: VecDeque::new(),
            buffered: 0,
            max_message,
        }
    }

    /// The next message; `None` once the client has ended the stream between messages.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(len) = self.next_len()?
                && self.buffered >= PREFIX + len
            {
                self.take(PREFIX);
                return Ok(Some(self.take(len)));
            }
            match self.body.frame().await {
                None if self.buffered == 0 => return Ok(None),
                None => {
                    return Err(Status::invalid_argument(
                        "the stream ended in the middle of a message",
                    ));
                }
                Some(Err(error)) => return Err(Status::from_error(error.into())),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        let data = data.copy_to_bytes(data.remaining());
                        if !data.is_empty() {
                            self.buffered += data.len();
                            self.chunks.push_back(data);
                        }
                    }
                }
            }
        }
    }

    /// The length of the next message, once its prefix is in.
    fn next_len(&self) -> Result<Option<usize>, Status> {
        if self.buffered < PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX];
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(PREFIX - filled);
            prefix[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == PREFIX {
                break;
            }
        }
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::unimplemented(
                    "compressed messages are not accepted: send them uncompressed",
                ));
            }
            flag => {
                return Err(Status::internal(format!(
                    "a message prefix with the compression flag {flag}"
                )));
            }
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max_message {
            return Err(Status::out_of_range(format!(
                "a message of {len} bytes is over the limit of {} bytes",
                self.max_message
            )));
        }
        Ok(Some(len))
    }

    /// The next `len` buffered bytes: a slice of the first chunk when it holds them all,
    /// else a copy into a buffer of exactly that size.
    fn take(&mut self, len: usize) -> Bytes {
        self.buffered -= len;
        if let Some(front) = self.chunks.front_mut()
            && front.len() >= len
        {
            let taken = front.split_to(len);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            return taken;
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(len - out.len());
            out.extend_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}

/// A successful unary response: the encoded message, then `grpc-status: 0` in trailers.
pub fn ok_response(message: &impl prost::Message) -> http::Response<tonic::body::Body> {
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(PREFIX + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    framed.extend_from_slice(&encoded);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(framed))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(
        chunks: Vec<Vec<u8>>,
    ) -> http_body_util::StreamBody<
        impl futures::Stream<Item = Result<http_body::Frame<Bytes>, std::io::Error>> + Unpin,
    > {
        http_body_util::StreamBody::new(futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(http_body::Frame::data(Bytes::from(c)))),
        ))
    }

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    async fn all(chunks: Vec<Vec<u8>>, max: usize) -> Result<Vec<Bytes>, Status> {
        let mut stream = MessageStream::new(body(chunks), max);
        let mut out = Vec::new();
        while let Some(message) = stream.message().await? {
            out.push(message);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn messages_come_out_whole_however_the_frames_cut_them() {
        let one = framed(b"first message");
        let two = framed(&[7u8; 40_000]);
        let three = framed(b"");
        let wire: Vec<u8> = [one, two, three].concat();
        let expected = vec![
            Bytes::from_static(b"first message"),
            Bytes::from(vec![7u8; 40_000]),
            Bytes::new(),
        ];
        for cut in [1, 2, 3, 5, 7, 16_384, wire.len()] {
            let chunks = wire.chunks(cut).map(<[u8]>::to_vec).collect();
            assert_eq!(all(chunks, 1 << 20).await.unwrap(), expected, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn bad_streams_get_their_own_errors() {
        let truncated = framed(b"half a message")[..8].to_vec();
        let error = all(vec![truncated], 1 << 20).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("middle of a message"));

        let mut compressed = framed(b"zipped");
        compressed[0] = 1;
        let error = all(vec![compressed], 1 << 20).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unimplemented);

        let error = all(vec![framed(&[0u8; 100])], 99).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::OutOfRange);
        assert!(error.message().contains("100 bytes"), "{}", error.message());
    }
}
