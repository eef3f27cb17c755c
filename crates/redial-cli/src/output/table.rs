//! Plain-text tables, laid out by `comfy-table`: no borders, two spaces
//! between columns, text to the left, numbers to the right, no trailing
//! spaces. Used by the demo summary and `watch`. Cells may hold ANSI colour
//! codes; they take no width. Given a width, cells are cut (with `…`)
//! so that every line fits, rather than wrapped.

use comfy_table::{
    CellAlignment, ColumnConstraint, ContentArrangement, ContentLineStyle, TableStyle, Width,
};

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
/// use redial_cli::output::table::{Align, Table};
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

    /// Fits every rendered line in `width` characters (a terminal's
    /// width), cutting the widest cells.
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
        // First pass: the widest cell of each column, for the rules.
        let widths = self.layout(&[]).column_max_content_widths();
        let mut out = String::new();
        for line in self.layout(&widths).lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The comfy-table of this table, rules drawn `widths` wide.
    fn layout(&self, widths: &[u16]) -> comfy_table::Table {
        let n = self.headers.len();
        let mut t = comfy_table::Table::new();
        // No borders; a space between columns (plus one of padding). The
        // rule under some rows is drawn by hand: comfy-table rules every
        // row or none.
        let between = ContentLineStyle::none().junction(' ');
        t.load_style(
            TableStyle::new()
                .header_lines(between)
                .content_lines(between),
        )
        .set_header(self.headers.clone());
        match self.max_width {
            Some(w) => {
                t.set_content_arrangement(ContentArrangement::Dynamic)
                    .set_width(u16::try_from(w).unwrap_or(u16::MAX))
                    .set_truncation_indicator("…");
            }
            None => {
                t.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        for row in &self.rows {
            let cells: Vec<String> = (0..n)
                .map(|i| match (row.is_empty(), widths.get(i)) {
                    (true, Some(w)) => "-".repeat(usize::from(*w)),
                    _ => row.get(i).cloned().unwrap_or_default(),
                })
                .collect();
            let mut r = comfy_table::Row::from(cells);
            r.max_height(1);
            t.add_row(r);
        }
        for (i, column) in t.column_iter_mut().enumerate() {
            column.set_padding((0, 1));
            column.set_cell_alignment(match self.align.get(i) {
                Some(Align::Right) => CellAlignment::Right,
                _ => CellAlignment::Left,
            });
        }
        if self.max_width.is_some() {
            // The first column (a name) is never cut below its heading.
            let heading = self.headers.first().map_or(0, |h| h.chars().count());
            if let Some(first) = t.column_mut(0) {
                let w = u16::try_from(heading).unwrap_or(u16::MAX);
                first.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(w)));
            }
        }
        t
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
        let mut t = Table::new(&[("name", Align::Left), ("error", Align::Left)]).max_width(20);
        t.row(vec!["db1".into(), "connection refused by the peer".into()]);
        let out = t.render();
        assert!(out.lines().all(|l| l.chars().count() <= 20), "{out}");
        assert_eq!(out.lines().count(), 2, "cut, not wrapped:\n{out}");
        assert!(out.contains('…'), "{out}");
    }

    #[test]
    fn colour_takes_no_width() {
        let mut t = Table::new(&[("state", Align::Left), ("n", Align::Right)]);
        t.row(vec!["\x1b[32mup\x1b[0m".into(), "1".into()]);
        assert_eq!(t.render(), "state  n\n\x1b[32mup\x1b[0m     1\n");
    }
}
