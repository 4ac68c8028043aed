//! The default `tracing` subscriber: `RUST_LOG` filtering (default `info`) to stderr, one
//! line per event, every line saying which process wrote it.
//!
//! - text (default): each line starts with `[master pid=P]` or `[worker=N pid=P]`;
//! - `WIX_CLUSTER_LOG_FORMAT=json`: tracing-subscriber's JSON objects, one per line,
//!   each with `role`, `pid` and, from workers, `worker` and `generation`.
//!
//! Each line reaches stderr in one `write`, so lines from several processes sharing the
//! terminal or pipe never interleave within a line.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::WorkerId;

/// `WIX_CLUSTER_LOG_FORMAT`: `text` (default) or `json`.
pub(crate) const ENV_LOG_FORMAT: &str = "WIX_CLUSTER_LOG_FORMAT";

/// Which process writes the log.
pub(crate) struct Identity {
    /// The worker's slot and generation; `None` for the master (or the single process).
    pub(crate) worker: Option<(WorkerId, u32)>,
    pub(crate) pid: u32,
}

impl Identity {
    fn prefix(&self) -> String {
        match self.worker {
            Some((id, _)) => format!("[worker={id} pid={}] ", self.pid),
            None => format!("[master pid={}] ", self.pid),
        }
    }

    /// The identity as the first members of a JSON object, each followed by a comma.
    fn json_members(&self) -> String {
        match self.worker {
            Some((id, generation)) => format!(
                "\"role\":\"worker\",\"worker\":{id},\"generation\":{generation},\"pid\":{},",
                self.pid
            ),
            None => format!("\"role\":\"master\",\"pid\":{},", self.pid),
        }
    }
}

/// Installs the subscriber unless the program installed its own first. An unknown
/// `WIX_CLUSTER_LOG_FORMAT` installs the text format and returns the value, for the
/// caller to report as a configuration error.
pub(crate) fn init(identity: Identity) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = std::env::var(ENV_LOG_FORMAT).unwrap_or_default();
    if format.trim() == "json" {
        let _already_set = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .event_format(Tagged::Json {
                members: identity.json_members(),
                inner: tracing_subscriber::fmt::format().json(),
            })
            .try_init();
        return Ok(());
    }
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(Tagged::Text {
            prefix: identity.prefix(),
            inner: Format::default(),
        })
        .try_init();
    match format.trim() {
        "" | "text" => Ok(()),
        other => Err(other.to_owned()),
    }
}

/// A log line with the process's identity: a prefix before the default text format,
/// or the first members of tracing-subscriber's JSON object.
enum Tagged {
    Text {
        prefix: String,
        inner: Format,
    },
    Json {
        members: String,
        inner: Format<Json>,
    },
}

impl<S, N> FormatEvent<S, N> for Tagged
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self {
            Tagged::Text { prefix, inner } => {
                writer.write_str(prefix)?;
                inner.format_event(ctx, writer, event)
            }
            Tagged::Json { members, inner } => {
                let mut line = String::new();
                inner.format_event(ctx, Writer::new(&mut line), event)?;
                match line.strip_prefix('{') {
                    Some(rest) => {
                        writer.write_char('{')?;
                        writer.write_str(members)?;
                        writer.write_str(rest)
                    }
                    None => writer.write_str(&line),
                }
            }
        }
    }
}
