//! Request deadlines from the protocols' timeout headers. A request still queued when its
//! deadline passes is answered DEADLINE_EXCEEDED (HTTP 504) and never run.

use std::time::Duration;

use crate::status::{Error, Result};

/// The REST header carrying a request's timeout in milliseconds (a decimal number).
pub const REST_TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// The gRPC header carrying the client's deadline as a timeout.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Parses the REST timeout header: non-negative milliseconds, fractions allowed.
pub fn parse_rest_timeout(value: &[u8]) -> Result<Duration> {
    let bad = || {
        Error::invalid(format!(
            "header '{REST_TIMEOUT_HEADER}': expected a non-negative number of milliseconds, got {:?}",
            String::from_utf8_lossy(value)
        ))
    };
    let ms: f64 = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(bad)?;
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| bad())
}

/// Parses gRPC's `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration> {
    let bad = || {
        Error::invalid(format!(
            "header '{GRPC_TIMEOUT_HEADER}': expected up to 8 digits and a unit (H, M, S, m, u, n), got {:?}",
            String::from_utf8_lossy(value)
        ))
    };
    let (digits, unit) = match value {
        [digits @ .., unit] if !digits.is_empty() && digits.len() <= 8 => (digits, *unit),
        _ => return Err(bad()),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(
            parse_grpc_timeout(b"250m").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(b"1S").ok(), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_grpc_timeout(b"99999999u").ok(),
            Some(Duration::from_micros(99_999_999))
        );
        for bad in [&b""[..], b"m", b"123456789m", b"12x", b"-1S", b"1.5S"] {
            assert!(parse_grpc_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rest_timeouts() {
        assert_eq!(
            parse_rest_timeout(b"250").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_rest_timeout(b" 0.5 ").ok(),
            Some(Duration::from_micros(500))
        );
        for bad in [&b""[..], b"-1", b"soon", b"NaN", b"inf"] {
            let e = parse_rest_timeout(bad).expect_err("rejected");
            assert!(e.message.contains(REST_TIMEOUT_HEADER), "{}", e.message);
        }
    }
}
