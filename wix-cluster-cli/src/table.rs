//! Tables that fit the terminal: never wrapped. When the natural width is too wide,
//! headers take their short form first, then columns are dropped in the order each
//! column states (its `drop` rank, lowest first; a column without one always stays),
//! and a line still too wide (a terminal under ~25 columns) is cut at the width.

use crate::style::Style;

/// A column of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    /// Its header.
    pub(crate) header: &'static str,
    /// Its header when space is short.
    pub(crate) short: &'static str,
    /// Numbers align right.
    pub(crate) right: bool,
    /// When it is dropped for width: rank 1 first; `None` never.
    pub(crate) drop: Option<u8>,
}

/// A cell: its text, and how to colour it on a terminal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) tint: Option<crate::style::Tint>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, tint: None }
    }
}

/// The display width of `text` (one column a character: the tables hold no wide ones).
pub(crate) fn width_of(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut to `width` columns, with `…` when cut.
pub(crate) fn cut(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// The table's lines, fitted to `width` (`None`: no limit).
pub(crate) fn render(
    columns: &[Column],
    rows: &[Vec<Cell>],
    width: Option<usize>,
    style: Style,
) -> Vec<String> {
    let mut shown: Vec<usize> = (0..columns.len()).collect();
    let mut short = false;
    let natural = |shown: &[usize], short: bool| -> usize {
        let sum: usize = shown
            .iter()
            .map(|&c| column_width(columns, rows, c, short))
            .sum();
        sum + 2 * shown.len().saturating_sub(1)
    };
    if let Some(limit) = width {
        if natural(&shown, short) > limit {
            short = true;
        }
        let mut droppable: Vec<usize> = (0..columns.len())
            .filter(|&c| columns[c].drop.is_some())
            .collect();
        droppable.sort_by_key(|&c| columns[c].drop);
        for column in droppable {
            if natural(&shown, short) <= limit {
                break;
            }
            shown.retain(|&c| c != column);
        }
    }
    let widths: Vec<usize> = shown
        .iter()
        .map(|&c| column_width(columns, rows, c, short))
        .collect();
    let mut lines = Vec::with_capacity(rows.len() + 1);
    let header: Vec<Cell> = columns
        .iter()
        .map(|c| Cell::from(if short { c.short } else { c.header }.to_owned()))
        .collect();
    for (index, row) in std::iter::once(&header).chain(rows).enumerate() {
        let mut line = String::new();
        let mut visible = 0;
        for (at, (&c, &w)) in shown.iter().zip(&widths).enumerate() {
            let cell = row.get(c).cloned().unwrap_or_default();
            let pad = w.saturating_sub(width_of(&cell.text));
            let last = at + 1 == shown.len();
            let mut text = if columns[c].right {
                format!("{}{}", " ".repeat(pad), cell.text)
            } else if last {
                cell.text.clone()
            } else {
                format!("{}{}", cell.text, " ".repeat(pad))
            };
            if let Some(limit) = width {
                let room = limit.saturating_sub(visible);
                if width_of(&text) > room {
                    text = cut(&text, room);
                }
            }
            visible += width_of(&text);
            let text = if index == 0 {
                style.bold(&text)
            } else {
                style.tint(&text, cell.tint)
            };
            line.push_str(&text);
            if !last {
                if width.is_none_or(|limit| visible + 2 <= limit) {
                    line.push_str("  ");
                    visible += 2;
                } else {
                    break;
                }
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

fn column_width(columns: &[Column], rows: &[Vec<Cell>], c: usize, short: bool) -> usize {
    let header = if short {
        columns[c].short
    } else {
        columns[c].header
    };
    rows.iter()
        .filter_map(|row| row.get(c))
        .map(|cell| width_of(&cell.text))
        .chain([width_of(header)])
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column {
            header: "IDENT",
            short: "ID",
            right: false,
            drop: None,
        },
        Column {
            header: "LONG HEADER",
            short: "LH",
            right: true,
            drop: Some(1),
        },
        Column {
            header: "STATE",
            short: "ST",
            right: false,
            drop: Some(2),
        },
    ];

    fn rows() -> Vec<Vec<Cell>> {
        vec![vec![
            "a".to_owned().into(),
            "12".to_owned().into(),
            "ready".to_owned().into(),
        ]]
    }

    #[test]
    fn a_wide_terminal_shows_every_column_with_its_full_header() {
        let lines = render(&COLUMNS, &rows(), Some(200), Style::plain());
        assert_eq!(lines[0], "IDENT  LONG HEADER  STATE");
        assert_eq!(lines[1], "a               12  ready");
    }

    #[test]
    fn narrower_shortens_headers_then_drops_columns_in_their_order() {
        let lines = render(&COLUMNS, &rows(), Some(16), Style::plain());
        assert_eq!(lines[0], "ID  LH  ST");
        let lines = render(&COLUMNS, &rows(), Some(10), Style::plain());
        assert_eq!(lines[0], "ID  ST");
        assert_eq!(lines[1], "a   ready");
        for width in 0..30 {
            for line in render(&COLUMNS, &rows(), Some(width), Style::plain()) {
                assert!(width_of(&line) <= width, "{line:?} at {width}");
            }
        }
    }
}
