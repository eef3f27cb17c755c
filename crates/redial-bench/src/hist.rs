//! A latency histogram cheap enough to record every send call of a
//! producer that makes tens of millions of them: log-linear buckets (32
//! per power of two, so a percentile is within about 3 % of the true
//! value), merged across producers, printed as one `lat` line.

/// Sub-buckets per power of two (a power of two itself).
const SUB: usize = 32;
const SUB_BITS: u32 = SUB.trailing_zeros();
/// Values up to 2^40 ns (18 minutes) fit.
const BUCKETS: usize = (41 - SUB_BITS as usize) * SUB + SUB;

/// Counts of nanosecond values.
pub struct Hist {
    counts: Vec<u64>,
    max: u64,
    n: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            max: 0,
            n: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = top - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    ((shift as usize + 1) * SUB + sub).min(BUCKETS - 1)
}

/// The largest value of bucket `i` (what a percentile reports).
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB) as u64;
    ((SUB as u64 + sub + 1) << shift) - 1
}

impl Hist {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.max = self.max.max(ns);
        self.n += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
        self.n += other.n;
    }

    /// The value below which a fraction `q` of the samples lie (the
    /// bucket's upper bound, at most the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        let want = ((self.n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// Prints `lat <p50> <p99> <p99.9> <max> <count>` (ns).
    pub fn print(&self) {
        println!(
            "lat {} {} {} {} {}",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.max,
            self.n
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_3_percent() {
        for v in (0..100_000u64).chain([1 << 20, 123_456_789, 1 << 39]) {
            let i = index(v);
            let u = upper(i);
            assert!(u >= v, "{v}: bucket {i} ends at {u}");
            assert!(u - v <= v / 32 + 1, "{v}: bucket {i} ends at {u}");
            if i > 0 {
                assert!(upper(i - 1) < v, "{v}: also fits bucket {}", i - 1);
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Hist::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.04, "{p50}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        let mut g = Hist::default();
        g.record(5_000_000);
        h.merge(&g);
        assert_eq!(h.max, 5_000_000);
        assert_eq!(h.n, 1001);
    }
}
