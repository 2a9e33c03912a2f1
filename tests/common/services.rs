//! Real parts for the tests: a Mosquitto broker per test on a free port,
//! paho-mqtt publishers and subscribers (Python), and twinflow itself as a
//! child process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the service to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python with paho-mqtt (and numpy/scipy) that `.ci/run` sets up.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TWINFLOW_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run `bash .ci/run` once (it creates it) or set TWINFLOW_PYTHON",
        venv.display()
    );
    venv
}

/// A Mosquitto of the test's own, with persistence (so a restart keeps
/// sessions and queued messages) and queues large enough that a slow
/// consumer is never dropped from (Mosquitto's default
/// `max_queued_messages 1000` drops QoS 1 messages).
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_with("")
    }

    /// With extra configuration: lines before the first `listener` are
    /// global and go first (Mosquitto wants `per_listener_settings` before
    /// anything else); the rest follows the default listener's settings.
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root drops to its own user: it must be able
        // to write its persistence file here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut m = Mosquitto {
            port,
            dir,
            child: None,
            extra: extra.to_string(),
        };
        m.spawn();
        m
    }

    /// The broker's own folder (for certificates and password files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let (global, rest) = match self.extra.find("listener ") {
            Some(i) => self.extra.split_at(i),
            None => (self.extra.as_str(), ""),
        };
        std::fs::write(
            &conf,
            format!(
                "{global}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nmax_queued_messages 1000000\n\
                 max_inflight_messages 100\nlog_dest file {dir}/mosquitto.log\nlog_type all\n{rest}\n",
                port = self.port,
                dir = self.dir.path().display(),
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (by .ci/run)");
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(20));
    }

    /// Stops the broker (SIGTERM: it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `tests/support/mqtt_pub.py` and waits for it to finish.
