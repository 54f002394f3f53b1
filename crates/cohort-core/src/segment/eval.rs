//! Columnar evaluation of a plan into a [`Bitset`] of member rows.
//!
//! Every node is evaluated under a *mask*: the rows whose answer still matters. The result is
//! exact on the mask and empty outside it. `and` passes each child the rows the previous
//! children kept, `or` the rows not yet accepted, so the later conditions of a selective
//! segment only look at the few words that still have candidates; leaves skip every word whose
//! mask is zero.
//!
//! Cheap leaves (numbers, dates, dictionary codes) compute all 64 rows of a word in a
//! branch-free loop the compiler can unroll and vectorise, then AND with the validity and mask
//! words. Expensive leaves (free text, tag lists) visit only the masked rows of a word.

use super::compile::{FloatTest, Leaf, Plan, RangeSet, Ranges, Raw, TextTest, Validity};
use crate::bitset::Bitset;
use crate::features::{CategoryColumn, TagsColumn, TextColumn};
use crate::segment::ast::CmpOp;

/// The rows of `mask` for which `plan` holds; `segments[i]` holds the members of the set's
/// segment `i` for every segment the plan refers to.
pub(crate) fn eval(plan: &Plan<'_>, segments: &[Option<Bitset>], mask: &Bitset) -> Bitset {
    match plan {
        Plan::Leaf(leaf) => eval_leaf(leaf, mask),
        Plan::Segment(i) => {
            let members = segments.get(*i).and_then(Option::as_ref);
            debug_assert!(
                members.is_some(),
                "segment {i} evaluated before its dependency"
            );
            let mut out = members.cloned().unwrap_or_else(|| Bitset::new(mask.len()));
            out.and_with(mask);
            out
        }
        Plan::Not(child) => {
            let inner = eval(child, segments, mask);
            let mut out = mask.clone();
            out.and_not_with(&inner);
            out
        }
        Plan::And(children) => {
            let mut kept: Option<Bitset> = None;
            for child in children {
                let current = kept.as_ref().unwrap_or(mask);
                if kept.is_some() && is_none(current) {
                    break;
                }
                kept = Some(eval(child, segments, current));
            }
            kept.unwrap_or_else(|| mask.clone())
        }
        Plan::Or(children) => {
            let mut accepted = Bitset::new(mask.len());
            let mut open = mask.clone();
            for child in children {
                if is_none(&open) {
                    break;
                }
                let r = eval(child, segments, &open);
                open.and_not_with(&r);
                accepted.or_with(&r);
            }
            accepted
        }
    }
}

fn is_none(set: &Bitset) -> bool {
    set.words().iter().all(|&w| w == 0)
}

/// `f(word index, mask word) & mask word` for every non-empty mask word; zero elsewhere.
#[inline(always)]
fn by_word(mask: &Bitset, mut f: impl FnMut(usize, u64) -> u64) -> Bitset {
    let mut out = Bitset::new(mask.len());
    for (i, (o, &m)) in out.words_mut().iter_mut().zip(mask.words()).enumerate() {
        if m != 0 {
            *o = f(i, m) & m;
        }
    }
    out
}

/// The 64 (or fewer, at the end) values of word `i`.
#[inline(always)]
fn chunk<T>(values: &[T], i: usize) -> &[T] {
    let start = i * 64;
    &values[start..(start + 64).min(values.len())]
}

