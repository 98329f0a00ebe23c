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
mod tests {
    use super::*;

    /// SplitMix64: a deterministic source of well-mixed test hashes.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    const KEY_SETS: [&str; 4] = ["u64-le", "user-string", "file-offset", "u32-be"];

    /// Distinct keys of the shapes aggregate columns tend to hold.
    fn key(set: &str, n: u64) -> Vec<u8> {
        match set {
            "u64-le" => n.to_le_bytes().to_vec(),
            "user-string" => format!("user-{n}").into_bytes(),
            // Page-aligned offsets share their low 12 bits.
            "file-offset" => (0x1234_5678_9000 + n * 4096).to_le_bytes().to_vec(),
            "u32-be" => (1_000_000_000 + n as u32).to_be_bytes().to_vec(),
            _ => unreachable!("unknown key set {set}"),
        }
    }

    fn relative_error(estimate: u64, actual: u64) -> f64 {
        (estimate as f64 - actual as f64) / actual as f64
    }

    fn is_sparse(hll: &Hll) -> bool {
        matches!(hll.repr, Repr::Sparse(_))
    }

    fn sketch(hashes: &[u64]) -> Hll {
        let mut hll = Hll::new();
        for &hash in hashes {
            hll.add_hash(hash);
        }
        hll
    }

