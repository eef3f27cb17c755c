//! Plain-text tables: columns padded to their widest cell, text to the
//! left, numbers to the right. Used by the demo summary and `watch`.
//! Cells may hold ANSI colour codes; they take no width.

/// Characters a terminal shows for `s`: ANSI escape sequences take none.
///
/// ```
/// assert_eq!(redial_cli::table::visible_len("\x1b[32mup\x1b[0m"), 2);
/// ```
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// `s` cut to `max` visible characters, escape sequences kept (and a reset
/// appended when one was cut off).
fn cut_visible(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut styled = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            styled = true;
            for c in chars.by_ref() {
                out.push(c);
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if n < max {
            out.push(c);
            n += 1;
        }
    }
    if styled && n >= max {
        out.push_str("\x1b[0m");
    }
    out
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: pad on the right.
    Left,
    /// Numbers: pad on the left.
    Right,
}

/// A table built row by row and rendered at once.
///
/// ```
/// use redial_cli::table::{Align, Table};
///
/// let mut t = Table::new(&[("conn", Align::Left), ("resets", Align::Right)]);
/// t.row(vec!["pool#1".into(), "3".into()]);
/// assert_eq!(t.render(), "conn    resets\npool#1       3\n");
/// ```
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
    max_width: Option<usize>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
            max_width: None,
        }
    }

    /// Cuts every rendered line to `width` characters (a terminal's width).
    #[must_use]
    pub fn max_width(mut self, width: usize) -> Self {
        self.max_width = Some(width);
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds a separator line (dashes under every column).
    pub fn rule(&mut self) {
        self.rows.push(Vec::new());
    }

    /// Number of rows (separators included).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows yet.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the heading, each ending
    /// in a newline, with no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| visible_len(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(n).enumerate() {
                widths[i] = widths[i].max(visible_len(cell));
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(visible_len(cell));
                if i > 0 {
                    s.push_str("  ");
                }
                match self.align[i] {
                    Align::Left => {
                        s.push_str(cell);
                        s.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(cell);
                    }
                }
            }
            let mut s = s.trim_end().to_string();
            if let Some(max) = self.max_width {
                if visible_len(&s) > max {
                    s = cut_visible(&s, max);
                }
            }
            out.push_str(&s);
            out.push('\n');
        };
        line(&self.headers);
        for row in &self.rows {
            if row.is_empty() {
                let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                line(&dashes);
            } else {
                line(row);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_rules() {
        let mut t = Table::new(&[("a", Align::Left), ("bb", Align::Right)]);
        t.row(vec!["xyz".into(), "1".into()]);
        t.rule();
        t.row(vec!["t".into()]);
        assert_eq!(t.render(), "a    bb\nxyz   1\n---  --\nt\n");
    }

    #[test]
    fn cuts_to_width() {
        let mut t = Table::new(&[("heading", Align::Left)]).max_width(3);
        t.row(vec!["long cell".into()]);
        assert_eq!(t.render(), "hea\nlon\n");
    }

    #[test]
    fn colour_takes_no_width() {
        let mut t = Table::new(&[("state", Align::Left), ("n", Align::Right)]);
        t.row(vec!["\x1b[32mup\x1b[0m".into(), "1".into()]);
        assert_eq!(t.render(), "state  n\n\x1b[32mup\x1b[0m     1\n");
        assert_eq!(
            cut_visible("\x1b[31mabcdef\x1b[0m", 3),
            "\x1b[31mabc\x1b[0m\x1b[0m"
        );
    }
}
