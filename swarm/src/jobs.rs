//! The job exchange's libp2p codec: one length-bounded message each way, as bytes. The
//! node decodes and verifies them (`streamgate_protocol::job`); the swarm only carries
//! them, refusing anything over [`MAX_JOB_MESSAGE_BYTES`] before it is buffered whole.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};
use streamgate_protocol::limits::MAX_JOB_MESSAGE_BYTES;
use tokio::sync::oneshot;

pub const JOBS_PROTOCOL: StreamProtocol =
    StreamProtocol::new(streamgate_protocol::job::JOB_PROTOCOL);

/// A job offer that reached this node, and where its reply goes.
#[derive(Debug)]
pub struct InboundJob {
    pub peer: libp2p::PeerId,
    pub offer: Vec<u8>,
    /// The encoded `JobReply`. Dropping it answers with a refusal.
    pub reply: oneshot::Sender<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct JobCodec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(MAX_JOB_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > MAX_JOB_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("job message over {MAX_JOB_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: Vec<u8>) -> io::Result<()> {
    io.write_all(&bytes).await?;
    io.close().await
}

impl request_response::Codec for JobCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io)
    }

    fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io)
    }

    fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, request)
    }

    fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, response)
    }
}
