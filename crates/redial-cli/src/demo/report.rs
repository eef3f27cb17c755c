//! The demo's summary: one row of counts per connection, the totals, and
//! the per-connection equation `sent = echoed + handed back + lost in
//! flight`, with `lost silently` computed for each row.

use std::time::Duration;

use crate::demo::tally::Row;
use crate::output::table::{Align, Table};
use crate::output::Paint;

/// The outcome of a run: one row per connection.
#[derive(Debug, Clone)]
pub struct Report {
    /// Label and counts of each connection, with its first anomalies.
    pub rows: Vec<(String, Row, Vec<String>)>,
    /// How long the run took, drain included.
    pub took: Duration,
}

impl Report {
    /// All rows added up.
    pub fn total(&self) -> Row {
        let mut t = Row::default();
        for (_, c, _) in &self.rows {
            t.add(c);
        }
        t
    }

    /// Every connection on its own: nothing lost silently, nothing
    /// unanswered, no gap, duplicate or stray. Checked per connection, so
    /// errors of two connections cannot cancel out in the total.
    pub fn is_clean(&self) -> bool {
        self.rows.iter().all(|(_, c, _)| c.frames.is_clean())
    }

    /// The summary table and the lines under it.
    pub fn render(&self, paint: Paint) -> String {
        let total = self.total();
        let mut out = self.table(&total);
        out.push('\n');
        out.push_str(&legend(&total));
        out.push_str(&self.unbalanced(paint));
        out.push_str(&self.balance(paint, &total));
        out
    }

    /// A row per connection, and the total.
    fn table(&self, total: &Row) -> String {
        let mut table = Table::new(&[
            ("connection", Align::Left),
            ("resets", Align::Right),
            ("recovered", Align::Right),
            ("sent", Align::Right),
            ("echoed", Align::Right),
            ("handed back", Align::Right),
            ("lost in flight", Align::Right),
            ("lost silently", Align::Right),
        ]);
        let row = |label: &str, c: &Row| {
            vec![
                label.to_string(),
                c.resets.to_string(),
                c.recoveries.to_string(),
                c.sent().to_string(),
                c.frames.echoed.to_string(),
                c.handed_back().to_string(),
                c.frames.lost_in_flight.to_string(),
                c.frames.lost_silently().to_string(),
            ]
        };
        for (label, c, _) in &self.rows {
            table.row(row(label, c));
        }
        table.rule();
        table.row(row("total", total));
        table.render()
    }

    /// What is wrong with each connection whose count does not balance.
    fn unbalanced(&self, paint: Paint) -> String {
        let mut out = String::new();
        for (label, c, notes) in &self.rows {
            let f = &c.frames;
            if f.is_clean() {
                continue;
            }
            out.push_str(&paint.red(&format!(
                "{label}: {} unanswered (written on the last connection, not echoed by the end), {} unaccounted, {} anomalies\n",
                f.unanswered, f.unaccounted, f.anomalies
            )));
            for n in notes {
                out.push_str(&paint.red(&format!("  {n}\n")));
            }
        }
        out
    }

    /// The last line: how many connections do not balance, and the total's
    /// sum.
    fn balance(&self, paint: Paint, total: &Row) -> String {
        let bad = self
            .rows
            .iter()
            .filter(|(_, c, _)| !c.frames.is_clean())
            .count();
        let line = format!(
            "{bad} of {} connections unbalanced; total: sent {} = echoed {} + handed back {} + lost in flight {} + lost silently {}",
            self.rows.len(),
            total.sent(),
            total.frames.echoed,
            total.handed_back(),
            total.frames.lost_in_flight,
            total.frames.lost_silently(),
        );
        let mut out = if bad == 0 {
            paint.green(&line)
        } else {
            paint.red(&line)
        };
        out.push('\n');
        out
    }
}

/// What the columns mean, with the total's parts.
fn legend(total: &Row) -> String {
    let mut out = String::new();
    out.push_str(&format!(
            "handed back    = refused by send() while down ({}) + returned in Reset/Close::unsent ({})\n",
            total.frames.refused, total.frames.handed_back
        ));
    out.push_str(
            "lost in flight = written whole to the kernel on a connection that was then reset, never echoed (from Reset::written)\n",
        );
    out.push_str(
            "lost silently  = sent - echoed - handed back - lost in flight, per connection; echoes are checked in order, losses only as a suffix of what a connection wrote\n",
        );
    if total.frames.kernel_checked > 0 {
        out.push_str(&format!(
                "kernel's word (TCP_INFO) on {} connections: every echoed message acknowledged; of what was written and not echoed, {} B never acknowledged (died in the client's kernel) and {} B acknowledged (died in the proxy or the echo server)\n",
                total.frames.kernel_checked,
                total.frames.unacked_bytes,
                total.frames.acked_not_echoed_bytes,
            ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::account::Counts;

    fn row(frames: Counts) -> Row {
        Row {
            frames,
            resets: 1,
            recoveries: 1,
        }
    }

    #[test]
    fn errors_of_two_connections_do_not_cancel_out() {
        // One connection lost a message silently, the other reports one
        // more lost in flight than it sent: the totals balance.
        let a = Counts {
            accepted: 10,
            echoed: 9,
            unaccounted: 1,
            ..Counts::default()
        };
        let b = Counts {
            accepted: 10,
            echoed: 10,
            lost_in_flight: 1,
            ..Counts::default()
        };
        let report = Report {
            rows: vec![
                ("a".into(), row(a), Vec::new()),
                ("b".into(), row(b), Vec::new()),
            ],
            took: Duration::ZERO,
        };
        assert_eq!(report.total().frames.lost_silently(), 0);
        assert!(!report.is_clean());
        let text = report.render(Paint::plain());
        assert!(text.contains("2 of 2 connections unbalanced"), "{text}");
    }
}
