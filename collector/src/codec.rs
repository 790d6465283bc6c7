//! A gRPC codec that leaves requests as raw bytes: a load generator sends messages it
//! encoded once, ahead of time. (The receiver reads its requests with
//! [`crate::grpc_stream`].)

use std::marker::PhantomData;

use bytes::Bytes;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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

pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
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
