//! `wix-cluster top`: a full-screen live view of one cluster (ratatui on crossterm).
//!
//! It stays cheap: it reads the cluster once per `--interval` (1 s by default, at least
//! 250 ms), redraws at most 4 times a second (on new data, a key or a resize, never in
//! a busy loop), and keeps bounded histories (`state::HISTORY` points, `state::EVENTS`
//! log entries). The terminal is restored on every way out, a panic included.

mod state;
mod view;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::client::Client;
use crate::failure::Failure;
use state::{Pending, State};

/// The shortest time between two redraws.
const FRAME: Duration = Duration::from_millis(250);

/// Runs the view until `q`.
pub(crate) fn run(client: Client, interval: Duration) -> Result<(), Failure> {
    let interval = interval.max(Duration::from_millis(250));
    let mut state = State::default();
    state.refresh(&client);
    if state.snapshot.is_none() {
        // Nothing to show: say why as the other commands do.
        return Err(Failure::Unreachable(
            state
                .message
                .unwrap_or_else(|| "cannot read the cluster".into()),
        ));
    }
    let colour = crate::style::Style::for_stdout().is_colour();
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Failure::Usage(
            "top needs a terminal; `status` prints the same once".into(),
        ));
    }
    let mut terminal = ratatui::try_init().map_err(|e| {
        ratatui::restore();
        Failure::Failed(format!("cannot take over the terminal: {e}"))
    })?;
    let result = run_loop(&mut terminal, &client, &mut state, interval, colour);
    ratatui::restore();
    result.map_err(|e| Failure::Failed(format!("the terminal failed: {e}")))
}

fn run_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    state: &mut State,
    interval: Duration,
    colour: bool,
) -> std::io::Result<()> {
    let mut next_read = Instant::now() + interval;
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= next_read {
            state.refresh(client);
            next_read = now + interval;
            dirty = true;
        }
        let may_draw = last_draw.is_none_or(|at| now.duration_since(at) >= FRAME);
        if dirty && may_draw {
            terminal.draw(|frame| view::draw(frame, state, colour))?;
            dirty = false;
            last_draw = Some(now);
        }
        let mut wait = next_read.saturating_duration_since(Instant::now());
        if dirty {
            let until_frame =
                last_draw.map_or(Duration::ZERO, |at| FRAME.saturating_sub(at.elapsed()));
            wait = wait.min(until_frame);
        }
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    if on_key(state, client, key.code, key.modifiers) {
                        return Ok(());
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
}

/// Reacts to a key; `true` to quit.
fn on_key(state: &mut State, client: &Client, code: KeyCode, modifiers: KeyModifiers) -> bool {
    if code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL) {
        return true;
    }
    if state.pending.is_some() {
        if code == KeyCode::Char('y') || code == KeyCode::Char('Y') {
            state.confirm(client);
            state.refresh(client);
        } else {
            state.pending = None;
            state.message = Some("cancelled".into());
        }
        return false;
    }
    match code {
        KeyCode::Char('q') | KeyCode::Esc => return true,
        KeyCode::Char('r') => state.pending = Some(Pending::Roll),
        KeyCode::Char('+') => {
            if let Some(n) = state.desired() {
                state.pending = Some(Pending::Scale((n + 1).min(1024)));
            }
        }
        KeyCode::Char('-') => {
            if let Some(n) = state.desired() {
                if n > 1 {
                    state.pending = Some(Pending::Scale(n - 1));
                } else {
                    state.message = Some("a cluster runs at least 1 worker".into());
                }
            }
        }
        KeyCode::Up => state.scroll = state.scroll.saturating_add(1),
        KeyCode::Down => state.scroll = state.scroll.saturating_sub(1),
        KeyCode::PageUp => state.scroll = state.scroll.saturating_add(10),
        KeyCode::PageDown => state.scroll = state.scroll.saturating_sub(10),
        KeyCode::End => state.scroll = 0,
        _ => {}
    }
    false
}
