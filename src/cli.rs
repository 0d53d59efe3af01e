//! Command-line flags (clap derive types) and their conversion into validated
//! configurations. Nothing here does I/O: a config that comes out is ready to run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub mod man;

use upecho::bench::{BenchConfig, Mode};
use upecho::endpoint::{Listen, Target};
use upecho::{Error, HostPort, ServerConfig, Transform};

/// A fast, robust uppercase-echo service, its client and its load generator.
#[derive(Debug, Parser)]
#[command(name = "upecho", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the uppercase echo over TCP, UDP and Unix sockets (default: TCP
    /// on 127.0.0.1:8080).
    Serve(ServeArgs),
    /// Talk to a server: a `>>: ` prompt on a terminal, like `nc` in a pipe.
    Connect(ConnectArgs),
    /// Load-generate against a server, verifying every reply byte.
    Bench(BenchArgs),
    /// Print a completion script for SHELL on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `upecho man | man -l -`.
    Man,
}

/// The transform names accepted on the command line.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum TransformArg {
    /// Python's `bytes.upper()`: a-z become A-Z, every other byte unchanged.
    #[default]
    Ascii,
    /// Unicode full case mapping, as Python's str.upper() (straße -> STRASSE);
    /// bytes that are not valid UTF-8 pass unchanged.
    Unicode,
    /// Plain echo.
    None,
}

/// `upecho serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this TCP address (repeatable; default, when no listener flag
    /// is given: 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub tcp: Vec<HostPort>,
    /// Listen on this TCP address with TLS 1.2 or 1.3 (repeatable); served
    /// like --tcp after the handshake. Without --tls-cert/--tls-key, with a
    /// temporary self-signed certificate whose SHA-256 is logged.
    #[arg(long, value_name = "ADDR")]
    pub tls: Vec<HostPort>,
    /// The TLS certificate chain, PEM, leaf first (with --tls-key; read
    /// again on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key, PEM: PKCS#8, PKCS#1 or SEC1 (with
    /// --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// TLS clients must present a certificate that chains to one in FILE
    /// (PEM; read again on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Close a connection whose TLS handshake has not finished after SECS
    /// (0 = no limit).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub tls_handshake_timeout: Duration,
    /// Serve HTTP/1.1 and WebSocket on this TCP address (repeatable): a
    /// WebSocket upgrade on any path, each message answered with one
    /// message; `GET /` a page to try it in a browser, `GET /healthz`.
    #[arg(long, value_name = "ADDR")]
    pub ws: Vec<HostPort>,
    /// As --ws, over TLS (with the certificate of the TLS flags).
    #[arg(long, value_name = "ADDR")]
    pub wss: Vec<HostPort>,
    /// The largest WebSocket message, however fragmented, in bytes; a larger
    /// one closes the connection with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub ws_max_message: u64,
    /// Accept WebSocket upgrades only with this `Origin` header (repeatable,
    /// e.g. https://example.org; default: any origin).
    #[arg(long, value_name = "ORIGIN")]
    pub ws_origin: Vec<String>,
    /// Answer datagrams on this UDP address (repeatable): each datagram gets
    /// one transformed datagram back; replies over 65507 bytes are dropped.
    #[arg(long, value_name = "ADDR")]
    pub udp: Vec<HostPort>,
    /// Listen on this Unix stream socket (repeatable); `@NAME` is a Linux
    /// abstract socket. A stale socket file is replaced, a live one never.
    #[arg(long, value_name = "PATH")]
    pub unix: Vec<PathBuf>,
    /// Permissions of the Unix socket files, in octal, at most 777 (default:
    /// the umask's). Needs --unix: there is no file to give them to otherwise.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, requires = "unix")]
    pub unix_mode: Option<u32>,
    /// How replies are transformed.
    #[arg(long, value_enum, default_value_t)]
    pub transform: TransformArg,
    /// Pending-connection queue length passed to listen(2).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub backlog: u32,
    /// Serve at most N connections at once; more wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Close a connection after SECS with no byte moving (0 = never).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    pub idle_timeout: Duration,
    /// After SIGINT/SIGTERM, let open connections finish for up to SECS.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub shutdown_grace: Duration,
    /// More logging on stderr than the default, info (-v debug: one line per
    /// connection; -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less logging on stderr than the default, info (-q warnings and errors
    /// only; -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// How log lines on stderr are written: text, or one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
    pub log_format: crate::logging::LogFormat,
    /// Every TCP and Unix connection must start with a PROXY protocol header
    /// (v1 or v2, as HAProxy's send-proxy/send-proxy-v2 send it), which is not
    /// echoed; the client it names is the connection's peer in logs. A
    /// connection whose header is missing, malformed or not complete within
    /// 5 s is closed.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Only senders in CIDR must send a PROXY header (repeatable, e.g.
    /// 127.0.0.0/8, ::1/128; a bare address is one host); other senders,
    /// Unix-socket clients included (a CIDR cannot name them), are served
    /// directly. Implies --proxy-protocol.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub proxy_from: Vec<ipnet::IpNet>,
    /// How long a PROXY header may take (for tests; the contract's 5 s).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs, hide = true)]
    pub proxy_timeout: Duration,
    /// Serve Prometheus metrics over HTTP at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9464; port 0 picks a free one, shown in the readiness line).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<HostPort>,
    /// Serve only sources inside these networks (CIDR, or one address;
    /// repeatable), on every TCP and UDP listener; checked before a byte is
    /// read. Behind --proxy-protocol, the client the header names.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub allow: Vec<ipnet::IpNet>,
    /// Never serve sources inside these networks (repeatable); deny wins
    /// over allow.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub deny: Vec<ipnet::IpNet>,
    /// More --allow networks, one per line (# comments); read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub allow_file: Vec<std::path::PathBuf>,
    /// More --deny networks, one per line (# comments); read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub deny_file: Vec<std::path::PathBuf>,
    /// At most N stream connections at once from one source (an IPv4
    /// address or an IPv6 /64) over all listeners; one more is closed at
    /// once. 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_per_source: u32,
    /// At most N replies a second to one UDP source (an IPv4 address or an
    /// IPv6 /64; a burst of N); past it datagrams are dropped. 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub udp_rate: u32,
}

