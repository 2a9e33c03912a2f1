//! BACnet/IP on loopback, in one run:
//!
//! 1. ReadPropertyMultiple of the six inputs' Present_Value: median and p99
//!    round trip from twinflow's client to twinflow's simulated device
//!    (`twinflow simulate --bacnet`, its own process) and to a bacpypes3
//!    device (tests/support/bacnet_device.py), against a bare UDP echo round
//!    trip on the same loopback as the baseline.
//! 2. Devices per core: 100 simulated devices (one `twinflow simulate
//!    --bacnet --units 100` process) polled at 1 Hz by a `bacnet_poller` →
//!    `predictor` pipeline in this process; CPU seconds per wall second of
//!    this process, against the bare client doing the same reads without the
//!    engine (the baseline).
//!
//! `cargo bench --bench bacnet` (the bacpypes3 part needs the `.venv` of
//! `.ci/run`, or TWINFLOW_PYTHON). Loopback, unicast only.

#[allow(dead_code)]
#[path = "../tests/common/services.rs"]
mod services;

use std::net::{SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bacnet_types::enums::{ObjectType, PropertyIdentifier};
use tokio_util::sync::CancellationToken;
use twinflow::protocol::bacnet::{
    Client, Device, DeviceAddress, DeviceLink, ObjectRef, PropRead, RpmMode, INPUT_POINTS,
    MEASURED_POINTS,
};

const SAMPLES: usize = 2000;
const DEVICES: u32 = 100;
const POLL_SECS: u64 = 20;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may contain spaces): utime is
    // field 14, stime 15 of the whole line; 12 and 13 after the ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // CLK_TCK, 100 on Linux
}

fn local() -> SocketAddrV4 {
    "127.0.0.1:0".parse().unwrap()
}

fn six_inputs() -> Vec<PropRead> {
    INPUT_POINTS
        .iter()
        .map(|(_, i)| {
            PropRead::new(
                ObjectRef::new(ObjectType::ANALOG_INPUT, *i),
                PropertyIdentifier::PRESENT_VALUE,
            )
        })
        .collect()
}

/// What a poll reads: value, flags and reliability of the nine points.
fn poll_reads() -> Vec<PropRead> {
    INPUT_POINTS
        .iter()
        .chain(MEASURED_POINTS.iter())
        .flat_map(|(_, i)| {
            let o = ObjectRef::new(ObjectType::ANALOG_INPUT, *i);
            [
                PropertyIdentifier::PRESENT_VALUE,
                PropertyIdentifier::STATUS_FLAGS,
                PropertyIdentifier::RELIABILITY,
            ]
            .map(|p| PropRead::new(o, p))
        })
        .collect()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(port: u16, units: u32) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_twinflow"))
            .args(["simulate", "--bacnet", &format!("127.0.0.1:{port}")])
            .args(["--device-id", "10000", "--units", &units.to_string()])
            .env("TWINFLOW_LOG_LEVEL", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until the device answers.
async fn answered(client: &Client, dev: Device) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut link = DeviceLink::new(dev, RpmMode::Always, Some(1476));
    while client.read(&mut link, &six_inputs()).await.is_err() {
        assert!(Instant::now() < deadline, "{dev} never answered");
    }
}

/// Median and p99 (ms) of SAMPLES sequential RPMs of the six inputs.
async fn rpm_latency(client: &Client, dev: Device) -> (f64, f64) {
    answered(client, dev).await;
    let reads = six_inputs();
    let mut link = DeviceLink::new(dev, RpmMode::Always, Some(1476));
    let mut v = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let r = client.read(&mut link, &reads).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(r.iter().all(Result::is_ok));
    }
    (percentile(&mut v, 0.5), percentile(&mut v, 0.99))
}

/// Median and p99 (ms) of a bare UDP round trip of an RPM-sized datagram.
fn udp_echo_latency() -> (f64, f64) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            if n == 1 {
                return;
            }
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = rt.block_on(async move {
        let c = tokio::net::UdpSocket::from_std({
            c.set_nonblocking(true).unwrap();
            c
        })
        .unwrap();
        let mut buf = [0u8; 1500];
        let mut v = Vec::with_capacity(SAMPLES);
        let msg = [0x81u8; 40];
        for _ in 0..SAMPLES {
            let t = Instant::now();
            c.send_to(&msg, addr).await.unwrap();
            c.recv_from(&mut buf).await.unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        c.send_to(&[0], addr).await.unwrap();
        v
    });
    let mut v = v;
    (percentile(&mut v, 0.5), percentile(&mut v, 0.99))
}

fn devices(base: u16) -> Vec<Device> {
    (0..DEVICES)
        .map(|i| Device {
            id: 10000 + i,
            addr: DeviceAddress(SocketAddrV4::new([127, 0, 0, 1].into(), base + i as u16)),
        })
        .collect()
}