    fn random_hashes(seed: u64, n: usize) -> Vec<u64> {
        let mut rng = Rng(seed);
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn hash64_matches_reference_xxh64() {
        // From the reference libxxhash 0.8.1, XXH64(input, len, 0); the
        // inputs reach every code path (tail bytes, 4-byte and 8-byte words,
        // 32-byte stripes).
        let all_bytes: Vec<u8> = (0..100).collect();
        let cases: [(&[u8], u64); 8] = [
            (b"", 0xEF46_DB37_51D8_E999),
            (b"a", 0xD24E_C4F1_A98C_6E5B),
            (b"abc", 0x44BC_2CF5_AD77_0999),
            (b"user-42", 0x397E_9D3A_76AF_7C81),
            (&42u64.to_le_bytes(), 0xB556_806F_B6D1_4353),
            (b"0123456789abcdef0123456789abcde", 0x1FDF_C63F_EBAC_FDE7),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x0B24_2D36_1FDA_71BC,
            ),
            (&all_bytes, 0x6AC1_E580_3216_6597),
        ];
        for (input, expected) in cases {
            assert_eq!(hash64(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn add_bytes_is_add_hash_of_hash64() {
        let mut by_bytes = Hll::new();
        let mut by_hash = Hll::new();
        for n in 0..10_000u64 {
            let key = key("user-string", n);
            by_bytes.add_bytes(&key);
            by_hash.add_hash(hash64(&key));
        }
        assert_eq!(by_bytes, by_hash);
    }

    #[test]
    fn empty_sketch_is_zero_and_small() {
        let empty = Hll::new();
        assert_eq!(empty.estimate(), 0);
        let bytes = empty.to_bytes();
        assert!(bytes.len() <= 8, "{} bytes", bytes.len());
        assert_eq!(Hll::from_bytes(&bytes), Ok(Hll::new()));
        assert_eq!(Hll::default(), empty);
    }

    #[test]
    fn small_cardinalities_are_exact() {
        for set in KEY_SETS {
            let mut hll = Hll::new();
            for n in 1..=1000u64 {
                hll.add_bytes(&key(set, n));
                assert_eq!(hll.estimate(), n, "key set {set}");
            }
        }
    }

    #[test]
    fn duplicates_do_not_change_the_sketch() {
        for set in KEY_SETS {
            for n in [10u64, 1_000, 50_000] {
                let mut once = Hll::new();
                let mut thrice = Hll::new();
                for i in 0..n {
                    once.add_bytes(&key(set, i));
                    thrice.add_bytes(&key(set, i));
                    thrice.add_bytes(&key(set, i / 2));
                }
                for i in (0..n).rev() {
                    thrice.add_bytes(&key(set, i));
                }
                assert_eq!(once.estimate(), thrice.estimate());
                assert_eq!(once, thrice, "key set {set}, n {n}");
            }
        }
    }

    #[test]
    fn error_within_two_percent_up_to_a_million() {
        let checkpoints = [10_000, 100_000, 1_000_000];
        for set in KEY_SETS {
            let mut hll = Hll::new();
            for n in 1..=1_000_000u64 {
                hll.add_bytes(&key(set, n));
                if checkpoints.contains(&n) {
                    let error = relative_error(hll.estimate(), n);
                    eprintln!("{set:>12} n={n:>9}: {:+.3}%", error * 100.0);
                    assert!(error.abs() <= 0.02, "{set} at {n}: {error}");
                }
            }
        }
    }

    #[test]
    fn error_stays_small_across_the_sparse_to_dense_switch() {
        // Every cardinality up to well past the switch, then a sample: a
        // dense estimate costs a pass over 16 K registers.
        for set in KEY_SETS {
            let mut hll = Hll::new();
            let mut worst = (0.0f64, 0);
            for n in 1..=200_000u64 {
                hll.add_bytes(&key(set, n));
                if n > 20_000 && !n.is_multiple_of(17) {
                    continue;
                }
                let error = relative_error(hll.estimate(), n);
                if error.abs() > worst.0.abs() {
                    worst = (error, n);
                }
            }
            eprintln!(
                "{set:>12} worst over 1..=200000: {:+.3}% at n={}",
                worst.0 * 100.0,
                worst.1
            );
            assert!(worst.0.abs() <= 0.025, "{set}: {worst:?}");
        }
    }

    #[test]
    fn error_is_unbiased_and_near_theory_over_many_streams() {
        let (streams, n) = (64, 100_000);
        let errors: Vec<f64> = (0..streams)
            .map(|seed| relative_error(sketch(&random_hashes(seed, n)).estimate(), n as u64))
            .collect();
        let mean = errors.iter().sum::<f64>() / streams as f64;
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / streams as f64).sqrt();
        eprintln!(
            "{streams} streams of {n}: mean {:+.3}%, rms {:.3}%",
            mean * 100.0,
            rms * 100.0
        );
        // Theory: 1.04 / sqrt(16384) = 0.81% standard error, no bias.
        assert!(mean.abs() < 0.004, "bias {mean}");
        assert!(rms < 0.011, "rms error {rms}");
    }

    /// Splits `hashes` into consecutive parts of the given sizes and checks
    /// that merging their sketches, in several orders, rebuilds the sketch of
    /// the whole stream.
    fn check_split(hashes: &[u64], sizes: &[usize]) -> Vec<Hll> {
        assert_eq!(sizes.iter().sum::<usize>(), hashes.len());
        let whole = sketch(hashes);
        let mut parts = Vec::new();
        let mut start = 0;
        for &size in sizes {
            parts.push(sketch(&hashes[start..start + size]));
            start += size;
        }

        let mut forward = Hll::new();
        for part in &parts {
            forward.merge(part);
        }
        assert_eq!(forward, whole, "left fold of {sizes:?}");

        let mut backward = Hll::new();
        for part in parts.iter().rev() {
            backward.merge(part);
        }
        assert_eq!(backward, whole, "right fold of {sizes:?}");

        let mut from_first = parts[0].clone();
        for part in &parts[1..] {
            from_first.merge(part);
        }
        assert_eq!(from_first, whole, "fold into first of {sizes:?}");

        let mut level = parts.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut merged = pair[0].clone();
                    if let Some(right) = pair.get(1) {
                        merged.merge(right);
                    }
                    merged
                })
                .collect();
        }
        assert_eq!(level[0], whole, "tree merge of {sizes:?}");
        parts
    }

