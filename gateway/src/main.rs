//! `gateway`: the API gateway binary. See `gateway --help`.

// mimalloc: measurably faster than glibc malloc for Pingora's many small per-request
// allocations across worker threads (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
