//! Fuzz the frame layer through the readers the agent and the host use (`wire::io`), over a
//! stream that delivers the input a few bytes at a time: any bytes must give frames, a clean
//! end, a truncation or a frame error, never a panic; a frame never exceeds the limit and is
//! always a JSON object; and the readers agree with the sans-I/O decoder (`FrameCodec::decode`)
//! frame by frame, and on where and why they stop.
//!
//! Input: a byte that sets how many bytes each read returns (1-16), then the stream.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use codespace_agent::wire::io::{read_frame, FrameIoError};
use codespace_agent::wire::{Decoded, FrameCodec};
use codespace_fuzz::runtime;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// A stream that returns at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    // A small maximum exercises the "too large" path as often as the others.
    for codec in [FrameCodec::new(64), FrameCodec::default()] {
        let mut reader = Trickle {
            data: stream,
            step: usize::from(step % 16) + 1,
        };
        let mut rest = stream;
        runtime().block_on(async {
            loop {
                let read = read_frame(&mut reader, &codec).await;
                let decoded = codec.decode(rest);
                match (read, decoded) {
                    (
                        Ok(Some(f)),
                        Ok(Decoded::Frame {
                            object,
                            payload,
                            consumed,
                        }),
                    ) => {
                        assert_eq!(f.object, object);
                        assert_eq!(f.payload, payload);
                        assert_eq!(consumed, 4 + payload.len());
                        assert!(!payload.is_empty() && payload.len() <= codec.max());
                        rest = &rest[consumed..];
                    }
                    (Ok(None), Ok(Decoded::NeedMore(4))) => {
                        assert!(rest.is_empty());
                        break;
                    }
                    (Err(FrameIoError::Truncated), Ok(Decoded::NeedMore(n))) => {
                        assert!(n > 0 && !rest.is_empty());
                        break;
                    }
                    (Err(FrameIoError::Frame(a)), Err(b)) => {
                        assert_eq!(a, b);
                        break;
                    }
                    (read, decoded) => panic!("reader {read:?} but decoder {decoded:?}"),
                }
            }
        });
    }
});
