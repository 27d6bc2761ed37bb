//! A long-running request ([`Job`]): its own deadline instead of the agent's `request_timeout`,
//! and its work, polled on a task of the connection that asked so the connection keeps serving
//! other requests. The lifecycle service builds them; the dispatcher hands them to the server.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::wire::WireError;

/// A long-running request: how long it may take and the work.
pub struct Job {
    /// How long the work may take.
    pub(crate) deadline: Duration,
    /// The work.
    pub work: Pin<Box<dyn Future<Output = Result<Value, WireError>> + Send>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job with a deadline.
    pub(crate) fn new(
        deadline: Duration,
        work: impl Future<Output = Result<Value, WireError>> + Send + 'static,
    ) -> Self {
        Self {
            deadline,
            work: Box::pin(work),
        }
    }

    /// A job whose result is already known (a field error).
    pub(crate) fn ready(result: Result<Value, WireError>) -> Self {
        Self::new(Duration::from_secs(1), std::future::ready(result))
    }
}
