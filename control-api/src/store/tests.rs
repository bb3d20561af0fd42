use super::*;

const BASE: &str =
    "apis:\n  - name: demo\n    context: /demo\n    version: v1\n    resources:\n      - path: /hello\n        mock: { body: one }\n";

fn with_body(body: &str) -> String {
    BASE.replace("one", body)
}

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, BASE).unwrap();
    let store = Store::open(&path, Arc::new(Durable::new()), None).unwrap();
    (dir, store)
}

fn yaml(s: &str, source: Source) -> Candidate {
    Candidate { bytes: s.as_bytes().to_vec(), format: Format::Yaml, source }
}

#[tokio::test]
async fn startup_revision_is_reused_when_the_file_is_unchanged() {
    let (dir, store) = setup();
    assert_eq!(store.load().revision, 1);
    drop(store);
    let again = Store::open(&dir.path().join("gateway.yaml"), Arc::new(Durable::new()), None).unwrap();
    assert_eq!(again.load().revision, 1);
    assert_eq!(again.revisions().list().unwrap().len(), 1);
}

#[tokio::test]
async fn apply_persists_swaps_and_skips_identical_documents() {
    let (dir, store) = setup();
    let applied = store.apply(yaml(&with_body("two"), Source::Api), None).await.unwrap();
    assert!(applied.changed);
    assert_eq!(applied.revision, 2);
    assert_eq!(store.load().revision, 2);
    assert_eq!(std::fs::read_to_string(dir.path().join("gateway.yaml")).unwrap(), with_body("two"));
    let again = store.apply(yaml(&with_body("two"), Source::File), None).await.unwrap();
    assert!(!again.changed);
    assert_eq!(store.load().revision, 2);
}

#[tokio::test]
async fn invalid_config_changes_nothing() {
    let (dir, store) = setup();
    let bad = BASE.replace("/hello", "hello");
    let err = store.apply(yaml(&bad, Source::Api), None).await.unwrap_err();
    match err {
        ApplyError::Invalid(errs) => assert_eq!(errs[0].path, "apis[0].resources[0].path"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.apply(yaml("apis: [", Source::Api), None).await, Err(ApplyError::Malformed(_))));
    assert_eq!(store.load().revision, 1);
    assert_eq!(std::fs::read_to_string(dir.path().join("gateway.yaml")).unwrap(), BASE);
    assert_eq!(store.revisions().list().unwrap().len(), 1);
}

#[tokio::test]
async fn if_match_guards_against_lost_updates() {
    let (_dir, store) = setup();
    let etag = store.document().etag.clone();
    store.apply(yaml(&with_body("two"), Source::Api), Some(&etag)).await.unwrap();
    let stale = store.apply(yaml(&with_body("three"), Source::Api), Some(&etag)).await.unwrap_err();
    assert!(matches!(stale, ApplyError::Stale { .. }));
    assert_eq!(store.load().revision, 2);
}

#[tokio::test]
async fn rollback_is_a_new_revision_with_old_content() {
    let (dir, store) = setup();
    store.apply(yaml(&with_body("two"), Source::Api), None).await.unwrap();
    let applied = store.rollback(1, None).await.unwrap();
    assert_eq!(applied.revision, 3);
    assert_eq!(std::fs::read_to_string(dir.path().join("gateway.yaml")).unwrap(), BASE);
    assert_eq!(store.document().source, "rollback:1");
    assert!(matches!(store.rollback(99, None).await, Err(ApplyError::NotFound(_))));
}

#[tokio::test]
async fn file_changes_are_not_written_back() {
    let (dir, store) = setup();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, with_body("edited")).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    store.apply(yaml(&with_body("edited"), Source::File), None).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
}

#[tokio::test]
async fn json_body_is_written_to_a_yaml_file_as_yaml() {
    let (dir, store) = setup();
    let json = r#"{"apis":[{"name":"demo","context":"/demo","version":"v1","resources":[{"path":"/hello","mock":{"body":"json"}}]}]}"#;
    store.apply(Candidate { bytes: json.as_bytes().to_vec(), format: Format::Json, source: Source::Api }, None).await.unwrap();
    let written = std::fs::read_to_string(dir.path().join("gateway.yaml")).unwrap();
    let reparsed = policies::parse(written.as_bytes(), Format::Yaml).unwrap();
    assert_eq!(reparsed.apis[0].resources[0].mock.as_ref().unwrap().body, "json");
}

#[tokio::test]
async fn a_crash_before_rename_leaves_the_old_file_loadable() {
    let (dir, store) = setup();
    drop(store);
    // What a crash between write and rename leaves behind: a complete old file and a temp.
    std::fs::write(dir.path().join(".gateway.yaml.tmp-4242"), "apis: [ {half").unwrap();
    let store = Store::open(&dir.path().join("gateway.yaml"), Arc::new(Durable::new()), None).unwrap();
    assert_eq!(store.load().apis.len(), 1);
}

#[tokio::test]
async fn summary_lists_changes_and_restart_only_settings() {
    let (_dir, store) = setup();
    let next = format!("listeners: [{{ address: 127.0.0.1:18181 }}]\n{}  - name: extra\n    context: /extra\n    version: v1\n    resources: [{{ path: /x, mock: {{ body: x }} }}]\n", with_body("two"));
    let summary = store.validate(yaml(&next, Source::Api)).await.unwrap();
    assert_eq!(summary.apis_added, vec!["extra".to_string()]);
    assert_eq!(summary.apis_changed, vec!["demo".to_string()]);
    assert_eq!(summary.restart_required, vec!["listeners"]);
    assert_eq!(store.load().revision, 1, "validate applies nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_reloads_racing_api_changes_never_apply_stale_bytes() {
    let (dir, store) = setup();
    let store = Arc::new(store);
    for i in 0..40 {
        let (s1, s2) = (store.clone(), store.clone());
        let api = tokio::spawn(async move { s1.apply(yaml(&with_body(&format!("api{i}")), Source::Api), None).await });
        let file = tokio::spawn(async move { s2.apply_file(Source::File).await });
        let (a, f) = (api.await.unwrap(), file.await.unwrap());
        assert!(a.is_ok() && f.is_ok());
        // Whatever the interleaving, what is served is what the file says.
        let on_disk = std::fs::read(dir.path().join("gateway.yaml")).unwrap();
        assert_eq!(&*store.document().bytes, &on_disk[..], "iteration {i}");
    }
}
