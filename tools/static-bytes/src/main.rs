//! `static-bytes FILE CONTENT_TYPE`: answers every GET with FILE's bytes, read once, and
//! prints `listening on http://ADDR` (port 0: the system's pick) on its first line.

use axum::{Router, http::header, routing::get};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(content_type)) = (args.next(), args.next()) else {
        eprintln!("usage: static-bytes FILE CONTENT_TYPE");
        std::process::exit(2);
    };
    let body = axum::body::Bytes::from(std::fs::read(&file).expect("the file to serve"));
    let app = Router::new().fallback(get(move || {
        let (body, content_type) = (body.clone(), content_type.clone());
        async move { ([(header::CONTENT_TYPE, content_type)], body) }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    println!("listening on http://{}", listener.local_addr().expect("bound"));
    axum::serve(listener, app).await.expect("serving");
}
