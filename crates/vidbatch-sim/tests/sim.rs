//! Integration tests of the API simulator over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use vidbatch_sim::{
    BalanceErrorStatus, RetryAfterFormat, Sim, SimConfig, SimHandle, account_id, cost_tokens,
};

const KEY: &str = "sk-test";

/// A fast, clean simulator: no rate limit, 10 ms generations.
fn fast() -> SimConfig {
    SimConfig {
        rpm: 0,
        time_scale: 0.001,
        gen_time: Some(Duration::from_secs(10)),
        ..SimConfig::default()
    }
}

struct Client {
    sim: SimHandle,
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn start(cfg: SimConfig) -> Client {
        let sim = Sim::start(cfg).await.expect("sim starts");
        let base = sim.base_url();
        Client {
            sim,
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn send(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await
    }

    /// Status and JSON body of a request that must get an answer.
    async fn call(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let resp = self.send(Some(key), method, path, body).await.expect("an answer");
        let status = resp.status();
        (status, resp.json().await.expect("a JSON body"))
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        self.call(KEY, reqwest::Method::POST, "/videos/generations", Some(&body))
            .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(KEY, reqwest::Method::GET, path, None).await
    }

    async fn task(&self, id: &str) -> Value {
        let (status, v) = self.get(&format!("/videos/generations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// Create a valid task and return its id.
    async fn create_ok(&self, prompt: &str) -> String {
        let (status, v) = self.create(body(prompt)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        v["id"].as_str().expect("an id").to_string()
    }

    /// Poll until the task has one of `statuses` (5 s at most).
    async fn wait_for(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.task(id).await;
            if statuses.contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "task never reached {statuses:?}: {v}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn completed(&self, id: &str) -> Value {
        self.wait_for(id, &["completed", "succeeded"]).await
    }
}

fn body(prompt: &str) -> Value {
    json!({"model": "seedance-1.5-pro", "prompt": prompt, "duration": 5, "ratio": "16:9", "resolution": "720p"})
}

fn assert_error(v: &Value, code: &str, param: Option<&str>) {
    let err = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    let mut keys: Vec<&str> = err.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "message", "param", "request_id", "task_id", "type"],
        "{v}"
    );
    assert_eq!(err["code"], code, "{v}");
    assert!(
        err["request_id"].as_str().is_some_and(|r| r.starts_with("req_")),
        "{v}"
    );
    match param {
        Some(p) => assert_eq!(err["param"], p, "{v}"),
        None => assert!(err["param"].is_null(), "{v}"),
    }
}

#[tokio::test]
async fn models_lists_the_three_models() {
    let c = Client::start(SimConfig::default()).await;
    let resp = c
        .send(Some(KEY), reqwest::Method::GET, "/videos/models", None)
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(resp.headers().contains_key(h), "{h}");
    }
    let v: Value = resp.json().await.expect("json");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"]);
    assert_eq!(c.sim.stats().count("models", "200"), 1);
}

#[tokio::test]
async fn create_poll_download_happy_path() {
    let c = Client::start(fast()).await;
    let mut b = body("a cat surfing");
    b["return_last_frame"] = json!(true);
    let (status, task) = c.create(b).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = task["id"].as_str().expect("id");
    assert!(id.starts_with("vgen_") && id.len() == 31, "{id}");
    assert!(
        ["queued", "processing"].contains(&task["status"].as_str().unwrap_or("")),
        "{task}"
    );
    assert_eq!(task["input_type"], "text");
    assert_eq!(task["created_at"].as_str().map(str::len), Some(20));
    let done = c.completed(id).await;
    let cost = cost_tokens("720p", "16:9", 5).expect("cost");
    assert_eq!(cost, 1280 * 720 * 24 * 5 / 1024);
    assert_eq!(
        done["usage"],
        json!({"completion_tokens": cost, "total_tokens": cost})
    );
    assert_eq!(done["fps"], 24);
    assert_eq!(done["is_expired"], false);
    assert_eq!(done["video_url_ttl"], 3);
    for field in [
        "video_url_expires_at",
        "completed_at",
        "seed",
        "object",
        "last_frame_url",
    ] {
        assert!(!done[field].is_null(), "{field}: {done}");
    }
    let video = c
        .http
        .get(done["video_url"].as_str().expect("url"))
        .send()
        .await
        .expect("download");
    assert_eq!(video.status(), StatusCode::OK);
    assert_eq!(video.headers()["accept-ranges"], "bytes");
    let bytes = video.bytes().await.expect("bytes");
    assert_eq!(&bytes[4..8], b"ftyp");
    let png = c
        .http
        .get(done["last_frame_url"].as_str().expect("url"))
        .send()
        .await
        .expect("png");
    assert_eq!(png.status(), StatusCode::OK);
    let png = png.bytes().await.expect("png bytes");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    let stats = c.sim.stats();
    assert_eq!(stats.tasks_created, 1);
    assert_eq!(stats.tasks_in("completed"), 1);
    assert_eq!(stats.count("create", "202"), 1);
    assert_eq!(stats.count("download", "200"), 2);
    assert_eq!(stats.bytes_served, (bytes.len() + png.len()) as u64);
}

#[tokio::test]
async fn validation_rules_answer_400_naming_the_field() {
    let c = Client::start(fast()).await;
    let img = |url: &str, role: &str| json!({"type": "image_url", "image_url": {"url": url}, "role": role});
    let base = |extra: Value| {
        let mut b = json!({"model": "seedance-1.5-pro", "prompt": "p"});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    let v2 = |extra: Value| {
        let mut b = base(extra);
        b["model"] = json!("seedance-2.0");
        b
    };
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!([1, 2]), "invalid_request", None),
        (base(json!({"colour": "red"})), "invalid_request", Some("colour")),
        (json!({"prompt": "p"}), "invalid_request", Some("model")),
        (
            base(json!({"model": "sora-9"})),
            "upstream_model_not_found",
            Some("model"),
        ),
        (base(json!({"model": 3})), "invalid_request", Some("model")),
        (
            json!({"model": "seedance-2.0"}),
            "invalid_request",
            Some("prompt"),
        ),
        (base(json!({"prompt": "  "})), "invalid_request", Some("prompt")),
        (
            base(json!({"prompt": "x sim:content-violation"})),
            "upstream_content_violation",
            Some("prompt"),
        ),
        (base(json!({"ratio": "2:1"})), "invalid_request", Some("ratio")),
        (
            base(json!({"resolution": "4k"})),
            "invalid_request",
            Some("resolution"),
        ),
        (
            base(json!({"duration": 13})),
            "upstream_invalid_parameter",
            Some("duration"),
        ),
        (
            base(json!({"duration": 3})),
            "upstream_invalid_parameter",
            Some("duration"),
        ),
        (
            v2(json!({"duration": 16})),
            "upstream_invalid_parameter",
            Some("duration"),
        ),
        (
            base(json!({"duration": "5"})),
            "invalid_request",
            Some("duration"),
        ),
        (
            base(json!({"duration": 5.5})),
            "invalid_request",
            Some("duration"),
        ),
        (
            base(json!({"frames": 121})),
            "upstream_invalid_parameter",
            Some("frames"),
        ),
        (
            base(json!({"seed": 4_294_967_296u64})),
            "invalid_request",
            Some("seed"),
        ),
        (base(json!({"seed": -2})), "invalid_request", Some("seed")),
        (base(json!({"seed": null})), "invalid_request", Some("seed")),
        (
            v2(json!({"camera_fixed": false})),
            "upstream_invalid_parameter",
            Some("camera_fixed"),
        ),
        (
            base(json!({"execution_expires_after": 3599})),
            "invalid_request",
            Some("execution_expires_after"),
        ),
        (
            base(json!({"execution_expires_after": 259_201})),
            "invalid_request",
            Some("execution_expires_after"),
        ),
        (
            base(json!({"safety_identifier": "x".repeat(65)})),
            "invalid_request",
            Some("safety_identifier"),
        ),
        (
            base(json!({"service_tier": "priority"})),
            "invalid_request",
            Some("service_tier"),
        ),
        (
            base(json!({"generate_audio": "yes"})),
            "invalid_request",
            Some("generate_audio"),
        ),
        (
            base(json!({"input_has_video": 1})),
            "invalid_request",
            Some("input_has_video"),
        ),
        (
            base(json!({"watermark": "false"})),
            "invalid_request",
            Some("watermark"),
        ),
        (
            base(json!({"return_last_frame": 0})),
            "invalid_request",
            Some("return_last_frame"),
        ),
        (base(json!({"draft": "true"})), "invalid_request", Some("draft")),
        (
            base(json!({"camera_fixed": "no"})),
            "invalid_request",
            Some("camera_fixed"),
        ),
        (
            base(json!({"callback_url": "ftp://x/y"})),
            "invalid_request",
            Some("callback_url"),
        ),
        (
            base(json!({"tools": [{"type": "code_interpreter"}]})),
            "invalid_request",
            Some("tools[0].type"),
        ),
        (
            base(json!({"tools": ["web_search"]})),
            "invalid_request",
            Some("tools[0]"),
        ),
        (
            base(json!({"content": {"type": "image_url"}})),
            "invalid_request",
            Some("content"),
        ),
        (
            base(json!({"content": [{"type": "text_url", "text_url": {"url": "https://a/b"}}]})),
            "invalid_request",
            Some("content[0].type"),
        ),
        (
            base(json!({"content": [{"type": "image_url", "image_url": {"url": "https://a/b"}}]})),
            "invalid_request",
            Some("content[0].role"),
        ),
        (
            base(json!({"content": [img("https://a/b", "reference_video")]})),
            "invalid_request",
            Some("content[0].role"),
        ),
        (
            base(json!({"content": [img("file:///etc/passwd", "first_frame")]})),
            "invalid_request",
            Some("content[0].image_url.url"),
        ),
        (
            base(json!({"content": [img("asset://a1", "first_frame")]})),
            "upstream_invalid_parameter",
            Some("content[0].image_url.url"),
        ),
        (
            base(
                json!({"content": [{"type": "video_url", "video_url": {"url": "https://a/v.mp4"}, "role": "reference_video"}]}),
            ),
            "upstream_invalid_parameter",
            Some("content[0].role"),
        ),
        (
            v2(
                json!({"content": [{"type": "audio_url", "audio_url": {"url": "https://a/a.mp3"}, "role": "first_frame"}]}),
            ),
            "invalid_request",
            Some("content[0].role"),
        ),
        (
            base(json!({"content": [img("https://a/b", "last_frame")]})),
            "upstream_invalid_parameter",
            Some("content"),
        ),
        (
            base(json!({"content": [{"type": "draft_task", "draft_task": {"id": "vgen_nope"}}]})),
            "invalid_request",
            Some("content[0].draft_task.id"),
        ),
        (
            base(
                json!({"content": [{"type": "image_url", "image_url": {"url": "https://a/b", "detail": "hi"}, "role": "first_frame"}]}),
            ),
            "invalid_request",
            Some("content[0].image_url.detail"),
        ),
    ];
    for (b, code, param) in &cases {
        let (status, v) = c.create(b.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b} -> {v}");
        assert_error(&v, code, *param);
    }
    // Not JSON at all.
    let resp = c
        .http
        .post(format!("{}/videos/generations", c.base))
        .bearer_auth(KEY)
        .body("{nope")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // What is allowed: asset:// on 2.0, every field with a valid value.
    let ok = v2(json!({
        "content": [img("asset://portrait-1", "first_frame"), img("https://a/l.png", "last_frame")],
        "ratio": "adaptive", "resolution": "1080p", "duration": 15, "seed": 4_294_967_295u64,
        "generate_audio": true, "input_has_video": false, "watermark": false, "return_last_frame": true,
        "draft": false, "service_tier": "flex", "execution_expires_after": 3600,
        "safety_identifier": "x".repeat(64), "callback_url": "https://example.com/cb",
        "tools": [{"type": "web_search"}]
    }));
    let (status, v) = c.create(ok).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["input_type"], "image");
    let stats = c.sim.stats();
    assert_eq!(stats.count("create", "400"), cases.len() as u64 + 1);
    assert_eq!(stats.tasks_created, 1);
}

#[tokio::test]
async fn draft_tasks_can_be_referenced_once_completed() {
    let c = Client::start(fast()).await;
    let plain = c.create_ok("not a draft").await;
    let mut d = body("draft");
    d["draft"] = json!(true);
    let (_, draft) = c.create(d).await;
    let draft_id = draft["id"].as_str().expect("id").to_string();
    c.completed(&draft_id).await;
    c.completed(&plain).await;
    // A draft is the cheap preview: billed as 480p though 720p was asked.
    let billed = |t: &Value| t["usage"]["total_tokens"].as_u64();
    assert_eq!(
        billed(&c.task(&draft_id).await),
        vidbatch_sim::cost_tokens("480p", "16:9", 5)
    );
    assert_eq!(
        billed(&c.task(&plain).await),
        vidbatch_sim::cost_tokens("720p", "16:9", 5)
    );
    let reference = |id: &str| {
        let mut b = body("final");
        b["content"] = json!([{"type": "draft_task", "draft_task": {"id": id}}]);
        b
    };
    let (status, v) = c.create(reference(&plain)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "invalid_request", Some("content[0].draft_task.id"));
    let (status, v) = c.create(reference(&draft_id)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["draft_task_id"], draft_id.as_str());
    assert_eq!(v["input_type"], "draft_task");
}

#[tokio::test]
async fn auth_failures_are_401_and_accounts_are_separate() {
    let c = Client::start(SimConfig {
        api_keys: vec![KEY.into(), "sk-other".into()],
        ..fast()
    })
    .await;
    for key in [None, Some("sk-wrong")] {
        let resp = c
            .send(key, reqwest::Method::GET, "/videos/models", None)
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_error(&resp.json().await.expect("json"), "unauthorized", None);
    }
    let resp = c
        .http
        .get(format!("{}/videos/models", c.base))
        .header("authorization", format!("Basic {KEY}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let id = c.create_ok("mine").await;
    let (status, v) = c
        .call(
            "sk-other",
            reqwest::Method::GET,
            &format!("/videos/generations/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", None);
    let (_, list) = c
        .call("sk-other", reqwest::Method::GET, "/videos/generations", None)
        .await;
    assert_eq!(list["total"], 0);
    // Without configured keys any non-empty bearer key is accepted.
    let open = Client::start(fast()).await;
    let (status, _) = open
        .call("anything", reqwest::Method::GET, "/videos/models", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let resp = open
        .http
        .get(format!("{}/videos/models", open.base))
        .header("authorization", "Bearer ")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn balance_is_charged_refused_and_refunded() {
    let cost = cost_tokens("720p", "16:9", 5).expect("cost");
    let c = Client::start(SimConfig {
        balance: Some(cost * 2 + 10),
        gen_time: Some(Duration::from_secs(100_000)),
        ..fast()
    })
    .await;
    let acct = account_id(KEY);
    let a = c.create_ok("one").await;
    c.create_ok("two").await;
    assert_eq!(c.sim.stats().balances[&acct], Some(10));
    let (status, v) = c.create(body("three")).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_error(&v, "insufficient_balance", None);
    // Cancel refunds.
    let (status, v) = c
        .call(
            KEY,
            reqwest::Method::POST,
            &format!("/videos/generations/{a}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "cancelled");
    assert_eq!(c.sim.stats().balances[&acct], Some(cost + 10));
    c.create_ok("three again").await;
    // The quota variant answers 429 insufficient_quota.
    let q = Client::start(SimConfig {
        balance: Some(1),
        balance_error_status: BalanceErrorStatus::QuotaExhausted,
        ..fast()
    })
    .await;
    let (status, v) = q.create(body("x")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&v, "insufficient_quota", None);
    let stats = q.sim.stats();
    assert_eq!((stats.balance_refusals, stats.rate_limited), (1, 0));
    // A balance raised at run time takes effect.
    q.sim.update(|cfg| cfg.balance = Some(cost));
    q.create_ok("now affordable").await;
}

#[tokio::test]
async fn failed_tasks_are_refunded() {
    let c = Client::start(SimConfig {
        fail_rate: 1.0,
        balance: Some(10_000_000),
        seed: 1,
        ..fast()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..12 {
        let id = c.create_ok(&format!("doomed {i}")).await;
        let v = c.wait_for(&id, &["failed"]).await;
        assert!(v["error"]["message"].is_string(), "{v}");
        codes.push(v["error"]["code"].clone());
    }
    assert!(codes.iter().all(|c| c.is_string() || c.is_number()));
    assert!(
        codes.iter().any(Value::is_number),
        "a numeric failure code: {codes:?}"
    );
    let stats = c.sim.stats();
    assert_eq!(stats.faults.failed_tasks, 12);
    assert_eq!(stats.tasks_in("failed"), 12);
    assert_eq!(stats.balances[&account_id(KEY)], Some(10_000_000));
}

#[tokio::test]
async fn unknown_task_is_404_and_final_tasks_cannot_be_cancelled() {
    let c = Client::start(fast()).await;
    let (status, v) = c.get("/videos/generations/vgen_doesnotexist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", None);
    let (status, _) = c
        .call(
            KEY,
            reqwest::Method::POST,
            "/videos/generations/vgen_nope/cancel",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = c.create_ok("done soon").await;
    c.completed(&id).await;
    let (status, v) = c
        .call(
            KEY,
            reqwest::Method::POST,
            &format!("/videos/generations/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&v, "conflict", None);
    assert_eq!(v["error"]["task_id"], id.as_str());
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers_and_optional_retry_after() {
    for retry_after in [
        None,
        Some(RetryAfterFormat::Seconds),
        Some(RetryAfterFormat::HttpDate),
    ] {
        let c = Client::start(SimConfig {
            rpm: 60,
            rate_burst: Some(2),
            retry_after,
            ..fast()
        })
        .await;
        for _ in 0..2 {
            let resp = c
                .send(Some(KEY), reqwest::Method::GET, "/videos/models", None)
                .await
                .expect("answer");
            assert_eq!(resp.status(), StatusCode::OK);
        }
        let resp = c
            .send(Some(KEY), reqwest::Method::GET, "/videos/models", None)
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers().clone();
        assert_eq!(h["x-ratelimit-limit"], "60");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        let reset: f64 = h["x-ratelimit-reset"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        // The refusal was charged a token: the bucket owes one, so the wait is past a second.
        assert!(reset > 1.0 && reset <= 2.0, "{reset}");
        match retry_after {
            None => assert!(!h.contains_key("retry-after")),
            Some(RetryAfterFormat::Seconds) => assert_eq!(h["retry-after"], "2"),
            Some(RetryAfterFormat::HttpDate) => {
                let at = httpdate::parse_http_date(h["retry-after"].to_str().expect("ascii"))
                    .expect("an HTTP date");
                let ahead = at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                assert!(ahead <= Duration::from_secs(3), "{ahead:?}");
            }
        }
        assert_error(&resp.json().await.expect("json"), "rate_limit_exceeded", None);
        // Another key has its own bucket.
        let (status, _) = c
            .call("sk-other", reqwest::Method::GET, "/videos/models", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let stats = c.sim.stats();
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.count("models", "429"), 1);
    }
}

async fn statuses(c: &Client, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(c.task(id).await["status"].as_str().unwrap_or("").to_string());
    }
    out
}

#[tokio::test]
async fn concurrency_cap_holds_and_queue_is_fifo() {
    let c = Client::start(SimConfig {
        concurrency: 2,
        gen_time: Some(Duration::from_secs(100_000)),
        ..fast()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(c.create_ok(&format!("t{i}")).await);
    }
    assert_eq!(
        statuses(&c, &ids).await,
        ["processing", "processing", "queued", "queued", "queued"]
    );
    c.call(
        KEY,
        reqwest::Method::POST,
        &format!("/videos/generations/{}/cancel", ids[1]),
        None,
    )
    .await;
    assert_eq!(
        statuses(&c, &ids).await,
        ["processing", "cancelled", "processing", "queued", "queued"]
    );
    c.call(
        KEY,
        reqwest::Method::POST,
        &format!("/videos/generations/{}/cancel", ids[2]),
        None,
    )
    .await;
    c.call(
        KEY,
        reqwest::Method::POST,
        &format!("/videos/generations/{}/cancel", ids[0]),
        None,
    )
    .await;
    assert_eq!(
        statuses(&c, &ids).await,
        ["cancelled", "cancelled", "cancelled", "processing", "processing"]
    );
    let stats = c.sim.stats();
    assert_eq!(stats.max_processing, 2);
    assert_eq!(stats.max_queued_or_processing, 5);
}

#[tokio::test]
async fn many_tasks_complete_under_the_cap() {
    let c = Client::start(SimConfig {
        concurrency: 3,
        ..fast()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(c.create_ok(&format!("t{i}")).await);
    }
    for id in &ids {
        c.completed(id).await;
    }
    let stats = c.sim.stats();
    assert_eq!(stats.max_processing, 3);
    assert_eq!(stats.tasks_in("completed"), 9);
}

#[tokio::test]
async fn too_many_queued_tasks_is_429() {
    let c = Client::start(SimConfig {
        concurrency: 1,
        max_queued: 2,
        gen_time: Some(Duration::from_secs(100_000)),
        ..fast()
    })
    .await;
    for i in 0..3 {
        c.create_ok(&format!("t{i}")).await;
    }
    let (status, v) = c.create(body("one too many")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&v, "too_many_queued_tasks", None);
    let stats = c.sim.stats();
    assert_eq!(
        (stats.queue_full, stats.rate_limited, stats.tasks_created),
        (1, 0, 3)
    );
}

#[tokio::test]
async fn completed_status_sometimes_reads_succeeded() {
    let c = Client::start(SimConfig {
        succeeded_rate: 0.5,
        ..fast()
    })
    .await;
    let id = c.create_ok("x").await;
    c.completed(&id).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(c.task(&id).await["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["completed", "succeeded"]);
    assert_eq!(c.sim.stats().tasks_in("completed"), 1);
}

#[tokio::test]
async fn completed_tasks_expire_after_the_asset_ttl() {
    let c = Client::start(SimConfig {
        asset_ttl: Duration::from_secs(300),
        ..fast()
    })
    .await;
    let id = c.create_ok("short-lived").await;
    let done = c.completed(&id).await;
    let url = done["video_url"].as_str().expect("url").to_string();
    let v = c.wait_for(&id, &["expired"]).await;
    assert_eq!(v["is_expired"], true);
    assert!(v["video_url"].is_null());
    assert_eq!(
        c.http.get(url).send().await.expect("answer").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn injected_errors_are_500_or_503_upstream_error() {
    let c = Client::start(SimConfig {
        error_rate: 1.0,
        ..fast()
    })
    .await;
    let mut statuses = std::collections::BTreeSet::new();
    let mut numeric = false;
    for _ in 0..20 {
        let resp = c
            .send(Some(KEY), reqwest::Method::GET, "/videos/models", None)
            .await
            .expect("answer");
        statuses.insert(resp.status().as_u16());
        let v: Value = resp.json().await.expect("json");
        numeric |= v["error"]["code"] == 503;
        assert!(
            v["error"]["code"] == "upstream_error" || v["error"]["code"] == 503,
            "{v}"
        );
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [500, 503]);
    assert!(numeric, "some 503s carry a numeric code");
    let (status, _) = c.create(body("x")).await;
    assert!(status.is_server_error());
    let stats = c.sim.stats();
    assert_eq!((stats.faults.errors, stats.tasks_created), (21, 0));
}

#[tokio::test]
async fn dropped_connection_is_a_connection_error() {
    let c = Client::start(SimConfig {
        drop_rate: 1.0,
        ..fast()
    })
    .await;
    let err = c
        .send(
            Some(KEY),
            reqwest::Method::POST,
            "/videos/generations",
            Some(&body("x")),
        )
        .await
        .expect_err("no answer");
    assert!(err.status().is_none(), "{err:?}");
    let stats = c.sim.stats();
    assert_eq!(
        (
            stats.faults.drops,
            stats.count("create", "dropped"),
            stats.tasks_created
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn ambiguous_create_records_the_task_without_answering() {
    let c = Client::start(SimConfig {
        ambiguous_create_rate: 1.0,
        ..fast()
    })
    .await;
    let err = c
        .send(
            Some(KEY),
            reqwest::Method::POST,
            "/videos/generations",
            Some(&body("x")),
        )
        .await
        .expect_err("no answer");
    assert!(err.status().is_none(), "{err:?}");
    let (_, list) = c.get("/videos/generations").await;
    assert_eq!(list["total"], 1, "{list}");
    let id = list["items"][0]["id"].as_str().expect("id").to_string();
    c.completed(&id).await;
    let stats = c.sim.stats();
    assert_eq!((stats.faults.ambiguous_creates, stats.tasks_created), (1, 1));
    // Re-sending the same body is counted as a duplicate submission.
    c.sim.update(|cfg| cfg.ambiguous_create_rate = 0.0);
    c.create_ok("x").await;
    assert_eq!(c.sim.stats().duplicate_creates, 1);
}

/// A completed task's video URL.
async fn video_url(c: &Client) -> String {
    let id = c.create_ok("video").await;
    c.completed(&id).await["video_url"]
        .as_str()
        .expect("url")
        .to_string()
}

#[tokio::test]
async fn slow_download_is_throttled() {
    let c = Client::start(SimConfig {
        slow_download_rate: 1.0,
        slow_download_bps: 40_000,
        video_size: Some(12_000),
        ..fast()
    })
    .await;
    let url = video_url(&c).await;
    let t0 = Instant::now();
    let bytes = c
        .http
        .get(url)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    let took = t0.elapsed();
    assert_eq!(bytes.len(), 12_000);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(c.sim.stats().faults.slow_downloads, 1);
}

#[tokio::test]
async fn cut_download_sends_fewer_bytes_than_announced() {
    let c = Client::start(SimConfig {
        cut_download_rate: 1.0,
        video_size: Some(1_000_000),
        ..fast()
    })
    .await;
    let url = video_url(&c).await;
    let mut resp = c.http.get(url).send().await.expect("headers arrive");
    assert_eq!(resp.content_length(), Some(1_000_000));
    let mut got = 0usize;
    let err = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => panic!("the body ended cleanly after {got} bytes"),
            Err(e) => break e,
        }
    };
    assert!(err.is_body() || err.is_decode() || err.is_request(), "{err:?}");
    assert!(got < 1_000_000, "{got}");
    let stats = c.sim.stats();
    assert_eq!(stats.faults.cut_downloads, 1);
    assert_eq!(stats.bytes_served, got as u64);
}

#[tokio::test]
async fn short_url_is_403_and_a_fresh_get_gives_a_working_one() {
    let c = Client::start(SimConfig {
        short_url_rate: 1.0,
        ..fast()
    })
    .await;
    let id = c.create_ok("x").await;
    let task = c.completed(&id).await;
    assert_eq!(
        task["video_url_ttl"], 3,
        "the short URL still advertises the normal TTL"
    );
    let resp = c
        .http
        .get(task["video_url"].as_str().expect("url"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.text()
            .await
            .expect("xml")
            .contains("<Code>AccessDenied</Code>")
    );
    c.sim.update(|cfg| cfg.short_url_rate = 0.0);
    let fresh = c.task(&id).await;
    let resp = c
        .http
        .get(fresh["video_url"].as_str().expect("url"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(c.sim.stats().faults.short_urls >= 1);
}

#[tokio::test]
async fn latency_delays_answers_after_the_work_is_done() {
    let c = Client::start(SimConfig {
        latency: Duration::from_millis(300),
        ..fast()
    })
    .await;
    let t0 = Instant::now();
    let (status, _) = c.get("/videos/models").await;
    assert_eq!(status, StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let err = c
        .http
        .post(format!("{}/videos/generations", c.base))
        .bearer_auth(KEY)
        .json(&body("x"))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("a client timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        c.sim.stats().tasks_created,
        1,
        "the timed-out create still made a task"
    );
}

#[tokio::test]
async fn range_requests_and_head() {
    let c = Client::start(fast()).await;
    let url = video_url(&c).await;
    let full = c
        .http
        .get(&url)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    let len = full.len();
    let range = |r: String| c.http.get(&url).header("range", r).send();
    let resp = range("bytes=0-9".into()).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(resp.bytes().await.expect("body"), full.slice(0..10));
    let resp = range("bytes=100-".into()).await.expect("answer");
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 100-{}/{len}", len - 1).as_str()
    );
    assert_eq!(resp.bytes().await.expect("body"), full.slice(100..));
    let resp = range("bytes=-16".into()).await.expect("answer");
    assert_eq!(resp.bytes().await.expect("body"), full.slice(len - 16..));
    let resp = range(format!("bytes={len}-")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{len}").as_str());
    let head = c.http.head(&url).send().await.expect("answer");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    let stats = c.sim.stats();
    assert_eq!(stats.count("download", "206"), 3);
    assert_eq!(stats.count("download", "416"), 1);
}

#[tokio::test]
async fn expired_and_forged_urls_are_403() {
    let c = Client::start(SimConfig {
        url_ttl: Duration::from_secs(100),
        ..fast()
    })
    .await;
    let url = video_url(&c).await;
    let forged_sig = format!("{}0", &url[..url.len() - 1]);
    let forged_sig = if forged_sig == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        forged_sig
    };
    let resp = c.http.get(&forged_sig).send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.expect("xml").contains("SignatureDoesNotMatch"));
    let later = url.replacen("expires=", "expires=9", 1);
    assert_eq!(
        c.http.get(&later).send().await.expect("answer").status(),
        StatusCode::FORBIDDEN
    );
    let other_task = url.replacen("/files/vgen_", "/files/vgen_x", 1);
    assert_eq!(
        c.http.get(&other_task).send().await.expect("answer").status(),
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resp = c.http.get(&url).send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.expect("xml").contains("Request has expired"));
}

#[tokio::test]
async fn each_task_gets_distinct_valid_mp4_bytes() {
    let c = Client::start(fast()).await;
    let a = c
        .http
        .get(video_url(&c).await)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    let b = c
        .http
        .get(video_url(&c).await)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    assert_ne!(a, b);
    for v in [&a, &b] {
        assert_eq!(&v[4..8], b"ftyp");
        assert!(v.windows(4).any(|w| w == b"moov"));
    }
}

#[tokio::test]
async fn large_video_is_streamed_to_the_exact_size() {
    let c = Client::start(SimConfig {
        video_size: Some(8 << 20),
        ..fast()
    })
    .await;
    let mut resp = c.http.get(video_url(&c).await).send().await.expect("answer");
    assert_eq!(resp.content_length(), Some(8 << 20));
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        total += chunk.len() as u64;
    }
    assert_eq!(total, 8 << 20);
    assert_eq!(c.sim.stats().bytes_served, 8 << 20);
}

/// Outcomes of a fixed request sequence against a faulty simulator.
async fn fault_trace(seed: u64) -> Vec<String> {
    let c = Client::start(SimConfig {
        seed,
        error_rate: 0.3,
        drop_rate: 0.2,
        ..fast()
    })
    .await;
    let mut out = Vec::new();
    for _ in 0..30 {
        out.push(
            match c
                .send(Some(KEY), reqwest::Method::GET, "/videos/models", None)
                .await
            {
                Ok(resp) => resp.status().as_str().to_string(),
                Err(_) => "dropped".to_string(),
            },
        );
    }
    out
}

#[tokio::test]
async fn same_seed_same_faults() {
    let a = fault_trace(42).await;
    assert_eq!(a, fault_trace(42).await);
    assert_ne!(a, fault_trace(43).await);
    for outcome in ["200", "dropped"] {
        assert!(a.iter().any(|o| o == outcome), "{a:?}");
    }
}

#[tokio::test]
async fn duplicate_creates_are_counted_per_key() {
    let c = Client::start(fast()).await;
    c.create_ok("same").await;
    let reordered = json!({"resolution": "720p", "ratio": "16:9", "duration": 5, "prompt": "same", "model": "seedance-1.5-pro"});
    let (status, _) = c.create(reordered).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    c.call(
        "sk-other",
        reqwest::Method::POST,
        "/videos/generations",
        Some(&body("same")),
    )
    .await;
    c.create_ok("different").await;
    let stats = c.sim.stats();
    assert_eq!((stats.duplicate_creates, stats.tasks_created), (1, 4));
}

#[tokio::test]
async fn idempotency_key_is_ignored_unless_honoured() {
    for honour in [false, true] {
        let c = Client::start(SimConfig {
            honour_idempotency_key: honour,
            ..fast()
        })
        .await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let resp = c
                .http
                .post(format!("{}/videos/generations", c.base))
                .bearer_auth(KEY)
                .header("Idempotency-Key", "job-1")
                .json(&body("x"))
                .send()
                .await
                .expect("answer");
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            ids.push(resp.json::<Value>().await.expect("json")["id"].clone());
        }
        assert_eq!(ids[0] == ids[1], honour);
        let stats = c.sim.stats();
        assert_eq!(stats.tasks_created, if honour { 1 } else { 2 });
        assert_eq!(stats.duplicate_creates, if honour { 0 } else { 1 });
    }
}

#[tokio::test]
async fn list_filters_limits_and_orders_newest_first() {
    let c = Client::start(SimConfig {
        concurrency: 1,
        gen_time: Some(Duration::from_secs(100_000)),
        ..fast()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(c.create_ok(&format!("t{i}")).await);
    }
    let (status, v) = c.get("/videos/generations").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(v["total"], 4);
    let (_, v) = c.get("/videos/generations?limit=2").await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["total"], 4);
    let (_, v) = c.get("/videos/generations?status=queued&limit=100").await;
    assert_eq!(v["total"], 3);
    assert!(
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|t| t["status"] == "queued")
    );
    let (_, v) = c.get("/videos/generations?status=processing").await;
    assert_eq!(v["items"][0]["id"], ids[0].as_str());
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("cursor=x", "cursor"),
    ] {
        let (status, v) = c.get(&format!("/videos/generations?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_error(&v, "invalid_request", Some(param));
    }
}

#[tokio::test]
async fn list_items_show_seeds_only_when_asked_and_a_task_read_always_does() {
    for list_seeds in [false, true] {
        let c = Client::start(SimConfig { list_seeds, ..fast() }).await;
        let id = c.create_ok("seeded").await;
        let (_, page) = c.get("/videos/generations").await;
        let item = &page["items"][0];
        assert_eq!(item["id"], id.as_str());
        assert_eq!(item.get("seed").is_some(), list_seeds, "{item}");
        assert!(
            c.task(&id).await["seed"].is_i64(),
            "a task's own read shows its seed"
        );
    }
}

#[tokio::test]
async fn stats_and_config_over_http() {
    let c = Client::start(fast()).await;
    c.create_ok("x").await;
    let origin = c.base.trim_end_matches("/v1");
    let v: Value = c
        .http
        .get(format!("{origin}/_sim/stats"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(v["tasks_created"], 1);
    assert_eq!(v["requests"]["create"]["202"], 1);
    for key in [
        "rate_limited",
        "tasks_by_status",
        "duplicate_creates",
        "max_processing",
        "max_queued_or_processing",
        "bytes_served",
        "faults",
    ] {
        assert!(!v[key].is_null(), "{key}");
    }
    let resp = c
        .http
        .post(format!("{origin}/_sim/config"))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = c.get("/videos/models").await;
    assert!(status.is_server_error());
    let resp = c
        .http
        .post(format!("{origin}/_sim/config"))
        .json(&json!({"nonsense": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn downloaded_video_is_h264() {
    let c = Client::start(fast()).await;
    let bytes = c
        .http
        .get(video_url(&c).await)
        .send()
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v.mp4");
    std::fs::write(&file, &bytes).expect("write");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output();
    match probe {
        Err(_) => println!("ffprobe not on PATH: skipping the codec check"),
        Ok(out) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "h264");
        }
    }
}
