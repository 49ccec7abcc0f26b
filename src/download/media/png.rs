//! Structural checks of PNG files: a walk over the chunks that reads only their headers (and
//! `IHDR`), so a damaged or cut file is told from a whole one without decoding it.

use std::io::{self, Read, Seek, SeekFrom};

use super::read_full;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Walks the chunks of a PNG of `len` bytes: signature, `IHDR` first, every chunk within the
/// file, up to `IEND` (bytes after `IEND` are allowed). The outer error is a read error.
pub fn check<R: Read + Seek>(r: &mut R, len: u64) -> io::Result<Result<(), String>> {
    let mut sig = [0u8; 8];
    if len < 8 || !read_full(r, &mut sig)? || sig != PNG_SIGNATURE {
        return Ok(Err("missing PNG signature".into()));
    }
    let mut pos = 8u64;
    let mut first = true;
    loop {
        if len - pos < 12 {
            return Ok(Err(format!("file ends at {len} bytes before the IEND chunk")));
        }
        r.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 8];
        if !read_full(r, &mut head)? {
            return Ok(Err("file ends inside a chunk header".into()));
        }
        let clen = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let ctype = [head[4], head[5], head[6], head[7]];
        if clen > 0x7fff_ffff || !ctype.iter().all(u8::is_ascii_alphabetic) {
            return Ok(Err(format!("malformed chunk header at offset {pos}")));
        }
        if pos + 12 + clen > len {
            return Ok(Err(format!(
                "chunk '{}' at offset {pos} runs past the end of the file (truncated)",
                String::from_utf8_lossy(&ctype)
            )));
        }
        if first {
            if &ctype != b"IHDR" || clen != 13 {
                return Ok(Err("first chunk is not a 13-byte IHDR".into()));
            }
            let mut ihdr = [0u8; 13];
            if !read_full(r, &mut ihdr)? {
                return Ok(Err("file ends inside IHDR".into()));
            }
            let w = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
            let h = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
            if w == 0 || h == 0 {
                return Ok(Err(format!("IHDR declares a {w}x{h} image")));
            }
            first = false;
        } else if &ctype == b"IHDR" {
            return Ok(Err("a second IHDR chunk".into()));
        }
        if &ctype == b"IEND" {
            return Ok(Ok(()));
        }
        pos += 12 + clen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(data);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }

    fn png() -> Vec<u8> {
        let mut v = PNG_SIGNATURE.to_vec();
        let mut ihdr = 4u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&3u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        v.extend(chunk(b"IHDR", &ihdr));
        v.extend(chunk(b"IDAT", &[1, 2, 3]));
        v.extend(chunk(b"IEND", &[]));
        v
    }

    fn png_ok(bytes: &[u8]) -> bool {
        matches!(check(&mut Cursor::new(bytes), bytes.len() as u64), Ok(Ok(())))
    }

    #[test]
    fn png_walker() {
        let good = png();
        assert!(png_ok(&good));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"trailing junk");
        assert!(png_ok(&trailing));
        assert!(!png_ok(&good[..good.len() - 1]));
        assert!(!png_ok(&good[..20]));
        assert!(!png_ok(b"<html>not a png</html>"));
        let mut no_ihdr = PNG_SIGNATURE.to_vec();
        no_ihdr.extend(chunk(b"IEND", &[]));
        assert!(!png_ok(&no_ihdr));
    }
}
