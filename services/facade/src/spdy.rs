//! SPDY/3.1 framing, the server side of what kubectl (through moby/spdystream) speaks for
//! `exec` before WebSocket: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS,
//! PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames, with name/value header blocks
//! compressed by one zlib stream per direction that starts from the SPDY/3 dictionary.
//! spdystream keeps no flow-control windows, so none are kept here either.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
/// The largest header block this side inflates (kubectl's are a few bytes).
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The largest control frame this side reads.
const MAX_CONTROL_FRAME: usize = 64 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: the stream was cancelled.
pub const RST_CANCEL: u32 = 5;
/// RST_STREAM status: an invalid stream.
pub const RST_PROTOCOL_ERROR: u32 = 1;

/// One frame, as read or to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings,
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// A control frame of a type this side does not know (ignored, as SPDY asks).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading the SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn protocol(msg: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(msg.into())
}

/// The zlib dictionary of SPDY/3 header blocks (section 2.6.10.1 of the draft): the common
/// header names as length-prefixed strings, then a run of common values.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
        let mut d = Vec::with_capacity(1424);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

fn be32(b: &[u8], at: usize) -> Result<u32, SpdyError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| protocol("frame too short"))
}

/// Reads frames from one direction of a connection.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` at a clean end of the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let w0 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let control = w0 & 0x8000_0000 != 0;
        if control && len > MAX_CONTROL_FRAME {
            return Err(protocol(format!("control frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        if !control {
            let stream_id = w0 & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(protocol("data frame on stream 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((w0 >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(protocol(format!("SPDY version {version}")));
        }
        let fin = flags & FLAG_FIN != 0;
        let id = |at| be32(&payload, at).map(|v| v & 0x7fff_ffff);
        let frame = match (w0 & 0xffff) as u16 {
            SYN_STREAM => Frame::SynStream {
                stream_id: id(0)?,
                fin,
                headers: self.header_block(payload.get(10..).unwrap_or_default())?,
            },
            SYN_REPLY => Frame::SynReply {
                stream_id: id(0)?,
                fin,
                headers: self.header_block(payload.get(4..).unwrap_or_default())?,
            },
            HEADERS => Frame::Headers {
                stream_id: id(0)?,
                fin,
                headers: self.header_block(payload.get(4..).unwrap_or_default())?,
            },
            RST_STREAM => Frame::RstStream {
                stream_id: id(0)?,
                status: be32(&payload, 4)?,
            },
            SETTINGS => Frame::Settings,
            PING => Frame::Ping(be32(&payload, 0)?),
            GOAWAY => Frame::GoAway {
                last_good_stream_id: id(0)?,
                status: be32(&payload, 4).unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: id(0)?,
                delta: be32(&payload, 4)? & 0x7fff_ffff,
            },
            _ => Frame::Unknown,
        };
        Ok(Some(frame))
    }

    /// Inflates one header block (every block goes through the connection's one zlib
    /// stream, so none may be skipped) and parses its name/value pairs.
    fn header_block(&mut self, mut input: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let bad = |e: flate2::DecompressError| protocol(format!("header block: {e}"));
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(protocol("header block too large"));
                }
                out.reserve(out.len());
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - in_before) as usize..];
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(bad)?;
                }
                Err(e) => return Err(bad(e)),
                Ok(Status::StreamEnd) => return Err(protocol("header stream ended")),
                Ok(_) => {
                    let stuck = out.len() == out_before
                        && self.inflate.total_in() == in_before
                        && out.len() < out.capacity();
                    if (input.is_empty() && out.len() < out.capacity()) || stuck {
                        break;
                    }
                }
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(b: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let count = be32(b, 0)? as usize;
    let mut at = 4;
    let field = |at: &mut usize| -> Result<String, SpdyError> {
        let n = be32(b, *at)? as usize;
        let s = b
            .get(*at + 4..*at + 4 + n)
            .ok_or_else(|| protocol("header block too short"))?;
        *at += 4 + n;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = field(&mut at)?;
        let value = field(&mut at)?;
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Encodes frames for the other direction (its own zlib stream for header blocks).
pub struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        // A fresh stream takes a dictionary: this cannot fail.
        let _ = deflate.set_dictionary(dictionary());
        Self { deflate }
    }

    /// The bytes of `frame`.
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&0u32.to_be_bytes());
                body.extend_from_slice(&[0, 0]);
                body.extend(self.header_block(headers));
                control(SYN_STREAM, flag(*fin), &body)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(SYN_REPLY, flag(*fin), &body)
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(HEADERS, flag(*fin), &body)
            }
            Frame::RstStream { stream_id, status } => {
                control(RST_STREAM, 0, &pair(*stream_id, *status))
            }
            Frame::Settings => control(SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => control(GOAWAY, 0, &pair(*last_good_stream_id, *status)),
            Frame::WindowUpdate { stream_id, delta } => {
                control(WINDOW_UPDATE, 0, &pair(*stream_id, *delta))
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                // Callers send chunks far below the 24-bit limit; longer data is cut there.
                let data = &data[..data.len().min(0xff_ffff)];
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(flag(*fin));
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::Unknown => Vec::new(),
        }
    }

    fn header_block(&mut self, headers: &[(String, String)]) -> Vec<u8> {
        let mut plain = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_bytes(), v.as_bytes()] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            let before = self.deflate.total_in();
            // Compressing into a vector with room left cannot fail.
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

fn flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..].copy_from_slice(&b.to_be_bytes());
    out
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[tokio::test]
    async fn frames_round_trip_through_the_compressed_header_stream() {
        let mut w = FrameWriter::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                fin: false,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynStream {
                stream_id: 3,
                fin: false,
                headers: vec![("streamtype".into(), "stdin".into())],
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: b"hello\n".to_vec(),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: vec![],
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Ping(7),
            Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend(w.encode(f));
        }
        let mut r = FrameReader::new(&bytes[..]);
        for f in &frames {
            assert_eq!(r.next().await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            // SPDY/2.
            control(PING, 0, &1u32.to_be_bytes())
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 1 { 2 } else { b })
                .collect(),
            // A SYN_STREAM whose header block is garbage.
            control(SYN_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            // Too short for its fields.
            control(RST_STREAM, 0, &[0, 0]),
            // A control frame larger than allowed.
            {
                let mut b = control(SETTINGS, 0, &[]);
                b[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
                b
            },
            // Data on stream 0.
            vec![0, 0, 0, 0, 0, 0, 0, 1, 9],
        ];
        for bytes in cases {
            let mut r = FrameReader::new(&bytes[..]);
            assert!(r.next().await.is_err(), "{bytes:?}");
        }
        // A truncated frame is an I/O error, a clean end is none.
        let mut r = FrameReader::new(&[0x80u8, 3, 0, 6, 0, 0, 0, 4, 0][..]);
        assert!(r.next().await.is_err());
        let mut r = FrameReader::new(&[][..]);
        assert!(r.next().await.unwrap().is_none());
    }
}
