//! `upecho man`: the man page, rendered from the same clap definitions as
//! `--help` (so the two cannot drift), plus the sections clap knows nothing
//! of: exit status, environment and examples.

use clap::CommandFactory;

use super::Cli;

/// The man page (roff): the top-level page, then one section per subcommand
/// with its synopsis and options. One page rather than `upecho-serve(1)` and
/// the like, since `upecho man` prints a single page on stdout.
///
/// # Errors
///
/// None in practice: the page is rendered into memory.
pub fn page() -> std::io::Result<String> {
    let mut command = Cli::command()
        .bin_name("upecho")
        .disable_help_subcommand(true);
    // Building gives each subcommand its full name (`upecho serve`) for the
    // synopses.
    command.build();
    let mut roff = Vec::new();
    let top = clap_mangen::Man::new(command.clone());
    top.render_title(&mut roff)?;
    top.render_name_section(&mut roff)?;
    top.render_synopsis_section(&mut roff)?;
    top.render_description_section(&mut roff)?;
    top.render_options_section(&mut roff)?;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        roff.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let man = clap_mangen::Man::new(sub.clone());
        let mut section = Vec::new();
        man.render_description_section(&mut section)?;
        let mut synopsis = Vec::new();
        man.render_synopsis_section(&mut synopsis)?;
        section.extend_from_slice(
            with_value_names(&String::from_utf8_lossy(&synopsis), sub).as_bytes(),
        );
        man.render_options_section(&mut section)?;
        roff.extend_from_slice(as_subsection(&String::from_utf8_lossy(&section)).as_bytes());
    }
    for extra in [EXIT_STATUS, ENVIRONMENT, EXAMPLES] {
        roff.extend_from_slice(extra.as_bytes());
    }
    top.render_version_section(&mut roff)?;
    Ok(without_repeated_preamble(&String::from_utf8_lossy(&roff)))
}

/// Adds each option's value to a synopsis: clap_mangen writes `[--tcp]`,
/// the reader needs `[--tcp ADDR]` to know the flag takes one.
fn with_value_names(synopsis: &str, command: &clap::Command) -> String {
    let mut out = synopsis.to_owned();
    for arg in command.get_arguments() {
        let (Some(long), Some(names)) = (arg.get_long(), arg.get_value_names()) else {
            continue;
        };
        if !arg.get_action().takes_values() || names.is_empty() {
            continue;
        }
        let flag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
        let value = format!("\\fI{}\\fR", names[0]);
        out = out.replace(&format!("[{flag}]"), &format!("[{flag} {value}]"));
    }
    out
}

/// Turns rendered man sections into parts of a subcommand's section: the
/// description loses its heading (the subcommand's heading stands for it),
/// the others (`.SH OPTIONS`) become subsections (`.SS Options`).
fn as_subsection(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for line in roff.lines() {
        match line.strip_prefix(".SH ") {
            Some("DESCRIPTION") => continue,
            Some(heading) => {
                let heading = heading.to_lowercase();
                let mut chars = heading.chars();
                out.push_str(".SS ");
                out.extend(chars.next().map(|first| first.to_ascii_uppercase()));
                out.push_str(chars.as_str());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Keeps only the first copy of roff's preamble (the lines defining `\*(Aq`,
/// the apostrophe), which every clap_mangen render call writes anew.
fn without_repeated_preamble(roff: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::with_capacity(roff.len());
    for line in roff.lines() {
        if line.contains(" .ds Aq ") && !seen.insert(line) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What the exit statuses mean, as every subcommand uses them.
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success: a server stopped by SIGINT or SIGTERM (after its drain), a client whose session ended normally, a bench run with every reply right.
.TP
\fB1\fR
A runtime error: a listener cannot be set up, the server cannot be reached, a reply is missing, a bench reply is wrong, an invalid \fBLISTEN_FDS\fR.
.TP
\fB2\fR
A usage error: an unknown flag, a bad address or value, conflicting flags.
.TP
\fB130\fR
A client (\fBconnect\fR, \fBbench\fR) interrupted by Ctrl\-C; \fBbench\fR first prints the report for the time measured so far.
.PP
Every error is one line on stderr, \fBerror:\fR followed by what failed (naming the address, path or flag) and the cause.
"#;

/// The variables `serve` reads: systemd's socket activation and readiness
/// notification.
const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBLISTEN_FDS\fR, \fBLISTEN_PID\fR
Socket activation (\fBsd_listen_fds\fR(3)): when \fBLISTEN_PID\fR is the server's own process id, \fBserve\fR serves the \fBLISTEN_FDS\fR sockets from descriptor 3 on instead of binding, and prints a readiness line for each first, in the order inherited. Listener flags given as well are served too; the default 127.0.0.1:8080 is then not added. A \fBLISTEN_FDS\fR that is not a positive number is an error (exit 1).
.TP
\fBNOTIFY_SOCKET\fR
Readiness notification (\fBsd_notify\fR(3)): once every listener is ready, \fBserve\fR sends \fBREADY=1\fR to this datagram socket, a path or, starting with \fB@\fR, an abstract socket name.
"#;

/// A few commands that show the common uses.
const EXAMPLES: &str = r#".SH EXAMPLES
.TP
\fBupecho serve\fR
Serve TCP on 127.0.0.1:8080.
.TP
\fBupecho serve \-\-tcp 0.0.0.0:7000 \-\-tcp [::]:7000 \-\-udp 127.0.0.1:7000 \-\-unix /run/upecho.sock\fR
Serve both IP families over TCP, UDP on loopback and a Unix socket, in one process.
.TP
\fBprintf 'hello\en' | upecho connect 127.0.0.1:8080\fR
Send a line and print the reply, \fBHELLO\fR, like \fBnc\fR.
.TP
\fBupecho bench 127.0.0.1:8080 \-\-connections 50 \-\-duration 10 \-\-json\fR
Fifty connections in ping\-pong for ten seconds, every reply byte verified, the figures as JSON.
"#;
