//! The errors of the inference path, defined once. Each carries its HTTP status and gRPC code, so
//! every protocol adapter answers the same failure the same way.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or mistyped request: HTTP 400, INVALID_ARGUMENT.
    InvalidArgument,
    /// Unknown model, version or label: HTTP 404, NOT_FOUND.
    NotFound,
    /// Request body over the limit: HTTP 413, RESOURCE_EXHAUSTED.
    PayloadTooLarge,
    /// Queue full: HTTP 429, RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// Deadline passed before the request ran: HTTP 504, DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// Model not ready or server shutting down: HTTP 503, UNAVAILABLE.
    Unavailable,
    /// A failure of the runtime on a valid request: HTTP 500, INTERNAL.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::ResourceExhausted => 429,
            ErrorKind::DeadlineExceeded => 504,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The gRPC status code number (`google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 3,
            ErrorKind::NotFound => 5,
            ErrorKind::PayloadTooLarge | ErrorKind::ResourceExhausted => 8,
            ErrorKind::DeadlineExceeded => 4,
            ErrorKind::Unavailable => 14,
            ErrorKind::Internal => 13,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl InferenceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        InferenceError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for InferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InferenceError {}

pub type InferenceResult<T> = Result<T, InferenceError>;
