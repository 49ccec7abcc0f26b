//! The bytes the simulator serves: the main structure here is [`FileLayout`], a per-task file streamed in chunks.
//!
//! Videos are a real 1 s H.264 MP4 (160×90, made once with ffmpeg and embedded) followed by a
//! top-level `free` box carrying the task id, so every task's file is distinct and still parses.
//! With a target size the `free` box is padded with zeros (64-bit box size past 4 GiB) and the
//! padding is produced while streaming, never held in memory. Last frames are a PNG of the frame size with a
//! `tEXt` chunk carrying the task id.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;

/// The embedded H.264 clip.
pub(crate) const CLIP: &[u8] = include_bytes!("clip.mp4");

const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// A file made of a materialised prefix followed by zero padding up to `total` bytes.
#[derive(Debug, Clone)]
pub(crate) struct FileLayout {
    prefix: Bytes,
    total: u64,
}

impl FileLayout {
    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Bytes `[start, start + len)`; `len` must be small (one chunk).
    fn slice(&self, start: u64, len: usize) -> Bytes {
        let plen = self.prefix.len() as u64;
        if start + len as u64 <= plen {
            let s = start as usize;
            return self.prefix.slice(s..s + len);
        }
        if start >= plen {
            return Bytes::from_static(&ZEROS[..len]);
        }
        let s = start as usize;
        let mut out = BytesMut::with_capacity(len);
        out.extend_from_slice(&self.prefix[s..]);
        out.resize(len, 0);
        out.freeze()
    }
}

