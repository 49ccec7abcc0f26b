//! Hostile input: response bodies and manifests that are garbage, huge or malicious must give
//! a clear error, never a panic, in bounded time and memory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use proptest::prelude::*;
use vidbatch::api::{
    ApiError, ApiKey, Client, ClientConfig, CreateRequest, IdempotencyKey, ListQuery, ModelList, Task,
    TaskList,
};
use vidbatch::manifest::{Inputs, load_plan};

// ---- response types ----

fn parse_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Task>(bytes);
    let _ = serde_json::from_slice::<TaskList>(bytes);
    let _ = serde_json::from_slice::<ModelList>(bytes);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("completed"),
            Just("succeeded"),
            Just("queued"),
            Just("vgen_1"),
            Just("2025-01-01T00:00:00Z")
        ]
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("id".to_string()),
        Just("status".to_string()),
        Just("items".to_string()),
        Just("data".to_string()),
        Just("total".to_string()),
        Just("error".to_string()),
        Just("code".to_string()),
        Just("created_at".to_string()),
        Just("video_url".to_string()),
        Just("usage".to_string()),
        Just("duration".to_string()),
        Just("seed".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic_the_response_types(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&bytes);
    }

    #[test]
    fn json_of_wrong_shapes_never_panics_the_response_types(value in json_value()) {
        parse_all(value.to_string().as_bytes());
        // And as the items of a list and the fields of a task.
        parse_all(serde_json::json!({"items": [value.clone()], "total": 1}).to_string().as_bytes());
        parse_all(serde_json::json!({"id": "vgen_1", "status": "completed", "usage": value.clone(),
            "error": value.clone(), "created_at": value}).to_string().as_bytes());
    }

    #[test]
    fn random_bytes_as_a_yaml_manifest_are_diagnostics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = load(dir.path(), "m.yaml", &bytes);
    }

    #[test]
    fn random_bytes_as_a_csv_manifest_are_diagnostics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = load(dir.path(), "m.csv", &bytes);
    }

    #[test]
    fn yaml_like_text_is_read_or_refused(text in "(version: 1\n)?(jobs:\n)?([ -]{0,4}[a-z_{}:&*<\\[\\]\"',#|>-]{0,12}\n){0,12}") {
        let dir = tempfile::tempdir().unwrap();
        let _ = load(dir.path(), "m.yaml", text.as_bytes());
    }
}

#[test]
fn deep_and_odd_json_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(serde_json::from_str::<Task>(&deep).is_err());
    let deep_obj = "{\"a\":".repeat(100_000);
    assert!(serde_json::from_str::<TaskList>(&deep_obj).is_err());
    for bad in [
        "",
        "null",
        "<html><body>502 Bad Gateway</body></html>",
        "{\"id\": 5, \"status\": \"completed\"}",
        "{\"id\": \"x\", \"status\": [1]}",
        "{\"items\": {}}",
        "{\"items\": [1, 2]}",
        "{\"data\": \"x\"}",
        "{\"id\": \"x\", \"status\": \"queued\"",
    ] {
        assert!(
            serde_json::from_str::<Task>(bad).is_err() || bad.contains("items"),
            "{bad}"
        );
        parse_all(bad.as_bytes());
    }
}

// ---- the client against a server that answers garbage ----

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn client(addr: SocketAddr, prefix: &str) -> Client {
    let mut config = ClientConfig::new(format!("http://{addr}/{prefix}"), ApiKey::new("hostile-key"));
    config.request_timeout = Duration::from_secs(10);
    config.max_body_bytes = 1024 * 1024;
    Client::new(&config).unwrap()
}

