//! HTTP content codings: compressed request bodies (`Content-Encoding`, as tritonclient's
//! `request_compression_algorithm` sends them) and compressed responses for clients that ask
//! (`Accept-Encoding`: tritonclient's `response_compression_algorithm`, httplib2 under
//! google-api-python-client, curl's `--compressed`, Prometheus scrapes).

use std::io::Write;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use crate::status::{Code, Error};

/// Responses smaller than this go out as they are: compressing a few hundred bytes costs more
/// time than it saves on any link, which is also why nginx and Google's front ends skip them.
const COMPRESS_MIN_BYTES: u64 = 1024;

/// A content coding this server reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped (RFC 9110); raw deflate, which some clients send, is
    /// read too.
    Deflate,
}

pub enum Inflate {
    TooLarge,
    Corrupt(String),
}

impl Compression {
    /// A request body's `Content-Encoding`; `None` for `identity`.
    pub fn of(value: &[u8]) -> Result<Option<Compression>, Error> {
        let name = String::from_utf8_lossy(value);
        match name.trim().to_ascii_lowercase().as_str() {
            "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Compression::Gzip)),
            "deflate" => Ok(Some(Compression::Deflate)),
            _ => Err(Error::new(
                Code::UnsupportedMediaType,
                format!(
                    "Content-Encoding {name:?} is not supported; send the body as gzip, deflate or \
                     uncompressed"
                ),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
        }
    }

    pub fn decode(self, bytes: &[u8], limit: usize) -> Result<Bytes, Inflate> {
        use std::io::Read;
        fn inflate(reader: impl Read, limit: usize) -> Result<Bytes, Inflate> {
            let mut out = Vec::new();
            reader
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Inflate::Corrupt(e.to_string()))?;
            if out.len() > limit {
                return Err(Inflate::TooLarge);
            }
            Ok(Bytes::from(out))
        }
        match self {
            Compression::Gzip => inflate(flate2::read::MultiGzDecoder::new(bytes), limit),
            Compression::Deflate => match inflate(flate2::read::ZlibDecoder::new(bytes), limit) {
                Err(Inflate::Corrupt(_)) => {
                    inflate(flate2::read::DeflateDecoder::new(bytes), limit)
                }
                other => other,
            },
        }
    }

    fn encode(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        // The fastest level: a serving thread pays for it, and it already takes most of what
        // the default level would (JSON predictions are repetitive).
        let level = flate2::Compression::fast();
        let out = Vec::with_capacity(bytes.len() / 4);
        match self {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(out, level);
                e.write_all(bytes)?;
                e.finish()
            }
            Compression::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(out, level);
                e.write_all(bytes)?;
                e.finish()
            }
        }
    }
}

/// The coding the request's `Accept-Encoding` prefers among those this server writes (RFC 9110,
/// 12.5.3): each coding's quality is its own entry's, else the `*` entry's, else zero; the
/// highest above zero wins, gzip on a tie. `None` when the client takes neither.
pub fn accepted(headers: &HeaderMap) -> Option<Compression> {
    let (mut gzip, mut deflate, mut any) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| {
                    let (key, value) = p.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("q").then_some(value)
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            let is = |coding: &str| name.eq_ignore_ascii_case(coding);
            let slot = if is("gzip") || is("x-gzip") {
                &mut gzip
            } else if is("deflate") {
                &mut deflate
            } else if name == "*" {
                &mut any
            } else {
                continue;
            };
            // The first entry for a coding counts.
            slot.get_or_insert(q);
        }
    }
    let quality = |own: Option<f32>| own.or(any).unwrap_or(0.0);
    let (gzip, deflate) = (quality(gzip), quality(deflate));
    if gzip > 0.0 && gzip >= deflate {
        Some(Compression::Gzip)
    } else if deflate > 0.0 {
        Some(Compression::Deflate)
    } else {
        None
    }
}

/// The response compressed with `coding`, when it is whole in memory (every JSON answer is),
/// not already encoded, and at least `COMPRESS_MIN_BYTES`; otherwise as it was.
pub async fn compress(response: Response, coding: Compression) -> Response {
    let size = response.body().size_hint().exact();
    if response.headers().contains_key(header::CONTENT_ENCODING)
        || size.is_none_or(|n| n < COMPRESS_MIN_BYTES)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A body of known size is already in memory: this collects without waiting.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match coding.encode(&bytes) {
        Ok(encoded) if encoded.len() < bytes.len() => {
            parts.headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.name()),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(encoded)
        }
        _ => Body::from(bytes),
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> Option<Compression> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        accepted(&headers)
    }

    #[test]
    fn accept_encoding_is_negotiated_by_quality() {
        assert_eq!(accepted(&HeaderMap::new()), None);
        assert_eq!(accepts("identity"), None);
        assert_eq!(accepts("br"), None);
        assert_eq!(accepts("gzip"), Some(Compression::Gzip));
        assert_eq!(accepts("gzip, deflate"), Some(Compression::Gzip));
        assert_eq!(accepts("deflate, gzip"), Some(Compression::Gzip));
        assert_eq!(accepts("deflate"), Some(Compression::Deflate));
        assert_eq!(accepts("gzip;q=0.5, deflate"), Some(Compression::Deflate));
        assert_eq!(accepts("gzip;q=0, deflate;q=0"), None);
        assert_eq!(accepts("GZIP ; q=0.8, br"), Some(Compression::Gzip));
        assert_eq!(accepts("*"), Some(Compression::Gzip));
        assert_eq!(accepts("gzip;q=0, *"), Some(Compression::Deflate));
        assert_eq!(accepts("gzip;q=garbage"), Some(Compression::Gzip));
        // `*` stands for the codings not listed, never for one refused by name.
        assert_eq!(accepts("*;q=0, gzip"), Some(Compression::Gzip));
        assert_eq!(accepts("*;q=0, deflate"), Some(Compression::Deflate));
        assert_eq!(accepts("gzip;q=0.5, *;q=0"), Some(Compression::Gzip));
        assert_eq!(accepts("*;q=0"), None);
        assert_eq!(accepts("gzip;Q=0, deflate;Q=0"), None);
        assert_eq!(
            accepts("deflate;q=0.9, *;q=0.5"),
            Some(Compression::Deflate)
        );
    }

    #[tokio::test]
    async fn large_answers_are_compressed_and_small_ones_are_not() {
        let big = "{\"predictions\": [0.25]}".repeat(200);
        for coding in [Compression::Gzip, Compression::Deflate] {
            let response = compress(Response::new(Body::from(big.clone())), coding).await;
            assert_eq!(
                response.headers()[header::CONTENT_ENCODING],
                coding.name(),
                "{coding:?}"
            );
            assert_eq!(response.headers()[header::VARY], "accept-encoding");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(bytes.len() < big.len() / 10, "{coding:?}: {}", bytes.len());
            let decoded = coding.decode(&bytes, big.len()).ok().unwrap();
            assert_eq!(decoded, big.as_bytes());
        }
        let small = compress(Response::new(Body::from("{}")), Compression::Gzip).await;
        assert!(!small.headers().contains_key(header::CONTENT_ENCODING));
        let mut encoded = Response::new(Body::from(big.clone()));
        encoded
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let encoded = compress(encoded, Compression::Gzip).await;
        assert_eq!(encoded.headers()[header::CONTENT_ENCODING], "br");
    }
}
