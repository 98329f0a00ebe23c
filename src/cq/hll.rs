//! Mergeable HyperLogLog sketch behind `beacon.approx_count_distinct(x)`.
//!
//! Partial sketches are stored as `bytea` per group and merged over and over,
//! so the design favours a small, canonical serialized form:
//!
//! * Most groups see a handful of distinct values, so a sketch starts
//!   *sparse*: a sorted list of `(index, rank)` entries at a finer precision
//!   (25 index bits, as in HyperLogLog++). That makes index collisions so
//!   rare that the linear-counting estimate is exact for small groups, where
//!   users would notice `49` reported for 50 values.
//! * Once it has more than `SPARSE_MAX` (3761) entries it becomes *dense*:
//!   2^[`PRECISION`] registers, never to go back.
//!
//! The representation is a function of the set of hashes added (the entry
//! count only grows), so two sketches that saw the same values compare equal
//! however the values were split and merged, and equal sketches serialize to
//! equal bytes.
//!
//! Serialized form (version 1), all multi-byte integers little-endian:
//!
//! ```text
//! byte 0   format version (1)
//! byte 1   precision (14)
//! byte 2   kind: 0 = sparse, 1 = dense
//! sparse:  varint(entry count), then per entry in index order
//!          varint((gap << 6) | rank), gap = index - previous index - 1
//!          (the first entry's gap is its index); index < 2^25, 1 <= rank <= 40
//! dense:   16,384 registers packed 6 bits each, four registers per 3 bytes:
//!          r0 | r1 << 6 | r2 << 12 | r3 << 18 as a 24-bit little-endian
//!          integer; every register <= 51
//! ```
//!
//! Varints are unsigned LEB128 with no redundant trailing zero byte. Decoding
//! accepts exactly the encodings that [`Hll::to_bytes`] produces, so
//! `to_bytes(from_bytes(b)?) == b` for every accepted `b`.

use std::fmt;

/// 16,384 registers: standard error 1.04/sqrt(m) ≈ 0.81%.
pub const PRECISION: u8 = 14;

const DENSE_P: u32 = PRECISION as u32;
const DENSE_REGISTERS: usize = 1 << DENSE_P;
/// A register holds the 1-based position of the first set bit among the
/// `64 - p` hash bits after the index, or `64 - p + 1` when they are all zero.
const DENSE_MAX_RANK: u8 = 64 - PRECISION + 1;
/// 6 bits per register because ranks never exceed 51 < 64: 25% smaller than
/// a byte per register, and unpacking 16 K registers costs far less than
/// detoasting and copying the extra 4 KiB on every merge.
const DENSE_PAYLOAD_LEN: usize = DENSE_REGISTERS * 6 / 8;

const SPARSE_PRECISION: u32 = 25;
const SPARSE_MAX_RANK: u32 = 64 - SPARSE_PRECISION + 1;
const RANK_BITS: u32 = 6;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;

/// Largest entry count that stays sparse: the most entries whose encoding is
/// no larger than the dense payload *whatever* their layout, so the switch
/// never makes a sketch bigger and needs no size bookkeeping.
///
/// An entry with gap `g` uses `g + 1` of the 2^25 index slots and takes
/// 1 byte if `g < 2`, 2 if `g < 2^8`, 3 if `g < 2^15`, 4 if `g < 2^22`,
/// else 5. Each extra byte costs more slots than the one before, so the
/// largest encoding of `n` entries gives every entry 3 bytes (257 slots) and
/// spends what is left on 4-byte entries (32,512 more slots each):
/// `2 + 3n + (2^25 - 257n) / 32512` bytes including the 2-byte count.
/// That is 12,287 for n = 3761 and 12,290 for n = 3762, against 12,288.
/// `worst_case_sparse_encoding_fits_dense` checks both.
const SPARSE_MAX: usize = 3761;

const FORMAT_VERSION: u8 = 1;
const KIND_SPARSE: u8 = 0;
const KIND_DENSE: u8 = 1;
const HEADER_LEN: usize = 3;

/// A HyperLogLog sketch with precision [`PRECISION`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hll {
    repr: Repr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// `index << 6 | rank` at [`SPARSE_PRECISION`], sorted, one per index.
    /// Packing the index above the rank makes `max` on two entries with the
    /// same index keep the larger rank.
    Sparse(Vec<u32>),
    /// One byte per register in memory: updates stay a single store.
    Dense(Box<[u8]>),
}

/// Why [`Hll::from_bytes`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HllError(pub String);

impl fmt::Display for HllError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HllError {}

fn invalid(message: impl Into<String>) -> HllError {
    HllError(format!("invalid hll sketch: {}", message.into()))
}

