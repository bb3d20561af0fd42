//! Every config shipped under conf/ validates with `gateway validate`, so the README, the
//! docs and the bench harness never point at a broken file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn every_shipped_config_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Configs name files relative to the checkout: the TLS example's certificates (which
    // scripts/dev-cert.sh makes) and the shared bench keys beside the checkout. Recreate
    // that layout in a scratch directory: checkout/conf/tls/*.pem and a ../shared link.
    let pki = TestPki::new();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("checkout");
    std::fs::create_dir_all(work.join("conf/tls")).unwrap();
    for (from, to) in [(&pki.cert_path, "cert.pem"), (&pki.key_path, "key.pem"), (&pki.ca_path, "ca.pem")] {
        std::fs::copy(from, work.join("conf/tls").join(to)).unwrap();
    }
    let shared = root.join("../shared");
    assert!(shared.join("bench/keys").exists(), "the shared bench directory is expected beside the checkout");
    std::os::unix::fs::symlink(shared.canonicalize().unwrap(), scratch.path().join("shared")).unwrap();
    // conf/examples/orders-auth.yaml names the IdP's old public key; its header says to copy
    // the shared bench RSA key there.
    std::fs::create_dir_all(work.join("conf/keys")).unwrap();
    std::fs::copy(shared.join("bench/keys/jwt_rs256_pub.pem"), work.join("conf/keys/idp-old.pub.pem")).unwrap();
    let mut files: Vec<std::path::PathBuf> = ["conf", "conf/examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("validate")
            .arg(&file)
            .current_dir(&work)
            // conf/examples/auth.yaml reads its HMAC secret from the environment.
            .env("DEMO_JWT_SECRET", "a-demo-secret-that-is-longer-than-32-bytes")
            // conf/examples/idp.yaml: the introspection client secret and the backend JWT key.
            .env("INTROSPECTION_SECRET", "gateway-secret")
            .env("BACKEND_JWT_SECRET", "a-backend-secret-that-is-longer-than-32-bytes")
            // conf/examples/orders-auth.yaml: the (inert) HS256 key.
            .env("IDP_HS_SECRET", "an-idp-secret-that-is-longer-than-32-bytes")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("ok ("), "{}", file.display());
        // Only the literal example earns warnings, and exactly the two it should.
        if file.ends_with("orders-auth.yaml") {
            assert_eq!(stdout.trim(), "ok (1 APIs, 2 warnings)");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("warning: key_managers[0].keys[0]: an HMAC secret for HS256, which `algorithms` does not allow"),
                "{stderr}"
            );
            assert!(stderr.contains("warning: backend_jwt: no signing key is configured"), "{stderr}");
        } else {
            assert!(!stdout.contains("warning"), "{}: {stdout}", file.display());
        }
    }
}
