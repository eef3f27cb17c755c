//! The demo's summary: one row of counts per connection, the totals, and
//! `lost silently` computed from them.

use std::time::Duration;

use crate::output::Paint;
use crate::table::{Align, Table};
use crate::tally::Counts;

/// The outcome of a run: one row per connection.
#[derive(Debug, Clone)]
pub struct Report {
    /// Label and counts of each connection.
    pub rows: Vec<(String, Counts)>,
    /// How long the run took, drain included.
    pub took: Duration,
}

impl Report {
    /// All rows added up.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for (_, c) in &self.rows {
            t.add(c);
        }
        t
    }

    /// Nothing lost silently, nothing duplicated, nothing made up.
    pub fn is_clean(&self) -> bool {
        let t = self.total();
        t.lost_silently() == 0 && t.duplicates == 0 && t.strays == 0
    }

    /// The summary table and the lines under it.
    pub fn render(&self, paint: Paint) -> String {
        let mut table = Table::new(&[
            ("connection", Align::Left),
            ("resets", Align::Right),
            ("recovered", Align::Right),
            ("sent", Align::Right),
            ("echoed", Align::Right),
            ("handed back", Align::Right),
            ("lost in flight", Align::Right),
        ]);
        let row = |label: &str, c: &Counts| {
            vec![
                label.to_string(),
                c.resets.to_string(),
                c.recoveries.to_string(),
                c.sent.to_string(),
                c.echoed.to_string(),
                c.handed_back().to_string(),
                c.in_flight.to_string(),
            ]
        };
        for (label, c) in &self.rows {
            table.row(row(label, c));
        }
        table.rule();
        let total = self.total();
        table.row(row("total", &total));
        let mut out = table.render();
        out.push('\n');
        out.push_str(&format!(
            "handed back    = refused by send() while down ({}) + returned in Reset/Close::unsent ({})\n",
            total.refused, total.returned
        ));
        out.push_str(
            "lost in flight = written to the kernel on a connection that was then reset, never echoed (Reset::written)\n",
        );
        if total.unanswered > 0 {
            out.push_str(&format!(
                "unanswered     = written on a live connection, not echoed by the end: {}\n",
                total.unanswered
            ));
        }
        if total.duplicates > 0 || total.strays > 0 {
            out.push_str(&paint.red(&format!(
                "duplicated: {}, never sent: {}\n",
                total.duplicates, total.strays
            )));
        }
        let lost = total.lost_silently();
        let line = format!(
            "lost silently: {lost}   (= sent {} - echoed {} - handed back {} - lost in flight {}{})",
            total.sent,
            total.echoed,
            total.handed_back(),
            total.in_flight,
            if total.unanswered > 0 {
                format!(" - unanswered {}", total.unanswered)
            } else {
                String::new()
            }
        );
        out.push_str(&if lost == 0 {
            paint.green(&line)
        } else {
            paint.red(&line)
        });
        out.push('\n');
        out
    }
}
