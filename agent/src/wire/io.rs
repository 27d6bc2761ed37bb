//! The async edge of the wire: reading and writing whole frames on a byte stream.
//!
//! The reader reads the 4-byte header, lets [`FrameCodec::check_header`] refuse a bad length,
//! and only then allocates and reads the payload. A stream that ends exactly between frames is a
//! clean close (`Ok(None)`); one that ends inside a frame is [`FrameIoError::Truncated`].

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{parse_payload, FrameCodec, FrameError, HEADER_LEN};

/// Errors while moving frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameIoError {
    /// The frame itself is invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The stream failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// One frame read from the stream.
#[derive(Debug)]
pub struct RawFrame {
    /// The parsed object.
    pub object: Map<String, Value>,
    /// The payload bytes exactly as received.
    pub payload: Vec<u8>,
}

/// Reads one frame; `Ok(None)` on a clean end of stream before any byte of a new frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Option<RawFrame>, FrameIoError> {
    match read_payload(reader, codec).await? {
        None => Ok(None),
        Some(payload) => {
            let object = parse_payload(&payload)?;
            Ok(Some(RawFrame { object, payload }))
        }
    }
}

/// Reads one frame's payload bytes without parsing them, for a reader that parses them itself
/// (the handshake reads each frame straight into its message type, once). The length is
/// checked as by [`read_frame`]; whether the bytes are a JSON object is the caller's check.
pub async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Option<Vec<u8>>, FrameIoError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameIoError::Truncated)
            };
        }
        got += n;
    }
    let len = codec.check_header(header)?;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameIoError::Truncated,
            _ => FrameIoError::Io(e),
        })?;
    Ok(Some(payload))
}

/// Writes one frame from payload bytes and flushes.
pub async fn write_payload<W: AsyncWrite + Unpin>(
    writer: &mut W,
    codec: &FrameCodec,
    payload: &[u8],
) -> Result<(), FrameIoError> {
    let bytes = codec.encode_payload(payload)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

/// Writes one JSON object as a frame and flushes.
pub async fn write_object<W: AsyncWrite + Unpin>(
    writer: &mut W,
    codec: &FrameCodec,
    object: &Map<String, Value>,
) -> Result<(), FrameIoError> {
    let bytes = codec.encode(object)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn frames_cross_a_duplex_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let codec = FrameCodec::default();
        let obj = json!({"type": "ping", "id": 1, "pad": "x".repeat(300)})
            .as_object()
            .cloned()
            .unwrap();
        let w = {
            let obj = obj.clone();
            tokio::spawn(async move { write_object(&mut a, &codec, &obj).await.unwrap() })
        };
        let f = read_frame(&mut b, &codec).await.unwrap().unwrap();
        assert_eq!(f.object, obj);
        w.await.unwrap();
        // The writer is dropped: clean end of stream.
        assert!(read_frame(&mut b, &codec).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn end_of_stream_inside_a_frame_is_truncated() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0, 0, 0, 10, b'{'])
            .await
            .unwrap();
        drop(a);
        let err = read_frame(&mut b, &FrameCodec::default())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameIoError::Truncated), "{err}");
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0, 0])
            .await
            .unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, &FrameCodec::default()).await,
            Err(FrameIoError::Truncated)
        ));
    }

    #[tokio::test]
    async fn oversized_header_is_refused_without_reading_on() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0x7f, 0, 0, 0])
            .await
            .unwrap();
        let err = read_frame(&mut b, &FrameCodec::new(1024))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            FrameIoError::Frame(FrameError::TooLarge { .. })
        ));
    }
}
