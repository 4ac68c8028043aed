//! The default `tracing` subscriber: `RUST_LOG` filtering (default `info`) to stderr,
//! every line prefixed with the process's role, worker id and pid.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber unless the program installed its own first.
/// `who` is the line prefix, e.g. `master pid=41` or `worker=2 pid=43`.
pub(crate) fn init(who: String) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(Prefixed {
            who,
            inner: Format::default(),
        })
        .try_init();
}

/// Writes `who` before the default format.
struct Prefixed {
    who: String,
    inner: Format,
}

impl<S, N> FormatEvent<S, N> for Prefixed
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
        write!(writer, "[{}] ", self.who)?;
        self.inner.format_event(ctx, writer, event)
    }
}
