//! The `sluice` binary.

#[tokio::main]
async fn main() {
    std::process::exit(sluice_server::cli::main().await);
}
