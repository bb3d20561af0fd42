//! One HTTP/1.1 keep-alive connection, driven one request at a time.
//!
//! This is the load path: the request is already serialised, the read buffer is allocated once
//! per connection, and the parser counts the body instead of storing it. Failures are sorted
//! into the kinds the report shows ([`ErrorKind`]), because "errors: 12" is useless when
//! deciding whether the target refused connections, stalled, or dropped them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::{ProtocolError, ResponseParser};

/// Size of each connection's read buffer; a response head must fit in it.
const READ_BUF: usize = 64 * 1024;

/// The kinds of failure the report counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be opened (refused, unreachable, connect timeout).
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The server reset or closed the connection before the response was complete.
    Reset,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// Any other I/O error.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [ErrorKind::Connect, ErrorKind::Timeout, ErrorKind::Reset, ErrorKind::Protocol, ErrorKind::Other];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed request: its kind and a human-readable cause (the first of each kind is reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Failure { kind, detail: detail.into() }
    }

    /// Sorts an I/O error from an established connection into a kind.
    pub fn from_io(e: &io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        };
        Failure::new(kind, e.to_string())
    }

    fn protocol(e: ProtocolError) -> Self {
        Failure::new(ErrorKind::Protocol, e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

/// What the engine needs to know about a completed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Body bytes received.
    pub body_bytes: u64,
    /// False when the server asked to close the connection after this response.
    pub keep_alive: bool,
}

/// Opens a TCP connection with a timeout and `TCP_NODELAY` (requests are single small writes;
/// Nagle would hold them back waiting for the previous response's ACK).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Failure::new(ErrorKind::Connect, format!("connect to {addr} timed out after {timeout:?}"))),
        Ok(Err(e)) => Err(Failure::new(ErrorKind::Connect, format!("connect to {addr}: {e}"))),
        Ok(Ok(stream)) => {
            stream.set_nodelay(true).map_err(|e| Failure::new(ErrorKind::Connect, format!("set TCP_NODELAY: {e}")))?;
            Ok(stream)
        }
    }
}

/// A keep-alive HTTP/1.1 connection with its read buffer.
pub struct Connection {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    parser: ResponseParser,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Self {
        Connection { stream, buf: vec![0u8; READ_BUF].into_boxed_slice(), start: 0, end: 0, parser: ResponseParser::new(false) }
    }

    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, Failure> {
        Ok(Connection::new(connect_tcp(addr, timeout).await?))
    }

    /// Sends one serialised request and reads its response.
    ///
    /// No timeout here: the engine wraps the call, so a timed-out connection is dropped as a
    /// whole (its state is unknown).
    pub async fn exchange(&mut self, request: &[u8], head: bool) -> Result<Reply, Failure> {
        self.stream.write_all(request).await.map_err(|e| Failure::from_io(&e))?;
        self.parser.reset(head);
        read_response(&mut self.stream, &mut self.buf, &mut self.start, &mut self.end, &mut self.parser).await?;
        Ok(Reply { status: self.parser.status(), body_bytes: self.parser.body_len(), keep_alive: self.parser.keep_alive() })
    }
}

/// Reads from `stream` into `buf` and feeds `parser` until the response is complete.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut [u8],
    start: &mut usize,
    end: &mut usize,
    parser: &mut ResponseParser,
) -> Result<(), Failure> {
    loop {
        if *start < *end {
            let used = parser.feed(&buf[*start..*end]).map_err(Failure::protocol)?;
            *start += used;
            if parser.is_done() {
                if *start == *end {
                    *start = 0;
                    *end = 0;
                }
                return Ok(());
            }
        }
        if *start == *end {
            *start = 0;
            *end = 0;
        } else if *end == buf.len() {
            // An incomplete head at the end of the buffer: move it to the front, or give up
            // when it already fills the whole buffer.
            if *start == 0 {
                return Err(Failure::protocol(ProtocolError::HeadTooLarge));
            }
            buf.copy_within(*start..*end, 0);
            *end -= *start;
            *start = 0;
        }
        let n = stream.read(&mut buf[*end..]).await.map_err(|e| Failure::from_io(&e))?;
        if n == 0 {
            if parser.finish_at_eof() {
                return Ok(());
            }
            return Err(Failure::new(ErrorKind::Reset, "connection closed before the response was complete"));
        }
        *end += n;
    }
}

/// A complete response to a control request (readiness checks, tests).
#[derive(Debug, Clone)]
pub struct SimpleResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SimpleResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a fresh connection and returns the whole response (body up to 1 MiB).
/// Meant for control traffic: readiness polling, the IdP and upstream tests.
pub async fn simple_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<SimpleResponse, Failure> {
    let work = async {
        let mut stream = connect_tcp(addr, timeout).await?;
        let mut wire = Vec::new();
        let mut all_headers = headers.to_vec();
        all_headers.push(("Connection".into(), "close".into()));
        crate::http1::write_request(&mut wire, method, path, &addr.to_string(), &all_headers, body);
        stream.write_all(&wire).await.map_err(|e| Failure::from_io(&e))?;
        let mut parser = ResponseParser::capturing(method == "HEAD", 1 << 20);
        let mut buf = vec![0u8; READ_BUF];
        let (mut start, mut end) = (0, 0);
        read_response(&mut stream, &mut buf, &mut start, &mut end, &mut parser).await?;
        Ok(SimpleResponse { status: parser.status(), headers: parser.headers().to_vec(), body: parser.body().to_vec() })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(ErrorKind::Timeout, format!("no response from {addr} within {timeout:?}"))),
    }
}
