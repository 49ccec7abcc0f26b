//! Unit tests of the simulator's state: buckets and tasks over time.
use super::*;

#[test]
fn bucket_refills_at_rpm() {
    let mut b = Bucket {
        tokens: 2.0,
        last: Duration::ZERO,
    };
    assert!(matches!(
        b.take(Duration::ZERO, 60, 2),
        RateDecision::Allowed { remaining: 1, .. }
    ));
    assert!(matches!(
        b.take(Duration::ZERO, 60, 2),
        RateDecision::Allowed { remaining: 0, .. }
    ));
    match b.take(Duration::from_millis(500), 60, 2) {
        RateDecision::Limited { wait } => assert!((wait - 0.5).abs() < 1e-9, "{wait}"),
        _ => panic!("expected a refusal"),
    }
    assert!(matches!(
        b.take(Duration::from_secs(1), 60, 2),
        RateDecision::Allowed { .. }
    ));
}
