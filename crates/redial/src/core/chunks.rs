//! [`Chunks`]: bytes and where every `send` call's chunk in them ends, the
//! unit of the send queue (a segment), of a [`Sender`](crate::Sender)'s
//! batch and of a large send on its way in.
//!
//! The chunk ends are kept as runs of chunks of one size, not one offset
//! per chunk: a stream of sends of one size (the common case) appends its
//! bytes and nothing else, and the one comparison that tells it is of that
//! size is the whole bookkeeping of a send. The ends are spelled out only
//! when bytes are handed back (a reset, a close, a refused hand-over),
//! which is where chunks matter (`Unsent::chunks`).

/// Chunks of `size` bytes each, from the end of the run before (or 0) to
/// `end`; a run of size 0 is one empty chunk at `end` (empty sends are
/// chunks too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    end: usize,
    size: usize,
}

/// No open run: the bytes end where the last closed run does.
const NO_RUN: usize = usize::MAX;

/// Bytes and the chunks they are made of (see the module's doc).
#[derive(Debug, Clone)]
pub(crate) struct Chunks {
    pub(crate) buf: Vec<u8>,
    /// Closed runs, oldest first.
    runs: Vec<Run>,
    /// The size of every chunk from the last closed run's end to the end
    /// of `buf` (at least one of them), or [`NO_RUN`]. Never 0.
    open: usize,
}

impl Default for Chunks {
    fn default() -> Self {
        Chunks::with_capacity(0, 0)
    }
}

impl Chunks {
    /// Empty, with room for `bytes` bytes and `runs` changes of chunk size.
    pub(crate) fn with_capacity(bytes: usize, runs: usize) -> Self {
        Chunks {
            buf: Vec::with_capacity(bytes),
            runs: Vec::with_capacity(runs),
            open: NO_RUN,
        }
    }

    /// One chunk, the whole of `buf`.
    pub(crate) fn whole(buf: Vec<u8>) -> Self {
        let size = buf.len();
        Chunks {
            runs: vec![Run { end: size, size }],
            buf,
            open: NO_RUN,
        }
    }

    /// Appends one chunk.
    #[inline]
    pub(crate) fn push(&mut self, data: &[u8]) {
        if !self.continues_run(data.len()) {
            self.start_run(data.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// A chunk of `len` bytes is one more of the open run: appending its
    /// bytes is all it takes.
    #[inline(always)]
    pub(crate) fn continues_run(&self, len: usize) -> bool {
        len == self.open
    }

    /// Closes the open run and opens one for chunks of `size` bytes, the
    /// next of which is about to be appended (an empty chunk is recorded
    /// at once). One entry at most, but for an empty chunk: two. Inlined,
    /// so that sends of changing sizes cost a compare and one entry, as
    /// an offset a chunk did.
    #[inline]
    fn start_run(&mut self, size: usize) {
        if size == 0 {
            return self.empty_chunk();
        }
        self.close_run();
        self.open = size;
    }

    #[cold]
    #[inline(never)]
    fn empty_chunk(&mut self) {
        self.close_run();
        let end = self.buf.len();
        self.runs.push(Run { end, size: 0 });
    }

    #[inline]
    fn close_run(&mut self) {
        if self.open != NO_RUN {
            let end = self.buf.len();
            self.runs.push(Run {
                end,
                size: self.open,
            });
            self.open = NO_RUN;
        }
    }

    /// Appends `other`'s chunks, which stay whole.
    pub(crate) fn append(&mut self, other: &Chunks) {
        if other.is_bare() {
            return;
        }
        self.close_run();
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        let shifted = other.runs.iter().map(|r| Run {
            end: r.end + base,
            size: r.size,
        });
        self.runs.extend(shifted);
        self.open = other.open;
    }

    /// Empties it, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.runs.clear();
        self.open = NO_RUN;
    }

    /// Holds no chunk at all (not even an empty one).
    pub(crate) fn is_bare(&self) -> bool {
        self.runs.is_empty() && self.open == NO_RUN
    }

    /// Changes of chunk size recorded: what grows, by one entry, when a
    /// chunk is not one more of the open run.
    pub(crate) fn runs(&self) -> usize {
        self.runs.len() + usize::from(self.open != NO_RUN)
    }

    /// A chunk of `len` bytes is appended without regrowing the runs: it
    /// continues the open run, or starts one in room already there.
    #[inline(always)]
    pub(crate) fn run_fits(&self, len: usize) -> bool {
        self.continues_run(len) || (len != 0 && self.runs.len() < self.runs.capacity())
    }

    /// Room for `n` more runs without regrowing.
    pub(crate) fn runs_fit(&self, n: usize) -> bool {
        self.runs.capacity() - self.runs.len() >= n
    }

    /// Runs the buffer of runs holds without regrowing.
    #[cfg(test)]
    pub(crate) fn runs_capacity(&self) -> usize {
        self.runs.capacity()
    }

    /// Mean bytes of a run, for sizing the next segment's runs.
    pub(crate) fn mean_run(&self) -> usize {
        (self.buf.len() / self.runs().max(1)).max(1)
    }

    /// The end offset of every chunk, in order.
    pub(crate) fn ends(&self) -> Ends<'_> {
        Ends {
            runs: &self.runs,
            open: (self.open != NO_RUN).then_some(Run {
                end: self.buf.len(),
                size: self.open,
            }),
            at: 0,
        }
    }
}

/// The chunk ends of a [`Chunks`], spelled out run by run.
pub(crate) struct Ends<'a> {
    runs: &'a [Run],
    open: Option<Run>,
    /// The end of the last chunk given.
    at: usize,
}

