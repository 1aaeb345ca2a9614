//! The service under check as a real process: its output lines, signals, and its end.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line the service wrote, as text (invalid UTF-8 replaced) and whether it was valid UTF-8.
#[derive(Debug, Clone)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    pub utf8: bool,
}

type Lines = Arc<Mutex<Vec<Line>>>;

/// How a signal reaches the service: to the process itself, or to a container's PID 1 through podman.
#[derive(Debug, Clone)]
pub enum Target {
    Pid(u32),
    Container(String),
}

/// A started service.
pub struct Service {
    child: Child,
    target: Target,
    lines: Lines,
    readers: Vec<tokio::task::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// How to start the service: a command (the program first) and what to call a container started by it.
#[derive(Debug, Clone)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub container: Option<String>,
}

impl Service {
    /// Starts `launch` with stdout and stderr captured line by line, in a process group of its own so that
    /// whatever it starts can be cleaned up with it.
    pub fn start(launch: &Launch) -> Result<Self, String> {
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| "no command given".to_owned())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(launch.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|error| format!("could not start {program}: {error}"))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{program} exited at once"))?;
        let lines = Lines::default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(
                stdout,
                Stream::Stdout,
                lines.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(
                stderr,
                Stream::Stderr,
                lines.clone(),
            )));
        }
        let target = match &launch.container {
            Some(name) => Target::Container(name.clone()),
            None => Target::Pid(pid),
        };
        Ok(Self {
            child,
            target,
            lines,
            readers,
            status: None,
        })
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many lines were written so far: a mark to look for lines after.
    pub fn mark(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits up to `timeout` for a line after `mark` that `wanted` accepts.
    pub async fn wait_for_line(
        &self,
        mark: usize,
        timeout: Duration,
        wanted: impl Fn(&Line) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .skip(mark)
                .any(&wanted)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last stderr line (or stdout, when stderr is empty), to say why a service did not come up.
    pub fn last_words(&self) -> String {
        let lines = self.lines();
        lines
            .iter()
            .rev()
            .find(|line| line.stream == Stream::Stderr)
            .or_else(|| lines.last())
            .map(|line| format!("; its last line: {}", clip(&line.text, 300)))
            .unwrap_or_default()
    }

    /// Sends SIGTERM the way the platform does: to the process, or to the container's PID 1.
    pub async fn terminate(&self) -> Result<(), String> {
        self.signal("TERM").await
    }

    async fn signal(&self, signal: &str) -> Result<(), String> {
        let output = match &self.target {
            Target::Pid(pid) => {
                Command::new("kill")
                    .args(["-s", signal, &pid.to_string()])
                    .output()
                    .await
            }
            Target::Container(name) => {
                Command::new("podman")
                    .args(["kill", "--signal", signal, name])
                    .output()
                    .await
            }
        }
        .map_err(|error| format!("could not send SIG{signal}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "could not send SIG{signal}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = tokio::time::timeout(timeout, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.status
    }

    /// Ends the process (and its group, or its container) with SIGKILL, and waits for its output to close.
    pub async fn kill(&mut self) {
        if self.try_status().is_none() {
            match &self.target {
                Target::Pid(pid) => {
                    let _ = Command::new("kill")
                        .args(["-s", "KILL", "--", &format!("-{pid}")])
                        .output()
                        .await;
                }
                Target::Container(name) => {
                    let _ = Command::new("podman")
                        .args(["rm", "--force", "--time", "0", name])
                        .output()
                        .await;
                }
            }
            let _ = self.child.kill().await;
            self.status = self.child.wait().await.ok();
        }
        self.finish_output().await;
    }

    /// Waits (briefly) for the readers to reach the end of the output, so that `lines` holds every line.
    pub async fn finish_output(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, which: Stream, lines: Lines) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let raw = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let (text, utf8) = match std::str::from_utf8(raw) {
                    Ok(text) => (text.to_owned(), true),
                    Err(_) => (String::from_utf8_lossy(raw).into_owned(), false),
                };
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Line {
                        stream: which,
                        text,
                        utf8,
                    });
            }
        }
    }
}

/// `text` cut to about `max` bytes at a character boundary, for details that must stay one readable line.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// How a process ended, in words.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "an unknown end".to_owned(),
    }
}