/// One bit per value (at most 64), low bit first.
#[inline(always)]
fn pack<T: Copy>(values: &[T], pred: impl Fn(T) -> bool) -> u64 {
    // Bytes first (a loop the compiler vectorises), then eight 0/1 bytes to eight bits with one
    // multiplication: byte j of the group lands on bit 56 + j of the product.
    let mut bytes = [[0u8; 8]; 8];
    if let Ok(full) = <&[T; 64]>::try_from(values) {
        for (b, &v) in bytes.as_flattened_mut().iter_mut().zip(full) {
            *b = u8::from(pred(v));
        }
    } else {
        for (b, &v) in bytes.as_flattened_mut().iter_mut().zip(values) {
            *b = u8::from(pred(v));
        }
    }
    let mut w = 0u64;
    for (k, group) in bytes.iter().enumerate() {
        w |= (u64::from_le_bytes(*group).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    w
}

/// Calls `f(row)` for each member row of mask word `m` of word `i`; sets the bits it accepts.
#[inline(always)]
fn per_row(i: usize, m: u64, mut f: impl FnMut(usize) -> bool) -> u64 {
    let mut w = 0u64;
    let mut bits = m;
    while bits != 0 {
        let bit = bits.trailing_zeros();
        if f(i * 64 + bit as usize) {
            w |= 1 << bit;
        }
        bits &= bits - 1;
    }
    w
}

fn flip(negated: bool) -> u64 {
    if negated { u64::MAX } else { 0 }
}

fn eval_leaf(leaf: &Leaf<'_>, mask: &Bitset) -> Bitset {
    match leaf {
        Leaf::Const(true) => mask.clone(),
        Leaf::Const(false) => Bitset::new(mask.len()),
        Leaf::Int(r) => ranges(r, mask),
        Leaf::Money(r) => ranges(r, mask),
        Leaf::Time(r) => ranges(r, mask),
        Leaf::Float { col, test } => {
            let (values, valid) = (&col.values, col.valid.words());
            let run = |pred: &dyn Fn(f64) -> bool| {
                by_word(mask, |i, _| pack(chunk(values, i), pred) & valid[i])
            };
            match test {
                FloatTest::Cmp(op, x) => {
                    let x = *x;
                    match op {
                        CmpOp::Eq => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v == x) & valid[i])
                        }
                        CmpOp::Ne => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v != x) & valid[i])
                        }
                        CmpOp::Lt => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v < x) & valid[i])
                        }
                        CmpOp::Le => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v <= x) & valid[i])
                        }
                        CmpOp::Gt => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v > x) & valid[i])
                        }
                        CmpOp::Ge => {
                            by_word(mask, |i, _| pack(chunk(values, i), |v| v >= x) & valid[i])
                        }
                    }
                }
                FloatTest::Between(lo, hi) => {
                    let (lo, hi) = (*lo, *hi);
                    by_word(mask, |i, _| {
                        pack(chunk(values, i), |v| lo <= v && v <= hi) & valid[i]
                    })
                }
                FloatTest::In {
                    values: list,
                    negated,
                } => {
                    let negated = *negated;
                    run(&|v| list.contains(&v) != negated)
                }
            }
        }
        Leaf::Bool {
            col,
            accept_true,
            accept_false,
        } => {
            let (values, valid) = (col.values.words(), col.valid.words());
            let (t, f) = (flip(*accept_true), flip(*accept_false));
            by_word(mask, |i, _| ((values[i] & t) | (!values[i] & f)) & valid[i])
        }
        Leaf::Category { col, codes } => category(col, codes, mask),
        Leaf::Text { col, test, negated } => text(col, test, *negated, mask),
        Leaf::Tags { col, code, negated } => tags(col, *code, *negated, mask),
        Leaf::Null { valid, negated } => {
            let negated = *negated;
            match valid {
                Validity::Bits(bits) => {
                    let words = bits.words();
                    by_word(mask, |i, _| words[i] ^ flip(!negated))
                }
                Validity::Bools(bools) => {
                    by_word(mask, |i, _| pack(chunk(bools, i), |b| b == negated))
                }
                Validity::Always if negated => mask.clone(),
                Validity::Always => Bitset::new(mask.len()),
            }
        }
    }
}

fn ranges<T: Raw>(r: &Ranges<'_, T>, mask: &Bitset) -> Bitset {
    let (values, valid) = (&r.col.values, r.col.valid.words());
    let flip = flip(r.negated);
    match &r.set {
        RangeSet::Empty => by_word(mask, |i, _| flip & valid[i]),
        &RangeSet::One { lo, width } => by_word(mask, |i, _| {
            // One unsigned comparison tests `lo <= v <= lo + width`.
            let hits = pack(chunk(values, i), |v| {
                (v.raw().wrapping_sub(lo) as u64) <= width
            });
            (hits ^ flip) & valid[i]
        }),
        RangeSet::Many(list) => by_word(mask, |i, _| {
            let hits = pack(chunk(values, i), |v| {
                let v = v.raw();
                list.iter().any(|&(lo, hi)| lo <= v && v <= hi)
            });
            (hits ^ flip) & valid[i]
        }),
    }
}

