//! Response compression: gzip or brotli chosen by the client's
//! `Accept-Encoding` among the frontend's `compression` list, only for
//! compressible content types, bodies of at least `compression_min_bytes`
//! (or of unknown length), and never for a response that already has a
//! `Content-Encoding`. Streamed: the body is compressed as it arrives,
//! never buffered whole.

use std::io;

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::Frame;
use tokio_util::io::{ReaderStream, StreamReader};

use super::body::{Body, BoxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }

    /// From a config name: "gzip", "br" or "brotli".
    pub fn from_config(name: &str) -> Option<Encoding> {
        match name {
            "gzip" => Some(Encoding::Gzip),
            "br" | "brotli" => Some(Encoding::Brotli),
            _ => None,
        }
    }
}

/// A frontend's compression settings.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// In the frontend's order of preference.
    pub encodings: Vec<Encoding>,
    pub min_bytes: u64,
}

impl Policy {
    /// The encoding to use for this client, from its `Accept-Encoding`
    /// (highest q first; at equal q the frontend's order), if any.
    pub fn negotiate(&self, req: &HeaderMap, method: &Method) -> Option<Encoding> {
        if self.encodings.is_empty() || method == Method::HEAD {
            return None;
        }
        let accepted = parse_accept_encoding(req);
        let mut best: Option<(Encoding, u32)> = None;
        for &enc in &self.encodings {
            let q = accepted
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(enc.token()))
                .or_else(|| accepted.iter().find(|(t, _)| t == "*"))
                .map_or(0, |(_, q)| *q);
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((enc, q));
            }
        }
        best.map(|(e, _)| e)
    }

    /// Compresses `resp` with `enc` when the response qualifies.
    pub fn apply(&self, enc: Encoding, resp: Response<Body>) -> Response<Body> {
        if !self.qualifies(&resp) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::ACCEPT_RANGES);
        parts.headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        );
        parts
            .headers
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        // A strong validator names the identity bytes: weaken it.
        if let Some(etag) = parts.headers.get(header::ETAG).cloned() {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(etag.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&weak) {
                    parts.headers.insert(header::ETAG, v);
                }
            }
        }
        Response::from_parts(parts, compress(enc, body))
    }

    fn qualifies(&self, resp: &Response<Body>) -> bool {
        let status = resp.status();
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return false;
        }
        let h = resp.headers();
        if h.get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return false;
        }
        if h.get(header::CONTENT_RANGE).is_some() {
            return false;
        }
        if h.get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-transform"))
        {
            return false;
        }
        let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if !compressible(ct) {
            return false;
        }
        match h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(len) => len >= self.min_bytes.max(1),
            // Unknown length (streamed): compress.
            None => true,
        }
    }
}

/// Text and the structured text formats; not images (except SVG), audio,
/// video, archives or anything already compressed.
pub fn compressible(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct.starts_with("text/") {
        return true;
    }
    if ct.ends_with("+json") || ct.ends_with("+xml") {
        return true;
    }
    matches!(
        ct.as_str(),
        "application/json"
            | "application/javascript"
            | "application/x-javascript"
            | "application/ecmascript"
            | "application/xml"
            | "application/xhtml+xml"
            | "application/rss+xml"
            | "application/atom+xml"
            | "application/wasm"
            | "application/x-www-form-urlencoded"
            | "application/manifest+json"
            | "image/svg+xml"
            | "image/x-icon"
            | "image/bmp"
            | "font/ttf"
            | "font/otf"
    )
}

/// `(token, q * 1000)` pairs.
fn parse_accept_encoding(h: &HeaderMap) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for v in h.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if token.is_empty() {
                continue;
            }
            let mut q = 1000;
            for p in parts {
                if let Some(val) = p
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                {
                    q = val
                        .trim()
                        .parse::<f32>()
                        .map_or(0, |f| (f.clamp(0.0, 1.0) * 1000.0) as u32);
                }
            }
            out.push((token, q));
        }
    }
    out
}

/// The compressed stream of `body` (trailers, if any, are dropped:
/// gRPC and other trailer users are not of a compressible type).
fn compress(enc: Encoding, body: Body) -> Body {
    let reader = StreamReader::new(BodyDataStream::new(body).map_err(io::Error::other));
    let reader = tokio::io::BufReader::new(reader);
    match enc {
        Encoding::Gzip => frames(GzipEncoder::with_quality(reader, Level::Precise(5))),
        // Brotli's default (11) is far too slow for on-the-fly use.
        Encoding::Brotli => frames(BrotliEncoder::with_quality(reader, Level::Precise(4))),
    }
}

fn frames<R: tokio::io::AsyncRead + Send + 'static>(reader: R) -> Body {
    let stream = ReaderStream::with_capacity(reader, 16 * 1024)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    StreamBody::new(stream).boxed_unsync()
}

/// Bytes of a compressed body, for tests.
#[cfg(test)]
async fn collect(body: Body) -> bytes::Bytes {
    body.collect().await.unwrap().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::body::full;

    fn policy() -> Policy {
        Policy {
            encodings: vec![Encoding::Gzip, Encoding::Brotli],
            min_bytes: 100,
        }
    }

    fn req(ae: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, ae.parse().unwrap());
        h
    }

    #[test]
    fn negotiation() {
        let p = policy();
        let get = Method::GET;
        assert_eq!(
            p.negotiate(&req("gzip, deflate, br"), &get),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            p.negotiate(&req("br;q=1, gzip;q=0.5"), &get),
            Some(Encoding::Brotli)
        );
        assert_eq!(p.negotiate(&req("gzip;q=0, br;q=0"), &get), None);
        assert_eq!(p.negotiate(&req("identity"), &get), None);
        assert_eq!(p.negotiate(&req("*"), &get), Some(Encoding::Gzip));
        assert_eq!(p.negotiate(&req("gzip"), &Method::HEAD), None);
        assert_eq!(p.negotiate(&HeaderMap::new(), &get), None);
    }

    fn resp(ct: &str, len: usize, extra: Option<(&str, &str)>) -> Response<Body> {
        let mut r = Response::new(full(vec![b'a'; len]));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, ct.parse().unwrap());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, len.to_string().parse().unwrap());
        if let Some((k, v)) = extra {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    #[tokio::test]
    async fn compresses_only_what_qualifies() {
        let p = policy();
        let r = p.apply(Encoding::Gzip, resp("text/html; charset=utf-8", 5000, None));
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
        let bytes = collect(r.into_body()).await;
        let mut out = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, vec![b'a'; 5000]);

        for r in [
            resp("image/png", 5000, None),
            resp("text/plain", 50, None),
            resp("text/plain", 5000, Some(("content-encoding", "gzip"))),
            resp("text/plain", 5000, Some(("cache-control", "no-transform"))),
        ] {
            let r = p.apply(Encoding::Gzip, r);
            assert!(
                r.headers()
                    .get(header::CONTENT_ENCODING)
                    .is_none_or(|v| v == "gzip")
                    && r.headers().get(header::CONTENT_LENGTH).is_some(),
                "{:?}",
                r.headers()
            );
        }
    }
}
