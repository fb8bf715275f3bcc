//! The crate's error type: setting up and running the listener. (What the gateway answers
//! clients is not an error of the server: it is the JSON body of a `4xx` / `5xx` answer.)

/// Everything that can go wrong in `order-fsm-http`, each variant with how to react.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The TLS material given to [`HttpEdge::with_tls`](crate::HttpEdge::with_tls) or
    /// [`HttpEdge::with_mutual_tls`](crate::HttpEdge::with_mutual_tls) is unusable: no
    /// certificate in the PEM, an unreadable key, a key that does not match the
    /// certificate, an invalid client CA. Permanent: fix the files.
    #[error("{what}: {reason}")]
    Tls {
        /// Which part: `TLS certificate`, `TLS key`, `TLS client CA`, ...
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The listener failed. Not retryable as such: bind a new listener and serve again.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpError {
    /// Whether trying the same call again may succeed: never for these errors (bad TLS
    /// material stays bad; a failed listener must be replaced).
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn tls(what: &'static str, reason: &dyn std::fmt::Display) -> Self {
        Self::Tls {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<HttpError> for order_fsm::Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Tls { .. } => Self::Config(error.to_string().into()),
            HttpError::Io(_) => Self::backend("http", error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_is_wrong_and_convert_into_the_core_error() {
        let tls = HttpError::tls("TLS key", &"no private key found");
        assert_eq!(tls.to_string(), "TLS key: no private key found");
        assert!(!tls.is_retryable());
        let core = order_fsm::Error::from(tls);
        assert!(matches!(core, order_fsm::Error::Config(_)), "{core:?}");
        assert!(!core.is_retryable());

        let io = HttpError::from(std::io::Error::other("too many open files"));
        assert!(!io.is_retryable());
        let core = order_fsm::Error::from(io);
        assert!(matches!(core, order_fsm::Error::Backend { .. }), "{core:?}");
    }
}
