//! The body type every L7 module passes around, and the short error
//! responses xlb writes itself.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any body: the client's, a backend's, a compressed one, or our own.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// Server response bodies of a known length up to this many bytes are read
/// whole before the response head is passed on (HAProxy's buffer size).
pub const SMALL_BODY: u64 = 16 * 1024;

/// Reads a response body of known length up to [`SMALL_BODY`] to its end,
/// so the head and the body reach the client in one write instead of a
/// write each (and one packet instead of two). Longer, unknown-length or
/// empty bodies stay streamed.
pub async fn read_small(resp: Response<Body>) -> Result<Response<Body>, BoxError> {
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > 0 && n <= SMALL_BODY);
    if !small {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, full(bytes)))
}

/// A hyper body (client request or backend response), boxed.
pub fn boxed(b: hyper::body::Incoming) -> Body {
    b.map_err(BoxError::from).boxed_unsync()
}

/// `STATUS REASON\n` as text/plain: what a client gets when xlb itself
/// answers (no server, timeouts, bad gateway). `detail` goes after it.
pub fn error_response(status: StatusCode, detail: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let text = if detail.is_empty() {
        format!("{} {reason}\n", status.as_u16())
    } else {
        format!("{} {reason}: {detail}\n", status.as_u16())
    };
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
