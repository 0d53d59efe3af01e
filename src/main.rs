//! The `upecho` binary: parse flags, set up logging, dispatch, and turn the
//! result into the contract's exit status (0 ok, 1 runtime error, 2 usage
//! error, 130 interrupted) with at most one `error: ` line on stderr.

mod cli;
mod logging;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use upecho::client::{self, Finish};
use upecho::{Server, ServerConfig, ShutdownSignal};

fn main() -> ExitCode {
    // Parsed in two steps to keep the raw matches: they alone know the order
    // of mixed listener flags.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return usage_error(&err),
    };
    match run(cli, &matches) {
        Ok(Finish::Done) => ExitCode::SUCCESS,
        Ok(Finish::Interrupted) => ExitCode::from(130),
        Err(err) => {
            logging::emit(&format!("error: {err:#}"), LOG_PATIENCE);
            // Flags clap accepted but the configuration cannot use are
            // usage errors too: one kind of error, one exit status.
            if matches!(
                err.downcast_ref::<upecho::Error>(),
                Some(upecho::Error::InvalidConfig(_))
            ) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints help and version as clap does; any other clap error becomes one line
/// and exit status 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = err.to_string();
    let mut paragraph = rendered.lines().take_while(|line| !line.trim().is_empty());
    let first = paragraph.next().unwrap_or("error: invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // A missing argument (`upecho completions`) is named on the lines under
    // a first line ending in ':'.
    let message = if first.ends_with(':') {
        std::iter::once(first)
            .chain(paragraph.map(str::trim))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        first.to_owned()
    };
    logging::emit(
        &format!("error: {message} (see 'upecho --help')"),
        LOG_PATIENCE,
    );
    ExitCode::from(2)
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<Finish> {
    match cli.command {
        Command::Serve(args) => {
            // First, while the process has one thread: taking the sockets
            // systemd handed over removes LISTEN_FDS/LISTEN_PID.
            let inherited = upecho::endpoint::inherited()?;
            init_logging(args.log_level(), args.log_format);
            let serve_matches = matches.subcommand_matches("serve").unwrap_or(matches);
            let served = serve(args.to_config(serve_matches), inherited);
            logging::flush(LOG_PATIENCE);
            served?;
            Ok(Finish::Done)
        }
        Command::Connect(args) => {
            init_logging(tracing::Level::WARN, logging::LogFormat::Text);
            Ok(client::run(args.to_config())?)
        }
        Command::Bench(args) => {
            let config = args.to_config()?;
            init_logging(tracing::Level::WARN, logging::LogFormat::Text);
            bench(&config, &args)
        }
        Command::Completions(args) => print_document(&args.script(), "completion script"),
        Command::Man => {
            let page = cli::man::page().map_err(|cause| upecho::Error::Io {
                context: "cannot render the man page".into(),
                cause,
            })?;
            print_document(page.as_bytes(), "man page")
        }
    }
}

/// Writes a generated document (completion script, man page) on stdout. A
/// reader that went away (`upecho man | head`) ends it quietly.
fn print_document(document: &[u8], what: &str) -> anyhow::Result<Finish> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(document).and_then(|()| stdout.flush()) {
        Err(err) if client::is_broken_pipe(&err) => Ok(Finish::Done),
        Err(cause) => Err(upecho::Error::Io {
            context: format!("cannot write the {what} to stdout"),
            cause,
        }
        .into()),
        Ok(()) => Ok(Finish::Done),
    }
}

/// How long the process waits at exit for its last log lines to reach a
/// stderr that is slow or stuck.
const LOG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

fn init_logging(level: tracing::Level, format: logging::LogFormat) {
    logging::init(level, format);
}

/// Binds every listener (after the sockets systemd handed over), installs
/// the signal handlers, prints the readiness lines, tells systemd it is
/// ready, and serves until a signal.
fn serve(
    mut config: ServerConfig,
    inherited: Vec<upecho::endpoint::Listener>,
) -> anyhow::Result<()> {
    // The contract's default listener, unless systemd handed sockets over.
    if config.listen.is_empty() && inherited.is_empty() {
        config.listen = ServerConfig::default().listen;
    }
    upecho::server::survive_hangups_while_starting().map_err(|cause| upecho::Error::Io {
        context: "cannot install signal handlers".into(),
        cause,
    })?;
    match upecho::endpoint::raise_fd_limit() {
        Ok(limit) => tracing::debug!(limit, "descriptor limit"),
        Err(err) => {
            tracing::warn!(error = %upecho::error::plain(&err), "cannot raise the descriptor limit")
        }
    }
    let server = Server::bind_with_inherited(inherited, config)?;
    // One single-threaded runtime per core the process may run on (this
    // honours `taskset`); see `Server::run_per_core` for why.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let signal = ShutdownSignal::new();
    let endpoints = server.endpoints().to_vec();
    let metrics = server.metrics_addr();
    let reloader = server.reloader();
    server.run_per_core(threads, signal.clone(), || {
        let signals = upecho::server::watch_os_signals(signal, reloader).map_err(|cause| {
            upecho::Error::Io {
                context: "cannot install signal handlers".into(),
                cause,
            }
        })?;
        tokio::spawn(signals);
        announce(&endpoints, metrics).map_err(|cause| upecho::Error::Io {
            context: "cannot write the readiness lines".into(),
            cause,
        })?;
        notify_ready();
        Ok(())
    })?;
    Ok(())
}

/// Tells systemd (`Type=notify`, `NOTIFY_SOCKET`) that the service is ready,
/// after the readiness lines; without `NOTIFY_SOCKET`, does nothing. A failure
/// is only a warning: the service itself works.
fn notify_ready() {
    if let Err(err) = upecho::endpoint::notify_ready() {
        tracing::warn!(error = %upecho::error::plain(&err), "cannot notify the service manager");
    }
}

/// Prints one `listening ...` line per listener and flushes: the readiness
/// signal scripts and tests wait for, the metrics endpoint's last. Nothing
/// else ever goes to stdout.
fn announce(
    endpoints: &[upecho::Endpoint],
    metrics: Option<std::net::SocketAddr>,
) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for endpoint in endpoints {
        writeln!(stdout, "listening {endpoint}")?;
    }
    if let Some(addr) = metrics {
        writeln!(stdout, "listening metrics {addr}")?;
    }
    stdout.flush()
}

/// `-v`'s line for one second of a run: when it ended, its rate, p99 and
/// errors (and under `--rate` the p99 from the real send times).
fn second_line(interval: &upecho::bench::intervals::Interval, connect: bool) -> String {
    let end = (interval.start + interval.length).as_secs_f64();
    let unit = if connect { "connects/s" } else { "req/s" };
    let mut line = format!(
        "{end:6.1} s  {:.0} {unit}  p99 {} us",
        interval.rate(),
        interval.p99_us
    );
    if let Some(uncorrected) = interval.uncorrected_p99_us {
        line += &format!(" (uncorrected {uncorrected} us)");
    }
    line + &format!("  errors {}", interval.errors)
}

/// A file `bench` writes after the run (`--histogram`, `--plot`), if asked
/// for: created before it.
struct OutputFile(Option<(std::path::PathBuf, std::fs::File, &'static str)>);

impl OutputFile {
    fn create(
        path: Option<&std::path::Path>,
        what: &'static str,
    ) -> Result<OutputFile, upecho::Error> {
        let Some(path) = path else {
            return Ok(OutputFile(None));
        };
        // Opened, not emptied: a run that fails before it measures anything
        // leaves an earlier file as it was.
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path);
        match opened {
            Ok(file) => Ok(OutputFile(Some((path.to_owned(), file, what)))),
            Err(cause) => Err(upecho::Error::Io {
                context: format!("cannot write the {what} to {}", path.display()),
                cause,
            }),
        }
    }

    /// Writes it with `body`, buffered.
    fn write(
        self,
        body: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
    ) -> Result<(), upecho::Error> {
        let Some((path, file, what)) = self.0 else {
            return Ok(());
        };
        let written = file.set_len(0).and_then(|()| {
            let mut out = std::io::BufWriter::new(file);
            body(&mut out)
        });
        written.map_err(|cause| upecho::Error::Io {
            context: format!("cannot write the {what} to {}", path.display()),
            cause,
        })
    }
}

/// Runs the load generator and prints its report: the JSON object alone on
/// stdout with `--json`, a summary otherwise; a progress bar on a terminal,
/// cleared before anything else is printed, and with `-v` a line per second
/// on stderr. Ctrl-C prints the report of the time measured so far, then
/// exits 130 whatever it shows. A reader of stdout that went away
/// (`| head -c1`) ends it quietly. The `--histogram` and `--plot` files are
/// created before the run, so that a path that cannot be written fails at
/// once, and written after the report.
fn bench(config: &upecho::bench::BenchConfig, args: &cli::BenchArgs) -> anyhow::Result<Finish> {
    let histogram = OutputFile::create(args.histogram.as_deref(), "histogram log")?;
    let plot = OutputFile::create(args.plot.as_deref(), "plot")?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent}%",
            )
            .expect("valid template"),
        );
        bar
    });
    let shown = bar.clone();
    let (verbose, connect) = (args.verbose, config.mode == upecho::bench::Mode::Connect);
    let outcome = upecho::bench::run(config, move |progress| match progress {
        upecho::bench::Progress::Elapsed(fraction) => {
            if let Some(bar) = &shown {
                bar.set_position((fraction * 1000.0) as u64);
            }
        }
        upecho::bench::Progress::Interval(interval) if verbose => {
            let line = second_line(interval, connect);
            match &shown {
                Some(bar) => bar.println(line),
                None => {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
        }
        upecho::bench::Progress::Interval(_) => {}
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (report, finish) = match outcome? {
        upecho::bench::Outcome::Measured(report) => (report, Finish::Done),
        upecho::bench::Outcome::Interrupted(Some(report)) => (report, Finish::Interrupted),
        upecho::bench::Outcome::Interrupted(None) => return Ok(Finish::Interrupted),
    };
    // The files first: a reader of stdout that went away does not take
    // them with it.
    histogram.write(|out| upecho::bench::report::hdr_log::write(&report, out))?;
    plot.write(|out| upecho::bench::report::plot::write(&report, out))?;
    match report.write_to(std::io::stdout().lock(), args.json) {
        Err(err) if client::is_broken_pipe(&err) => return Ok(finish),
        Err(cause) => {
            return Err(upecho::Error::Io {
                context: "cannot write the report to stdout".into(),
                cause,
            }
            .into());
        }
        Ok(()) => {}
    }
    match report.failure() {
        Some(failure) if finish == Finish::Done => Err(anyhow::anyhow!(failure)),
        _ => Ok(finish),
    }
}
