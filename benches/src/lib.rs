//! Shared fixtures for the benches and the memory measurements: synthetic configs with many
//! APIs, shaped like real ones (a few exact, template and prefix resources each).

use std::fmt::Write;

/// A YAML config with `n` APIs, all proxying to `target`. API `i` has context `/svc{i}`,
/// version `v1`, and resources `/items`, `/items/{id}`, `/items/{id}/parts/{part}`,
/// `/admin/*`.
pub fn config_with_apis(n: usize, target: &str) -> String {
    let mut s = String::with_capacity(n * 420);
    s.push_str(
        "access_log: { enabled: false }\nlisteners: [{ address: \"127.0.0.1:18099\" }]\nadmin: { address: \"127.0.0.1:18100\" }\napis:\n",
    );
    for i in 0..n {
        let _ = write!(
            s,
            "  - name: svc{i}\n    context: /svc{i}\n    version: v1\n    default_version: true\n    endpoint: {{ targets: [{{ url: \"{target}\" }}] }}\n    resources:\n      - {{ path: /items, methods: [GET, POST] }}\n      - {{ path: \"/items/{{id}}\", methods: [GET, PUT, DELETE] }}\n      - {{ path: \"/items/{{id}}/parts/{{part}}\", methods: [GET] }}\n      - {{ path: \"/admin/*\", methods: [ANY] }}\n"
        );
    }
    s
}

/// Request paths spread over the APIs: every resource kind, versioned and default-version.
pub fn request_paths(n_apis: usize, count: usize) -> Vec<String> {
    // A fixed LCG: the same paths on every run, no rand dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|k| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let api = (x >> 33) as usize % n_apis;
            match k % 4 {
                0 => format!("/svc{api}/v1/items"),
                1 => format!("/svc{api}/v1/items/{k}"),
                2 => format!("/svc{api}/items/{k}/parts/p{k}"),
                _ => format!("/svc{api}/v1/admin/users/{k}/roles"),
            }
        })
        .collect()
}