impl Default for Hll {
    fn default() -> Self {
        Self::new()
    }
}

impl Hll {
    /// An empty sketch.
    pub fn new() -> Hll {
        Hll {
            repr: Repr::Sparse(Vec::new()),
        }
    }

    /// Adds one element given its hash; the hash must be well mixed (all 64
    /// bits used), since the top bits pick the register and the rest give
    /// the rank.
    pub fn add_hash(&mut self, hash: u64) {
        match &mut self.repr {
            Repr::Sparse(entries) => {
                let entry = sparse_entry(hash);
                match entries.binary_search_by_key(&(entry >> RANK_BITS), |e| e >> RANK_BITS) {
                    Ok(i) => entries[i] = entries[i].max(entry),
                    Err(i) => {
                        entries.insert(i, entry);
                        if entries.len() > SPARSE_MAX {
                            self.repr = Repr::Dense(densify(entries));
                        }
                    }
                }
            }
            Repr::Dense(registers) => {
                let (index, rank) = dense_register(hash);
                registers[index] = registers[index].max(rank);
            }
        }
    }

    /// Adds one element, hashed with [`hash64`].
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        self.add_hash(hash64(bytes));
    }

    /// Folds `other` into `self`: the result is exactly the sketch of the
    /// union of both inputs, so merging is commutative, associative and
    /// idempotent.
    pub fn merge(&mut self, other: &Hll) {
        match (&mut self.repr, &other.repr) {
            (Repr::Dense(registers), Repr::Dense(theirs)) => {
                for (mine, &their) in registers.iter_mut().zip(theirs.iter()) {
                    *mine = (*mine).max(their);
                }
            }
            (Repr::Dense(registers), Repr::Sparse(entries)) => fold_sparse(registers, entries),
            (Repr::Sparse(entries), Repr::Dense(theirs)) => {
                let mut registers = theirs.clone();
                fold_sparse(&mut registers, entries);
                self.repr = Repr::Dense(registers);
            }
            (Repr::Sparse(mine), Repr::Sparse(theirs)) => {
                let merged = merge_sorted(mine, theirs);
                self.repr = if merged.len() > SPARSE_MAX {
                    Repr::Dense(densify(&merged))
                } else {
                    Repr::Sparse(merged)
                };
            }
        }
    }

    /// Estimated number of distinct elements added.
    pub fn estimate(&self) -> u64 {
        let estimate = match &self.repr {
            // With at most SPARSE_MAX entries among 2^25 indexes the load is
            // below 0.02%, where linear counting is all but exact.
            Repr::Sparse(entries) => {
                let slots = (1u64 << SPARSE_PRECISION) as f64;
                -slots * (-(entries.len() as f64) / slots).ln_1p()
            }
            Repr::Dense(registers) => ertl_estimate(registers),
        };
        // `as` saturates, which is the right answer for the infinite estimate
        // of a sketch whose registers are all at the maximum.
        estimate.round() as u64
    }

    /// The serialized form described in the module documentation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION, PRECISION];
        match &self.repr {
            Repr::Sparse(entries) => {
                out.push(KIND_SPARSE);
                encode_sparse(entries, &mut out);
            }
            Repr::Dense(registers) => {
                out.push(KIND_DENSE);
                out.reserve(DENSE_PAYLOAD_LEN);
                for quad in registers.chunks_exact(4) {
                    let packed = u32::from(quad[0])
                        | u32::from(quad[1]) << 6
                        | u32::from(quad[2]) << 12
                        | u32::from(quad[3]) << 18;
                    out.extend_from_slice(&packed.to_le_bytes()[..3]);
                }
            }
        }
        out
    }

    /// Parses the output of [`Hll::to_bytes`], rejecting anything else.
    pub fn from_bytes(bytes: &[u8]) -> Result<Hll, HllError> {
        let (header, payload) = bytes.split_at_checked(HEADER_LEN).ok_or_else(|| {
            invalid(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ))
        })?;
        if header[0] != FORMAT_VERSION {
            return Err(invalid(format!(
                "format version {} is not the supported {FORMAT_VERSION}",
                header[0]
            )));
        }
        if header[1] != PRECISION {
            return Err(invalid(format!(
                "precision {} is not the supported {PRECISION}",
                header[1]
            )));
        }
        let repr = match header[2] {
            KIND_SPARSE => Repr::Sparse(decode_sparse(payload)?),
            KIND_DENSE => Repr::Dense(decode_dense(payload)?),
            kind => return Err(invalid(format!("unknown kind {kind}"))),
        };
        Ok(Hll { repr })
    }
}

