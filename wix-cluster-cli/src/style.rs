//! Colour and emphasis on a terminal: none when the output is not a terminal or
//! `NO_COLOR` is set (to anything but empty, <https://no-color.org>).

use std::io::IsTerminal;

/// The colours cells use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tint {
    /// Fine: ready, a finished step.
    Good,
    /// Passing: starting, draining.
    Busy,
    /// Wrong: exited, failed, killed.
    Bad,
}

/// Whether to colour.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    /// Colour on a terminal without `NO_COLOR`.
    pub(crate) fn for_stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: !no_color && std::io::stdout().is_terminal(),
        }
    }

    /// Whether it colours.
    pub(crate) fn is_colour(self) -> bool {
        self.colour
    }

    /// No colour (`top` colours through its own widgets).
    pub(crate) fn for_stdout_plain() -> Style {
        Style { colour: false }
    }

    /// No colour.
    #[cfg(test)]
    pub(crate) fn plain() -> Style {
        Style { colour: false }
    }

    /// `text` bold.
    pub(crate) fn bold(self, text: &str) -> String {
        if self.colour {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// `text` in `tint`'s colour.
    pub(crate) fn tint(self, text: &str, tint: Option<Tint>) -> String {
        let code = match (self.colour, tint) {
            (true, Some(Tint::Good)) => "32",
            (true, Some(Tint::Busy)) => "33",
            (true, Some(Tint::Bad)) => "31",
            _ => return text.to_owned(),
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The tint of a worker state or an event kind.
pub(crate) fn tint_of(word: &str) -> Option<Tint> {
    match word {
        "ready" | "listening" => Some(Tint::Good),
        "starting" | "online" | "draining" | "fork" | "roll" | "upgrade" => Some(Tint::Busy),
        "exited" | "exit" | "failing" | "stalled" | "spawn_failed" | "recycled" => Some(Tint::Bad),
        _ => None,
    }
}

/// The width to fit tables to: `COLUMNS` when set to a number, else the terminal's
/// when the output is one, else none (a pipe gets whole lines).
pub(crate) fn width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(columns);
    }
    if std::io::stdout().is_terminal() {
        if let Ok((columns, _)) = ratatui::crossterm::terminal::size() {
            if columns > 0 {
                return Some(usize::from(columns));
            }
        }
    }
    None
}
