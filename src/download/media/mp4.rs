//! Structural checks of MP4 (ISO BMFF) files: a walk over the top-level boxes that reads only
//! box headers and seeks past their bodies, so a gigabyte file costs a few reads.

use std::io::{self, Read, Seek, SeekFrom};

use super::read_full;

/// Most top-level boxes a file may hold before it is judged garbage.
const MAX_TOP_LEVEL_BOXES: usize = 100_000;

/// One top-level box as found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The four-character type, e.g. `*b"moov"`.
    pub kind: [u8; 4],
    /// Offset of the box's first byte in the file.
    pub offset: u64,
    /// Size of the whole box, header included (a size-0 box is resolved to "up to the end").
    pub size: u64,
    /// Length of the header: 8, or 16 with a 64-bit `largesize`.
    pub header_len: u64,
}

impl BoxHeader {
    /// The box type as text, for messages.
    pub fn kind_str(&self) -> String {
        self.kind.iter().map(|&b| b as char).collect()
    }
}

/// Why a file is not a well-formed MP4.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    /// Reading the file failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The bytes do not describe a valid box structure or lack a required box.
    #[error("{0}")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> Mp4Error {
    Mp4Error::Malformed(msg.into())
}

/// Walks the top-level boxes of an input of `len` bytes, starting at its current position 0.
///
/// Every box must fit inside the input and the sizes must add up to exactly `len`: a file
/// cut short, or with bytes that are not boxes, fails. Only headers are read; bodies are
/// skipped with a seek.
pub fn walk_top_level<R: Read + Seek>(r: &mut R, len: u64) -> Result<Vec<BoxHeader>, Mp4Error> {
    let mut boxes = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        if boxes.len() >= MAX_TOP_LEVEL_BOXES {
            return Err(malformed(format!(
                "more than {MAX_TOP_LEVEL_BOXES} top-level boxes"
            )));
        }
        let left = len - pos;
        if left < 8 {
            return Err(malformed(format!(
                "{left} stray bytes at offset {pos} where a box header was expected"
            )));
        }
        r.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 8];
        if !read_full(r, &mut head)? {
            return Err(malformed(format!(
                "file ends inside the box header at offset {pos}"
            )));
        }
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        if !kind.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(malformed(format!(
                "box at offset {pos} has a non-text type {kind:02x?}"
            )));
        }
        let (size, header_len) = match size32 {
            0 => (left, 8),
            1 => {
                if left < 16 {
                    return Err(malformed(format!(
                        "file ends inside the 64-bit size of the box at offset {pos}"
                    )));
                }
                let mut large = [0u8; 8];
                if !read_full(r, &mut large)? {
                    return Err(malformed(format!(
                        "file ends inside the 64-bit size of the box at offset {pos}"
                    )));
                }
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        let header = BoxHeader {
            kind,
            offset: pos,
            size,
            header_len,
        };
        if size < header_len {
            return Err(malformed(format!(
                "box '{}' at offset {pos} declares {size} bytes, less than its own header",
                header.kind_str()
            )));
        }
        if size > left {
            return Err(malformed(format!(
                "box '{}' at offset {pos} declares {size} bytes but only {left} remain (file truncated)",
                header.kind_str()
            )));
        }
        boxes.push(header);
        pos += size;
    }
    Ok(boxes)
}

/// Checks that `boxes` (from [`walk_top_level`]) make a playable MP4: `ftyp` first, then a
/// `moov` and at least one `mdat`.
pub fn check_required_boxes(boxes: &[BoxHeader]) -> Result<(), Mp4Error> {
    match boxes.first() {
        None => return Err(malformed("empty file")),
        Some(b) if &b.kind != b"ftyp" => {
            return Err(malformed(format!("first box is '{}', not 'ftyp'", b.kind_str())));
        }
        Some(_) => {}
    }
    if !boxes.iter().any(|b| &b.kind == b"moov") {
        return Err(malformed("no 'moov' box (movie header missing)"));
    }
    if !boxes.iter().any(|b| &b.kind == b"mdat") {
        return Err(malformed("no 'mdat' box (media data missing)"));
    }
    Ok(())
}

