//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong, each with a message meant for a person.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A topic name outside `1..=max_topic_len` bytes.
    InvalidTopic {
        /// Its length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// All 16,777,216 topic ids are in use.
    TooManyTopics,
    /// An argument other than a topic is out of range.
    InvalidArgument(String),
    /// A configuration key is unknown or its value is invalid.
    Config {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A socket or file operation failed.
    Io(std::io::Error),
    /// The node was closed.
    Closed,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTopic { len: 0, max } => write!(f, "topic is empty; topics are 1 to {max} bytes"),
            Error::InvalidTopic { len, max } => {
                write!(f, "topic is {len} bytes; the limit (max_topic_len) is {max} bytes")
            }
            Error::TooManyTopics => write!(f, "too many topics: all {} topic ids are in use", crate::MAX_TOPICS),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Config { key, message } => write!(f, "config key {key:?}: {message}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Closed => write!(f, "the node is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
