//! Unit tests of the transfer's parts: ranges, redaction, `.part` files.
use super::*;

#[test]
fn content_range_parsing() {
    assert_eq!(
        parse_content_range("bytes 100-999/1000"),
        Some(ContentRange {
            range: Some((100, 999)),
            total: Some(1000)
        })
    );
    assert_eq!(
        parse_content_range("bytes 0-9/*"),
        Some(ContentRange {
            range: Some((0, 9)),
            total: None
        })
    );
    assert_eq!(
        parse_content_range("bytes */1000"),
        Some(ContentRange {
            range: None,
            total: Some(1000)
        })
    );
    assert_eq!(parse_content_range("bytes 9-1/10"), None);
    assert_eq!(parse_content_range("items 0-1/2"), None);
    assert_eq!(parse_content_range("bytes x-1/2"), None);
}

#[test]
fn redaction_drops_query_and_credentials() {
    let u = "https://user:pw@cdn.example.com/v/a.mp4?X-Amz-Signature=secret&x=1#frag";
    let r = redact_url(u);
    assert_eq!(r, "https://cdn.example.com/v/a.mp4");
    assert!(!redact_url("not a url?sig=secret").contains("secret"));
}

#[test]
fn part_path_is_beside_dest() {
    assert_eq!(
        part_path(Path::new("out/videos/a.mp4")),
        PathBuf::from("out/videos/a.mp4.part")
    );
}