fn garbage(kind: &'static str) -> axum::response::Response {
    let html = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html")],
        "<!doctype html><html><body><h1>Service Unavailable</h1></body></html>",
    );
    match kind {
        "html" => html.into_response(),
        "html500" => (StatusCode::BAD_GATEWAY, html.2).into_response(),
        "truncated" => (StatusCode::OK, "{\"id\": \"vgen_1\", \"status\": \"compl").into_response(),
        "huge" => (StatusCode::OK, vec![b' '; 10 * 1024 * 1024]).into_response(),
        "huge_error" => (StatusCode::BAD_REQUEST, vec![b'x'; 10 * 1024 * 1024]).into_response(),
        "wrong_types" => (
            StatusCode::OK,
            "{\"id\": 12, \"status\": {\"a\": 1}, \"items\": \"no\", \"data\": 3}",
        )
            .into_response(),
        "deep" => (StatusCode::OK, "[".repeat(200_000)).into_response(),
        "error_body_wrong_types" => (
            StatusCode::BAD_REQUEST,
            "{\"error\": {\"code\": [1,2], \"message\": {\"x\": null}, \"param\": 5}}",
        )
            .into_response(),
        "ratelimit_garbage_headers" => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "soon-ish"),
                ("x-ratelimit-reset", "-1e309"),
                ("x-ratelimit-limit", "99999999999999999999"),
            ],
            "not json",
        )
            .into_response(),
        "ratelimit_huge_wait" => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "18446744073709551615"),
                ("x-ratelimit-reset", "1e300"),
            ],
            "{}",
        )
            .into_response(),
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

fn garbage_app(kind: &'static str) -> Router {
    Router::new()
        .route("/videos/models", get(move || async move { garbage(kind) }))
        .route(
            "/videos/generations",
            get(move || async move { garbage(kind) }).post(move || async move { garbage(kind) }),
        )
        .route(
            "/videos/generations/{id}",
            get(move || async move { garbage(kind) }),
        )
        .route(
            "/videos/generations/{id}/cancel",
            post(move || async move { garbage(kind) }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_turns_garbage_answers_into_errors() {
    let kinds = [
        "html",
        "html500",
        "truncated",
        "huge",
        "huge_error",
        "wrong_types",
        "deep",
        "error_body_wrong_types",
        "ratelimit_garbage_headers",
        "ratelimit_huge_wait",
    ];
    let mut app = Router::new();
    for kind in kinds {
        app = app.nest(&format!("/{kind}"), garbage_app(kind));
    }
    let addr = serve(app).await;
    let request = CreateRequest {
        model: "seedance-1.5-pro".into(),
        prompt: "a cat".into(),
        ..Default::default()
    };
    for kind in kinds {
        let c = client(addr, kind);
        let started = Instant::now();
        let key = IdempotencyKey::new("k");
        let results: Vec<(&str, Option<ApiError>)> = vec![
            ("models", c.list_models().await.err()),
            ("create", c.create(&request, &key).await.err()),
            ("get", c.get("vgen_1").await.err()),
            ("list", c.list(&ListQuery::default()).await.err()),
        ];
        for (call, err) in results {
            let err = err.unwrap_or_else(|| panic!("{kind}: {call} accepted garbage"));
            let text = err.to_string();
            assert!(!text.is_empty(), "{kind}: {call}");
            assert!(
                text.len() < 4096,
                "{kind}: {call}: the error quotes too much: {} bytes",
                text.len()
            );
            assert!(!text.contains("hostile-key"), "{kind}: {call}");
            if call == "create" && kind != "ratelimit_garbage_headers" && kind != "ratelimit_huge_wait" {
                // An unreadable answer to a create may hide a task: never "safe to resend".
                assert!(
                    !matches!(err, ApiError::Transient { .. }),
                    "{kind}: an unreadable create answer must not be called transient: {err:?}"
                );
            }
            if let ApiError::RateLimited {
                retry_after: Some(wait),
                ..
            } = &err
            {
                assert!(
                    *wait <= Duration::from_secs(24 * 3600),
                    "{kind}: a wait of {wait:?}"
                );
            }
        }
        // A cancel whose answer is unreadable may still have worked: not an error, no task.
        let _ = c.cancel("vgen_1").await;
        assert!(started.elapsed() < Duration::from_secs(10), "{kind}: too slow");
    }
}

// ---- manifests ----

fn load(dir: &Path, name: &str, bytes: &[u8]) -> Result<usize, String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    load_plan(&Inputs {
        manifests: vec![path],
        ..Default::default()
    })
    .map(|p| p.jobs.len())
    .map_err(|d| d.to_string())
}

fn timed(what: &str, f: impl FnOnce() -> Result<usize, String>) -> Result<usize, String> {
    let started = Instant::now();
    let r = f();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{what} took {:?}",
        started.elapsed()
    );
    r
}

#[test]
fn deeply_nested_yaml_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("brackets", format!("version: 1\njobs: {}", "[".repeat(10_000))),
        (
            "closed",
            format!("version: 1\njobs: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        (
            "braces",
            format!("version: 1\ndefaults: {}", "{a: ".repeat(10_000)),
        ),
        (
            "block",
            format!(
                "version: 1\ndefaults:\n{}",
                (0..5_000)
                    .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                    .collect::<String>()
            ),
        ),
    ] {
        let r = timed(name, || load(dir.path(), "deep.yaml", text.as_bytes()));
        let message = r.expect_err(name);
        assert!(!message.is_empty(), "{name}");
    }
}

