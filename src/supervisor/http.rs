//! The health endpoints' HTTP server: one thread of its own, `GET` and `HEAD` only, one
//! request per connection (`Connection: close`), every read and write bounded in size and
//! time, so that no client — slow, idle or hostile — can hold the supervisor or grow its
//! memory. Probes and scrapers need nothing more.
//!
//! It starts its one thread fallibly: a process or memory limit that forbids it is an error
//! the caller reports, never a panic (a general-purpose server library spawns threads per
//! connection and panics when it cannot).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, or to take the response.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// How often the accept loop looks at its shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// One request, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path, query string removed.
    pub path: String,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running server; dropping it stops the thread (within [`SHUTDOWN_POLL`]).
pub struct HttpServer {
    address: SocketAddr,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `bind` and answers every request with `handler` from a thread named
    /// `name`.
    pub fn start(
        bind: &str,
        name: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        let address = listener.local_addr()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let handler: Box<Handler> = Box::new(handler);
        let thread = super::monitor::spawn_named(name, move || {
            serve(&listener, &flag, handler.as_ref());
        })?;
        Ok(Self {
            address,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port picked when `bind` asked for 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        // Wake the accept loop at once rather than at its next poll slice: the run's exit
        // waits for this thread.
        let _ = TcpStream::connect_timeout(&self.address, SHUTDOWN_POLL);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, shutdown: &AtomicBool, handler: &Handler) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let timeout =
        PollTimeout::try_from(SHUTDOWN_POLL.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    while !shutdown.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(SHUTDOWN_POLL);
                continue;
            }
        }
        if let Ok((stream, _)) = listener.accept()
            && !shutdown.load(Ordering::Relaxed)
        {
            answer(stream, handler);
        }
    }
}

/// Reads one request from `stream` and answers it; any client error closes the connection.
fn answer(mut stream: TcpStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(CLIENT_DEADLINE));
    let _ = stream.set_write_timeout(Some(CLIENT_DEADLINE));
    let response = match read_head(&mut stream) {
        Some(head) => match parse(&head) {
            Some(request) if request.method == "GET" || request.method == "HEAD" => {
                let response = handler(&request);
                write_response(&mut stream, &response, request.method == "HEAD");
                return;
            }
            Some(_) => Response {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                body: "only GET and HEAD\n".into(),
            },
            None => Response {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: "bad request\n".into(),
            },
        },
        None => return,
    };
    write_response(&mut stream, &response, false);
}

/// The request head, up to its blank line (`None`: too long, too slow, or closed).
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            head.truncate(end);
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?;
    if !request_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or(target)
        .to_string();
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    let _ = stream.write_all(&out);
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn requests_are_answered_and_junk_is_refused() {
        let server = HttpServer::start("127.0.0.1:0", "sk-test-http", |request| Response {
            status: 200,
            content_type: "text/plain",
            body: format!("{} {:?}\n", request.path, request.headers.get(1)),
        })
        .unwrap();
        let reply = get(
            server.address(),
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply.ends_with("/metrics Some((\"accept\", \"text/plain\"))\n"),
            "{reply}"
        );
        let reply = get(server.address(), "POST / HTTP/1.1\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
        let reply = get(server.address(), "garbage\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        // An idle client does not hold the server: the next one is answered.
        let _idle = TcpStream::connect(server.address()).unwrap();
        let reply = get(server.address(), "HEAD /livez HTTP/1.0\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
}
