//! gRPC codecs that leave one side of a call as raw bytes: the receiver reads access-log
//! messages with [`crate::wire`] instead of a full decode, and a load generator sends
//! messages it encoded once, ahead of time.

use std::marker::PhantomData;

use bytes::{Buf, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Server side: requests arrive as bytes, responses are prost messages.
pub struct RawRequests<Response>(PhantomData<Response>);

impl<Response> Default for RawRequests<Response> {
    fn default() -> Self {
        RawRequests(PhantomData)
    }
}

impl<Response: prost::Message + Send + 'static> Codec for RawRequests<Response> {
    type Encode = Response;
    type Decode = Bytes;
    type Encoder = ProstEncoder<Response>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

/// Client side: requests are sent as already-encoded bytes, responses are decoded.
pub struct PreEncodedRequests<Response>(PhantomData<Response>);

impl<Response> Default for PreEncodedRequests<Response> {
    fn default() -> Self {
        PreEncodedRequests(PhantomData)
    }
}

impl<Response: prost::Message + Default + Send + 'static> Codec for PreEncodedRequests<Response> {
    type Encode = Bytes;
    type Decode = Response;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<Response>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

pub struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // The frame is contiguous in tonic's buffer, so this takes it without a copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

pub struct ProstEncoder<M>(PhantomData<M>);

impl<M: prost::Message> Encoder for ProstEncoder<M> {
    type Item = M;
    type Error = Status;

    fn encode(&mut self, item: M, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))
    }
}

pub struct ProstDecoder<M>(PhantomData<M>);

impl<M: prost::Message + Default> Decoder for ProstDecoder<M> {
    type Item = M;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<M>, Status> {
        M::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a response: {e}")))
    }
}