impl ServeArgs {
    /// Checks the flags and builds the server configuration. `matches` are
    /// the subcommand's raw matches, which alone know the order in which
    /// `--tcp` and `--unix` were given (readiness lines follow that order).
    pub fn to_config(&self, matches: &ArgMatches) -> ServerConfig {
        let transform = transform(self.transform);
        let mut config = ServerConfig::default();
        let mut listen: Vec<(usize, Listen)> = Vec::new();
        let tcp = self.tcp.iter().cloned().map(Listen::Tcp);
        listen.extend(positions(matches, "tcp").zip(tcp));
        let udp = self.udp.iter().cloned().map(Listen::Udp);
        listen.extend(positions(matches, "udp").zip(udp));
        let unix = self.unix.iter().cloned().map(|p| Listen::Unix(p.into()));
        listen.extend(positions(matches, "unix").zip(unix));
        let tls = self.tls.iter().cloned().map(Listen::Tls);
        listen.extend(positions(matches, "tls").zip(tls));
        let ws = self.ws.iter().cloned().map(Listen::Ws);
        listen.extend(positions(matches, "ws").zip(ws));
        let wss = self.wss.iter().cloned().map(Listen::Wss);
        listen.extend(positions(matches, "wss").zip(wss));
        listen.sort_by_key(|(at, _)| *at);
        // Empty without listener flags: `serve` adds the default
        // 127.0.0.1:8080 only when no socket was inherited (systemd).
        config.listen = listen.into_iter().map(|(_, l)| l).collect();
        config.unix_mode = self.unix_mode;
        config.transform = transform;
        config.backlog = self.backlog;
        config.max_connections = self.max_connections as usize;
        config.idle_timeout = Some(self.idle_timeout).filter(|d| !d.is_zero());
        config.shutdown_grace = self.shutdown_grace;
        // A source list only makes sense with headers expected: it implies
        // the flag rather than being silently ignored.
        config.proxy_protocol = self.proxy_protocol || !self.proxy_from.is_empty();
        config.proxy_from = self.proxy_from.clone();
        config.proxy_timeout = self.proxy_timeout;
        config.metrics = self.metrics.clone();
        config.access = upecho::access::AccessConfig {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            allow_files: self.allow_file.clone(),
            deny_files: self.deny_file.clone(),
        };
        config.max_per_source = self.max_per_source;
        config.udp_rate = self.udp_rate;
        config.websocket = upecho::WsConfig {
            max_message: usize::try_from(self.ws_max_message).unwrap_or(usize::MAX),
            origins: self.ws_origin.clone(),
        };
        config.tls = upecho::tls::server::TlsConfig {
            files: self.tls_cert.clone().zip(self.tls_key.clone()),
            client_ca: self.tls_client_ca.clone(),
            handshake_timeout: Some(self.tls_handshake_timeout).filter(|d| !d.is_zero()),
        };
        config
    }

