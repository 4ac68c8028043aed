//! Drawing `top`'s screen: the cluster in two lines, its requests/s over time, the
//! worker table with text sparklines of each process's requests/s and CPU, the event
//! log, and a line of keys (or the question an admin key asks).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};

use super::state::{Pending, State};
use crate::units::{self, or_dash};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` points of `values` as bars, scaled to `top` (or to their maximum).
fn sparkline<'a>(
    values: impl DoubleEndedIterator<Item = &'a f64>,
    width: usize,
    top: Option<f64>,
) -> String {
    let mut points: Vec<f64> = values.rev().take(width).copied().collect();
    points.reverse();
    let max = top.unwrap_or_else(|| points.iter().copied().fold(0.0, f64::max));
    points
        .iter()
        .map(|&v| {
            if max <= 0.0 || v <= 0.0 {
                BARS[0]
            } else {
                BARS[(((v / max) * 7.0).round() as usize).min(7)]
            }
        })
        .collect()
}

fn state_colour(state: &str) -> Color {
    match state {
        "ready" => Color::Green,
        "starting" | "online" | "draining" => Color::Yellow,
        _ => Color::Red,
    }
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame, state: &State, colour: bool) {
    let workers = state.snapshot.as_ref().map_or(0, |s| s.workers.len()) as u16;
    let [head, chart, table, events, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(4),
        Constraint::Length(workers + 3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let paint = |style: Style| if colour { style } else { Style::default() };

    let (title, numbers) = match &state.snapshot {
        Some(s) => {
            let c = &s.cluster;
            (
                format!(
                    "{} (pid {})  {}/{} ready  up {}  deaths {}{}",
                    c.name,
                    c.pid,
                    c.workers.ready,
                    c.workers.desired,
                    units::duration(c.uptime_seconds),
                    c.deaths,
                    if c.failing { "  FAILING" } else { "" }
                ),
                format!(
                    "{} req/s  p50 {}  p99 {}  {}",
                    or_dash(c.requests_per_second, units::rate),
                    or_dash(c.p50_seconds, units::latency),
                    or_dash(c.p99_seconds, units::latency),
                    c.management_addr
                ),
            )
        }
        None => ("reading the cluster…".to_owned(), String::new()),
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                title,
                paint(Style::new().add_modifier(Modifier::BOLD)),
            )),
            Line::from(numbers),
        ]),
        head,
    );

    let points: Vec<u64> = state
        .rps
        .iter()
        .map(|&v| v.max(0.0).round() as u64)
        .collect();
    let shown = usize::from(chart.width.saturating_sub(2));
    let points = &points[points.len().saturating_sub(shown)..];
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title("requests/s"))
            .data(points)
            .style(paint(Style::new().fg(Color::Cyan))),
        chart,
    );

    let spark_width = usize::from(table.width.saturating_sub(60) / 2).clamp(4, 30);
    let rows: Vec<Row> = state
        .snapshot
        .iter()
        .flat_map(|s| &s.workers)
        .map(|w| {
            let trail = state.trails.get(&w.pid);
            let rps =
                trail.map_or_else(String::new, |t| sparkline(t.rps.iter(), spark_width, None));
            let cpu = trail.map_or_else(String::new, |t| {
                sparkline(t.cpu.iter(), spark_width, Some(100.0))
            });
            Row::new(vec![
                Cell::from(w.id.to_string()),
                Cell::from(w.pid.to_string()),
                Cell::from(Span::styled(
                    w.state.clone(),
                    paint(Style::new().fg(state_colour(&w.state))),
                )),
                Cell::from(or_dash(w.cpu_percent, |p| format!("{p:.1}"))),
                Cell::from(or_dash(w.rss_bytes.map(|b| b as f64), units::bytes)),
                Cell::from(or_dash(w.requests_per_second, units::rate)),
                Cell::from(or_dash(w.p99_seconds, units::latency)),
                Cell::from(rps),
                Cell::from(cpu),
            ])
        })
        .collect();
    let spark = spark_width as u16;
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(3),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(spark),
                Constraint::Length(spark),
            ],
        )
        .header(
            Row::new([
                "ID",
                "PID",
                "STATE",
                "CPU%",
                "RSS",
                "REQ/S",
                "P99",
                "REQ/S OVER TIME",
                "CPU OVER TIME",
            ])
            .style(paint(Style::new().add_modifier(Modifier::BOLD))),
        )
        .block(Block::default().borders(Borders::ALL).title("workers")),
        table,
    );

    let height = usize::from(events.height.saturating_sub(2));
    let total = state.events.len();
    let end = total.saturating_sub(state.scroll.min(total.saturating_sub(height)));
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = state
        .events
        .range(start..end)
        .map(|e| {
            Line::from(crate::commands::events::line(
                e,
                None,
                crate::style::Style::for_stdout_plain(),
            ))
        })
        .collect();
    let title = if state.scroll > 0 {
        format!("events (scrolled {} up)", state.scroll)
    } else {
        "events".to_owned()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        events,
    );

    let footer = match (state.pending, &state.message) {
        (Some(Pending::Roll), _) => {
            "Roll every worker? y to confirm, any other key to cancel".to_owned()
        }
        (Some(Pending::Scale(n)), _) => {
            format!("Scale to {n} workers? y to confirm, any other key to cancel")
        }
        (None, Some(message)) => format!("{message}   (q quit, r roll, + / - scale, ↑↓ scroll)"),
        (None, None) => "q quit  r roll  + / - scale  ↑↓ PgUp PgDn scroll events".to_owned(),
    };
    let footer_style = if state.pending.is_some() {
        paint(Style::new().fg(Color::Black).bg(Color::Yellow))
    } else {
        paint(Style::new().add_modifier(Modifier::REVERSED))
    };
    frame.render_widget(Paragraph::new(footer).style(footer_style), keys);
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn sparklines_scale_to_their_top_and_keep_the_newest_points() {
        let values = [0.0, 50.0, 100.0, 25.0];
        assert_eq!(sparkline(values.iter(), 3, Some(100.0)), "▅█▃");
        assert_eq!(sparkline(values.iter(), 10, None), "▁▅█▃");
    }
}