    #[test]
    fn merge_equals_single_sketch_in_every_representation() {
        let hashes = random_hashes(7, 120_000);
        // (part sizes, expected sparse-ness of each part, of the union)
        let cases: [(&[usize], &[bool], bool); 6] = [
            (&[100, 200], &[true, true], true),
            (&[3_000, 3_000], &[true, true], false),
            (&[100, 50_000], &[true, false], false),
            (&[50_000, 100], &[false, true], false),
            (&[40_000, 60_000], &[false, false], false),
            (
                &[1, 5, 3_761, 20_000, 7, 90_000, 2_000],
                &[true, true, true, false, true, false, true],
                false,
            ),
        ];
        for (sizes, parts_sparse, union_sparse) in cases {
            let total = sizes.iter().sum();
            let parts = check_split(&hashes[..total], sizes);
            let kinds: Vec<bool> = parts.iter().map(is_sparse).collect();
            assert_eq!(kinds, parts_sparse, "{sizes:?}");
            assert_eq!(is_sparse(&sketch(&hashes[..total])), union_sparse);
        }
    }

    #[test]
    fn merge_of_overlapping_streams_is_sketch_of_union() {
        let hashes = random_hashes(11, 30_000);
        for (a, b) in [
            (0..300, 200..500),
            (0..3_500, 100..3_700),
            (0..30_000, 5..10),
        ] {
            let mut merged = sketch(&hashes[a.clone()]);
            merged.merge(&sketch(&hashes[b.clone()]));
            let union = a.start.min(b.start)..a.end.max(b.end);
            assert_eq!(merged, sketch(&hashes[union]));
        }
    }

    #[test]
    fn merge_is_commutative_associative_and_idempotent() {
        let sizes = [0, 1, 50, 2_000, 3_761, 3_762, 30_000];
        let sketches: Vec<Hll> = sizes
            .iter()
            .zip(100..)
            .map(|(&n, seed)| sketch(&random_hashes(seed, n)))
            .collect();
        for a in &sketches {
            let mut twice = a.clone();
            twice.merge(a);
            assert_eq!(&twice, a, "idempotent");
            for b in &sketches {
                let mut ab = a.clone();
                ab.merge(b);
                let mut ba = b.clone();
                ba.merge(a);
                assert_eq!(ab, ba, "commutative");
                for c in &sketches {
                    let mut ab_c = ab.clone();
                    ab_c.merge(c);
                    let mut bc = b.clone();
                    bc.merge(c);
                    let mut a_bc = a.clone();
                    a_bc.merge(&bc);
                    assert_eq!(ab_c, a_bc, "associative");
                }
            }
        }
    }

    #[test]
    fn sparse_holds_exactly_sparse_max_entries() {
        let mut rng = Rng(3);
        let mut hll = Hll::new();
        let mut entries = 0;
        while entries < SPARSE_MAX {
            hll.add_hash(rng.next_u64());
            let Repr::Sparse(sparse) = &hll.repr else {
                panic!("dense after {entries} entries");
            };
            entries = sparse.len();
        }
        let sparse_len = hll.to_bytes().len();
        assert_eq!(Hll::from_bytes(&hll.to_bytes()), Ok(hll.clone()));
        while is_sparse(&hll) {
            hll.add_hash(rng.next_u64());
        }
        let dense_len = hll.to_bytes().len();
        eprintln!("sparse with {SPARSE_MAX} entries: {sparse_len} bytes; dense: {dense_len}");
        assert!(sparse_len <= dense_len);
        assert_eq!(dense_len, HEADER_LEN + DENSE_PAYLOAD_LEN);
    }

    /// Entries laid out to make the sparse encoding as long as possible: as
    /// many 4-byte gaps as the index space allows, the rest 3-byte gaps.
    fn worst_case_entries(n: usize) -> Vec<u32> {
        let slots = 1usize << SPARSE_PRECISION;
        let four_byte = (slots - 257 * n) / (32_769 - 257);
        let mut entries = Vec::with_capacity(n);
        let mut next_index = 0;
        for i in 0..n {
            let gap = if i < four_byte { 1 << 15 } else { 1 << 8 };
            let index = next_index + gap;
            entries.push((index as u32) << RANK_BITS | SPARSE_MAX_RANK);
            next_index = index + 1;
        }
        assert!(next_index <= slots);
        entries
    }

