//! Prints a synthetic config: `gen-config N [TARGET_URL]` (default target http://127.0.0.1:18080).

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let target = args.next().unwrap_or_else(|| "http://127.0.0.1:18080".into());
    print!("{}", benches::config_with_apis(n, &target));
}