    /// The log level the -v/-q flags ask for.
    pub fn log_level(&self) -> tracing::Level {
        match (self.verbose, self.quiet) {
            (0, 0) => tracing::Level::INFO,
            (1, _) => tracing::Level::DEBUG,
            (v, _) if v >= 2 => tracing::Level::TRACE,
            (_, 1) => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        }
    }
}

/// The server a client talks to: `ADDR`, or `--udp`/`--unix`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The server's address.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: HostPort,
    /// Use UDP: each input line is one datagram, each reply one line (bench:
    /// each message is one datagram; pingpong only, up to 65507 bytes).
    #[arg(long, conflicts_with = "unix")]
    pub udp: bool,
    /// Connect to the Unix stream socket at PATH instead (`@NAME`: abstract).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
}

impl TargetArgs {
    /// The server as a [`Target`]: the Unix socket if one is given, the UDP
    /// address with `--udp`, else the TCP address.
    fn target(&self) -> Target {
        match (&self.unix, self.udp) {
            (Some(path), _) => Target::Unix(path.clone().into()),
            (None, true) => Target::Udp(self.addr.clone()),
            (None, false) => Target::Tcp(self.addr.clone()),
        }
    }
}

/// `upecho connect` flags.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Where to connect.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Give up connecting (and, with --udp, waiting for a reply) after SECS
    /// (0 = no limit).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Bind the local end to ADDR (an IP address and port, e.g. 127.0.0.2:0)
    /// before connecting.
    #[arg(long, value_name = "ADDR", conflicts_with = "unix")]
    pub source: Option<std::net::SocketAddr>,
    /// On stderr: the local and peer addresses and how long the connect took.
    #[arg(short, long)]
    pub verbose: bool,
    /// Write the replies as a hex dump in `hexdump -C`'s layout (offsets
    /// counting the whole reply stream).
    #[arg(long)]
    pub hex: bool,
    /// TLS and WebSocket.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// The TLS and WebSocket flags of `connect` and `bench`.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("tls_on").args(["tls", "ws"]).multiple(true))]
pub struct ClientTlsArgs {
    /// TLS over TCP; the server is verified against the system's trusted
    /// roots unless --tls-ca, --tls-fingerprint or --insecure says otherwise.
    #[arg(long, conflicts_with_all = ["udp", "unix"])]
    pub tls: bool,
    /// WebSocket to URL (ws:// or wss://, which takes the TLS flags) instead
    /// of ADDR: each line, without its newline, is one message (text if it
    /// is valid UTF-8, binary otherwise); each reply is printed with a
    /// newline.
    #[arg(long, value_name = "URL", conflicts_with_all = ["udp", "unix", "tls"])]
    pub ws: Option<upecho::endpoint::WsUrl>,
    /// Trust the CAs in FILE (PEM) instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls_on", conflicts_with_all = ["tls_fingerprint", "insecure"])]
    pub tls_ca: Option<PathBuf>,
    /// Trust only the certificate with this SHA-256, in the form the server
    /// logs (case and colons do not matter).
    #[arg(long, value_name = "SHA256", requires = "tls_on", value_parser = parse_fingerprint, conflicts_with = "insecure")]
    pub tls_fingerprint: Option<[u8; 32]>,
    /// Do not verify the server's certificate (a warning says so).
    #[arg(long, requires = "tls_on")]
    pub insecure: bool,
    /// The name to ask for and verify (default: the host of ADDR).
    #[arg(long, value_name = "NAME", requires = "tls_on")]
    pub tls_server_name: Option<String>,
    /// Present this client certificate (PEM chain, with --tls-key).
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls_on", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", value_name = "FILE", requires_all = ["tls_on", "client_cert"])]
    pub client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The TLS configuration, if `--tls` or a `wss://` URL; sessions resume
    /// (`connect`), or not (`bench`, which measures full handshakes).
    pub fn to_config(&self, resume: bool) -> Option<upecho::tls::client::ClientTls> {
        use upecho::tls::client::{ClientTls, Trust};
        let on = self.tls || self.ws.as_ref().is_some_and(upecho::endpoint::WsUrl::tls);
        on.then(|| ClientTls {
            trust: match (&self.tls_ca, self.tls_fingerprint, self.insecure) {
                (Some(ca), _, _) => Trust::Ca(ca.clone()),
                (None, Some(pin), _) => Trust::Pinned(pin),
                (None, None, true) => Trust::Insecure,
                (None, None, false) => Trust::System,
            },
            server_name: self.tls_server_name.clone(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
            resume,
        })
    }
}

