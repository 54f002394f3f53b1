//! Which record ids a file has shown so far, and on which line: to keep the first of two
//! records with one id and name both lines when skipping the second.
//!
//! It must stay cheap for files of millions of rows. Exports usually number their records
//! `1, 2, 3…` in file order, so canonical decimal ids are kept as runs (`ids 1..=N on lines
//! 2..=N+1` is one entry) and a new row usually costs a parse and a comparison. Any other id is
//! kept as a 64-bit hash (xxh3) with its line: no id text is stored. Two different ids that
//! share a hash (about one chance in 10^7 for ten million ids) would be reported as a duplicate;
//! that is the price of not keeping every id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64;

/// Ids seen in one file (or one part of it), with the line of each.
#[derive(Debug, Default, Clone)]
pub struct SeenIds {
    /// Canonical decimal ids, in increasing and disjoint runs; every id in them is below
    /// `runs_end`.
    runs: Vec<Run>,
    /// Canonical decimal ids below `runs_end` when they came: number → line.
    numbers: HashMap<u64, u64, Mixed>,
    /// Every other id: hash → line.
    others: HashMap<u64, u64, Mixed>,
}

/// `len` consecutive ids from `first_id`, on consecutive lines from `first_line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first_id: u64,
    first_line: u64,
    len: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.first_id + self.len
    }

    fn line_of(&self, id: u64) -> Option<u64> {
        (self.first_id..self.end())
            .contains(&id)
            .then(|| self.first_line + (id - self.first_id))
    }
}

/// An id as [`SeenIds`] keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Number(u64),
    Hash(u64),
}

fn key(id: &str) -> Key {
    match canonical_number(id) {
        Some(n) => Key::Number(n),
        None => Key::Hash(xxh3_64(id.as_bytes())),
    }
}

/// `id` as a number when it is written the one way that number is written (`7`, not `07`,
/// `+7` or `7.0`), so that equal numbers are equal ids and nothing else is.
fn canonical_number(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > 19 || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

impl SeenIds {
    /// Nothing seen yet.
    pub fn new() -> SeenIds {
        SeenIds::default()
    }

    /// Records `id` on `line`; if it was seen before, returns the line it was first seen on
    /// and records nothing.
    pub fn insert(&mut self, id: &str, line: u64) -> Result<(), u64> {
        match key(id) {
            Key::Number(n) => self.insert_number(n, line),
            Key::Hash(h) => match self.others.entry(h) {
                std::collections::hash_map::Entry::Occupied(first) => Err(*first.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(line);
                    Ok(())
                }
            },
        }
    }

    fn insert_number(&mut self, n: u64, line: u64) -> Result<(), u64> {
        if let Some(last) = self.runs.last_mut()
            && n == last.end()
            && line == last.first_line + last.len
        {
            last.len += 1;
            return Ok(());
        }
        // Runs and `numbers` only hold ids below the runs' end: anything at or above it is new.
        if n >= self.runs.last().map_or(0, Run::end) {
            self.runs.push(Run {
                first_id: n,
                first_line: line,
                len: 1,
            });
            return Ok(());
        }
        if let Some(first) = self.number_line(n) {
            return Err(first);
        }
        self.numbers.insert(n, line);
        Ok(())
    }

    fn number_line(&self, n: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.end() <= n);
        self.runs
            .get(i)
            .and_then(|r| r.line_of(n))
            .or_else(|| self.numbers.get(&n).copied())
    }

    fn line_of(&self, key: Key) -> Option<u64> {
        match key {
            Key::Number(n) => self.number_line(n),
            Key::Hash(h) => self.others.get(&h).copied(),
        }
    }

    /// The line `id` was first seen on, if it was.
    pub fn line_of_id(&self, id: &str) -> Option<u64> {
        self.line_of(key(id))
    }

    /// Every id of `self` that `earlier` has too: `(line here, line in earlier)`, in no
    /// particular order. For a file read in parts, `earlier` being the parts before this one.
    pub fn also_in(&self, earlier: &SeenIds) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        // Runs against runs by overlap, never id by id: two parts of a numbered file have a
        // run each, with millions of ids.
        for r in &self.runs {
            let i = earlier.runs.partition_point(|e| e.end() <= r.first_id);
            for e in earlier.runs[i..]
                .iter()
                .take_while(|e| e.first_id < r.end())
            {
                let (from, to) = (r.first_id.max(e.first_id), r.end().min(e.end()));
                for id in from..to {
                    out.push((
                        r.first_line + (id - r.first_id),
                        e.first_line + (id - e.first_id),
                    ));
                }
            }
        }
        for (&n, &first) in &earlier.numbers {
            let i = self.runs.partition_point(|r| r.end() <= n);
            if let Some(here) = self.runs.get(i).and_then(|r| r.line_of(n)) {
                out.push((here, first));
            }
        }
        for (&n, &here) in &self.numbers {
            if let Some(first) = earlier.number_line(n) {
                out.push((here, first));
            }
        }
        for (&h, &here) in &self.others {
            if let Some(&first) = earlier.others.get(&h) {
                out.push((here, first));
            }
        }
        out
    }
}

/// A hasher for keys that are numbers in sequence or already hashes: one folded multiply,
/// so both the low bits (the bucket) and the high bits (the tag) vary.
#[derive(Debug, Default, Clone, Copy)]
struct Mix(u64);

type Mixed = BuildHasherDefault<Mix>;

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let m = u128::from(x ^ self.0) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_id_names_the_first_line_in_every_representation() {
        let mut s = SeenIds::new();
        // A numbered run, a gap, a step back, and ids that only look numeric.
        for (id, line) in [
            ("1", 2),
            ("2", 3),
            ("3", 4),
            ("10", 6),
            ("5", 7),
            ("007", 8),
        ] {
            assert_eq!(s.insert(id, line), Ok(()), "{id}");
        }
        assert_eq!(s.insert("2", 9), Err(3), "in a run");
        assert_eq!(s.insert("10", 10), Err(6), "a run of one");
        assert_eq!(s.insert("5", 11), Err(7), "below the runs");
        assert_eq!(s.insert("007", 12), Err(8), "hashed");
        assert_eq!(s.insert("7", 13), Ok(()), "7 is not 007");
        assert_eq!(s.insert("abc", 14), Ok(()));
        assert_eq!(s.insert("abc", 15), Err(14));
        assert_eq!(s.insert("4", 16), Ok(()), "a gap below the runs' end");
        assert_eq!(s.insert("4", 17), Err(16));
        assert_eq!(s.insert("11", 18), Ok(()));
        assert_eq!(s.insert("11", 19), Err(18), "at the runs' end");
    }

    #[test]
    fn parts_of_a_file_find_the_ids_they_share() {
        let (mut a, mut b) = (SeenIds::new(), SeenIds::new());
        for i in 1..=1000u64 {
            a.insert(&i.to_string(), i + 1).expect("new");
        }
        a.insert("x", 1002).expect("new");
        a.insert("2000", 1003).expect("new");
        a.insert("1500", 1004).expect("new");
        for i in 995..=1005u64 {
            b.insert(&i.to_string(), i + 100).expect("new");
        }
        b.insert("x", 2000).expect("new");
        b.insert("1500", 2001).expect("new");
        let mut got = b.also_in(&a);
        got.sort_unstable();
        let mut want: Vec<(u64, u64)> = (995..=1000).map(|i| (i + 100, i + 1)).collect();
        want.push((2000, 1002));
        want.push((2001, 1004));
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
