//! Just enough HTTP/1.1 for the testbed's own servers and clients: read a head, find a
//! header. Hand-written so the testbed controls every byte it sends.

use std::io::{self, Read};

/// Largest request or response head either side accepts.
pub const HEAD_CAP: usize = 16 * 1024;

/// A message head (start line and headers), and the body bytes read past it.
#[derive(Debug)]
pub struct Head {
    /// The start line (`GET / HTTP/1.1`, `HTTP/1.1 200 OK`).
    pub start: String,
    headers: Vec<(String, String)>,
    /// Body bytes that arrived with the head.
    pub rest: Vec<u8>,
}

impl Head {
    /// Reads until the blank line that ends the head. `Ok(None)` when the peer closed
    /// before sending anything.
    pub fn read(r: &mut impl Read) -> io::Result<Option<Head>> {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = text.split("\r\n");
                let start = lines.next().unwrap_or_default().to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                return Ok(Some(Head {
                    start,
                    headers,
                    rest: buf[end + 4..].to_vec(),
                }));
            }
            if buf.len() > HEAD_CAP {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            let n = r.read(&mut chunk)?;
            if n == 0 {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the head",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if present and a number.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.parse().ok()
    }

    /// The second word of the start line: the path of a request, the status of a reply.
    pub fn second_word(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or_default()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_split_across_reads_keeps_the_body_bytes_after_it() {
        let wire = b"POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello";
        let mut r = io::Cursor::new(&wire[..]);
        let head = Head::read(&mut r).unwrap().unwrap();
        assert_eq!(head.second_word(), "/sink");
        assert_eq!(head.header("HOST"), Some("a.example"));
        assert_eq!(head.content_length(), Some(5));
        assert_eq!(head.rest, b"hello");
    }

    #[test]
    fn peer_closing_before_any_byte_is_no_head() {
        let mut r = io::Cursor::new(&b""[..]);
        assert!(Head::read(&mut r).unwrap().is_none());
    }

    #[test]
    fn peer_closing_inside_the_head_is_an_error() {
        let mut r = io::Cursor::new(&b"GET / HTTP/1.1\r\nHost: a"[..]);
        assert!(Head::read(&mut r).is_err());
    }
}