/// The bare client polling every device at 1 Hz, one task per device:
/// (CPU s per wall s, polls done).
fn bare_polling(base: u16) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = std::sync::Arc::new(
            Client::bind(local(), Duration::from_secs(1), 1)
                .await
                .unwrap(),
        );
        for d in devices(base) {
            answered(&client, d).await;
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let mut tasks = Vec::new();
        for d in devices(base) {
            let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let reads = poll_reads();
                let mut link = DeviceLink::new(d, RpmMode::Auto, None);
                let _ = client.learn_max_apdu(&mut link).await;
                let mut iv = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = iv.tick() => {}
                    }
                    if client.read(&mut link, &reads).await.is_ok() {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(POLL_SECS)).await;
        stop.cancel();
        let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
        for t in tasks {
            let _ = t.await;
        }
        (cpu, done.load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// The engine: bacnet_poller (100 devices, 1 Hz) → predictor → a discarding
/// sink: (CPU s per wall s, frames polled).
fn engine_polling(base: u16) -> (f64, u64) {
    let mut yaml = String::from(
        "name: bench\nnodes:\n  - id: poll\n    type: bacnet_poller\n    local: 127.0.0.1:0\n    interval: 1s\n    devices:\n",
    );
    for d in devices(base) {
        yaml.push_str(&format!(
            "      - {{unit: u{}, address: \"{}\", device_id: {}}}\n",
            d.id, d.addr, d.id
        ));
    }
    yaml.push_str("  - id: predict\n    type: predictor\n    inputs: [poll]\n  - id: out\n    type: log\n    inputs: [predict]\n    level: debug\n");
    let spec =
        twinflow::config::parse_pipeline(&yaml, "bench.yaml", std::path::Path::new("."), |_| None)
            .expect("bench pipeline is valid");
    let system = actix_rt::System::new();
    system.block_on(async move {
        let settings = twinflow::config::Settings {
            http_addr: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let engine = twinflow::Engine::start(&spec, settings).unwrap();
        let metrics = format!("http://{}/metrics", engine.http_addr());
        let stop = CancellationToken::new();
        let run = actix_rt::spawn(engine.run_until(stop.clone()));
        let frames = || async {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            text.lines()
                .find(|l| {
                    l.starts_with("twinflow_component_received_events_total")
                        && l.contains("component_id=\"poll\"")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        // Every device answered once before measuring.
        let deadline = Instant::now() + Duration::from_secs(120);
        while frames().await < u64::from(DEVICES) {
            assert!(Instant::now() < deadline, "not every device was polled");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (cpu0, f0, t0) = (cpu_seconds(), frames().await, Instant::now());
        tokio::time::sleep(Duration::from_secs(POLL_SECS)).await;
        let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
        let polled = frames().await - f0;
        stop.cancel();
        let _ = run.await;
        (cpu, polled)
    })
}

fn main() {
    twinflow::protocol::mqtt::install_crypto_provider();
    println!("BACnet/IP on loopback ({SAMPLES} sequential RPMs of the six inputs' Present_Value)");
    let (echo50, echo99) = udp_echo_latency();
    let sim_port = services::free_udp_port();
    let _sim = simulate(sim_port, 1);
    let bp_port = services::free_udp_port();
    let _bp = Killed(
        Command::new(services::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/bacnet_device.py"
            ))
            .args([
                "--address",
                &format!("127.0.0.1/32:{bp_port}"),
                "--device-id",
                "20000",
                "--no-stdin",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sim, bp) = rt.block_on(async {
        let client = Client::bind(local(), Duration::from_secs(2), 0)
            .await
            .unwrap();
        let at = |port: u16, id: u32| Device {
            id,
            addr: DeviceAddress(SocketAddrV4::new([127, 0, 0, 1].into(), port)),
        };
        let sim = rpm_latency(&client, at(sim_port, 10000)).await;
        let bp = rpm_latency(&client, at(bp_port, 20000)).await;
        (sim, bp)
    });
    drop(rt);
    println!(
        "{:<34} {:>9} {:>9} {:>12}",
        "round trip", "p50 ms", "p99 ms", "p50 / echo"
    );
    for (name, (p50, p99)) in [
        ("UDP echo (baseline)", (echo50, echo99)),
        ("RPM → twinflow simulated device", sim),
        ("RPM → bacpypes3 device", bp),
    ] {
        println!("{name:<34} {p50:>9.3} {p99:>9.3} {:>12.1}", p50 / echo50);
    }

    println!();
    println!(
        "{DEVICES} devices polled at 1 Hz for {POLL_SECS} s (9 points × value, flags, reliability)"
    );
    let base = {
        // DEVICES consecutive free ports: probe until a run of them is free.
        let mut p = 40000u16;
        while (0..DEVICES as u16).any(|i| UdpSocket::bind(("127.0.0.1", p + i)).is_err()) {
            p += DEVICES as u16;
        }
        p
    };
    let _plant = simulate(base, DEVICES);
    let (bare_cpu, bare_polls) = bare_polling(base);
    let (engine_cpu, engine_frames) = engine_polling(base);
    println!(
        "{:<28} {:>10} {:>14} {:>16}",
        "", "polls", "CPU s / s", "devices / core"
    );
    for (name, cpu, n) in [
        ("bare client (baseline)", bare_cpu, bare_polls),
        ("bacnet_poller → predictor", engine_cpu, engine_frames),
    ] {
        println!(
            "{name:<28} {n:>10} {cpu:>14.4} {:>16.0}",
            f64::from(DEVICES) / cpu.max(1e-9)
        );
    }
    println!("engine / bare CPU: {:.2}", engine_cpu / bare_cpu.max(1e-9));
}
