//! The frames the stress test sends: one frame per send call, each naming
//! its lane (one producer's ordered run of sends) and sequence number and
//! carrying a checksum, so that every byte the server or an `Unsent` holds
//! can be traced back to the send that produced it.

/// Length (u32), lane (u32), sequence (u32).
pub const HEADER: usize = 12;
/// FNV-1a over header and payload.
pub const TRAILER: usize = 4;
/// Larger frames are refused by the parser as corrupt.
pub const MAX_FRAME: usize = 1 << 20;

/// Which send a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId {
    pub lane: u32,
    pub seq: u32,
}

impl std::fmt::Display for FrameId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lane {} seq {}", self.lane, self.seq)
    }
}

fn fnv(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A frame of `total` bytes (at least `HEADER + TRAILER`).
pub fn encode(id: FrameId, total: usize) -> Vec<u8> {
    let total = total.clamp(HEADER + TRAILER, MAX_FRAME);
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&(total as u32).to_le_bytes());
    f.extend_from_slice(&id.lane.to_le_bytes());
    f.extend_from_slice(&id.seq.to_le_bytes());
    let seed = id.lane.wrapping_mul(31).wrapping_add(id.seq);
    f.extend((0..total - HEADER - TRAILER).map(|i| (seed as usize).wrapping_add(i) as u8));
    let sum = fnv(&f);
    f.extend_from_slice(&sum.to_le_bytes());
    f
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The frame that `data` is exactly, or why it is not one.
pub fn whole(data: &[u8]) -> Result<FrameId, String> {
    match split(data)? {
        Some((id, len)) if len == data.len() => Ok(id),
        Some((_, len)) => Err(format!(
            "{} bytes hold a frame of {len} and more",
            data.len()
        )),
        None => Err(format!("{} bytes are less than one frame", data.len())),
    }
}

/// The first frame of `data`, if `data` holds all of it: its id and length.
fn split(data: &[u8]) -> Result<Option<(FrameId, usize)>, String> {
    if data.len() < HEADER {
        return Ok(None);
    }
    let len = u32_at(data, 0) as usize;
    if !(HEADER + TRAILER..=MAX_FRAME).contains(&len) {
        return Err(format!("corrupt frame: length {len}"));
    }
    if data.len() < len {
        return Ok(None);
    }
    let id = FrameId {
        lane: u32_at(data, 4),
        seq: u32_at(data, 8),
    };
    if fnv(&data[..len - TRAILER]) != u32_at(data, len - TRAILER) {
        return Err(format!("corrupt frame ({id}): checksum"));
    }
    Ok(Some((id, len)))
}

/// Every whole frame of `data` (bytes given back concatenated, as a
/// `SendError` does).
pub fn all(data: &[u8]) -> Result<Vec<(FrameId, usize)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match split(&data[at..])? {
            Some((id, len)) => {
                out.push((id, len));
                at += len;
            }
            None => {
                return Err(format!(
                    "{} trailing bytes are not a frame",
                    data.len() - at
                ))
            }
        }
    }
    Ok(out)
}

/// Cuts a byte stream into frames as it arrives.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    start: usize,
}

impl Parser {
    /// Appends bytes; returns the frames they completed.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<(FrameId, usize)>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some((id, len)) = split(&self.buf[self.start..])? {
            out.push((id, len));
            self.start += len;
        }
        if self.start > 0 && (self.start == self.buf.len() || self.start > 1 << 16) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(out)
    }
}

#[test]
fn frames_round_trip_and_corruption_is_seen() {
    let id = FrameId { lane: 7, seq: 3 };
    let f = encode(id, 100);
    assert_eq!(whole(&f), Ok(id));
    let mut p = Parser::default();
    assert!(p.push(&f[..50]).unwrap().is_empty());
    assert_eq!(p.push(&f[50..]).unwrap(), vec![(id, 100)]);
    let mut bad = f.clone();
    bad[20] ^= 1;
    assert!(whole(&bad).is_err());
    let two = [f.clone(), encode(FrameId { lane: 7, seq: 4 }, 16)].concat();
    assert_eq!(all(&two).unwrap().len(), 2);
}