#[test]
fn a_billion_laughs_alias_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "version: 1\na0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("jobs:\n  - prompt: *a9\n");
    let message = timed("alias bomb", || load(dir.path(), "bomb.yaml", text.as_bytes())).expect_err("a bomb");
    assert!(
        message.contains("nodes") || message.contains("alias"),
        "{message}"
    );

    // The same through merge keys.
    let mut merge = String::from("version: 1\nx0: &x0 {a: 1, b: 2}\n");
    for i in 1..40 {
        let p = i - 1;
        merge.push_str(&format!("x{i}: &x{i} {{<<: [*x{p}, *x{p}], k{i}: 1}}\n"));
    }
    merge.push_str("jobs:\n  - prompt: hi\n    <<: *x39\n");
    timed("merge bomb", || load(dir.path(), "merge.yaml", merge.as_bytes())).expect_err("a merge bomb");
}

#[test]
fn huge_csv_cells_and_rows_are_read_or_refused_without_trouble() {
    let dir = tempfile::tempdir().unwrap();
    let cell = "a".repeat(4 * 1024 * 1024);
    let csv = format!("model,prompt,duration\nseedance-1.5-pro,{cell},5\n");
    let r = timed("huge cell", || load(dir.path(), "huge.csv", csv.as_bytes()));
    // A prompt of 4 MiB is not a request the API takes; either way it must not crash.
    if let Err(m) = &r {
        assert!(m.len() < 64 * 1024, "the diagnostic quotes the whole cell");
    }
    let quoted = format!("model,prompt\nseedance-1.5-pro,\"{}\n", "x\"\"".repeat(200_000));
    let _ = timed("unterminated quote", || {
        load(dir.path(), "quote.csv", quoted.as_bytes())
    });
    let wide = format!(
        "{}\n{}\n",
        (0..20_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(","),
        "1,".repeat(20_000)
    );
    let _ = timed("wide", || load(dir.path(), "wide.csv", wide.as_bytes()));
    let nul = b"model,prompt\n\0\0\0\xff\xfe,\x00\n";
    let _ = timed("binary", || load(dir.path(), "nul.csv", nul));
}

#[test]
fn a_huge_matrix_is_refused_not_expanded_forever() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    let text = format!(
        "version: 1\ndefaults: {{model: seedance-1.5-pro, duration: 5}}\njobs:\n  - prompt: \"{{a}}{{b}}{{c}}{{d}}\"\n    \
         matrix: {{a: [{list}], b: [{list}], c: [{list}], d: [{list}]}}\n"
    );
    let r = timed("matrix", || load(dir.path(), "matrix.yaml", text.as_bytes()));
    assert!(r.is_err(), "a hundred million jobs: {r:?}");
}
