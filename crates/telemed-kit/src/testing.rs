//! Test support: run a service binary as a real process and talk to it over real sockets.
//!
//! Lifecycle behaviour (signals, exit codes, the shutdown deadline) can only be proven on a real process, so
//! these helpers start the built binary on a free port, collect its stdout lines (each one JSON in the eHealth
//! logging model), send it real signals, and make plain HTTP/1.1 requests on fresh connections. Everything is
//! blocking and thread-based so that it works from any test, with or without an async runtime, and keeps
//! working while the process under test has a blocked runtime.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use telemed_kit::testing::{ServiceProcess, Signal, http_get};
//!
//! // In an integration test of the binary crate: env!("CARGO_BIN_EXE_my-service").
//! let mut service = ServiceProcess::spawn("target/debug/my-service", &[]).unwrap();
//! service.wait_for_log(|line| line["body"] == "listening", Duration::from_secs(10)).unwrap();
//! assert_eq!(http_get(service.addr(), "/livez", Duration::from_secs(1)).unwrap().status, 200);
//! service.signal(Signal::Term).unwrap();
//! let status = service.wait_exit(Duration::from_secs(10)).unwrap().expect("exited");
//! assert_eq!(status.code(), Some(0));
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A signal to send to the process under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, as the kubelet sends it.
    Term,
    /// SIGINT, as Ctrl-C sends it.
    Int,
    /// SIGKILL.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Kill => "KILL",
        }
    }
}

/// Sends `signal` to the process `pid`, with the system's `kill` command (the kit forbids `unsafe`).
pub fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {} {pid} failed: {status}",
            signal.name()
        )))
    }
}

/// A free TCP port on 127.0.0.1 (bound and released, so another process could take it in between: good
/// enough for tests).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where [`ServiceProcess`] also writes every stdout line of the processes it starts, when set: one file per
/// process, `<program>-<pid>.log`. scripts/test-telemetry.sh sets it to check every line the Rust suites'
/// processes wrote against the logging model, not only the lines those tests look at.
pub const STDOUT_COPY_DIR: &str = "TELEMED_KIT_TEST_STDOUT_DIR";

fn stdout_copy(command: &Command, pid: u32) -> Option<std::fs::File> {
    let dir = std::env::var_os(STDOUT_COPY_DIR)?;
    let program = Path::new(command.get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::File::create(Path::new(&dir).join(format!("{program}-{pid}.log"))).ok()
}

/// A service binary running as a child process with its stdout collected.
#[derive(Debug)]
pub struct ServiceProcess {
    pid: u32,
    exit: Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
    port: u16,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` on a free port (set as `PORT` unless `env` sets it).
    pub fn spawn(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> io::Result<Self> {
        let mut command = Command::new(binary.as_ref());
        Self::spawn_command(&mut command, env)
    }

    /// Starts a prepared command (for example a wrapper such as `unshare`) the same way as [`ServiceProcess::spawn`].
    pub fn spawn_command(command: &mut Command, env: &[(&str, &str)]) -> io::Result<Self> {
        let port = match env.iter().find(|(name, _)| *name == "PORT") {
            Some((_, port)) => port
                .parse()
                .map_err(|_| io::Error::other("PORT in env is not a number"))?,
            None => free_port()?,
        };
        command
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (sender, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pid = child.id();
        // A thread blocked in wait() turns the child's exit into a channel message, so that waiting with a
        // timeout needs no polling.
        let (exited, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait());
        });
        let all = seen.clone();
        let mut copy = stdout_copy(command, pid);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(copy) = &mut copy {
                    let _ = writeln!(copy, "{line}");
                }
                if let Ok(mut all) = all.lock() {
                    all.push(line.clone());
                }
                // With a copy to write, every line is read to the end even once nobody waits for lines.
                if sender.send(line).is_err() && copy.is_none() {
                    break;
                }
            }
        });
        Ok(Self {
            pid,
            exit,
            status: None,
            port,
            lines,
            seen,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The port the service was told to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// Waits for the next stdout line that parses as JSON and satisfies `matches`; `None` after `timeout` or when
    /// stdout closes.
    pub fn wait_for_log(
        &self,
        mut matches: impl FnMut(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                        && matches(&value)
                    {
                        return Some(value);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every stdout line seen so far, including those consumed by [`ServiceProcess::wait_for_log`].
    pub fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// Waits for the process to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            match self.exit.recv_timeout(timeout) {
                Ok(status) => self.status = Some(status?),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the wait thread ended"));
                }
            }
        }
        Ok(self.status)
    }

    /// Waits for the exit and for stdout to close, then returns every line.
    pub fn finish(mut self, timeout: Duration) -> io::Result<(Option<ExitStatus>, Vec<String>)> {
        let status = self.wait_exit(timeout)?;
        // The reader thread ends when stdout closes; drain what it still sends.
        while self.lines.recv_timeout(Duration::from_secs(1)).is_ok() {}
        Ok((status, self.lines()))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if matches!(self.wait_exit(Duration::ZERO), Ok(None)) {
            let _ = send_signal(self.pid, Signal::Kill);
        }
    }
}

/// A response read by [`http_get`] or [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
    }
}

/// `GET path` on a new connection; see [`http_request`].
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<HttpResponse> {
    http_request(addr, "GET", path, &[], b"", timeout)
}

/// One HTTP/1.1 request on a new connection, read to the end. Every step is bounded by `timeout`, so a service
/// that accepts but never answers (a stalled runtime) shows up as a `TimedOut`/`WouldBlock` error.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("connection"))
    {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid HTTP response: {what}"),
        )
    };
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| invalid("chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = raw.windows(2).position(|window| window == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&raw[..end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain =
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: x\r\n\r\n{}")
                .unwrap();
        assert_eq!(
            (
                plain.status,
                plain.header("content-type"),
                plain.body.as_str()
            ),
            (503, Some("x"), "{}")
        );
        let chunked =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(chunked.body, "abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
