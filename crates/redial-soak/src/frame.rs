//! Fixed-size frames, so byte counts (`Reset::written`, the echo server's
//! tally) convert exactly into frame counts.
//!
//! Layout (32 bytes): kind, 3 zero bytes, connection index (u32 LE),
//! sequence number or generation (u64 LE), that number xor a constant, and
//! an FNV-1a checksum of the first 24 bytes (u64 LE).

/// Size of every frame.
pub const FRAME: usize = 32;
/// A data frame: a sequence number, unique per connection and increasing.
pub const DATA: u8 = 0xD1;
/// The first frame of every TCP connection: its generation.
pub const HELLO: u8 = 0xE1;

const MIX: u64 = 0x5EED_50A4_C0FF_EE00;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Builds a frame.
pub fn encode(kind: u8, conn: u32, n: u64) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0] = kind;
    f[4..8].copy_from_slice(&conn.to_le_bytes());
    f[8..16].copy_from_slice(&n.to_le_bytes());
    f[16..24].copy_from_slice(&(n ^ MIX).to_le_bytes());
    let sum = fnv1a(&f[..24]);
    f[24..32].copy_from_slice(&sum.to_le_bytes());
    f
}

/// A checked frame: (kind, connection index, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub conn: u32,
    pub n: u64,
}

/// Parses and checks one frame; `None` when it is not one this program
/// wrote, byte for byte.
pub fn decode(f: &[u8]) -> Option<Frame> {
    if f.len() != FRAME || !matches!(f[0], DATA | HELLO) || f[1..4] != [0, 0, 0] {
        return None;
    }
    let conn = u32::from_le_bytes(f[4..8].try_into().ok()?);
    let n = u64::from_le_bytes(f[8..16].try_into().ok()?);
    let mixed = u64::from_le_bytes(f[16..24].try_into().ok()?);
    let sum = u64::from_le_bytes(f[24..32].try_into().ok()?);
    (mixed == n ^ MIX && sum == fnv1a(&f[..24])).then_some(Frame {
        kind: f[0],
        conn,
        n,
    })
}
