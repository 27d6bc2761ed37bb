//! The wire protocol shared by the guest agent and the host client, without any I/O.
//!
//! Three layers, bottom up:
//! - [`frame`]: 4-byte big-endian length + one JSON object, bounded before allocating;
//! - [`message`]: handshake messages, request/response envelopes, events, the error-code set;
//! - [`handshake`]: the hello → welcome → auth → ok state machine for both ends.
//!
//! [`grant`] is the signed port grant a `forward` connection carries.
//!
//! [`io`] is the thin async edge that moves frames over any `AsyncRead + AsyncWrite` stream.

pub mod frame;
pub mod grant;
pub mod handshake;
pub mod io;
pub mod message;
pub mod ticket;

pub use frame::{Decoded, FrameCodec, FrameError, DEFAULT_MAX_FRAME};
pub use handshake::{AgentInfo, HandshakeError, KeyError, SharedKey, MIN_KEY_LEN};
pub use message::{ErrorCode, Event, Request, Response, Role, WireError};
