use server::{Server, config::Config, shutdown_signal};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the system's allocator: rendering a page allocates and frees many small
/// objects from two threads, and glibc's malloc spent a quarter of `/admin/smtp`'s CPU on that
/// (BENCHMARKS.md, sixth round: 3,355 → 5,229 pages/s, p99 33.4 → 24.9 ms; idle RSS 5 MB more).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // surrealdb brings aws-lc-rs and lettre brings ring: pick one provider for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,surrealdb=warn,surrealdb_core=warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mailroom: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::build(config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("mailroom: cannot start: {err}");
            return ExitCode::from(1);
        }
    };
    // Tests and scripts read this line to find the port (MAILROOM_BIND may say port 0).
    println!("Mailroom is listening on http://{}", server.local_addr());
    if let Some(code) = server.setup_code() {
        println!("Setup code for \"Create the first admin\": {code} (open http://{}/setup)", server.local_addr());
        tracing::info!(setup_code = %code, "no admin yet: enter this setup code on the \"Create the first admin\" page");
    }
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mailroom: server stopped: {err}");
            ExitCode::from(1)
        }
    }
}