impl Ends<'_> {
    fn current(&self) -> Option<Run> {
        self.runs.first().copied().or(self.open)
    }

    fn next_run(&mut self) {
        if let Some((_, rest)) = self.runs.split_first() {
            self.runs = rest;
        } else {
            self.open = None;
        }
    }
}

impl Iterator for Ends<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            let run = self.current()?;
            if run.size == 0 {
                self.next_run();
                self.at = run.end;
                return Some(run.end);
            }
            if self.at < run.end {
                self.at += run.size;
                return Some(self.at);
            }
            self.next_run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(c: &Chunks) -> Vec<usize> {
        let mut start = 0;
        c.ends()
            .map(|e| {
                let n = e - start;
                start = e;
                n
            })
            .collect()
    }

    #[test]
    fn chunks_of_one_size_are_one_run_and_every_boundary_is_kept() {
        let mut c = Chunks::default();
        assert!(c.is_bare());
        for _ in 0..1000 {
            c.push(&[1; 64]);
        }
        assert_eq!(c.runs(), 1, "one run, no offset per chunk");
        assert_eq!(c.runs.capacity(), 0, "nothing allocated for the ends");
        assert_eq!(lens(&c), vec![64; 1000]);
        assert_eq!(c.ends().last(), Some(64_000));
    }

    #[test]
    fn mixed_sizes_and_empty_chunks_keep_their_boundaries_in_order() {
        let sizes = [3, 3, 0, 0, 5, 1, 1, 1, 0, 7, 7, 2];
        let mut c = Chunks::default();
        for (i, &n) in sizes.iter().enumerate() {
            c.push(&vec![i as u8; n]);
        }
        assert_eq!(lens(&c), sizes);
        assert!(!c.is_bare());
        // Each chunk's bytes are where its end says.
        let mut start = 0;
        for (i, end) in c.ends().enumerate() {
            assert!(c.buf[start..end].iter().all(|&b| b == i as u8));
            start = end;
        }
        // Appended behind others, they stay whole.
        let mut front = Chunks::whole(b"head".to_vec());
        front.append(&c);
        let mut want = vec![4];
        want.extend(sizes);
        assert_eq!(lens(&front), want);
        front.push(&[9; 2]);
        want.push(2);
        assert_eq!(lens(&front), want);
        // An empty chunk alone is a chunk; cleared, nothing is.
        let mut e = Chunks::default();
        e.push(b"");
        assert_eq!((lens(&e), e.is_bare()), (vec![0], false));
        e.clear();
        assert!(e.is_bare() && e.ends().next().is_none());
        assert_eq!(lens(&Chunks::whole(Vec::new())), vec![0]);
    }
}
