//! The command line: every command, its options and its `--help` example.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate wix-cluster clusters on this machine through their management app.
#[derive(Debug, Parser)]
#[command(
    name = "wix-cluster",
    version,
    after_help = "\
Examples:
  wix-cluster ls
  wix-cluster status myapp
  WIX_CLUSTER_ADMIN_TOKEN=... wix-cluster roll
  wix-cluster top

Exit codes: 0 done, 1 the action failed, 2 usage, 3 cannot reach the cluster, 4 not authorised.
The admin token comes from WIX_CLUSTER_ADMIN_TOKEN or --token-file, never the command line."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The cluster: its program's name or its master's pid (see `ls`); the only one
    /// when there is one.
    #[arg(short = 'c', long, global = true, value_name = "NAME|PID")]
    pub(crate) cluster: Option<String>,
    /// The management app's address, `ip:port` or `ip:port/mount-point`
    /// (WIX_CLUSTER_MANAGEMENT_ADDR too).
    #[arg(long, global = true, value_name = "ADDR")]
    pub(crate) addr: Option<String>,
    /// A file holding the admin token (else WIX_CLUSTER_ADMIN_TOKEN).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For a person: tables fitted to the terminal's width.
    Table,
    /// For a program: the stable schema of docs/cli.md.
    Json,
}

/// Waiting for an action to finish.
#[derive(Debug, Clone, Args)]
pub(crate) struct Wait {
    /// Return once the cluster took the request, without waiting for the action.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for the action at most (then exit 1).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub(crate) timeout: Duration,
}

/// A cluster given as a positional argument, a shorthand for `-c`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The cluster (as -c): its name or its master's pid.
    #[arg(id = "target", value_name = "NAME|PID")]
    pub(crate) name: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the clusters running on this machine (by their discovery files).
    #[command(after_help = "Example:\n  wix-cluster ls -o json")]
    Ls,
    /// The cluster, then one row per worker.
    #[command(after_help = "Example:\n  wix-cluster status myapp")]
    Status(Target),
    /// The master's event log, oldest first; -f follows it live.
    #[command(after_help = "Example:\n  wix-cluster events -f myapp")]
    Events {
        /// Keep printing new entries as they come (reconnecting across an upgrade).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// The metrics recorded through the `metrics` facade, filtered by a pattern.
    #[command(after_help = "Example:\n  wix-cluster metrics http_server -c myapp")]
    Metrics {
        /// Only series whose name contains this text.
        pattern: Option<String>,
    },
    /// Rolling restart: replace every worker, one at a time (needs the token).
    #[command(
        after_help = "Example:\n  WIX_CLUSTER_ADMIN_TOKEN=$(cat /etc/myapp/token) wix-cluster roll myapp"
    )]
    Roll {
        #[command(flatten)]
        wait: Wait,
        #[command(flatten)]
        target: Target,
    },
    /// Run N workers, or N more (+N) or fewer (-N) (needs the token).
    #[command(
        after_help = "Examples:\n  wix-cluster scale 4\n  wix-cluster scale +2 myapp\n  wix-cluster scale -1"
    )]
    Scale {
        /// N, +N or -N.
        #[arg(allow_hyphen_values = true, value_name = "N|+N|-N")]
        count: String,
        #[command(flatten)]
        wait: Wait,
        #[command(flatten)]
        target: Target,
    },
    /// Replace the master without closing the port, as SIGUSR2 (needs the token).
    #[command(after_help = "Example:\n  wix-cluster upgrade myapp")]
    Upgrade {
        #[command(flatten)]
        wait: Wait,
        #[command(flatten)]
        target: Target,
    },
    /// Stop the cluster gracefully, as SIGTERM (needs the token).
    #[command(after_help = "Example:\n  wix-cluster stop myapp --timeout 1m")]
    Stop {
        #[command(flatten)]
        wait: Wait,
        #[command(flatten)]
        target: Target,
    },
    /// A live full-screen view: workers, traffic, events; keys r (roll), + and -
    /// (scale), q (quit).
    #[command(after_help = "Example:\n  wix-cluster top myapp")]
    Top {
        /// How often to read the cluster (at least 250ms).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        interval: Duration,
        #[command(flatten)]
        target: Target,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  wix-cluster completions bash > /etc/bash_completion.d/wix-cluster"
    )]
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// The shells completions are written for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}