/// Parses `--tls-fingerprint`.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    upecho::tls::certs::parse_fingerprint(text)
        .ok_or_else(|| "expected a SHA-256: 32 hex pairs, colons optional".to_string())
}

impl ConnectArgs {
    /// Builds the client configuration (clap has checked every flag).
    pub fn to_config(&self) -> upecho::client::ConnectConfig {
        let target = match &self.tls.ws {
            Some(url) => Target::Tcp(url.addr().clone()),
            None => self.target.target(),
        };
        upecho::client::ConnectConfig {
            target,
            timeout: Some(self.timeout).filter(|limit| !limit.is_zero()),
            source: self.source,
            verbose: self.verbose,
            hex: self.hex,
            tls: self.tls.to_config(true),
            websocket: self.tls.ws.clone(),
        }
    }
}

/// The traffic patterns of `upecho bench`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ModeArg {
    /// One message in flight per connection; reports round trips and latency.
    #[default]
    Pingpong,
    /// Write continuously while reading back; reports verified bytes per second
    /// (TCP and Unix sockets only).
    Stream,
    /// Connect, one verified exchange, close, again; reports connections per
    /// second and the connect's latency (TCP, TLS and Unix sockets).
    Connect,
}

/// `upecho bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The server to load.
    #[command(flatten)]
    pub target: TargetArgs,
    /// TLS (full handshakes in the set-up, never resumed).
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Traffic pattern.
    #[arg(long, value_enum, default_value_t)]
    pub mode: ModeArg,
    /// The transform the server applies; every reply byte is checked against it
    /// (with unicode, payloads are UTF-8 text and replies may change length).
    #[arg(long, value_enum, default_value_t)]
    pub transform: TransformArg,
    /// Concurrent connections, all opened before the warm-up (memory: about
    /// 2 KiB per connection, plus at most 80 MiB of payload).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Message size (pingpong) or write size (stream) in bytes, up to 16 MiB
    /// (65507 with --udp) (memory: at most 80 MiB of payload whatever the
    /// size, plus about 2 KiB per connection).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=upecho::bench::MAX_SIZE as i64))]
    pub size: u32,
    /// The measured window.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// Run this long first, not counted.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Seed of the pseudo-random payloads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Open loop: R messages per second in total, spread evenly over the
    /// connections, each sent at its scheduled time whether or not earlier
    /// replies are back; latency is measured from that time (the uncorrected
    /// figures beside it). With --mode connect, R is connections per second;
    /// not with --mode stream.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Generator threads: the connections are spread over them (one runtime
    /// each) and their figures merged.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=upecho::bench::config::MAX_THREADS as i64))]
    pub threads: u16,
    /// Connect from this local address (repeatable: used in turn, each
    /// giving the connections a local port range of their own).
    #[arg(long, value_name = "ADDR", value_parser = parse_source, conflicts_with = "unix")]
    pub source: Vec<std::net::IpAddr>,
    /// Write the latency histograms to FILE, one interval per second, in
    /// HdrHistogram's interval log format (V2, compressed; microseconds); with
    /// --rate two series, tagged corrected and uncorrected.
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<std::path::PathBuf>,
    /// Draw the window's latency percentile distribution to FILE, an SVG
    /// picture (with --rate, corrected and uncorrected together).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
    /// On stderr, one line per second of the window: its rate, p99 and
    /// errors.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Checks the flags and builds the benchmark configuration, by the
    /// library's own rules ([`BenchConfig::validate`]), so the command line
    /// and a library caller are held to the same ones.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] (exit status 2) for a zero duration, and with
    /// `--udp` for stream mode or a size over 65507 bytes.
    pub fn to_config(&self) -> Result<BenchConfig, Error> {
        let config = BenchConfig {
            target: match &self.tls.ws {
                Some(url) => Target::Tcp(url.addr().clone()),
                None => self.target.target(),
            },
            mode: match self.mode {
                ModeArg::Pingpong => Mode::PingPong,
                ModeArg::Stream => Mode::Stream,
                ModeArg::Connect => Mode::Connect,
            },
            transform: transform(self.transform),
            connections: self.connections as usize,
            size: self.size as usize,
            duration: self.duration,
            warmup: self.warmup,
            seed: self.seed,
            // Full handshakes: a benchmark never resumes a session.
            tls: self.tls.to_config(false),
            rate: self.rate,
            threads: usize::from(self.threads),
            sources: self.source.clone(),
            intervals: self.verbose || self.histogram.is_some(),
            websocket: self.tls.ws.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `upecho completions` flags.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// The completion script for the chosen shell, covering every subcommand
    /// and flag.
    ///
    /// Rendered into memory rather than onto stdout because clap_complete
    /// panics when its writer fails: the caller writes it, and a reader that
    /// went away (`| head`) is then a normal exit, not a panic.
    pub fn script(&self) -> Vec<u8> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "upecho", &mut script);
        script
    }
}