    #[test]
    fn worst_case_sparse_encoding_fits_dense() {
        let encoded_len = |n| {
            let mut out = Vec::new();
            encode_sparse(&worst_case_entries(n), &mut out);
            out.len()
        };
        assert!(encoded_len(SPARSE_MAX) <= DENSE_PAYLOAD_LEN);
        assert!(encoded_len(SPARSE_MAX + 1) > DENSE_PAYLOAD_LEN);
        // And the layout is one a sketch can really hold.
        let mut payload = Vec::new();
        let entries = worst_case_entries(SPARSE_MAX);
        encode_sparse(&entries, &mut payload);
        let bytes = [&[FORMAT_VERSION, PRECISION, KIND_SPARSE], &payload[..]].concat();
        let hll = Hll::from_bytes(&bytes).expect("valid worst case");
        assert_eq!(hll.repr, Repr::Sparse(entries));
        assert_eq!(hll.to_bytes(), bytes);
    }

    #[test]
    fn serialization_round_trips() {
        for n in [0, 1, 2, 10, 100, 1_000, 3_000, 3_761, 5_000, 100_000] {
            let hll = sketch(&random_hashes(n as u64, n));
            let bytes = hll.to_bytes();
            assert_eq!(bytes[..2], [FORMAT_VERSION, PRECISION]);
            let kind = if is_sparse(&hll) {
                KIND_SPARSE
            } else {
                KIND_DENSE
            };
            assert_eq!(bytes[2], kind);
            let decoded = Hll::from_bytes(&bytes).expect("round trip");
            assert_eq!(decoded, hll, "n {n}");
            assert_eq!(decoded.to_bytes(), bytes);
            assert_eq!(decoded.estimate(), hll.estimate());
            if is_sparse(&hll) {
                let bound = (HEADER_LEN + 2 + 5 * n).min(HEADER_LEN + DENSE_PAYLOAD_LEN);
                assert!(bytes.len() <= bound, "n {n}: {} bytes", bytes.len());
            } else {
                assert_eq!(bytes.len(), HEADER_LEN + DENSE_PAYLOAD_LEN);
            }
        }
    }

    #[test]
    fn dense_packing_keeps_every_register_value() {
        let registers: Vec<u8> = (0..DENSE_REGISTERS)
            .map(|i| (i * 7 % (usize::from(DENSE_MAX_RANK) + 1)) as u8)
            .collect();
        let hll = Hll {
            repr: Repr::Dense(registers.into_boxed_slice()),
        };
        assert_eq!(Hll::from_bytes(&hll.to_bytes()), Ok(hll));
        let saturated = Hll {
            repr: Repr::Dense(vec![DENSE_MAX_RANK; DENSE_REGISTERS].into_boxed_slice()),
        };
        assert_eq!(saturated.estimate(), u64::MAX);
        let zeroed = Hll {
            repr: Repr::Dense(vec![0; DENSE_REGISTERS].into_boxed_slice()),
        };
        assert_eq!(zeroed.estimate(), 0);
    }

    fn assert_rejected(bytes: &[u8], why: &str) {
        let result = Hll::from_bytes(bytes);
        assert!(result.is_err(), "accepted {why}: {result:?}");
    }

