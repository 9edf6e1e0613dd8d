//! A gRPC test service (tonic, raw-bytes codec: no protobuf code
//! generation needed) and its client calls, for the L7 gRPC tests.
//!
//! Service `xlb.test.Echo`:
//! - `Unary`: answers `NAME:` + the request bytes.
//! - `ServerStream`: answers `NAME:0` .. `NAME:(n-1)` for a request `n`,
//!   then ends with status `ABORTED` and message `end of NAME stream`
//!   (the status travels in the trailers after the messages).
//! - `Bidi`: echoes each request message as `NAME:` + message.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use bytes::{Buf, BufMut, Bytes};
use tonic::{
    Request, Response, Status, Streaming,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{BoxFuture, BoxStream, Service, http, tokio_stream::StreamExt},
    server::{Grpc, NamedService, ServerStreamingService, StreamingService, UnaryService},
};

use crate::{http_backend::ServerThread, netns::Namespace};

/// Messages are plain bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[derive(Clone)]
pub struct Echo {
    name: Arc<str>,
}

impl NamedService for Echo {
    const NAME: &'static str = "xlb.test.Echo";
}

struct UnarySvc(Arc<str>);
impl UnaryService<Bytes> for UnarySvc {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let mut out = format!("{name}:").into_bytes();
            out.extend_from_slice(req.get_ref());
            Ok(Response::new(Bytes::from(out)))
        })
    }
}

struct ServerStreamSvc(Arc<str>);
impl ServerStreamingService<Bytes> for ServerStreamSvc {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = BoxFuture<Response<BoxStream<Bytes>>, Status>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let n: usize = std::str::from_utf8(req.get_ref())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Status::invalid_argument("expected a count"))?;
            let mut items: Vec<Result<Bytes, Status>> = (0..n)
                .map(|i| Ok(Bytes::from(format!("{name}:{i}"))))
                .collect();
            items.push(Err(Status::aborted(format!("end of {name} stream"))));
            let stream: BoxStream<Bytes> = Box::pin(tonic::codegen::tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

struct BidiSvc(Arc<str>);
impl StreamingService<Bytes> for BidiSvc {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = BoxFuture<Response<BoxStream<Bytes>>, Status>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let stream = req.into_inner().map(move |m| {
                m.map(|b| {
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&b);
                    Bytes::from(out)
                })
            });
            let stream: BoxStream<Bytes> = Box::pin(stream);
            Ok(Response::new(stream))
        })
    }
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let name = self.name.clone();
        match req.uri().path() {
            "/xlb.test.Echo/Unary" => {
                Box::pin(async move { Ok(Grpc::new(BytesCodec).unary(UnarySvc(name), req).await) })
            }
            "/xlb.test.Echo/ServerStream" => Box::pin(async move {
                Ok(Grpc::new(BytesCodec)
                    .server_streaming(ServerStreamSvc(name), req)
                    .await)
            }),
            "/xlb.test.Echo/Bidi" => {
                Box::pin(
                    async move { Ok(Grpc::new(BytesCodec).streaming(BidiSvc(name), req).await) },
                )
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A gRPC server (tonic's server-side handling, served by hyper) with [`Echo`] named `name`, listening on `addr` inside
/// `ns` (HTTP/2 cleartext) until dropped.
pub struct GrpcBackend {
    _server: ServerThread,
}

impl GrpcBackend {
    pub fn start(ns: &Namespace, name: &str, addr: SocketAddr) -> Result<GrpcBackend> {
        let echo = Echo { name: name.into() };
        let server =
            ServerThread::spawn(ns, addr, format!("grpc-backend-{name}"), move |stream| {
                let svc = hyper_util::service::TowerToHyperService::new(echo.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            })?;
        Ok(GrpcBackend { _server: server })
    }
}

/// A client of `xlb.test.Echo` at `uri` (e.g. `http://198.18.0.100:8080`).
pub struct EchoClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl EchoClient {
    pub async fn connect(uri: &str) -> Result<EchoClient> {
        let channel = tonic::transport::Endpoint::from_shared(uri.to_string())?
            .connect()
            .await
            .with_context(|| format!("connecting to {uri}"))?;
        Ok(EchoClient {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    pub async fn unary(&mut self, msg: &str) -> Result<String, Status> {
        self.ready().await?;
        let r = self
            .grpc
            .unary(
                Request::new(Bytes::copy_from_slice(msg.as_bytes())),
                http::uri::PathAndQuery::from_static("/xlb.test.Echo/Unary"),
                BytesCodec,
            )
            .await?;
        Ok(String::from_utf8_lossy(r.get_ref()).into_owned())
    }

    /// The streamed messages and the final status.
    pub async fn server_stream(&mut self, n: usize) -> Result<(Vec<String>, Status), Status> {
        self.ready().await?;
        let r = self
            .grpc
            .server_streaming(
                Request::new(Bytes::from(n.to_string())),
                http::uri::PathAndQuery::from_static("/xlb.test.Echo/ServerStream"),
                BytesCodec,
            )
            .await?;
        let mut stream = r.into_inner();
        let mut got = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) => got.push(String::from_utf8_lossy(&m).into_owned()),
                Ok(None) => return Ok((got, Status::ok(""))),
                Err(status) => return Ok((got, status)),
            }
        }
    }

    /// Sends `msgs` on one bidirectional stream, reading each echo before
    /// sending the next.
    pub async fn bidi(&mut self, msgs: &[&str]) -> Result<Vec<String>, Status> {
        self.ready().await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let first = Bytes::copy_from_slice(msgs.first().copied().unwrap_or("").as_bytes());
        tx.send(first).await.map_err(|_| Status::internal("send"))?;
        let r = self
            .grpc
            .streaming(
                Request::new(outbound),
                http::uri::PathAndQuery::from_static("/xlb.test.Echo/Bidi"),
                BytesCodec,
            )
            .await?;
        let mut inbound = r.into_inner();
        let mut got = Vec::new();
        for (i, _) in msgs.iter().enumerate() {
            let m = inbound
                .message()
                .await?
                .ok_or_else(|| Status::internal("stream ended early"))?;
            got.push(String::from_utf8_lossy(&m).into_owned());
            if let Some(next) = msgs.get(i + 1) {
                tx.send(Bytes::copy_from_slice(next.as_bytes()))
                    .await
                    .map_err(|_| Status::internal("send"))?;
            }
        }
        drop(tx);
        while inbound.message().await?.is_some() {}
        Ok(got)
    }
}
