//! gRPC and HTTP/2 to backends (`proto = "h2"`) end to end in the lab:
//! a tonic client in the client namespace, through an h2c frontend, to two
//! gRPC servers; unary, server streaming with the final status in the
//! trailers (after the messages), bidirectional streaming; requests
//! balanced per call over one client connection. And an HTTP/1.1 client
//! whose requests reach an `h2` backend as HTTP/2.

use std::time::Duration;

use xlb_lab::{
    L4Topology, Lab, TempDir,
    grpc::{EchoClient, GrpcBackend},
    http_backend::HttpBackend,
    l7::{
        ROUNDROBIN, VIP, block_on_in, curl, frontend_toml, head_toml, pool_toml, start_servers,
        web_servers,
    },
};

#[test]
fn grpc_unary_streaming_and_h2_backends() {
    let topo = L4Topology::build(Lab::new("l7grpc").unwrap(), 3).unwrap();
    let _grpc = start_servers(&topo, 1..=2, 9090, GrpcBackend::start).unwrap();
    let _h2web = start_servers(&topo, [3], 8080, HttpBackend::start).unwrap();
    let dir = TempDir::new("l7grpc").unwrap();
    let h2 = "proto = \"h2\"\n";
    let text = format!(
        "{}{}{}{}{}",
        head_toml(&dir, "l7grpc"),
        pool_toml(
            "grpc",
            &format!("{ROUNDROBIN}{h2}health = {{ check = \"tcp\", interval_ms = 500 }}\n"),
            &web_servers(1..=2, 9090),
        ),
        pool_toml("h2web", h2, &web_servers([3], 8080)),
        frontend_toml("grpc", 8080, "grpc", "h2c = true\n"),
        frontend_toml("h1-to-h2", 8081, "h2web", ""),
    );
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);

    let result = block_on_in(topo.client(), || {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut c = EchoClient::connect(&format!("http://{VIP}:8080")).await?;
            let mut unary = Vec::new();
            for i in 0..4 {
                unary.push(c.unary(&format!("hi{i}")).await?);
            }
            let stream = c.server_stream(3).await?;
            let bidi = c.bidi(&["a", "b", "c"]).await?;
            Ok::<_, anyhow::Error>((unary, stream, bidi))
        })
    })
    .unwrap();
    let (unary, (streamed, status), bidi) = result
        .unwrap_or_else(|_| panic!("gRPC calls timed out; xlb:\n{}", daemon.stderr()))
        .unwrap_or_else(|e| panic!("gRPC call failed: {e:#}\nxlb:\n{}", daemon.stderr()));
    eprintln!("unary: {unary:?}");
    eprintln!(
        "server stream: {streamed:?} then {:?} {:?}",
        status.code(),
        status.message()
    );
    eprintln!("bidi: {bidi:?}");

    // Unary, balanced per call over the one client connection.
    let names: Vec<&str> = unary.iter().map(|u| u.split(':').next().unwrap()).collect();
    assert_eq!(names[0], names[2], "{unary:?}");
    assert_eq!(names[1], names[3], "{unary:?}");
    assert_ne!(names[0], names[1], "{unary:?}");
    for (i, u) in unary.iter().enumerate() {
        assert!(u.ends_with(&format!(":hi{i}")), "{u}");
    }
    // Server streaming: three messages, then the status from the trailers.
    let server = streamed[0].split(':').next().unwrap().to_string();
    assert_eq!(
        streamed,
        (0..3).map(|i| format!("{server}:{i}")).collect::<Vec<_>>()
    );
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(status.message(), format!("end of {server} stream"));
    // Bidirectional: each message echoed by one server.
    let server = bidi[0].split(':').next().unwrap().to_string();
    assert_eq!(
        bidi,
        ["a", "b", "c"]
            .iter()
            .map(|m| format!("{server}:{m}"))
            .collect::<Vec<_>>()
    );

    // HTTP/1.1 client, HTTP/2 backend.
    let out = curl(
        topo.client(),
        &["--http1.1", &format!("http://{VIP}:8081/headers")],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.text();
    eprintln!("h2 backend saw:\n{seen}");
    assert!(seen.starts_with("version: HTTP/2.0\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 198.18.0.2\n"), "{seen}");
}
