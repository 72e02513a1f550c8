//! Running `headcount serve` and talking to its sidecar API, with a timeout
//! on every wait.

use super::{bin, ANSWER_TIMEOUT};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hc-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `headcount serve` with `args` and `env`, and no inherited HEADCOUNT_*
/// settings.
pub fn serve_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = bin();
    cmd.arg("serve").args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("HEADCOUNT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs `headcount serve ... --check-config` (or any serve that exits by itself).
pub fn serve_output(args: &[&str], env: &[(&str, &str)]) -> Output {
    serve_cmd(args, env).output().expect("run headcount serve")
}

/// A running `headcount serve`.
pub struct ServeProc {
    child: Child,
    log: Arc<(Mutex<String>, Condvar)>,
}

impl ServeProc {
    /// Starts it and waits for its `ready` log line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> ServeProc {
        Self::start_until(args, env, "] ready: ")
    }

    /// Starts it and waits for a log line containing `ready`.
    pub fn start_until(args: &[&str], env: &[(&str, &str)], ready: &str) -> ServeProc {
        let mut child =
            serve_cmd(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn headcount serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.0.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                    log.1.notify_all();
                }
            });
        }
        let s = ServeProc { child, log };
        s.wait_log(ready);
        s
    }

    /// The first log line containing `needle`, waiting for it.
    pub fn wait_log(&self, needle: &str) -> String {
        let (lock, cv) = &*self.log;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no log line with {needle:?} within {ANSWER_TIMEOUT:?}; log:\n{log}");
            log = cv.wait_timeout(log, left).unwrap().0;
        }
    }

    /// The TCP address of the API, from its `api on` log line.
    pub fn api_tcp(&self) -> String {
        let line = self.wait_log("] api on 127.");
        let rest = &line[line.find("api on ").unwrap() + 7..];
        rest.split_whitespace().next().unwrap().to_owned()
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        super::signal_child(&self.child, signal);
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_child(&mut self.child, timeout)
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One sidecar API session.
pub struct ApiClient {
    reader: BufReader<Box<dyn std::io::Read + Send>>,
    writer: Box<dyn Write + Send>,
    /// What followed `ready` on the first line.
    pub ready: String,
    /// The TCP socket, kept to reset it ([`ApiClient::reset`]).
    tcp: Option<TcpStream>,
}

impl ApiClient {
    pub fn unix(path: &Path) -> ApiClient {
        let s = connect_retrying(|| UnixStream::connect(path));
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let r = s.try_clone().unwrap();
        Self::greet(Box::new(r), Box::new(s), None)
    }

    pub fn tcp(addr: &str) -> ApiClient {
        let s = connect_retrying(|| TcpStream::connect(addr));
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let r = s.try_clone().unwrap();
        let keep = s.try_clone().unwrap();
        Self::greet(Box::new(r), Box::new(s), Some(keep))
    }

    fn greet(r: Box<dyn std::io::Read + Send>, w: Box<dyn Write + Send>, tcp: Option<TcpStream>) -> ApiClient {
        let mut c = ApiClient { reader: BufReader::new(r), writer: w, ready: String::new(), tcp };
        let first = c.line();
        c.ready = first.strip_prefix("ready ").unwrap_or_else(|| panic!("first line {first:?}")).to_owned();
        c
    }

    /// The next line (without `\n`); `""` at end of input.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_line(&mut s).expect("read an answer in time");
        s.trim_end_matches('\n').to_owned()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).and_then(|()| self.writer.flush()).expect("write to the API");
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\n").as_bytes());
        self.line()
    }

    pub fn num(&mut self, line: &str) -> u64 {
        let a = self.cmd(line);
        a.parse().unwrap_or_else(|_| panic!("{line:?} answered {a:?}"))
    }

    /// Closes a TCP session abruptly: SO_LINGER 0, so the close is a reset
    /// (RST), as when a host's process is killed mid-stream.
    pub fn reset(self) {
        let tcp = self.tcp.expect("a TCP session");
        socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        drop(self.reader);
        drop(self.writer);
        drop(tcp);
    }
}

fn connect_retrying<S>(mut f: impl FnMut() -> std::io::Result<S>) -> S {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match f() {
            Ok(s) => return s,
            Err(e) if Instant::now() >= deadline => panic!("cannot connect to the API: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The shape of every log line, the core's and the CLI's:
/// `2026-05-01T09:14:03.512Z INFO headcount::cli [a] message`.
pub fn assert_log_format(log: &str) {
    for line in log.lines() {
        let mut parts = line.splitn(5, ' ');
        let (ts, level, target, node) = (parts.next(), parts.next(), parts.next(), parts.next());
        let ok = ts.is_some_and(is_log_time)
            && matches!(level, Some("ERROR" | "WARN" | "INFO" | "DEBUG"))
            && target.is_some_and(|t| t == "headcount" || t.starts_with("headcount::"))
            && node.is_some_and(|n| n.starts_with('[') && n.ends_with(']'))
            && parts.next().is_some_and(|m| !m.is_empty());
        assert!(ok, "log line not `<time> <LEVEL> <target> [<node>] <message>`: {line:?}");
        assert!(!line.contains("Some(") && !line.contains(" None"), "a Debug value leaked into the log: {line:?}");
    }
}

/// `2026-05-01T09:14:03.512Z`: UTC, to the millisecond.
pub fn is_log_time(t: &str) -> bool {
    t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.'
}
