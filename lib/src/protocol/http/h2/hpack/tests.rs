//! The decoder against RFC 7541's examples and rules, and against `loona-hpack`'s decoder.

use proptest::prelude::*;

use super::{Decoder, HpackError, Indexing, encode_integer, huffman, integer};

/// The bytes of a hex dump as RFC 7541 prints them (spaces and line breaks ignored).
fn hex(dump: &str) -> Vec<u8> {
    let digits: Vec<u8> = dump.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

type Fields = Vec<(String, String)>;

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut fields = Vec::new();
    decoder.decode(block, |name, value, _| {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        fields.push((text(name), text(value)));
    })?;
    Ok(fields)
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|&(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// How each field of `block` is marked.
fn indexings(block: &[u8]) -> Vec<Indexing> {
    let mut marks = Vec::new();
    Decoder::default()
        .decode(block, |_, _, indexing| marks.push(indexing))
        .expect("a valid block");
    marks
}

#[test]
fn a_never_indexed_literal_is_reported_as_such_and_the_others_are_not() {
    // RFC 7541 C.2.3: `password: secret`, never indexed, then the same as a literal
    // without indexing (C.2.2's form), with indexing (C.2.1's form) and an indexed field.
    let mut block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    block.extend_from_slice(&hex("0008 7061 7373 776f 7264 0673 6563 7265 74"));
    block.extend_from_slice(&hex("4008 7061 7373 776f 7264 0673 6563 7265 74"));
    block.extend_from_slice(&hex("82"));
    // A never indexed literal whose name is an index (authorization, 23).
    block.extend_from_slice(&hex("1f08 0673 6563 7265 74"));
    assert_eq!(
        indexings(&block),
        [
            Indexing::Never,
            Indexing::Allowed,
            Indexing::Allowed,
            Indexing::Allowed,
            Indexing::Never
        ]
    );
}

/// The dynamic table's entries, newest first, and its size.
fn table(decoder: &Decoder) -> (Fields, usize) {
    let entries = decoder
        .table
        .entries()
        .into_iter()
        .map(|(name, value)| {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (text(name), text(value))
        })
        .collect();
    (entries, decoder.table.size())
}

/// One block of an RFC 7541 Appendix C example: the dump, the fields, then the dynamic
/// table (newest first) and its size.
struct Example<'a> {
    dump: &'a str,
    fields: &'a [(&'a str, &'a str)],
    table: &'a [(&'a str, &'a str)],
    size: usize,
}

/// Decodes the blocks of one example in order on one decoder whose table has `max_size`
/// bytes, checking the fields and the table after each.
fn run(examples: &[Example<'_>], max_size: u32) {
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(max_size);
    // The encoder of RFC 7541 C.5 and C.6 works with a 256-byte table from the start: the
    // decoder's table follows the setting without a size update.
    decoder.required_update = None;
    for (step, example) in examples.iter().enumerate() {
        let block = hex(example.dump);
        assert_eq!(
            decode(&mut decoder, &block),
            Ok(fields(example.fields)),
            "block {step}"
        );
        assert_eq!(
            table(&decoder),
            (fields(example.table), example.size),
            "block {step}"
        );
    }
}

#[test]
fn rfc7541_c1_integers_decode_and_encode() {
    let cases: [(&[u8], u32, usize); 3] = [
        (&[0x0a], 5, 10),
        (&[0x1f, 0x9a, 0x0a], 5, 1337),
        (&[0x2a], 8, 42),
    ];
    for (bytes, prefix, value) in cases {
        let mut input = bytes;
        assert_eq!(integer(&mut input, prefix), Ok(value));
        assert!(input.is_empty());
        let mut out = Vec::new();
        encode_integer(value, prefix, 0, &mut out);
        assert_eq!(out, bytes);
    }
}

#[test]
fn integers_round_trip_at_every_prefix_and_boundary() {
    for prefix in 1..=8 {
        let max_prefix = (1usize << prefix) - 1;
        for value in [
            0,
            1,
            max_prefix - 1,
            max_prefix,
            max_prefix + 1,
            127 + max_prefix,
            128 + max_prefix,
            1 << 20,
            (1 << 28) - 1 + max_prefix,
        ] {
            let mut out = vec![];
            // Leading bits above the prefix are not part of the integer.
            let leading = !(u8::MAX >> (8 - prefix));
            encode_integer(value, prefix, leading, &mut out);
            out.push(0x55);
            let mut input = out.as_slice();
            assert_eq!(
                integer(&mut input, prefix),
                Ok(value),
                "{value} in {prefix} bits"
            );
            assert_eq!(input, [0x55]);
        }
    }
}

#[test]
fn integers_longer_than_five_octets_or_cut_short_are_refused() {
    // Four continuation octets: the most accepted, up to 2^28 - 1 + the prefix.
    let mut input: &[u8] = &[0x1f, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(integer(&mut input, 5), Ok(31 + (1 << 28) - 1));
    // A fifth, even with zero bits, is refused.
    let mut input: &[u8] = &[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00];
    assert_eq!(integer(&mut input, 5), Err(HpackError::IntegerTooLong));
    let mut input: &[u8] = &[0xff; 64];
    assert_eq!(integer(&mut input, 8), Err(HpackError::IntegerTooLong));
    for cut in [&[][..], &[0x1f], &[0x1f, 0x9a]] {
        let mut input = cut;
        assert_eq!(integer(&mut input, 5), Err(HpackError::Truncated));
    }
}

#[test]
fn rfc7541_c2_single_fields() {
    run(
        &[Example {
            dump: "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            fields: &[("custom-key", "custom-header")],
            table: &[("custom-key", "custom-header")],
            size: 55,
        }],
        4096,
    );
    run(
        &[Example {
            dump: "040c 2f73 616d 706c 652f 7061 7468",
            fields: &[(":path", "/sample/path")],
            table: &[],
            size: 0,
        }],
        4096,
    );
    run(
        &[Example {
            dump: "1008 7061 7373 776f 7264 0673 6563 7265 74",
            fields: &[("password", "secret")],
            table: &[],
            size: 0,
        }],
        4096,
    );
    run(
        &[Example {
            dump: "82",
            fields: &[(":method", "GET")],
            table: &[],
            size: 0,
        }],
        4096,
    );
}

const FIRST_REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const SECOND_REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const THIRD_REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

/// The requests of C.3 and C.4, given their dumps.
fn requests<'a>(dumps: [&'a str; 3]) -> [Example<'a>; 3] {
    [
        Example {
            dump: dumps[0],
            fields: FIRST_REQUEST,
            table: &[(":authority", "www.example.com")],
            size: 57,
        },
        Example {
            dump: dumps[1],
            fields: SECOND_REQUEST,
            table: &[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            size: 110,
        },
        Example {
            dump: dumps[2],
            fields: THIRD_REQUEST,
            table: &[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            size: 164,
        },
    ]
}

#[test]
fn rfc7541_c3_requests_without_huffman() {
    run(
        &requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]),
        4096,
    );
}

#[test]
fn rfc7541_c4_requests_with_huffman() {
    run(
        &requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]),
        4096,
    );
}

