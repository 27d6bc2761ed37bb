//! Frame codec: the byte layer of the control channel.
//!
//! ```text
//! +----------------+------------------------------+
//! | length: u32 BE | payload: `length` bytes of    |
//! |                | UTF-8 JSON, one object        |
//! +----------------+------------------------------+
//! ```
//!
//! The decoder is sans-I/O: it looks at whatever bytes have arrived and answers either
//! "need this many more bytes" or "here is one frame, it used this many bytes". The length is
//! checked against the configured maximum *before* anything is allocated, so a peer that announces
//! a 4 GiB frame costs us four bytes of reading. A zero-length frame is an error (there is no
//! empty JSON object of zero bytes). The decoder never panics on any input; `fuzz/fuzz_targets/frame.rs`
//! checks that.

use serde_json::{Map, Value};

/// Default maximum payload size of one frame: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Everything that can be wrong with a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced zero bytes.
    #[error("zero-length frame")]
    Empty,
    /// The length prefix announced more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The payload is not valid JSON.
    #[error("frame payload is not valid JSON: {reason}")]
    InvalidJson {
        /// What the JSON parser reported (position, not content).
        reason: String,
    },
    /// The payload is JSON but not an object.
    #[error("frame payload is JSON but not an object")]
    NotAnObject,
}

/// What the decoder found at the start of the input.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Not enough bytes yet; at least this many more are needed.
    NeedMore(usize),
    /// One complete frame.
    Frame {
        /// The frame's JSON object.
        object: Map<String, Value>,
        /// Its raw payload bytes (the handshake authenticates these exact bytes).
        payload: Vec<u8>,
        /// How many input bytes the frame used (header included).
        consumed: usize,
    },
}

/// Stateless frame decoder with a maximum payload size.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec that accepts payloads of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Self { max: max.max(1) }
    }

    /// The configured maximum payload size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Checks a length prefix: the payload length it announces, or why it is refused.
    pub fn check_header(&self, header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
        // u32 always fits in usize on the 32/64-bit targets we build for.
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        Ok(len)
    }

    /// Decodes the first frame of `input`, if it is complete.
    pub fn decode(&self, input: &[u8]) -> Result<Decoded, FrameError> {
        let Some(header) = input.get(..HEADER_LEN) else {
            return Ok(Decoded::NeedMore(HEADER_LEN - input.len()));
        };
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(header);
        let len = self.check_header(h)?;
        let total = HEADER_LEN + len;
        let Some(payload) = input.get(HEADER_LEN..total) else {
            return Ok(Decoded::NeedMore(total - input.len()));
        };
        let object = parse_payload(payload)?;
        Ok(Decoded::Frame {
            object,
            payload: payload.to_vec(),
            consumed: total,
        })
    }

    /// Encodes one JSON object as a frame; refuses objects larger than the maximum.
    pub fn encode(&self, object: &Map<String, Value>) -> Result<Vec<u8>, FrameError> {
        let payload = serde_json::to_vec(object).map_err(|e| FrameError::InvalidJson {
            reason: e.to_string(),
        })?;
        self.encode_payload(&payload)
    }

    /// Frames already-serialised payload bytes (which must be one JSON object).
    pub fn encode_payload(&self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        if payload.is_empty() {
            return Err(FrameError::Empty);
        }
        if payload.len() > self.max {
            return Err(FrameError::TooLarge {
                len: payload.len(),
                max: self.max,
            });
        }
        let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
            len: payload.len(),
            max: self.max,
        })?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// Parses a payload as one JSON object.
pub fn parse_payload(payload: &[u8]) -> Result<Map<String, Value>, FrameError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError::NotAnObject),
        // serde_json's message names line/column, never echoes the input.
        Err(e) => Err(FrameError::InvalidJson {
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test helper takes objects"),
        }
    }

    #[test]
    fn round_trip() {
        let c = FrameCodec::default();
        let bytes = c.encode(&obj(json!({"type": "ping", "id": 1}))).unwrap();
        match c.decode(&bytes).unwrap() {
            Decoded::Frame {
                object, consumed, ..
            } => {
                assert_eq!(consumed, bytes.len());
                assert_eq!(object["type"], "ping");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn partial_input_needs_more_at_every_cut() {
        let c = FrameCodec::default();
        let bytes = c.encode(&obj(json!({"a": "bcdef"}))).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                c.decode(&bytes[..cut]).unwrap(),
                Decoded::NeedMore(if cut < 4 { 4 - cut } else { bytes.len() - cut })
            );
        }
    }

    #[test]
    fn two_frames_back_to_back_decode_one_at_a_time() {
        let c = FrameCodec::default();
        let mut bytes = c.encode(&obj(json!({"n": 1}))).unwrap();
        bytes.extend(c.encode(&obj(json!({"n": 2}))).unwrap());
        let Decoded::Frame {
            object, consumed, ..
        } = c.decode(&bytes).unwrap()
        else {
            panic!()
        };
        assert_eq!(object["n"], 1);
        let Decoded::Frame { object, .. } = c.decode(&bytes[consumed..]).unwrap() else {
            panic!()
        };
        assert_eq!(object["n"], 2);
    }

    #[test]
    fn zero_length_is_an_error() {
        assert_eq!(
            FrameCodec::default().decode(&[0, 0, 0, 0]),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        let c = FrameCodec::new(16);
        assert_eq!(
            c.decode(&[0, 0, 0, 17]),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        assert_eq!(
            FrameCodec::default().decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                max: DEFAULT_MAX_FRAME
            })
        );
        assert!(matches!(
            c.encode(&obj(json!({"k": "a long value here"}))),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn non_json_and_non_object_payloads_are_errors() {
        let c = FrameCodec::default();
        assert!(matches!(
            c.decode(&[0, 0, 0, 3, b'a', b'b', b'c']),
            Err(FrameError::InvalidJson { .. })
        ));
        assert_eq!(
            c.decode(&[0, 0, 0, 2, b'4', b'2']),
            Err(FrameError::NotAnObject)
        );
        assert!(matches!(
            c.decode(&[0, 0, 0, 2, 0xff, 0xfe]),
            Err(FrameError::InvalidJson { .. })
        ));
    }

    #[test]
    fn invalid_json_error_does_not_echo_the_payload() {
        let c = FrameCodec::default();
        let mut bytes = vec![0, 0, 0, 12];
        bytes.extend_from_slice(b"{\"s\":SECRET}");
        let err = c.decode(&bytes).unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target does the thorough job.
        let c = FrameCodec::new(64);
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 80) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push((x & 0xff) as u8);
            }
            let _ = c.decode(&buf);
        }
    }
}
