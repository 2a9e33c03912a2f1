//! The `twinflow` command line. Thin: everything it does is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use twinflow::config::{load_pipeline, LogFormat, Settings};
use twinflow::pipeline::graph;
use twinflow::protocol::bacnet::DeviceAddress;

#[derive(Parser)]
#[command(
    name = "twinflow",
    version,
    about = "Live side of an HVAC digital twin"
)]
struct Cli {
    /// Engine settings file (layered over the built-in defaults; TWINFLOW_* variables win).
    #[arg(long, global = true, env = "TWINFLOW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until SIGINT/SIGTERM (or until its sources end).
    Run { pipeline: PathBuf },
    /// Check a pipeline file; print every problem with file:line:column.
    Validate { pipeline: PathBuf },
    /// Print the pipeline graph as Mermaid (default) or Graphviz DOT.
    Graph {
        pipeline: PathBuf,
        /// Print Graphviz DOT instead of Mermaid.
        #[arg(long)]
        dot: bool,
    },
    /// Run simulated unit coolers standalone: their readings as CSV, or served live as BACnet/IP devices.
    Simulate(SimulateArgs),
    /// Offline drift report: compare a current CSV with a reference CSV.
    Drift {
        /// CSV of the reference period (e.g. the training data).
        #[arg(long)]
        reference: PathBuf,
        /// CSV of the period to check.
        #[arg(long)]
        current: PathBuf,
        /// `table` (default) or `json` (the DriftReport).
        #[arg(long, default_value = "table")]
        format: String,
        /// Columns to compare (comma-separated or repeated); default the model inputs present.
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// Status rule: `effect_size` (default) or `original`.
        #[arg(long, default_value = "effect_size")]
        rule: String,
    },
}

/// Outputs are opt-in flags so that more (MQTT) can sit beside them later;
/// exactly one must be chosen: `--csv` generates a file as fast as it can,
/// `--bacnet` serves the plant live until stopped.
#[derive(clap::Args)]
struct SimulateArgs {
    /// Write the frames as CSV (inputs, measured outputs, Q_thermal): training data.
    #[arg(long, conflicts_with = "bacnet")]
    csv: Option<PathBuf>,
    /// Serve the plant live as a BACnet/IP device on ADDR (IPv4[:port], port 47808 by
    /// default) until SIGINT/SIGTERM; unit i listens on port + i.
    #[arg(long, value_name = "ADDR")]
    bacnet: Option<DeviceAddress>,
    /// `--bacnet`: device instance of the first unit; unit i is N + i.
    #[arg(long, value_name = "N", default_value_t = 1234, requires = "bacnet")]
    device_id: u32,
    /// `--bacnet`: frames per second per unit (overrides the scenario file).
    #[arg(long, requires = "bacnet")]
    rate_hz: Option<f64>,
    /// `--csv`: frames per unit.
    #[arg(long, default_value_t = 1000)]
    frames: usize,
    /// Number of units (overrides the scenario file).
    #[arg(long)]
    units: Option<usize>,
    /// Seed of every random draw (overrides the scenario file).
    #[arg(long)]
    seed: Option<u64>,
    /// Settings of a `simulator` node as YAML (load, noise, physics, scenarios, rate_hz, ...).
    #[arg(long)]
    scenario_file: Option<PathBuf>,
}

fn simulate(a: SimulateArgs, config: Option<&std::path::Path>) -> ExitCode {
    use twinflow::model::dataset;
    if let Some(addr) = a.bacnet {
        return simulate_bacnet(a, addr, config);
    }
    let Some(csv) = a.csv else {
        eprintln!("twinflow simulate: choose an output: --csv FILE or --bacnet ADDR");
        return ExitCode::from(2);
    };
    let cfg = match dataset::simulator_settings(a.scenario_file.as_deref(), a.units, a.seed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twinflow simulate: {e}");
            return ExitCode::from(2);
        }
    };
    match dataset::simulate_to_csv(&cfg, a.frames, &csv) {
        Ok(n) => {
            eprintln!("twinflow simulate: wrote {n} rows to {}", csv.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("twinflow simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `twinflow simulate --bacnet`: the plant on the clock, served as BACnet
/// devices, until SIGINT/SIGTERM (exit 0).
fn simulate_bacnet(
    a: SimulateArgs,
    addr: DeviceAddress,
    config: Option<&std::path::Path>,
) -> ExitCode {
    use twinflow::model::dataset;
    use twinflow::sources::simulator::{serve_bacnet, SimulatorBacnet};
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("twinflow: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    let bacnet = SimulatorBacnet {
        listen: addr,
        device_id: a.device_id,
    };
    let cfg = match dataset::live_simulator_settings(
        a.scenario_file.as_deref(),
        a.units,
        a.seed,
        a.rate_hz,
        bacnet,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twinflow simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twinflow simulate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        let stop = CancellationToken::new();
        let sig = stop.clone();
        let signalled = wait_for_signal();
        tokio::spawn(async move {
            signalled.await;
            sig.cancel();
        });
        serve_bacnet(&cfg, &stop).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("simulate: {e}");
            eprintln!("twinflow simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|e| {
        eprintln!(
            "twinflow: log_level \"{}\" is not valid ({e}); using info",
            settings.log_level
        );
        EnvFilter::new("info")
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match settings.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Exit codes: 0 success, 1 runtime failure, 2 invalid input (pipeline or settings).
fn main() -> ExitCode {
    let cli = Cli::parse();
    twinflow::protocol::mqtt::install_crypto_provider();
    match cli.command {
        Command::Simulate(a) => simulate(a, cli.config.as_deref()),
        Command::Drift {
            reference,
            current,
            format,
            features,
            rule,
        } => {
            let parsed = format
                .parse()
                .and_then(|format| rule.parse().map(|rule| (format, rule)));
            let (format, rule) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("twinflow drift: {e}");
                    return ExitCode::from(2);
                }
            };
            let args = twinflow::drift::cli::DriftArgs {
                reference,
                current,
                format,
                features,
                rule,
            };
            match twinflow::drift::cli::run_drift_command(args) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("twinflow drift: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Validate { pipeline } => match load_pipeline(&pipeline) {
            Ok(spec) => {
                let edges: usize = spec.nodes.iter().map(|n| n.inputs.len()).sum();
                println!(
                    "{}: valid pipeline \"{}\" with {} nodes and {} edges",
                    pipeline.display(),
                    spec.name,
                    spec.nodes.len(),
                    edges
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!(
                    "{}: {} problem(s) found",
                    pipeline.display(),
                    e.errors.len()
                );
                ExitCode::from(2)
            }
        },
        Command::Graph { pipeline, dot } => match load_pipeline(&pipeline) {
            Ok(spec) => {
                print!(
                    "{}",
                    if dot {
                        graph::to_dot(&spec)
                    } else {
                        graph::to_mermaid(&spec)
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { pipeline } => {
            let settings = match Settings::load(cli.config.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("twinflow: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&settings);
            let spec = match load_pipeline(&pipeline) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let system = actix_rt::System::new();
            let res = system.block_on(async move {
                let shutdown = CancellationToken::new();
                let sig = shutdown.clone();
                actix_rt::spawn(async move {
                    wait_for_signal().await;
                    sig.cancel();
                });
                twinflow::run(&spec, settings, shutdown).await
            });
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("twinflow: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Resolves at SIGINT or SIGTERM. The handlers are registered when this is
/// called, not when the future is first polled, so a signal arriving in
/// between is not lost. Call it inside the runtime.
#[cfg(unix)]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