const DATE_21: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_22: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

/// The responses of C.5 and C.6, given their dumps: a 256-byte table, entries evicted.
fn responses<'a>(dumps: [&'a str; 3]) -> [Example<'a>; 3] {
    [
        Example {
            dump: dumps[0],
            fields: &[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE_21),
                ("location", LOCATION),
            ],
            table: &[
                ("location", LOCATION),
                ("date", DATE_21),
                ("cache-control", "private"),
                (":status", "302"),
            ],
            size: 222,
        },
        Example {
            dump: dumps[1],
            fields: &[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE_21),
                ("location", LOCATION),
            ],
            table: &[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE_21),
                ("cache-control", "private"),
            ],
            size: 222,
        },
        Example {
            dump: dumps[2],
            fields: &[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE_22),
                ("location", LOCATION),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE),
            ],
            table: &[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE_22),
            ],
            size: 215,
        },
    ]
}

#[test]
fn rfc7541_c5_responses_without_huffman() {
    run(
        &responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
             3d31",
        ]),
        256,
    );
}

#[test]
fn rfc7541_c6_responses_with_huffman() {
    run(
        &responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]),
        256,
    );
}

#[test]
fn index_zero_and_indexes_past_the_tables_are_refused() {
    let mut decoder = Decoder::default();
    assert_eq!(decode(&mut decoder, &[0x80]), Err(HpackError::Index(0)));
    // 61 is the last static entry; the dynamic table is empty.
    assert_eq!(
        decode(&mut decoder, &[0xbd]),
        Ok(fields(&[("www-authenticate", "")]))
    );
    assert_eq!(decode(&mut decoder, &[0xbe]), Err(HpackError::Index(62)));
    // A literal whose name index is past the tables, with and without indexing.
    assert_eq!(
        decode(&mut decoder, &[0x7f, 0x00, 0x01, b'a']),
        Err(HpackError::Index(63))
    );
    assert_eq!(
        decode(&mut decoder, &[0x0f, 0x30, 0x01, b'a']),
        Err(HpackError::Index(63))
    );
    // One entry added: 62 is found, 63 is not.
    assert_eq!(
        decode(&mut decoder, &[0x41, 0x01, b'a']),
        Ok(fields(&[(":authority", "a")]))
    );
    assert_eq!(
        decode(&mut decoder, &[0xbe]),
        Ok(fields(&[(":authority", "a")]))
    );
    assert_eq!(decode(&mut decoder, &[0xbf]), Err(HpackError::Index(63)));
}

