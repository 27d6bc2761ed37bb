//! Decisions and the proof of a decision.
//!
//! Every check in this crate answers with a [`Decision`]: [`Decision::Allow`] or
//! [`Decision::Deny`] carrying a reason enum whose serialized form is a stable kebab-case code
//! (the codes are part of the CLI contract of issue 3 and never change meaning).
//!
//! Code that *acts* on a decision (hands out a token, forwards a connection, runs a command)
//! takes an [`Authorized<T>`] instead of a `T`. Its field is private and only functions of this
//! crate construct it, and only on the allow path, so skipping the check does not compile
//! (STYLE.md habit 5).
//!
//! ```text
//!   facts ──► decision fn ──► Decision::Allow ──► Authorized<T> ──► agent acts
//!                        └──► Decision::Deny(reason)   (nothing to act on)
//! ```

/// The answer of a policy check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Decision<R> {
    /// The action is allowed.
    Allow,
    /// The action is refused for the given reason.
    Deny(R),
}

impl<R> Decision<R> {
    /// True on [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The deny reason, if any.
    pub fn reason(&self) -> Option<&R> {
        match self {
            Decision::Allow => None,
            Decision::Deny(reason) => Some(reason),
        }
    }
}

/// A value the policy allowed the caller to act on.
///
/// Only this crate can construct one (the field is private and there is no public
/// constructor), and only after the check that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Authorized<T> {
    value: T,
}

impl<T> Authorized<T> {
    /// Wraps a value; called only on the allow path of a decision function.
    pub(crate) fn new(value: T) -> Self {
        Self { value }
    }

    /// The authorized value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Consumes the proof and returns the authorized value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Authorized<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A reason enum with a stable kebab-case code.
pub trait ReasonCode {
    /// The stable code, as printed by the CLI.
    fn code(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_accessors() {
        let allow: Decision<&str> = Decision::Allow;
        assert!(allow.is_allow());
        assert_eq!(allow.reason(), None);
        let deny = Decision::Deny("x");
        assert!(!deny.is_allow());
        assert_eq!(deny.reason(), Some(&"x"));
    }

    #[test]
    fn authorized_gives_back_its_value() {
        let a = Authorized::new(5_u16);
        assert_eq!(*a.get(), 5);
        assert_eq!(*a, 5);
        assert_eq!(a.into_inner(), 5);
    }
}