/// The video of `task_id`, padded to `target_size` bytes when that is larger than the natural size.
pub(crate) fn video(task_id: &str, target_size: Option<u64>) -> FileLayout {
    let payload = format!("vidbatch-sim task_id={task_id}\n");
    let clip = CLIP.len() as u64;
    let natural = clip + 8 + payload.len() as u64;
    let total = target_size.filter(|&t| t > natural + 8).unwrap_or(natural);
    let box_size = total - clip;
    let mut prefix = BytesMut::with_capacity(CLIP.len() + 16 + payload.len());
    prefix.extend_from_slice(CLIP);
    match u32::try_from(box_size) {
        Ok(size) => {
            prefix.extend_from_slice(&size.to_be_bytes());
            prefix.extend_from_slice(b"free");
        }
        Err(_) => {
            prefix.extend_from_slice(&1u32.to_be_bytes());
            prefix.extend_from_slice(b"free");
            prefix.extend_from_slice(&box_size.to_be_bytes());
        }
    }
    prefix.extend_from_slice(payload.as_bytes());
    FileLayout {
        prefix: prefix.freeze(),
        total,
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The last-frame PNG of `task_id`, `width` × `height` (the task's frame size): an RGB image in
/// one colour drawn from the task id, stored uncompressed, with a `tEXt` chunk naming the task.
pub(crate) fn last_frame(task_id: &str, width: u32, height: u32) -> FileLayout {
    fn chunk(out: &mut BytesMut, kind: &[u8], data: &[u8]) {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let (w, h) = (width.max(1), height.max(1));
    let shade = task_id
        .bytes()
        .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    // Each row: filter type 0, then the pixels.
    let mut row = vec![0u8];
    row.extend([shade, 255 - shade, 128].repeat(w as usize));
    let raw = row.repeat(h as usize);
    // zlib with stored (uncompressed) blocks of at most 65,535 bytes, then Adler-32.
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = BytesMut::with_capacity(zlib.len() + 128);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut text = b"Comment\0vidbatch-sim task_id=".to_vec();
    text.extend_from_slice(task_id.as_bytes());
    chunk(&mut out, b"tEXt", &text);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    let total = out.len() as u64;
    FileLayout {
        prefix: out.freeze(),
        total,
    }
}

/// The outcome of a `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No usable range: send the whole file (200).
    Full,
    /// Send bytes `start..=end` (206).
    Part(u64, u64),
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Interpret a `Range` header: `bytes=a-b`, `bytes=a-`, `bytes=-n`; anything else (several ranges, other units, garbage) is ignored.
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Part(len.saturating_sub(n), len - 1),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() { Some(u64::MAX) } else { parse(b) };
            match end {
                None => RangeAnswer::Full,
                Some(end) if end < start => RangeAnswer::Full,
                Some(_) if start >= len => RangeAnswer::Unsatisfiable,
                Some(end) => RangeAnswer::Part(start, end.min(len - 1)),
            }
        }
        (true, true) => RangeAnswer::Full,
    }
}

/// How a body is to be streamed.
pub(crate) struct StreamPlan {
    /// First byte to send.
    pub start: u64,
    /// One past the last byte to send.
    pub end: u64,
    /// Throttle to this many bytes per second.
    pub bps: Option<u64>,
    /// Fail the stream (aborting the connection) once this offset is reached.
    pub cut_at: Option<u64>,
}

/// Stream `plan` of `file`, adding every byte handed to the connection to `served`.
pub(crate) fn stream(
    file: FileLayout,
    plan: StreamPlan,
    served: Arc<AtomicU64>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold((file, plan, served), |(file, mut plan, served)| async move {
        let stop = plan.cut_at.unwrap_or(plan.end).min(plan.end);
        if plan.start >= stop {
            if plan.cut_at.is_some_and(|c| c < plan.end) {
                plan.cut_at = None;
                plan.end = plan.start;
                // Let the connection flush what was sent (headers included) before failing it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let err = io::Error::new(io::ErrorKind::ConnectionAborted, "download cut (simulated)");
                return Some((Err(err), (file, plan, served)));
            }
            return None;
        }
        let mut len = (stop - plan.start).min(CHUNK as u64);
        if let Some(bps) = plan.bps {
            len = len.min((bps / 20).max(1));
            tokio::time::sleep(Duration::from_secs_f64(len as f64 / bps as f64)).await;
        }
        let chunk = file.slice(plan.start, len as usize);
        plan.start += len;
        served.fetch_add(len, Ordering::Relaxed);
        Some((Ok(chunk), (file, plan, served)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeAnswer::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), RangeAnswer::Part(0, 99));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), RangeAnswer::Part(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), RangeAnswer::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeAnswer::Full);
        assert_eq!(parse_range(None, 100), RangeAnswer::Full);
    }

    #[test]
    fn padded_video_has_exact_size_and_box() {
        let v = video("vgen_x", Some(10_000_000));
        assert_eq!(v.len(), 10_000_000);
        let clip = CLIP.len();
        let head = v.slice(clip as u64, 8);
        assert_eq!(&head[4..8], b"free");
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        assert_eq!(u64::from(size), 10_000_000 - clip as u64);
        let big = video("vgen_x", Some(5 << 30));
        let head = big.slice(clip as u64, 16);
        assert_eq!(&head[..4], &1u32.to_be_bytes());
        let mut largesize = [0u8; 8];
        largesize.copy_from_slice(&head[8..16]);
        assert_eq!(u64::from_be_bytes(largesize), (5u64 << 30) - clip as u64);
    }

    #[test]
    fn png_chunk_crc() {
        // The CRC of "IEND" is well known.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn a_last_frame_is_a_valid_png_of_the_frame_size() {
        let png = last_frame("vgen_y", 854, 480);
        let bytes = png.prefix.to_vec();
        assert_eq!(bytes.len() as u64, png.total);
        assert_eq!(&bytes[16..24], &[0, 0, 3, 86, 0, 0, 1, 224], "IHDR: 854 × 480");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "signature");
        // Every chunk's length fits and its CRC is right; the last one is IEND.
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let body = &bytes[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc32(body), crc, "CRC of chunk at {at}");
            kinds.push(String::from_utf8_lossy(&body[..4]).into_owned());
            at += 12 + len;
        }
        assert_eq!(at, bytes.len(), "no bytes after the last chunk");
        assert_eq!(kinds.first().map(String::as_str), Some("IHDR"));
        assert_eq!(kinds.last().map(String::as_str), Some("IEND"));
        assert!(kinds.iter().any(|k| k == "IDAT"), "{kinds:?}");
    }
}