    #[test]
    fn from_bytes_rejects_malformed_input() {
        let sparse = sketch(&random_hashes(1, 500)).to_bytes();
        let dense = sketch(&random_hashes(2, 20_000)).to_bytes();
        for bytes in [&sparse, &dense] {
            for len in 0..bytes.len() {
                assert_rejected(&bytes[..len], "truncated input");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_rejected(&longer, "trailing byte");
            for (at, value, why) in [
                (0, 0, "version 0"),
                (0, 2, "version 2"),
                (1, 12, "precision 12"),
                (2, 2, "unknown kind"),
            ] {
                let mut bad = bytes.clone();
                bad[at] = value;
                assert_rejected(&bad, why);
            }
        }

        let header = [FORMAT_VERSION, PRECISION, KIND_SPARSE];
        let with_header = |payload: &[u8]| [&header[..], payload].concat();
        assert_rejected(&with_header(&[1, 0]), "sparse rank 0");
        assert_rejected(&with_header(&[1, 41]), "sparse rank 41");
        assert_rejected(&with_header(&[0x80, 0]), "overlong count");
        assert_rejected(&with_header(&[1, 0x81, 0]), "overlong entry");
        assert_rejected(
            &with_header(&[1, 0xff, 0xff, 0xff, 0xff, 0x1f]),
            "varint beyond 32 bits",
        );
        assert_rejected(
            &with_header(&[1, 0xff, 0xff, 0xff, 0xff, 0x8f, 0]),
            "6-byte varint",
        );
        // Index 2^25 with rank 1.
        let mut past_end = vec![1];
        write_varint(&mut past_end, 1 << (SPARSE_PRECISION + RANK_BITS) | 1);
        assert_rejected(&with_header(&past_end), "sparse index 2^25");
        // Two entries whose gaps overflow the index space only together.
        let mut cumulative = vec![2];
        write_varint(
            &mut cumulative,
            (1 << (SPARSE_PRECISION - 1)) << RANK_BITS | 1,
        );
        write_varint(
            &mut cumulative,
            (1 << (SPARSE_PRECISION - 1)) << RANK_BITS | 1,
        );
        assert_rejected(&with_header(&cumulative), "cumulative index 2^25");
        let mut too_many = Vec::new();
        write_varint(&mut too_many, SPARSE_MAX as u32 + 1);
        too_many.extend(std::iter::repeat_n(1, SPARSE_MAX + 1));
        assert_rejected(&with_header(&too_many), "more than SPARSE_MAX entries");
        let mut exactly_max = Vec::new();
        write_varint(&mut exactly_max, SPARSE_MAX as u32);
        exactly_max.extend(std::iter::repeat_n(1, SPARSE_MAX));
        assert!(Hll::from_bytes(&with_header(&exactly_max)).is_ok());

        let mut high_register = dense.clone();
        high_register[HEADER_LEN] |= 0x3f;
        assert_rejected(&high_register, "dense register 63");
        let mut high_last_register = dense.clone();
        *high_last_register.last_mut().unwrap() = 0xff;
        assert_rejected(&high_last_register, "dense register 63 at the end");

        assert_rejected(b"", "empty input");
        assert_rejected(b"hello, world", "text");
        assert_rejected(&[0xff; 64], "0xff bytes");
    }

    #[test]
    fn from_bytes_accepts_only_canonical_encodings() {
        // Random corruption is either rejected or decodes to a sketch that
        // re-encodes to the very same bytes.
        let mut rng = Rng(5);
        let valid = [
            Hll::new().to_bytes(),
            sketch(&random_hashes(3, 40)).to_bytes(),
            sketch(&random_hashes(4, 3_000)).to_bytes(),
            sketch(&random_hashes(5, 50_000)).to_bytes(),
        ];
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..20_000 {
            let mut bytes = valid[round % valid.len()].clone();
            for _ in 0..1 + rng.next_u64() % 3 {
                let at = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            if rng.next_u64().is_multiple_of(4) {
                bytes.truncate((rng.next_u64() % (bytes.len() as u64 + 1)) as usize);
            }
            match Hll::from_bytes(&bytes) {
                Ok(hll) => {
                    assert_eq!(hll.to_bytes(), bytes);
                    accepted += 1;
                }
                Err(_) => rejected += 1,
            }
        }
        for len in 0..64 {
            let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert_rejected(&garbage, "random bytes");
        }
        assert!(accepted > 0 && rejected > 0, "{accepted} / {rejected}");
    }

    #[test]
    fn error_messages_are_displayed() {
        let error = Hll::from_bytes(&[2, PRECISION, KIND_SPARSE, 0]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid hll sketch: format version 2 is not the supported 1"
        );
    }
}
