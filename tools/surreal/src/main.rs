//! The `surreal` command (`surreal start …`, `surreal isready …`), as SurrealDB's own binary
//! builds it; `init` installs the rustls crypto provider and runs the command line.

fn main() -> std::process::ExitCode {
    surrealdb_server::init(surrealdb_server::core::CommunityComposer())
}
