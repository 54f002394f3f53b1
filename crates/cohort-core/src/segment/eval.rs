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

/// One bit per value, low bit first.
#[inline(always)]
fn pack<T: Copy>(values: &[T], pred: impl Fn(T) -> bool) -> u64 {
    // A fixed length lets the compiler unroll and vectorise the full words.
    if let Ok(full) = <&[T; 64]>::try_from(values) {
        let mut w = 0u64;
        for (bit, &v) in full.iter().enumerate() {
            w |= u64::from(pred(v)) << bit;
        }
        return w;
    }
    let mut w = 0u64;
    for (bit, &v) in values.iter().enumerate() {
        w |= u64::from(pred(v)) << bit;
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

/// `s` lower-cased, without allocating when it already is.
fn lower<'a>(s: &'a str, buf: &'a mut String) -> &'a str {
    if s.is_ascii() {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return s;
        }
        buf.clear();
        buf.push_str(s);
        buf.make_ascii_lowercase();
    } else {
        *buf = s.to_lowercase();
    }
    buf
}

fn text(col: &TextColumn, test: &TextTest, negated: bool, mask: &Bitset) -> Bitset {
    let mut buf = String::new();
    by_word(mask, |i, m| {
        per_row(i, m, |row| match col.get(row) {
            Some(s) => test.matches(lower(s, &mut buf)) != negated,
            None => false,
        })
    })
}

fn tags(col: &TagsColumn, code: u32, negated: bool, mask: &Bitset) -> Bitset {
    by_word(mask, |i, m| {
        per_row(i, m, |row| {
            col.row(row).binary_search(&code).is_ok() != negated
        })
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
    fn lowercasing_borrows_when_it_can() {
        let mut buf = String::new();
        assert_eq!(lower("abc", &mut buf), "abc");
        assert!(buf.is_empty());
        assert_eq!(lower("AbC", &mut buf), "abc");
        assert_eq!(lower("ZÜRICH", &mut buf), "zürich");
    }
}