fn category(col: &CategoryColumn, codes: &[u64], mask: &Bitset) -> Bitset {
    let (rows, valid) = (&col.codes, col.valid.words());
    match codes {
        // Up to 64 distinct values (countries, genders, tiers): the whole test is one word.
        [] => Bitset::new(mask.len()),
        [table] => {
            let table = *table;
            by_word(mask, |i, _| {
                pack(chunk(rows, i), |c| (table >> (c & 63)) & 1 == 1) & valid[i]
            })
        }
        _ => by_word(mask, |i, _| {
            let hits = pack(chunk(rows, i), |c| {
                codes
                    .get(c as usize / 64)
                    .is_some_and(|w| (w >> (c % 64)) & 1 == 1)
            });
            hits & valid[i]
        }),
    }
}

fn text(col: &TextColumn, test: &TextTest, negated: bool, mask: &Bitset) -> Bitset {
    let (bytes, offsets) = (col.bytes.as_bytes(), &col.offsets);
    by_word(mask, |i, m| {
        per_row(i, m, |row| {
            if !col.valid[row] {
                return false;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let value = &bytes[start..end];
            let hit = if value.is_ascii() {
                test.matches_ascii(value)
            } else {
                test.matches(&col.bytes[start..end].to_lowercase())
            };
            hit != negated
        })
    })
}

/// Words of tag positions a word's rows may span for the branch-free path (four tags a row on
/// average); busier words take the scanning path.
const TAG_WORDS: usize = 4;

fn tags(col: &TagsColumn, code: u32, negated: bool, mask: &Bitset) -> Bitset {
    let (offsets, codes) = (&col.offsets, &col.codes);
    let rows = mask.len();
    by_word(mask, |i, _| {
        // The tags of a word's rows are contiguous. Mark the positions holding the code, then
        // a row has the tag when the count of marks before its end exceeds the count before
        // its start: popcounts, no data-dependent branches.
        let first = i * 64;
        let offs = &offsets[first..=(first + 64).min(rows)];
        let start = offs[0] as usize;
        let span = &codes[start..offs[offs.len() - 1] as usize];
        let mut w = 0u64;
        if span.len() < TAG_WORDS * 64 {
            let mut hits = [0u64; TAG_WORDS];
            let mut before = [0u32; TAG_WORDS];
            for (j, chunk) in span.chunks(64).enumerate() {
                hits[j] = pack(chunk, |c| c == code);
            }
            for j in 1..TAG_WORDS {
                before[j] = before[j - 1] + hits[j - 1].count_ones();
            }
            let marks_before = |p: usize| {
                let (j, bit) = (p / 64, p % 64);
                before[j] + (hits[j] & ((1u64 << bit) - 1)).count_ones()
            };
            let mut prev = 0;
            for (r, &end) in offs[1..].iter().enumerate() {
                let next = marks_before(end as usize - start);
                w |= u64::from(next > prev) << r;
                prev = next;
            }
        } else {
            let mut row = 0;
            for (k, &c) in span.iter().enumerate() {
                if c == code {
                    while (offs[row + 1] as usize) <= start + k {
                        row += 1;
                    }
                    w |= 1 << row;
                }
            }
        }
        w ^ flip(negated)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Nullable;

    #[test]
    fn results_are_empty_outside_the_mask() {
        let col = Nullable::from_options((0..200).map(|i| (i % 7 != 0).then_some(i64::from(i))));
        let leaf = Leaf::Int(Ranges {
            col: &col,
            set: RangeSet::One { lo: 10, width: 100 },
            negated: true,
        });
        let mask = Bitset::from_fn(200, |r| r % 3 == 0);
        let got = eval_leaf(&leaf, &mask);
        let want = Bitset::from_fn(200, |r| {
            r % 3 == 0 && r % 7 != 0 && !(10..=110).contains(&r)
        });
        assert_eq!(got, want);
    }

    #[test]
    fn ascii_text_is_compared_without_copying_but_the_same_way() {
        let tests = [
            TextTest::Equals(vec!["us".into(), "zürich".into()]),
            TextTest::StartsWith("ann@".into()),
            TextTest::EndsWith("@x.io".into()),
            TextTest::Contains("e.c".into()),
            TextTest::Contains(String::new()),
        ];
        for value in [
            "US",
            "uS ",
            "Ann@Example.com",
            "ANN@",
            "bob@X.IO",
            "@x.io",
            "",
            "x",
        ] {
            for test in &tests {
                assert_eq!(
                    test.matches_ascii(value.as_bytes()),
                    test.matches(&value.to_lowercase()),
                    "{test:?} on {value:?}"
                );
            }
        }
    }
}