#[test]
fn blocks_cut_inside_a_representation_are_refused() {
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    for cut in 1..block.len() {
        let mut decoder = Decoder::default();
        assert_eq!(
            decode(&mut decoder, &block[..cut]),
            Err(HpackError::Truncated),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_huffman_string_with_bad_padding_or_eos_is_refused_in_a_block() {
    let mut decoder = Decoder::default();
    // C.4.1 with the last byte of `www.example.com` changed: `...f4 fe`.
    let block = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 fe");
    assert_eq!(
        decode(&mut decoder, &block),
        Err(HpackError::HuffmanPadding)
    );
    // A value of four bytes of ones: EOS (30 bits) then 2 bits.
    let block = [0x04, 0x84, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        decode(&mut Decoder::default(), &block),
        Err(HpackError::HuffmanEos)
    );
}

#[test]
fn table_size_updates_beyond_the_allowed_size_are_refused() {
    let mut decoder = Decoder::default();
    // 4097 before the SETTINGS are acknowledged: 4,096 applies.
    let mut block = Vec::new();
    encode_integer(4097, 5, 0x20, &mut block);
    block.push(0x82);
    assert_eq!(
        decode(&mut decoder, &block),
        Err(HpackError::TableSizeTooLarge {
            size: 4097,
            max_size: 4096
        })
    );
    // Once a larger size is allowed, the same update is taken.
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(65_536);
    assert_eq!(
        decode(&mut decoder, &block),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(decoder.table.max_size(), 4097);
}

#[test]
fn table_size_updates_after_a_field_are_refused() {
    let mut decoder = Decoder::default();
    assert_eq!(
        decode(&mut decoder, &[0x82, 0x20]),
        Err(HpackError::TableSizeUpdateNotAtStart)
    );
    let mut decoder = Decoder::default();
    assert_eq!(
        decode(&mut decoder, &[0x3f, 0xe1, 0x1f, 0x82, 0x3f, 0xe1, 0x1f]),
        Err(HpackError::TableSizeUpdateNotAtStart)
    );
}

#[test]
fn table_size_updates_at_the_start_evict_and_may_repeat() {
    let mut decoder = Decoder::default();
    decode(
        &mut decoder,
        &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .expect("C.2.1");
    assert_eq!(table(&decoder).1, 55);
    // To 0 (everything evicted), then back to 4,096, then a field.
    assert_eq!(
        decode(&mut decoder, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(table(&decoder), (vec![], 0));
    assert_eq!(decoder.table.max_size(), 4096);
    // A block of size updates only decodes to no field.
    assert_eq!(decode(&mut decoder, &[0x3f, 0x01]), Ok(vec![]));
    assert_eq!(decoder.table.max_size(), 32);
}

#[test]
fn a_smaller_allowed_size_requires_a_size_update_at_the_next_block() {
    let mut decoder = Decoder::default();
    decode(
        &mut decoder,
        &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .expect("C.2.1");
    // The acknowledged SETTINGS allow 40 bytes: the 55-byte entry is gone at once.
    decoder.set_max_table_size(40);
    assert_eq!(table(&decoder), (vec![], 0));
    assert_eq!(
        decode(&mut decoder, &[0x82]),
        Err(HpackError::TableSizeUpdateMissing)
    );
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(40);
    // An update to at most 40 satisfies the requirement; the table then works as usual.
    assert_eq!(
        decode(&mut decoder, &[0x3f, 0x09, 0x82]),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(
        decode(&mut decoder, &[0x82]),
        Ok(fields(&[(":method", "GET")]))
    );
    // Settings that only grow the allowed size require nothing.
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(65_536);
    assert_eq!(
        decode(&mut decoder, &[0x82]),
        Ok(fields(&[(":method", "GET")]))
    );
}

#[test]
fn the_smallest_of_two_settings_must_be_signalled() {
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(100);
    decoder.set_max_table_size(65_536);
    // An update to 4,096 alone does not confirm the passage through 100.
    let mut block = Vec::new();
    encode_integer(4096, 5, 0x20, &mut block);
    block.push(0x82);
    assert_eq!(
        decode(&mut decoder, &block),
        Err(HpackError::TableSizeUpdateMissing)
    );
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(100);
    decoder.set_max_table_size(65_536);
    let mut block = vec![0x3f, 0x45];
    encode_integer(4096, 5, 0x20, &mut block);
    block.push(0x82);
    assert_eq!(
        decode(&mut decoder, &block),
        Ok(fields(&[(":method", "GET")]))
    );
}

#[test]
fn an_entry_larger_than_the_table_empties_it_and_is_still_a_field() {
    let mut decoder = Decoder::default();
    decode(&mut decoder, &[0x41, 0x01, b'a']).expect("one entry");
    let value = vec![b'v'; 4096];
    let mut block = vec![0x41];
    encode_integer(value.len(), 7, 0, &mut block);
    block.extend_from_slice(&value);
    let fields = decode(&mut decoder, &block).expect("a large literal");
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].1.len(), 4096);
    assert_eq!(table(&decoder), (vec![], 0));
}

#[test]
fn a_literal_named_by_an_entry_it_evicts_keeps_the_name() {
    // A 64-byte table holds one entry: `x-name: 1` (6 + 1 + 32 = 39 bytes).
    let mut decoder = Decoder::default();
    decoder.set_max_table_size(64);
    let mut block = vec![0x3f, 0x21];
    block.extend_from_slice(&[0x40, 0x06]);
    block.extend_from_slice(b"x-name");
    block.extend_from_slice(&[0x01, b'1']);
    // The next literal names entry 62, which its insertion evicts.
    block.extend_from_slice(&[0x7e, 0x01, b'2']);
    assert_eq!(
        decode(&mut decoder, &block),
        Ok(fields(&[("x-name", "1"), ("x-name", "2")]))
    );
    assert_eq!(table(&decoder), (fields(&[("x-name", "2")]), 39));
}

#[test]
fn the_table_keeps_at_most_twice_its_size_in_bytes() {
    let mut decoder = Decoder::default();
    for index in 0..1_000u32 {
        let value = format!("value-{index}");
        let mut block = vec![0x40, 0x07];
        block.extend_from_slice(b"x-field");
        block.push(u8::try_from(value.len()).expect("short"));
        block.extend_from_slice(value.as_bytes());
        let decoded = decode(&mut decoder, &block).expect("a literal");
        assert_eq!(decoded, fields(&[("x-field", value.as_str())]));
        let (entries, size) = table(&decoder);
        assert!(size <= 4096);
        assert_eq!(
            entries.first().map(|entry| entry.1.as_str()),
            Some(value.as_str())
        );
        assert!(decoder.table.kept_bytes() <= 2 * 4096);
    }
}

/// What `loona-hpack`'s decoder makes of `block`: the fields it gave, and whether it
/// accepted the block.
fn reference(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> (Fields, bool) {
    let mut fields = Vec::new();
    let result = decoder.decode_with_cb(block, |name, value| {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        fields.push((text(&name), text(&value)));
    });
    (fields, result.is_ok())
}

/// Decodes `blocks` in order with both decoders, which must give the same fields or both
/// refuse, until a block is refused. Two rules of RFC 7541 §4.2 are applied by one
/// decoder only: a size update after a field is refused here, not by `loona-hpack`; a
/// block ending with a size update at its start is refused by `loona-hpack`, not here.
fn differential(blocks: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut ours = Decoder::default();
    let mut theirs = loona_hpack::Decoder::new();
    theirs.set_max_allowed_table_size(4096);
    for block in blocks {
        let decoded = decode(&mut ours, block);
        let (fields, is_accepted) = reference(&mut theirs, block);
        match decoded {
            Ok(decoded) if is_accepted => prop_assert_eq!(decoded, fields),
            Err(_) if !is_accepted => return Ok(()),
            Err(HpackError::TableSizeUpdateNotAtStart) => return Ok(()),
            Ok(decoded) => {
                let is_updates_only =
                    decoded.is_empty() && block.first().is_some_and(|&byte| byte & 0xe0 == 0x20);
                prop_assert!(is_updates_only, "only loona-hpack refused {:02x?}", block);
                return Ok(());
            }
            Err(error) => prop_assert!(false, "only we refused {:02x?}: {}", block, error),
        }
    }
    Ok(())
}

/// A string literal: its bytes, and whether it is Huffman-coded.
fn string(text: &[u8], is_huffman: bool, out: &mut Vec<u8>) {
    if is_huffman {
        let mut coded = Vec::new();
        huffman::encode(text, &mut coded);
        encode_integer(coded.len(), 7, 0x80, out);
        out.extend_from_slice(&coded);
    } else {
        encode_integer(text.len(), 7, 0, out);
        out.extend_from_slice(text);
    }
}

/// One representation of a generated block.
#[derive(Clone, Debug)]
enum Representation {
    Indexed(usize),
    /// Kind (0x40 incremental, 0x00 without indexing, 0x10 never indexed), name index
    /// (0: a literal name), name, value, whether the strings are Huffman-coded.
    Literal(u8, usize, Vec<u8>, Vec<u8>, bool),
    SizeUpdate(usize),
}

fn representation() -> impl Strategy<Value = Representation> {
    let text = proptest::collection::vec(
        prop_oneof![4 => proptest::char::range('a', 'z').prop_map(|c| c as u8), 1 => any::<u8>()],
        0..24,
    );
    prop_oneof![
        4 => (1usize..75).prop_map(Representation::Indexed),
        1 => Just(Representation::Indexed(0)),
        8 => (
            prop_oneof![Just(0x40u8), Just(0x00), Just(0x10)],
            prop_oneof![2 => Just(0usize), 1 => 1usize..75],
            text.clone(),
            text,
            any::<bool>()
        )
            .prop_map(|(kind, index, name, value, is_huffman)| {
                Representation::Literal(kind, index, name, value, is_huffman)
            }),
        1 => prop_oneof![0usize..200, 0usize..5000].prop_map(Representation::SizeUpdate),
    ]
}

fn encode_block(representations: &[Representation], cut: Option<usize>) -> Vec<u8> {
    let mut block = Vec::new();
    for representation in representations {
        match representation {
            Representation::Indexed(index) => encode_integer(*index, 7, 0x80, &mut block),
            Representation::Literal(kind, index, name, value, is_huffman) => {
                let prefix = if *kind == 0x40 { 6 } else { 4 };
                encode_integer(*index, prefix, *kind, &mut block);
                if *index == 0 {
                    string(name, *is_huffman, &mut block);
                }
                string(value, *is_huffman, &mut block);
            }
            Representation::SizeUpdate(size) => encode_integer(*size, 5, 0x20, &mut block),
        }
    }
    if let Some(cut) = cut {
        block.truncate(cut % (block.len() + 1));
    }
    block
}

proptest! {
    #[test]
    fn random_bytes_decode_as_loona_hpack_decodes_them(
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 1..4),
    ) {
        differential(&blocks)?;
    }

    #[test]
    fn encoded_blocks_decode_as_loona_hpack_decodes_them(
        blocks in proptest::collection::vec(
            (
                proptest::collection::vec(representation(), 0..12),
                proptest::option::weighted(0.1, any::<usize>()),
            ),
            1..6,
        ),
    ) {
        let blocks: Vec<Vec<u8>> = blocks
            .iter()
            .map(|(representations, cut)| encode_block(representations, *cut))
            .collect();
        differential(&blocks)?;
    }
}