/// Verifies an MP4 of `len` bytes: a complete top-level box walk plus the required boxes.
pub fn verify<R: Read + Seek>(r: &mut R, len: u64) -> Result<Vec<BoxHeader>, Mp4Error> {
    let boxes = walk_top_level(r, len)?;
    check_required_boxes(&boxes)?;
    Ok(boxes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bx(kind: &[u8; 4], body_len: usize) -> Vec<u8> {
        let mut v = ((8 + body_len) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend(std::iter::repeat_n(0xAB, body_len));
        v
    }

    fn large_bx(kind: &[u8; 4], body_len: usize) -> Vec<u8> {
        let mut v = 1u32.to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(&((16 + body_len) as u64).to_be_bytes());
        v.extend(std::iter::repeat_n(0xCD, body_len));
        v
    }

    fn run(bytes: &[u8]) -> Result<Vec<BoxHeader>, Mp4Error> {
        verify(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    fn minimal() -> Vec<u8> {
        let mut f = bx(b"ftyp", 16);
        f.extend(bx(b"moov", 100));
        f.extend(bx(b"mdat", 1000));
        f
    }

    #[test]
    fn minimal_file_passes() {
        let boxes = run(&minimal()).expect("valid");
        let kinds: Vec<_> = boxes.iter().map(|b| b.kind_str()).collect();
        assert_eq!(kinds, ["ftyp", "moov", "mdat"]);
        assert_eq!(boxes[2].offset, 24 + 108);
        assert_eq!(boxes[2].size, 1008);
    }

    #[test]
    fn largesize_box_is_walked() {
        let mut f = bx(b"ftyp", 16);
        f.extend(bx(b"moov", 10));
        f.extend(large_bx(b"mdat", 5000));
        f.extend(bx(b"free", 0));
        let boxes = run(&f).expect("valid");
        assert_eq!(boxes[2].header_len, 16);
        assert_eq!(boxes[2].size, 5016);
        assert_eq!(boxes[3].kind_str(), "free");
    }

    #[test]
    fn largesize_cut_inside_its_header_fails() {
        let mut f = bx(b"ftyp", 16);
        f.extend(bx(b"moov", 10));
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        f.extend_from_slice(&[0, 0, 0, 0]);
        assert!(run(&f).is_err());
    }

    #[test]
    fn size_zero_runs_to_the_end() {
        let mut f = bx(b"ftyp", 16);
        f.extend(bx(b"moov", 10));
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        f.extend(std::iter::repeat_n(0u8, 777));
        let boxes = run(&f).expect("valid");
        assert_eq!(boxes[2].size, 8 + 777);
        assert_eq!(boxes[2].offset + boxes[2].size, f.len() as u64);
    }

    #[test]
    fn truncated_file_fails() {
        let f = minimal();
        let cut = &f[..f.len() - 1];
        let err = run(cut).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn trailing_bytes_fail() {
        let mut f = minimal();
        f.extend_from_slice(&[1, 2, 3]);
        assert!(run(&f).is_err());
    }

    #[test]
    fn garbage_fails() {
        let html = b"<!DOCTYPE html><html><body>Access Denied</body></html>";
        assert!(run(html).is_err());
        let zeros = [0u8; 64];
        assert!(run(&zeros).is_err());
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(run(&noise).is_err());
        assert!(run(&[]).is_err());
    }

    #[test]
    fn size_smaller_than_header_fails() {
        let mut f = bx(b"ftyp", 16);
        f.extend_from_slice(&4u32.to_be_bytes());
        f.extend_from_slice(b"moov");
        assert!(run(&f).is_err());
    }

    #[test]
    fn required_boxes() {
        let mut no_ftyp = bx(b"moov", 10);
        no_ftyp.extend(bx(b"mdat", 10));
        assert!(run(&no_ftyp).unwrap_err().to_string().contains("ftyp"));
        let mut no_moov = bx(b"ftyp", 16);
        no_moov.extend(bx(b"mdat", 10));
        assert!(run(&no_moov).unwrap_err().to_string().contains("moov"));
        let mut no_mdat = bx(b"ftyp", 16);
        no_mdat.extend(bx(b"moov", 10));
        assert!(run(&no_mdat).unwrap_err().to_string().contains("mdat"));
    }
}