/// The transform named on the command line.
fn transform(arg: TransformArg) -> Transform {
    match arg {
        TransformArg::Ascii => Transform::Ascii,
        TransformArg::Unicode => Transform::Unicode,
        TransformArg::None => Transform::None,
    }
}

/// A bench `--source`: an IP address, or one with port 0 (a fixed port
/// could serve one connection only).
fn parse_source(text: &str) -> Result<std::net::IpAddr, String> {
    if let Ok(ip) = text.parse() {
        return Ok(ip);
    }
    match text.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.port() == 0 => Ok(addr.ip()),
        Ok(_) => Err(format!(
            "'{text}' has a port: give the address alone, each connection gets its own port"
        )),
        Err(_) => Err(format!("'{text}' is not an IP address, such as 127.0.0.2")),
    }
}

/// A `--rate`: a positive number of messages per second (the range is
/// checked with the rest of the configuration).
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a positive number of messages per second"
        )),
    }
}

/// The most any SECS flag takes: about 31 years. Far past any real timeout or
/// run, and far from where adding it to a clock reading would overflow (which
/// panicked at `bench --duration 1.8e19`).
const MAX_SECS: f64 = 1e9;

/// Where on the command line each value of the flag `id` was given.
fn positions<'a>(matches: &'a ArgMatches, id: &str) -> impl Iterator<Item = usize> + 'a {
    matches.indices_of(id).into_iter().flatten()
}

/// A `--proxy-from`, `--allow` or `--deny` value: a network in CIDR
/// notation, or one address.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    upecho::access::parse_network(text)
}

/// Parses socket file permissions written in octal, as chmod takes them
/// (`660`). Set-id and sticky bits (above 0777) mean nothing on a socket.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal file mode from 0 to 777, such as 660"))
}

/// Parses a non-negative number of seconds, decimals allowed (`0.25`), up to
/// [`MAX_SECS`].
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if secs > MAX_SECS {
        return Err(format!(
            "'{text}' is more than {MAX_SECS} seconds, the most a SECS value can be"
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("'{text}' is not a non-negative number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_decimals_and_reject_junk() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn seconds_stop_at_a_billion() {
        assert_eq!(parse_secs("1e9"), Ok(Duration::from_secs(1_000_000_000)));
        let err = parse_secs("1.8e19").unwrap_err();
        assert!(err.contains("more than 1000000000 seconds"), "{err}");
        assert!(parse_secs("1000000000.5").is_err());
    }

    #[test]
    fn bench_help_states_the_memory_bound_the_code_keeps() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("bench")
            .expect("bench subcommand")
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let payload = format!(
            "{} MiB of payload",
            upecho::bench::payload::MAX_PAYLOAD >> 20
        );
        let connection = format!(
            "about {} KiB per connection",
            upecho::bench::load::CONNECTION_MEMORY >> 10
        );
        for bound in [payload, connection] {
            assert_eq!(help.matches(&bound).count(), 2, "{bound:?} in {help}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
