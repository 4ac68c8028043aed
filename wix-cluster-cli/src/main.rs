//! `wix-cluster`: operate the wix-cluster clusters of this machine from the terminal,
//! through their management app over HTTP (no daemon, no protocol of its own). See
//! docs/cli.md.

mod args;
mod client;
mod commands;
mod failure;
mod print;
mod snapshot;
mod style;
mod table;
mod target;
mod top;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command, Global, Shell};
use client::Client;
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("wix-cluster: {}", failure.message());
            failure.code()
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let Cli { global, command } = cli;
    let output = global.output;
    match command {
        Command::Ls => {
            commands::ls::run(output);
            Ok(())
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "wix-cluster",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Status(target) => commands::status::run(&client(&global, target.name)?, output),
        Command::Events { follow, target } => {
            commands::events::run(&client(&global, target.name)?, output, follow)
        }
        Command::Metrics { pattern } => {
            commands::metrics::run(&client(&global, None)?, output, pattern.as_deref())
        }
        Command::Roll { wait, target } => {
            commands::act::roll(&client(&global, target.name)?, &wait, output)
        }
        Command::Scale {
            count,
            wait,
            target,
        } => commands::act::scale(&client(&global, target.name)?, &count, &wait, output),
        Command::Upgrade { wait, target } => {
            commands::act::upgrade(&client(&global, target.name)?, &wait, output)
        }
        Command::Stop { wait, target } => {
            commands::act::stop(&client(&global, target.name)?, &wait, output)
        }
        Command::Top { interval, target } => top::run(client(&global, target.name)?, interval),
    }
}

/// The client of the chosen cluster, with the admin token if one is given.
fn client(global: &Global, positional: Option<String>) -> Result<Client, Failure> {
    let cluster = positional.as_deref().or(global.cluster.as_deref());
    let chosen = target::choose(global.addr.as_deref(), cluster)?;
    Client::new(chosen.addr, chosen.prefix, token(global)?)
}

/// The admin token: `--token-file`'s content, else `WIX_CLUSTER_ADMIN_TOKEN`; blanks
/// around it are not part of it; empty is none.
fn token(global: &Global) -> Result<Option<String>, Failure> {
    let token = match &global.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?,
        None => std::env::var("WIX_CLUSTER_ADMIN_TOKEN").unwrap_or_default(),
    };
    let token = token.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// Now, Unix seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
