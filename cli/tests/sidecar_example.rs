//! The Node.js client in cli/README.md, run as it is printed there against
//! a real `headcount serve --api`: its output is what its comments say, and
//! what it tracked is gone once it has exited. Also: a client killed with
//! SIGKILL (a crashed app server) loses its tracks at once.
//!
//! Needs `node` (scripts/install-deps installs it). Without it the test says
//! so and passes, unless HEADCOUNT_REQUIRE_NODE=1 (scripts/test sets it).

mod common;

use common::eventually;
use common::serve::{ApiClient, ServeProc, TempDir};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The marker above the example's code block in cli/README.md.
const MARKER: &str = "<!-- sidecar-example:";

/// The JavaScript block right after [`MARKER`].
fn example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("cli/README.md");
    let after = &readme[readme.find(MARKER).expect("cli/README.md has the sidecar example marker")..];
    let start = after.find("```js\n").expect("a ```js block after the marker") + 6;
    let len = after[start..].find("```").expect("the block ends");
    after[start..start + len].to_owned()
}

fn have_node() -> bool {
    let found = Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("HEADCOUNT_REQUIRE_NODE").is_none(), "node is not on PATH");
        eprintln!("skipped: node (Node.js) is not on PATH");
    }
    found
}

#[test]
fn the_readme_nodejs_client_runs_against_serve() {
    if !have_node() {
        return;
    }
    let code = example();
    assert!(code.lines().count() <= 22, "the example stays short:\n{code}");
    let dir = TempDir::new("nodejs");
    let script = dir.write("presence.mjs", &code);
    let sock = dir.path("api.sock");
    let _serve = ServeProc::start(&["--node-name", "js", "--api", &format!("unix:{}", sock.display())], &[]);
    let out =
        Command::new("node").arg(&script).env("HEADCOUNT_API", &sock).stdin(Stdio::null()).output().expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    // Each printed line is what the comment beside its console.log says.
    let promised: Vec<&str> = code
        .lines()
        .filter(|l| l.contains("console.log("))
        .map(|l| l.rsplit("// ").next().unwrap().split(" (").next().unwrap().trim())
        .collect();
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), promised.len(), "{stdout}");
    assert_eq!(printed[0], "ready -", "a local-only serve");
    assert_eq!(&printed[1..], &promised[1..], "{stdout}");
    // The script has exited: its last user was untracked with its socket.
    let mut c = ApiClient::unix(&sock);
    eventually(Duration::from_secs(5), || c.num("total") == 0).expect("the script's tracks are gone");
}

#[test]
fn a_killed_client_loses_its_tracks() {
    if !have_node() {
        return;
    }
    let dir = TempDir::new("nodekill");
    let sock = dir.path("api.sock");
    let _serve = ServeProc::start(&["--node-name", "js", "--api", &format!("unix:{}", sock.display())], &[]);
    // Tracks 100 users, says so, then hangs until killed.
    let script = dir.write(
        "crash.mjs",
        "import net from 'node:net';\n\
         const s = net.connect(process.env.HEADCOUNT_API);\n\
         let n = 0; s.on('data', (d) => { n += d.toString().split('\\n').length - 1;\n\
           if (n === 101) console.log('tracked'); });\n\
         for (let i = 1; i <= 100; i++) s.write(`track room ${i}\\n`);\n\
         setInterval(() => {}, 1000);\n",
    );
    let mut child = Command::new("node")
        .arg(&script)
        .env("HEADCOUNT_API", &sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "tracked\n");
    let mut c = ApiClient::unix(&sock);
    assert_eq!(c.num("count room"), 100);
    child.kill().expect("SIGKILL the client");
    child.wait().unwrap();
    let took =
        eventually(Duration::from_secs(5), || c.num("count room") == 0).expect("the killed client's users vanish");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
