//! The errors of every request path, defined once: each code carries its HTTP status, its gRPC
//! code and Google's status name, so the prediction adapters, gRPC and the management API answer
//! the same failure the same way.

use std::fmt;

/// `google.rpc.Code`, with the one HTTP-only case the prediction APIs need (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Malformed or mistyped request: HTTP 400, INVALID_ARGUMENT.
    InvalidArgument,
    /// The request is valid but the resource is in the wrong state: HTTP 400,
    /// FAILED_PRECONDITION.
    FailedPrecondition,
    /// No or an unknown credential: HTTP 401, UNAUTHENTICATED.
    Unauthenticated,
    /// A credential without the scope, or a client outside the allowed networks: HTTP 403,
    /// PERMISSION_DENIED.
    PermissionDenied,
    /// Unknown model, version, label, job or operation: HTTP 404, NOT_FOUND.
    NotFound,
    /// A known endpoint called with the wrong HTTP method: HTTP 405 (as Triton answers), and
    /// UNIMPLEMENTED where gRPC has to name it.
    MethodNotAllowed,
    /// A name that is taken: HTTP 409, ALREADY_EXISTS.
    AlreadyExists,
    /// A concurrent change won (an etag that no longer matches): HTTP 409, ABORTED.
    Aborted,
    /// Request body over the limit: HTTP 413, RESOURCE_EXHAUSTED.
    PayloadTooLarge,
    /// A request body not sent whole in time: HTTP 408, DEADLINE_EXCEEDED.
    RequestTimeout,
    /// A request body in an encoding the server does not decode: HTTP 415, INVALID_ARGUMENT.
    UnsupportedMediaType,
    /// Queue full: HTTP 429, RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// Deadline passed before the request ran: HTTP 504, DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// Not ready, unloading, or shutting down: HTTP 503, UNAVAILABLE.
    Unavailable,
    /// A method this server does not implement: HTTP 501, UNIMPLEMENTED.
    Unimplemented,
    /// A failure of the server on a valid request: HTTP 500, INTERNAL.
    Internal,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::RequestTimeout => 408,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::ResourceExhausted => 429,
            Code::Internal => 500,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
        }
    }

    /// The gRPC status code number (`google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            Code::InvalidArgument | Code::UnsupportedMediaType => 3,
            Code::DeadlineExceeded | Code::RequestTimeout => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::PayloadTooLarge | Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::Unimplemented | Code::MethodNotAllowed => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::Unauthenticated => 16,
        }
    }

    /// Google's status name, as the `status` field of an error envelope carries it.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument | Code::UnsupportedMediaType => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::PayloadTooLarge | Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::DeadlineExceeded | Code::RequestTimeout => "DEADLINE_EXCEEDED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unimplemented | Code::MethodNotAllowed => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
    /// The request field at fault, for the management API's `BadRequest` details.
    pub field: Option<String>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }

    /// Names the request field at fault, as Google's APIs do (`Field: model.name Error: ...`).
    pub fn on_field(mut self, field: &str) -> Self {
        self.message = format!("Field: {field} Error: {}", self.message);
        self.field = Some(field.to_string());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, each cause once: a cause whose text its parent already
/// holds (`No such file or directory (os error 2)` twice) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_agree_with_google_rpc() {
        // The pairs of google.rpc.Code's mapping to HTTP.
        for (code, http, grpc, name) in [
            (Code::InvalidArgument, 400, 3, "INVALID_ARGUMENT"),
            (Code::FailedPrecondition, 400, 9, "FAILED_PRECONDITION"),
            (Code::Unauthenticated, 401, 16, "UNAUTHENTICATED"),
            (Code::PermissionDenied, 403, 7, "PERMISSION_DENIED"),
            (Code::NotFound, 404, 5, "NOT_FOUND"),
            (Code::AlreadyExists, 409, 6, "ALREADY_EXISTS"),
            (Code::ResourceExhausted, 429, 8, "RESOURCE_EXHAUSTED"),
            (Code::Unavailable, 503, 14, "UNAVAILABLE"),
            (Code::DeadlineExceeded, 504, 4, "DEADLINE_EXCEEDED"),
        ] {
            assert_eq!(
                (code.http_status(), code.grpc_code(), code.name()),
                (http, grpc, name)
            );
        }
    }
}
