//! Unit tests of the simulator's state: buckets and tasks over time.
use super::*;

#[test]
fn a_charged_refusal_puts_the_bucket_in_debt_down_to_one_burst() {
    let mut b = Bucket {
        tokens: 1.0,
        last: Duration::ZERO,
    };
    assert!(matches!(
        b.take(Duration::ZERO, 60, 2, true),
        RateDecision::Allowed { remaining: 0, .. }
    ));
    // Refused at 0.5 s with half a token: the refusal costs one, so the wait is 1.5 s, not 0.5 s.
    match b.take(Duration::from_millis(500), 60, 2, true) {
        RateDecision::Limited { wait } => assert!((wait - 1.5).abs() < 1e-9, "{wait}"),
        _ => panic!("expected a refusal"),
    }
    // A client that retries at once keeps itself refused; the debt stops at minus one burst.
    for _ in 0..10 {
        assert!(matches!(
            b.take(Duration::from_millis(500), 60, 2, true),
            RateDecision::Limited { .. }
        ));
    }
    match b.take(Duration::from_millis(500), 60, 2, true) {
        RateDecision::Limited { wait } => assert!((wait - 3.0).abs() < 1e-9, "{wait}"),
        _ => panic!("expected a refusal"),
    }
    // One that waits the time it was told gets through.
    assert!(matches!(
        b.take(Duration::from_millis(3500), 60, 2, true),
        RateDecision::Allowed { .. }
    ));
}

#[test]
fn bucket_refills_at_rpm() {
    let mut b = Bucket {
        tokens: 2.0,
        last: Duration::ZERO,
    };
    assert!(matches!(
        b.take(Duration::ZERO, 60, 2, false),
        RateDecision::Allowed { remaining: 1, .. }
    ));
    assert!(matches!(
        b.take(Duration::ZERO, 60, 2, false),
        RateDecision::Allowed { remaining: 0, .. }
    ));
    match b.take(Duration::from_millis(500), 60, 2, false) {
        RateDecision::Limited { wait } => assert!((wait - 0.5).abs() < 1e-9, "{wait}"),
        _ => panic!("expected a refusal"),
    }
    assert!(matches!(
        b.take(Duration::from_secs(1), 60, 2, false),
        RateDecision::Allowed { .. }
    ));
}
