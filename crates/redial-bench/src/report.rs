//! Turning samples into the markdown the harness prints and writes into
//! BENCHMARKS.md: medians, number formats, tables, the date.

/// Median of `v` (mean of the middle two for an even count); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Largest finite value; NaN if none.
pub fn max(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::max)
}

/// Smallest finite value; NaN if none.
pub fn min(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::min)
}

/// An integer with thousands separators ("n/a" for NaN).
pub fn int(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let neg = x < 0.0;
    let s = format!("{}", x.abs().round() as u64);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg {
        format!("-{out}")
    } else {
        out
    }
}

/// A number with `d` decimals, thousands separators in the integer part.
pub fn dec(x: f64, d: usize) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x.abs() >= 1000.0 {
        return int(x);
    }
    format!("{x:.d$}")
}

/// A markdown table.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Headers; a header starting with '>' is right-aligned.
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut s = String::from("|");
        let mut sep = String::from("|");
        for h in &self.head {
            let (right, h) = match h.strip_prefix('>') {
                Some(h) => (true, h),
                None => (false, h.as_str()),
            };
            s.push_str(&format!(" {h} |"));
            sep.push_str(if right { "---:|" } else { "---|" });
        }
        s.push('\n');
        s.push_str(&sep);
        s.push('\n');
        for r in &self.rows {
            s.push('|');
            for c in r {
                s.push_str(&format!(" {c} |"));
            }
            s.push('\n');
        }
        s
    }
}

/// UTC date and time of now, `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What the runs' spread says: empty when the runs agree; "bimodal" when
/// they fall into two groups (at least two runs each) with a gap wider
/// than 15 % of the median between them; "wide" when the slowest and the
/// fastest run differ by more than 30 % without such a gap.
pub fn spread_note(v: &[f64]) -> String {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    if s.len() < 2 {
        return String::new();
    }
    let m = median(&s);
    if s.len() >= 4 {
        let (cut, gap) = (2..=s.len() - 2)
            .map(|i| (i, s[i] - s[i - 1]))
            .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        if cut > 0 && gap > 0.15 * m {
            return format!(
                "**bimodal**: {} runs at {}-{} M, {} at {}-{} M",
                cut,
                dec(s[0] / 1e6, 1),
                dec(s[cut - 1] / 1e6, 1),
                s.len() - cut,
                dec(s[cut] / 1e6, 1),
                dec(s[s.len() - 1] / 1e6, 1)
            );
        }
    }
    let (lo, hi) = (s[0], s[s.len() - 1]);
    if lo > 0.0 && hi / lo > 1.3 {
        return format!("wide: max/min {}", dec(hi / lo, 2));
    }
    String::new()
}

/// `min / median / max` of ratios, with `d` decimals.
pub fn spread(v: &[f64], d: usize) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    format!(
        "{} / {} / {}",
        dec(min(v), d),
        dec(median(v), d),
        dec(max(v), d)
    )
}