pub fn publish(port: u16, args: &[&str]) {
    let out = Command::new(python())
        .arg("tests/support/mqtt_pub.py")
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publisher failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `mqtt_pub.py` in the background.
pub fn publish_in_background(port: u16, args: &[&str]) -> Child {
    Command::new(python())
        .arg("tests/support/mqtt_pub.py")
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A paho subscriber writing what it receives to a file.
pub struct Subscriber {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Subscriber {
    pub fn start(port: u16, topics: &[&str]) -> Subscriber {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new(python())
            .arg("tests/support/mqtt_sub.py")
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(&out)
            .args(topics)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "subscribed", "subscriber did not subscribe");
        Subscriber {
            child,
            out,
            _dir: dir,
        }
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Messages on topics starting with `prefix`.
    pub fn on(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["topic"].as_str().unwrap_or("").starts_with(prefix))
            .collect()
    }

    /// Waits until `cond` holds over the messages, or panics after `within`.
    pub fn wait_until(
        &self,
        within: Duration,
        what: &str,
        cond: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.messages();
            if cond(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {} messages received",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// twinflow as a child process, with its HTTP address read from its log.
pub struct Twinflow {
    pub child: Child,
    pub base: String,
}

impl Twinflow {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Twinflow {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinflow"));
        cmd.env("TWINFLOW_HTTP_ADDR", "127.0.0.1:0")
            .env("TWINFLOW_LOG_FORMAT", "text")
            .env("TWINFLOW_LOG_LEVEL", "info")
            .args(args)
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TWINFLOW_TEST_LOG").is_some() {
                    eprintln!("[twinflow] {line}");
                }
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on ".len()..];
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("twinflow logs its HTTP address");
        Twinflow { child, base }
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.base))
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// SIGTERM, then the exit code (killed after `within`).
    pub fn terminate(mut self, within: Duration) -> i32 {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_exit(&mut self.child, within)
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the child to exit, killing it after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("twinflow did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback UDP port (bound, then released for the device to take).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first of `n` consecutive free loopback UDP ports (the simulator
/// serves unit i on its first port + i).
pub fn free_udp_ports(n: u16) -> u16 {
    loop {
        let first = free_udp_port();
        let free = (0..n).all(|i| {
            first
                .checked_add(i)
                .is_some_and(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok())
        });
        if free {
            return first;
        }
    }
}

/// Environment for `pipelines/demo.yaml`: its three BACnet controllers on
/// free ports, polled `rate_hz` times a second like the plant runs.
pub fn demo_bacnet_env(rate_hz: u32) -> Vec<(&'static str, String)> {
    let p = free_udp_ports(3);
    vec![
        ("TWINFLOW_DEMO_BACNET_PORT", p.to_string()),
        ("TWINFLOW_DEMO_BACNET_PORT_2", (p + 1).to_string()),
        ("TWINFLOW_DEMO_BACNET_PORT_3", (p + 2).to_string()),
        (
            "TWINFLOW_DEMO_POLL_INTERVAL",
            format!("{}ms", (1000 / rate_hz.max(1)).max(1)),
        ),
        ("TWINFLOW_DEMO_RATE_HZ", rate_hz.to_string()),
    ]
}

fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script)
}

/// A bacpypes3 BACnet/IP device (tests/support/bacnet_device.py) on a
/// loopback port, with its stdin control channel.
pub struct BacnetDevice {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    pub port: u16,
    pub device_id: u32,
}

impl BacnetDevice {
    pub fn start(port: u16, device_id: u32, extra: &[&str]) -> BacnetDevice {
        let mut child = Command::new(python())
            .arg(support("bacnet_device.py"))
            .args(["--address", &format!("127.0.0.1/32:{port}")])
            .args(["--device-id", &device_id.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the bacpypes3 device starts");
        assert_eq!(ready["ready"], true, "{ready}");
        BacnetDevice {
            child,
            stdin,
            lines,
            port,
            device_id,
        }
    }

    /// Sends one control command and returns the device's answer.
    pub fn control(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the device answers its control channel");
        assert_eq!(answer["ok"], true, "{cmd} → {answer}");
        answer
    }

    /// SIGKILL: the device vanishes without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BacnetDevice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs tests/support/bacnet_client.py (bacpypes3) and returns its JSON.
pub fn bacnet_client(args: &[&str]) -> serde_json::Value {
    // A generous timeout: CI machines are loaded.
    let out = Command::new(python())
        .arg(support("bacnet_client.py"))
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bacnet_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bacnet_client.py {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `twinflow simulate --bacnet` as a child process.
pub struct SimulatedBacnet {
    child: Child,
    pub port: u16,
    pub device_id: u32,
    log: std::sync::mpsc::Receiver<String>,
}

impl SimulatedBacnet {
    /// Starts it on a free port and waits until every unit's device is served
    /// (a port taken meanwhile by someone else means another try).
    pub fn start(device_id: u32, units: u16, extra: &[&str]) -> SimulatedBacnet {
        for _ in 0..5 {
            let port = free_udp_ports(units);
            let mut child = Command::new(env!("CARGO_BIN_EXE_twinflow"))
                .env("TWINFLOW_LOG_FORMAT", "text")
                .env("TWINFLOW_LOG_LEVEL", "info")
                .args(["simulate", "--bacnet"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["--device-id", &device_id.to_string()])
                .args(["--units", &units.to_string()])
                .args(extra)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if std::env::var_os("TWINFLOW_TEST_LOG").is_some() {
                        eprintln!("[twinflow] {line}");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut s = SimulatedBacnet {
                child,
                port,
                device_id,
                log: rx,
            };
            if s.wait_served(units) {
                return s;
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        panic!("twinflow simulate --bacnet did not start in five tries");
    }

    /// Reads the log until each unit's "serving BACnet device N on ADDR"
    /// line; false if the process ended first (its port was taken).
    fn wait_served(&mut self, units: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pending: Vec<String> = (0..units)
            .map(|i| {
                format!(
                    "serving BACnet device {} on 127.0.0.1:{}",
                    self.device_id + u32::from(i),
                    self.port + i
                )
            })
            .collect();
        let mut seen = Vec::new();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    pending.retain(|p| !line.contains(p.as_str()));
                    seen.push(line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    eprintln!("twinflow simulate ended early: {seen:#?}");
                    return false;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("twinflow simulate did not serve {pending:?}; log: {seen:#?}")
                }
            }
        }
        true
    }

    pub fn target(&self, unit: u16) -> String {
        format!("127.0.0.1:{}", self.port + unit)
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_exit(&mut self.child, Duration::from_secs(60))
    }
}

impl Drop for SimulatedBacnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