fn sparse_entry(hash: u64) -> u32 {
    let index = (hash >> (64 - SPARSE_PRECISION)) as u32;
    // The sentinel bit caps the rank at 64 - p + 1 when the rest is zero.
    let rank = ((hash << SPARSE_PRECISION) | (1 << (SPARSE_PRECISION - 1))).leading_zeros() + 1;
    index << RANK_BITS | rank
}

fn dense_register(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - DENSE_P)) as usize;
    let rank = ((hash << DENSE_P) | (1 << (DENSE_P - 1))).leading_zeros() + 1;
    (index, rank as u8)
}

/// The dense register a sparse entry maps to, and the rank it would have had
/// if its hash had been added to a dense sketch: the top 14 of its 25 index
/// bits are the register, and the 11 below them come first in the rank.
fn dense_from_entry(entry: u32) -> (usize, u8) {
    const EXTRA_BITS: u32 = SPARSE_PRECISION - DENSE_P;
    let sparse_index = entry >> RANK_BITS;
    let extra = sparse_index & ((1 << EXTRA_BITS) - 1);
    let rank = if extra == 0 {
        EXTRA_BITS + (entry & RANK_MASK)
    } else {
        extra.leading_zeros() - (32 - EXTRA_BITS) + 1
    };
    ((sparse_index >> EXTRA_BITS) as usize, rank as u8)
}

fn fold_sparse(registers: &mut [u8], entries: &[u32]) {
    for &entry in entries {
        let (index, rank) = dense_from_entry(entry);
        registers[index] = registers[index].max(rank);
    }
}

fn densify(entries: &[u32]) -> Box<[u8]> {
    let mut registers = vec![0u8; DENSE_REGISTERS].into_boxed_slice();
    fold_sparse(&mut registers, entries);
    registers
}

fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        match (x >> RANK_BITS).cmp(&(y >> RANK_BITS)) {
            std::cmp::Ordering::Less => {
                merged.push(x);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                merged.push(y);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                merged.push(x.max(y));
                i += 1;
                j += 1;
            }
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

/// Improved raw estimator of Ertl, "New cardinality estimation algorithms
/// for HyperLogLog sketches" (2017, arXiv:1702.01284). It needs neither the
/// linear-counting switch nor bias tables and stays near the 1.04/sqrt(m)
/// standard error at every cardinality, including just after the sketch
/// turns dense.
fn ertl_estimate(registers: &[u8]) -> f64 {
    let mut counts = [0u32; DENSE_MAX_RANK as usize + 1];
    for &rank in registers {
        counts[usize::from(rank)] += 1;
    }
    let m = DENSE_REGISTERS as f64;
    let q = usize::from(DENSE_MAX_RANK) - 1;
    let mut z = m * tau(1.0 - f64::from(counts[q + 1]) / m);
    for &count in counts[1..=q].iter().rev() {
        z = 0.5 * (z + f64::from(count));
    }
    // All registers zero gives sigma(1) = infinity and so an estimate of 0.
    z += m * sigma(f64::from(counts[0]) / m);
    m * m / (2.0 * std::f64::consts::LN_2 * z)
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

fn encode_sparse(entries: &[u32], out: &mut Vec<u8>) {
    write_varint(out, entries.len() as u32);
    let mut next_index = 0;
    for &entry in entries {
        let index = entry >> RANK_BITS;
        write_varint(out, (index - next_index) << RANK_BITS | (entry & RANK_MASK));
        next_index = index + 1;
    }
}

fn decode_sparse(payload: &[u8]) -> Result<Vec<u32>, HllError> {
    let mut pos = 0;
    let count = read_varint(payload, &mut pos)? as usize;
    if count > SPARSE_MAX {
        return Err(invalid(format!(
            "sparse sketch has {count} entries, more than the {SPARSE_MAX} a sparse sketch holds"
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut next_index = 0u64;
    for _ in 0..count {
        let code = read_varint(payload, &mut pos)?;
        let rank = code & RANK_MASK;
        if rank == 0 || rank > SPARSE_MAX_RANK {
            return Err(invalid(format!(
                "sparse rank {rank} is outside 1..={SPARSE_MAX_RANK}"
            )));
        }
        let index = next_index + u64::from(code >> RANK_BITS);
        if index >= 1 << SPARSE_PRECISION {
            return Err(invalid(format!(
                "sparse index {index} is not below 2^{SPARSE_PRECISION}"
            )));
        }
        entries.push((index as u32) << RANK_BITS | rank);
        next_index = index + 1;
    }
    if pos != payload.len() {
        return Err(invalid(format!(
            "{} trailing bytes after the sparse entries",
            payload.len() - pos
        )));
    }
    Ok(entries)
}

fn decode_dense(payload: &[u8]) -> Result<Box<[u8]>, HllError> {
    if payload.len() != DENSE_PAYLOAD_LEN {
        return Err(invalid(format!(
            "dense payload is {} bytes, not {DENSE_PAYLOAD_LEN}",
            payload.len()
        )));
    }
    let mut registers = Vec::with_capacity(DENSE_REGISTERS);
    for triple in payload.chunks_exact(3) {
        let packed = u32::from_le_bytes([triple[0], triple[1], triple[2], 0]);
        for shift in [0, 6, 12, 18] {
            let rank = ((packed >> shift) & RANK_MASK) as u8;
            if rank > DENSE_MAX_RANK {
                return Err(invalid(format!(
                    "register {} holds {rank}, above the maximum {DENSE_MAX_RANK}",
                    registers.len()
                )));
            }
            registers.push(rank);
        }
    }
    Ok(registers.into_boxed_slice())
}

fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u32, HllError> {
    let mut value = 0u32;
    for shift in (0..32).step_by(7) {
        let byte = *bytes
            .get(*pos)
            .ok_or_else(|| invalid("truncated sparse payload"))?;
        *pos += 1;
        let bits = u32::from(byte & 0x7f);
        if bits > u32::MAX >> shift {
            return Err(invalid("varint overflows 32 bits"));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            // A zero final byte would give a second encoding of the same
            // value and break byte-for-byte canonical form.
            if byte == 0 && shift > 0 {
                return Err(invalid("varint has a redundant trailing zero byte"));
            }
            return Ok(value);
        }
    }
    Err(invalid("varint longer than 5 bytes"))
}

/// XXH64 with seed 0, exactly as in the xxHash specification
/// (<https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>), so any
/// xxHash library reproduces it: `XXH64("", 0) = 0xEF46DB3751D8E999`.
/// Sketches persist register positions derived from it, so it must never
/// change; input is read little-endian, making it the same on every platform.
pub fn hash64(bytes: &[u8]) -> u64 {
    const PRIME1: u64 = 0x9E37_79B1_85EB_CA87;
    const PRIME2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const PRIME3: u64 = 0x1656_67B1_9E37_79F9;
    const PRIME4: u64 = 0x85EB_CA77_C2B2_AE63;
    const PRIME5: u64 = 0x27D4_EB2F_1656_67C5;

    fn round(acc: u64, lane: u64) -> u64 {
        acc.wrapping_add(lane.wrapping_mul(PRIME2))
            .rotate_left(31)
            .wrapping_mul(PRIME1)
    }
    fn merge_accumulator(acc: u64, lane_acc: u64) -> u64 {
        (acc ^ round(0, lane_acc))
            .wrapping_mul(PRIME1)
            .wrapping_add(PRIME4)
    }
    fn read_u64(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    }

    let mut rest = bytes;
    let mut hash = if bytes.len() >= 32 {
        let mut acc = [
            PRIME1.wrapping_add(PRIME2),
            PRIME2,
            0,
            PRIME1.wrapping_neg(),
        ];
        let mut stripes = bytes.chunks_exact(32);
        for stripe in &mut stripes {
            for (lane, acc) in acc.iter_mut().enumerate() {
                *acc = round(*acc, read_u64(&stripe[lane * 8..]));
            }
        }
        rest = stripes.remainder();
        let mut hash = acc[0]
            .rotate_left(1)
            .wrapping_add(acc[1].rotate_left(7))
            .wrapping_add(acc[2].rotate_left(12))
            .wrapping_add(acc[3].rotate_left(18));
        for lane_acc in acc {
            hash = merge_accumulator(hash, lane_acc);
        }
        hash
    } else {
        PRIME5
    };
    hash = hash.wrapping_add(bytes.len() as u64);

    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        hash ^= round(0, read_u64(word));
        hash = hash
            .rotate_left(27)
            .wrapping_mul(PRIME1)
            .wrapping_add(PRIME4);
    }
    rest = words.remainder();
    if rest.len() >= 4 {
        let word = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        hash ^= u64::from(word).wrapping_mul(PRIME1);
        hash = hash
            .rotate_left(23)
            .wrapping_mul(PRIME2)
            .wrapping_add(PRIME3);
        rest = &rest[4..];
    }
    for &byte in rest {
        hash ^= u64::from(byte).wrapping_mul(PRIME5);
        hash = hash.rotate_left(11).wrapping_mul(PRIME1);
    }

    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME3);
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests;
