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
