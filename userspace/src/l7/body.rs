//! The body type every L7 module passes around, and the short error
//! responses xlb writes itself.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use smallvec::SmallVec;

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
/// empty bodies stay streamed. Trailers (an HTTP/2 server may send them
/// after a body of known length) are kept.
pub async fn read_small(resp: Response<Body>) -> Result<Response<Body>, BoxError> {
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > 0 && n <= SMALL_BODY);
    if !small {
        return Ok(resp);
    }
    let (parts, mut body) = resp.into_parts();
    // Usually one chunk, which is passed on as it is (no copy, no list).
    let mut chunks: SmallVec<[Bytes; 2]> = SmallVec::new();
    let mut trailers = None;
    // To the body's very end, not only to its last byte: a hyper server
    // connection only goes back to the pool once it has seen the end
    // itself, and dropping the body before that closes it.
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) => chunks.push(chunk),
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                break;
            }
        }
    }
    let data = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    };
    let whole = match trailers {
        None => full(data),
        Some(t) => Full::new(data)
            .map_err(|e| match e {})
            .with_trailers(std::future::ready(Some(Ok(t))))
            .boxed_unsync(),
    };
    Ok(Response::from_parts(parts, whole))
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::StreamBody;

    /// A response whose body is `frames`, announcing `length` bytes as
    /// hyper's does with a `Content-Length`, and the count of frames
    /// taken from it so far.
    fn response(frames: Vec<Frame<Bytes>>, length: u64) -> (Response<Body>, Arc<AtomicUsize>) {
        let taken = Arc::new(AtomicUsize::new(0));
        let counter = taken.clone();
        let stream = futures_util::stream::iter(frames)
            .inspect(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .map(Ok::<_, BoxError>);
        let body = Exact(StreamBody::new(stream).boxed_unsync(), length);
        (Response::new(body.boxed_unsync()), taken)
    }

    struct Exact(Body, u64);

    impl http_body::Body for Exact {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.1)
        }
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole_with_their_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Frame::data(Bytes::from_static(b"hello ")),
            Frame::data(Bytes::from_static(b"world")),
            Frame::trailers(trailers.clone()),
        ];
        let (resp, taken) = response(frames, 11);
        let resp = read_small(resp).await.unwrap();
        assert_eq!(
            taken.load(Ordering::Relaxed),
            3,
            "read before the head goes on"
        );
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "hello world");
    }

    #[tokio::test]
    async fn large_bodies_stay_streamed() {
        let frames = vec![Frame::data(Bytes::from(vec![b'x'; 20_000]))];
        let (resp, taken) = response(frames, 20_000);
        let resp = read_small(resp).await.unwrap();
        assert_eq!(taken.load(Ordering::Relaxed), 0, "nothing read ahead");
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(collected.to_bytes().len(), 20_000);
    }
}
