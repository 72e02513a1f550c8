//! Driving `headcount node` processes through their line protocol, with a
//! timeout on every read so a broken node fails a test instead of hanging it.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub const SECRET: &str = "test-secret-7f3a";

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_headcount"))
}

/// A running `headcount node`.
pub struct NodeProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// What followed `ready` on the first line.
    pub addr: String,
}

impl NodeProc {
    /// Starts `headcount node --name <name> <args>` with the test secret in
    /// the environment and waits for its `ready` line.
    pub fn start(name: &str, args: &[&str]) -> NodeProc {
        Self::try_start(name, args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(name: &str, args: &[&str]) -> Result<NodeProc, String> {
        Self::try_start_with_secret(name, args, SECRET)
    }

    /// Like [`NodeProc::try_start`] with another secret.
    pub fn try_start_with_secret(name: &str, args: &[&str], secret: &str) -> Result<NodeProc, String> {
        let mut child = bin()
            .args(["node", "--name", name])
            .args(args)
            .env("HEADCOUNT_SECRET", secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut node = NodeProc { name: name.to_owned(), child, stdin, lines, stderr: log, addr: String::new() };
        let first = node.read_line().map_err(|e| format!("{name}: no ready line: {e}"))?;
        let addr = first
            .strip_prefix("ready ")
            .ok_or_else(|| format!("{name}: first line {first:?} is not `ready <addr>`"))?;
        node.addr = addr.to_owned();
        Ok(node)
    }

    /// The next stdout line, within [`ANSWER_TIMEOUT`].
    pub fn read_line(&mut self) -> Result<String, String> {
        match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("{}: no answer within {ANSWER_TIMEOUT:?}; stderr:\n{}", self.name, self.stderr()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("{}: stdout closed; stderr:\n{}", self.name, self.stderr()))
            }
        }
    }

    /// Sends raw bytes (a line must end with `\n`).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).and_then(|()| stdin.flush()).expect("write to node");
    }

    /// Sends one command line and returns its one answer line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\n").as_bytes());
        self.read_line().unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// `count`-like commands, as a number.
    pub fn num(&mut self, line: &str) -> u64 {
        let answer = self.cmd(line);
        answer.parse().unwrap_or_else(|_| panic!("{}: {line:?} answered {answer:?}", self.name))
    }

    /// A command whose answer is one line of JSON.
    pub fn json(&mut self, line: &str) -> serde_json::Value {
        let answer = self.cmd(line);
        serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{}: {line:?} answered {answer:?}, not JSON: {e}", self.name))
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// SIGKILL, as `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        signal_child(&self.child, signal);
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to `child`, which must not be reaped yet.
pub fn signal_child(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers; the child is ours and not yet
    // reaped (its owner's Drop and wait reap it), so the pid names it.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// Polls `f` until it returns true or `timeout` passes; returns how long it took.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod serve;
