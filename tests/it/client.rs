//! The API client against the simulator on 127.0.0.1: every endpoint, and every error class.

use std::time::Duration;

use vidbatch::api::{
    ApiError, ApiKey, Client, ClientConfig, ContentItem, ContentRole, CreateRequest, IdempotencyKey,
    ListQuery, MediaUrl, TaskStatus,
};
use vidbatch_sim::{Sim, SimConfig, SimHandle};

fn client(sim: &SimHandle, key: &str) -> Client {
    let mut config = ClientConfig::new(sim.base_url(), ApiKey::new(key));
    config.request_timeout = Duration::from_secs(5);
    Client::new(&config).unwrap()
}

fn request(prompt: &str) -> CreateRequest {
    CreateRequest {
        model: "seedance-1.5-pro".into(),
        prompt: prompt.into(),
        duration: Some(5),
        ratio: Some(vidbatch::api::Ratio::Landscape),
        resolution: Some(vidbatch::api::Resolution::P480),
        ..Default::default()
    }
}

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey::new(format!("client-test-{n}"))
}

fn fast() -> SimConfig {
    SimConfig {
        time_scale: 0.001,
        rpm: 0,
        ..SimConfig::default()
    }
}

async fn wait_finished(c: &Client, id: &str) -> vidbatch::api::Task {
    for _ in 0..500 {
        let t = c.get(id).await.unwrap();
        if t.status.is_terminal() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never finished");
}

#[tokio::test]
async fn every_endpoint_works() {
    let sim = Sim::start(fast()).await.unwrap();
    let c = client(&sim, "k1");
    let models = c.list_models().await.unwrap();
    assert!(models.data.iter().any(|m| m.id == "seedance-2.0"));

    let mut image = request("the cat jumps forward");
    image.content = vec![ContentItem::ImageUrl {
        image_url: MediaUrl {
            url: "https://example.com/cat.png".into(),
        },
        role: Some(ContentRole::FirstFrame),
    }];
    image.return_last_frame = Some(true);
    let created = c.create(&image, &key(1)).await.unwrap();
    assert!(created.id.starts_with("vgen_"), "{}", created.id);
    assert!(matches!(
        created.status,
        TaskStatus::Queued | TaskStatus::Processing
    ));

    let done = wait_finished(&c, &created.id).await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert!(done.video_url.is_some() && done.last_frame_url.is_some());
    assert!(done.video_url_expires_at.is_some());
    assert!(done.usage.unwrap().total_tokens > 0);

    let all = c
        .list(&ListQuery {
            limit: Some(10),
            status: None,
        })
        .await
        .unwrap();
    assert!(all.items.iter().any(|t| t.id == created.id));
    let completed = c
        .list(&ListQuery {
            limit: Some(100),
            status: Some(TaskStatus::Completed),
        })
        .await
        .unwrap();
    assert!(completed.items.iter().all(|t| t.status == TaskStatus::Completed));

    let slow = Sim::start(SimConfig {
        gen_time: Some(Duration::from_secs(3600)),
        time_scale: 1.0,
        rpm: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let sc = client(&slow, "k1");
    let running = sc.create(&request("a long one"), &key(2)).await.unwrap();
    let cancelled = sc
        .cancel(&running.id)
        .await
        .unwrap()
        .expect("the task comes back");
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
}

#[tokio::test]
async fn every_error_class_is_classified() {
    let sim = Sim::start(SimConfig {
        api_keys: vec!["good".into()],
        ..fast()
    })
    .await
    .unwrap();
    let c = client(&sim, "good");

    // 401
    let e = client(&sim, "bad").list_models().await.unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized(_)), "{e:?}");
    assert!(e.is_fatal());

    // 400 with code and param
    let mut bad = request("too long");
    bad.duration = Some(99);
    match c.create(&bad, &key(3)).await.unwrap_err() {
        ApiError::InvalidRequest { status: 400, detail } => {
            assert_eq!(detail.param.as_deref(), Some("duration"));
            assert!(!detail.code.0.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // 404
    let e = c.get("vgen_doesnotexist").await.unwrap_err();
    assert!(matches!(e, ApiError::NotFound(_)), "{e:?}");

    // 409
    let t = c.create(&request("finish me"), &key(4)).await.unwrap();
    wait_finished(&c, &t.id).await;
    let e = c.cancel(&t.id).await.unwrap_err();
    assert!(matches!(e, ApiError::Conflict(_)), "{e:?}");

    // 402, and the 429 that says the quota is gone
    let broke = Sim::start(SimConfig {
        balance: Some(0),
        ..fast()
    })
    .await
    .unwrap();
    let e = client(&broke, "k")
        .create(&request("pay"), &key(5))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Payment(_)), "{e:?}");
    let quota = Sim::start(SimConfig {
        balance: Some(0),
        balance_error_status: vidbatch_sim::BalanceErrorStatus::QuotaExhausted,
        ..fast()
    })
    .await
    .unwrap();
    let e = client(&quota, "k")
        .create(&request("pay"), &key(6))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::Payment(_)),
        "a quota 429 is not transient: {e:?}"
    );

    // 429 with the server's wait, from x-ratelimit-reset and from Retry-After
    for retry_after in [
        None,
        Some(vidbatch_sim::RetryAfterFormat::Seconds),
        Some(vidbatch_sim::RetryAfterFormat::HttpDate),
    ] {
        let wait = wait_asked(SimConfig {
            retry_after,
            ..fast()
        })
        .await;
        // The refusal is charged a token, so the wait is about 2 s; an HTTP date rounds up to
        // the next whole second.
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
    }

    // 5xx on a read is transient; on a create it is an ambiguous create
    let failing = Sim::start(SimConfig {
        error_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let fc = client(&failing, "k");
    let e = fc.get("vgen_x").await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Transient {
                status: Some(500 | 503),
                ..
            }
        ),
        "{e:?}"
    );
    let e = fc.create(&request("x"), &key(7)).await.unwrap_err();
    assert!(matches!(e, ApiError::AmbiguousCreate { .. }), "{e:?}");

    // A dropped connection: transient on a read, ambiguous on a create
    let dropping = Sim::start(SimConfig {
        drop_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let dc = client(&dropping, "k");
    assert!(matches!(
        dc.get("vgen_x").await.unwrap_err(),
        ApiError::Transient { status: None, .. }
    ));
    assert!(matches!(
        dc.create(&request("x"), &key(8)).await.unwrap_err(),
        ApiError::AmbiguousCreate { .. }
    ));

    // The ambiguous create made a task all the same
    let ambiguous = Sim::start(SimConfig {
        ambiguous_create_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let ac = client(&ambiguous, "k");
    let e = ac.create(&request("x"), &key(9)).await.unwrap_err();
    assert!(matches!(e, ApiError::AmbiguousCreate { .. }), "{e:?}");
    assert_eq!(ambiguous.stats().tasks_created, 1);

    // A timeout after sending: ambiguous, and the task exists
    let slow = Sim::start(SimConfig {
        latency: Duration::from_millis(500),
        ..fast()
    })
    .await
    .unwrap();
    let mut config = ClientConfig::new(slow.base_url(), ApiKey::new("k"));
    config.request_timeout = Duration::from_millis(100);
    let tc = Client::new(&config).unwrap();
    let e = tc.create(&request("x"), &key(10)).await.unwrap_err();
    assert!(matches!(e, ApiError::AmbiguousCreate { .. }), "{e:?}");
    assert!(matches!(
        tc.get("vgen_x").await.unwrap_err(),
        ApiError::Transient { .. }
    ));

    // Nothing listening: not sent, so transient even for a create
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    };
    let nc = Client::new(&ClientConfig::new(
        format!("http://{closed}/v1"),
        ApiKey::new("k"),
    ))
    .unwrap();
    let e = nc.create(&request("x"), &key(11)).await.unwrap_err();
    assert!(matches!(e, ApiError::Transient { status: None, .. }), "{e:?}");
}

#[tokio::test]
async fn the_idempotency_key_is_sent_on_create() {
    let sim = Sim::start(SimConfig {
        honour_idempotency_key: true,
        ..fast()
    })
    .await
    .unwrap();
    let c = client(&sim, "k");
    let first = c.create(&request("once"), &key(12)).await.unwrap();
    let again = c.create(&request("once"), &key(12)).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(sim.stats().tasks_created, 1);
    assert_eq!(sim.stats().idempotent_replays, 1);
}

/// The wait the client reads off the 429 of a simulator at 60 requests a minute with a bucket of
/// one (and `config`'s other settings), once one request has spent the bucket.
async fn wait_asked(config: SimConfig) -> Duration {
    let limited = Sim::start(SimConfig {
        rpm: 60,
        rate_burst: Some(1),
        ..config
    })
    .await
    .unwrap();
    let lc = client(&limited, "k");
    lc.list_models().await.unwrap();
    match lc.list_models().await.unwrap_err() {
        ApiError::RateLimited { retry_after, .. } => retry_after.expect("the server's wait is read"),
        other => panic!("{other:?}"),
    }
}

/// A `Retry-After` HTTP date is on the server's clock: a server two hours ahead (or behind)
/// asks for the same short wait, not two hours (or none at all).
#[tokio::test]
async fn a_retry_after_date_is_read_on_the_servers_clock() {
    for clock_offset_secs in [7200.0, -7200.0] {
        let wait = wait_asked(SimConfig {
            retry_after: Some(vidbatch_sim::RetryAfterFormat::HttpDate),
            clock_offset_secs,
            ..fast()
        })
        .await;
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(3),
            "server clock {clock_offset_secs:+} s: asked to wait {wait:?}"
        );
    }
}
