//! One person across sources: which customer records are the same person, under an id that
//! stays put from run to run.
//!
//! Rules (docs/identity.md has them with examples):
//!
//! - **Matching.** Records from any sources that share a normalised email (trimmed,
//!   lower-cased) or, when configured, a normalised phone (E.164: `+` and digits) are one
//!   person. Matching is transitive: A shares an email with B, B a phone with C, so A, B and C
//!   are one person.
//! - **Stable ids.** A person keeps its id when records join it or change. When persons merge,
//!   the one holding most of the merged records keeps its id (ties: the oldest id) and the
//!   others are retired into it. When a person splits (a link broke: an email changed), the
//!   part holding most of its records keeps the id (ties: the part whose first record sorts
//!   first); every other part gets a new id.
//! - **Profile.** Each field comes from the first source of the workspace's `prefer` list that
//!   has a value for it (sources not listed come after, by name); consent is the most
//!   restrictive of the person's records: a withdrawal in any source wins.
//!
//! Everything here is pure and deterministic: the result does not depend on the order records
//! are given in, and resolving the same records again with the ids it gave changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::record::{AttributeValue, Customer, CustomerId};

/// Where a customer record comes from: its source and its id there.
pub type RecordKey = (String, String);

/// What identity matches records on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchOn {
    /// Normalised email.
    pub email: bool,
    /// Normalised phone (E.164).
    pub phone: bool,
}

/// A customer record, as identity sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The source it comes from.
    pub source: &'a str,
    /// Its id in that source.
    pub id: &'a str,
    /// Its email, as written.
    pub email: Option<&'a str>,
    /// Its phone, as written.
    pub phone: Option<&'a str>,
}

/// An email as matched: trimmed and lower-cased; `None` when it is not an address.
pub fn normalize_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some(e)
}

/// A phone as matched: `+` and digits only (spaces, dashes, dots and parentheses dropped);
/// `None` with fewer than 7 digits. A number without its country code matches only numbers
/// written the same way: Cohort does not guess countries.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let trimmed = phone.trim();
    let plus = trimmed.starts_with('+') || trimmed.starts_with("00");
    let digits: String = trimmed
        .trim_start_matches('+')
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let digits = if trimmed.starts_with("00") {
        digits.trim_start_matches("00").to_owned()
    } else {
        digits
    };
    (digits.len() >= 7).then(|| if plus { format!("+{digits}") } else { digits })
}

/// What [`resolve`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The person of every record.
    pub person_of: BTreeMap<RecordKey, CustomerId>,
    /// The records of each person, sorted.
    pub members: BTreeMap<CustomerId, Vec<RecordKey>>,
    /// Persons that merged into another: `(retired, survivor)`.
    pub merged: Vec<(CustomerId, CustomerId)>,
    /// Persons that split: `(kept, parts that got new ids)`.
    pub split: Vec<(CustomerId, Vec<CustomerId>)>,
}

/// The number in a person id (`p-12`), which grows with each id handed out.
fn serial(id: &CustomerId) -> Option<u64> {
    id.as_str().strip_prefix("p-")?.parse().ok()
}

/// Orders person ids oldest first: `p-9` before `p-10`.
fn id_order(a: &CustomerId, b: &CustomerId) -> std::cmp::Ordering {
    match (serial(a), serial(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_str().cmp(b.as_str()),
    }
}

/// The id of the `n`th person of a workspace.
pub fn person_id(n: u64) -> CustomerId {
    CustomerId::new(format!("p-{n}"))
}

/// Groups `records` into persons; `previous` is each record's person as last resolved, and
/// `new_id` hands out an id for a person never seen (called in a deterministic order).
pub fn resolve(
    records: &[RecordRef<'_>],
    on: MatchOn,
    previous: &HashMap<RecordKey, CustomerId>,
    mut new_id: impl FnMut() -> CustomerId,
) -> Resolution {
    // Records in key order, so that everything below is independent of the input's order.
    let mut keyed: Vec<(RecordKey, &RecordRef<'_>)> = records
        .iter()
        .map(|r| ((r.source.to_owned(), r.id.to_owned()), r))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);

    // Union-find over records, joined through each normalised key they share.
    let mut parent: Vec<usize> = (0..keyed.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with: HashMap<String, usize> = HashMap::new();
    for (i, (_, r)) in keyed.iter().enumerate() {
        let mut keys = Vec::new();
        if on.email
            && let Some(e) = r.email.and_then(normalize_email)
        {
            keys.push(format!("e:{e}"));
        }
        if on.phone
            && let Some(p) = r.phone.and_then(normalize_phone)
        {
            keys.push(format!("p:{p}"));
        }
        for key in keys {
            match first_with.get(&key) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    // The smaller index is the root: groups are named by their first record.
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    first_with.insert(key, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..keyed.len() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();

    // Each earlier person claims the group holding most of its records (ties: the group that
    // sorts first).
    let mut counts: BTreeMap<CustomerId, BTreeMap<usize, usize>> = BTreeMap::new();
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            if let Some(p) = previous.get(&keyed[i].0) {
                *counts.entry(p.clone()).or_default().entry(g).or_default() += 1;
            }
        }
    }
    let mut claims: BTreeMap<usize, Vec<(CustomerId, usize)>> = BTreeMap::new();
    for (person, by_group) in &counts {
        let (&group, &n) = by_group
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .expect("a counted person has a group");
        claims.entry(group).or_default().push((person.clone(), n));
    }

    let mut out = Resolution::default();
    let mut kept: BTreeMap<CustomerId, CustomerId> = BTreeMap::new();
    let mut ids: Vec<CustomerId> = Vec::with_capacity(groups.len());
    for (g, _) in groups.iter().enumerate() {
        let id = match claims.get_mut(&g) {
            None => new_id(),
            Some(claimants) => {
                // Most records first, then the oldest id.
                claimants.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| id_order(&a.0, &b.0)));
                let survivor = claimants[0].0.clone();
                for (retired, _) in &claimants[1..] {
                    out.merged.push((retired.clone(), survivor.clone()));
                }
                kept.insert(survivor.clone(), survivor.clone());
                survivor
            }
        };
        ids.push(id);
    }
    // Parts of an earlier person that did not keep its id: split off under their new ids.
    let mut parts: BTreeMap<CustomerId, BTreeSet<CustomerId>> = BTreeMap::new();
    for (person, by_group) in &counts {
        for &g in by_group.keys() {
            if ids[g] != *person && !kept.contains_key(&ids[g]) {
                parts
                    .entry(person.clone())
                    .or_default()
                    .insert(ids[g].clone());
            }
        }
    }
    out.split = parts
        .into_iter()
        .map(|(person, new)| (person, new.into_iter().collect()))
        .collect();
    for (g, members) in groups.iter().enumerate() {
        let keys: Vec<RecordKey> = members.iter().map(|&i| keyed[i].0.clone()).collect();
        for key in &keys {
            out.person_of.insert(key.clone(), ids[g].clone());
        }
        out.members.insert(ids[g].clone(), keys);
    }
    out
}

/// Where an order or an event of a source record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// For this person.
    Person(&'a CustomerId),
    /// For no one: an order from a source whose orders do not count (`order_sources`).
    NotCounted,
    /// The record names a customer no source holds (or one id several sources hold for
    /// different persons, from a source that holds none of them).
    Unknown,
}

/// Routes the orders and events of source records to persons.
#[derive(Debug, Clone)]
pub struct Routes<'r> {
    /// Each source's records and their persons.
    by_source: HashMap<&'r str, HashMap<&'r str, &'r CustomerId>>,
    /// Each raw customer id, with its person when every source holding it agrees.
    by_id: HashMap<&'r str, Option<&'r CustomerId>>,
    order_sources: BTreeSet<String>,
}

impl<'r> Routes<'r> {
    /// Routes for `resolution`; `order_sources` names the sources whose orders count (empty:
    /// every source's).
    pub fn new(resolution: &'r Resolution, order_sources: &[String]) -> Routes<'r> {
        let mut by_source: HashMap<&str, HashMap<&str, &CustomerId>> = HashMap::new();
        let mut by_id: HashMap<&str, Option<&CustomerId>> = HashMap::new();
        for ((source, id), person) in &resolution.person_of {
            by_source
                .entry(source.as_str())
                .or_default()
                .insert(id.as_str(), person);
            by_id
                .entry(id.as_str())
                .and_modify(|p| {
                    if *p != Some(person) {
                        *p = None;
                    }
                })
                .or_insert(Some(person));
        }
        Routes {
            by_source,
            by_id,
            order_sources: order_sources.iter().cloned().collect(),
        }
    }

    /// The person an order of `source` for `customer_id` counts for.
    pub fn order(&self, source: &str, customer_id: &str) -> Route<'r> {
        if !self.order_sources.is_empty() && !self.order_sources.contains(source) {
            return Route::NotCounted;
        }
        self.event(source, customer_id)
    }

    /// The person an event of `source` for `customer_id` counts for: the record of that id in
    /// the same source, or, for a source that holds no customers of that id (an orders-only
    /// export), the one person holding it elsewhere.
    pub fn event(&self, source: &str, customer_id: &str) -> Route<'r> {
        if let Some(p) = self.by_source.get(source).and_then(|m| m.get(customer_id)) {
            return Route::Person(p);
        }
        match self.by_id.get(customer_id) {
            Some(Some(p)) => Route::Person(p),
            _ => Route::Unknown,
        }
    }
}

/// The profile of every person of `resolution`, in person order; `records` are the resolved
/// records as `(source, record)`.
pub fn profiles(
    resolution: &Resolution,
    records: &[(String, Customer)],
    prefer: &[String],
) -> Vec<Profile> {
    let mut by_key: HashMap<(&str, &str), &Customer> = HashMap::with_capacity(records.len());
    for (source, c) in records {
        by_key.entry((source.as_str(), c.id.as_str())).or_insert(c);
    }
    resolution
        .members
        .iter()
        .map(|(person, keys)| {
            let mine: Vec<(&str, &Customer)> = keys
                .iter()
                .filter_map(|(s, id)| {
                    by_key
                        .get(&(s.as_str(), id.as_str()))
                        .map(|c| (s.as_str(), *c))
                })
                .collect();
            merge(person, &mine, prefer)
        })
        .collect()
}

/// A person's profile: their records' fields merged by source preference, and which source
/// each field came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The merged record, under the person's id.
    pub customer: Customer,
    /// For each field set, the source it came from (consent: every source that withheld it,
    /// or all of them).
    pub provenance: BTreeMap<String, String>,
}

/// Merges the records of person `id`. `records` are `(source, record)`; `prefer` ranks
/// sources (unlisted ones come after, by name). Consent is given only if every record gives
/// it; tags are the union of all records'.
pub fn merge(id: &CustomerId, records: &[(&str, &Customer)], prefer: &[String]) -> Profile {
    let rank = |source: &str| {
        prefer
            .iter()
            .position(|p| p == source)
            .unwrap_or(prefer.len())
    };
    let mut ordered: Vec<&(&str, &Customer)> = records.iter().collect();
    ordered.sort_by(|a, b| {
        rank(a.0)
            .cmp(&rank(b.0))
            .then_with(|| a.0.cmp(b.0))
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    let mut c = Customer::new(id.as_str());
    let mut provenance = BTreeMap::new();
    macro_rules! first {
        ($field:ident) => {
            if let Some((source, v)) = ordered
                .iter()
                .find_map(|(s, r)| r.$field.clone().map(|v| (*s, v)))
            {
                c.$field = Some(v);
                provenance.insert(stringify!($field).to_owned(), source.to_owned());
            }
        };
    }
    first!(email);
    first!(phone);
    first!(first_name);
    first!(last_name);
    first!(country);
    first!(region);
    first!(city);
    first!(postal_code);
    first!(birth_date);
    first!(birth_year);
    first!(gender);
    // Earliest creation, latest change: what the person did, whichever source saw it.
    c.created_at = ordered.iter().filter_map(|(_, r)| r.created_at).min();
    c.updated_at = ordered.iter().filter_map(|(_, r)| r.updated_at).max();
    let mut tags = BTreeSet::new();
    for (_, r) in &ordered {
        tags.extend(r.tags.iter().cloned());
    }
    c.tags = tags.into_iter().collect();
    let mut attributes: BTreeMap<String, AttributeValue> = BTreeMap::new();
    for (source, r) in ordered.iter().rev() {
        for (k, v) in &r.attributes {
            attributes.insert(k.clone(), v.clone());
            provenance.insert(format!("attributes.{k}"), (*source).to_owned());
        }
    }
    c.attributes = attributes;
    // Consent is the most restrictive of the records: a withdrawal anywhere wins.
    c.accepts_email_marketing = ordered.iter().all(|(_, r)| r.accepts_email_marketing);
    c.accepts_sms_marketing = ordered.iter().all(|(_, r)| r.accepts_sms_marketing);
    let withheld: Vec<&str> = ordered
        .iter()
        .filter(|(_, r)| !r.accepts_email_marketing)
        .map(|(s, _)| *s)
        .collect();
    provenance.insert(
        "accepts_email_marketing".to_owned(),
        if withheld.is_empty() {
            "every source".to_owned()
        } else {
            format!("withheld by {}", withheld.join(", "))
        },
    );
    Profile {
        customer: c,
        provenance,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;
    use crate::features::FeatureBuilder;
    use crate::money::Money;
    use crate::record::{Order, OrderFacts};
    use crate::segment::{SegmentDef, SegmentSet};
    use crate::time::{AsOf, Timestamp};

    const EMAIL: MatchOn = MatchOn {
        email: true,
        phone: false,
    };
    const BOTH: MatchOn = MatchOn {
        email: true,
        phone: true,
    };

    fn rec<'a>(source: &'a str, id: &'a str, email: &'a str, phone: &'a str) -> RecordRef<'a> {
        RecordRef {
            source,
            id,
            email: (!email.is_empty()).then_some(email),
            phone: (!phone.is_empty()).then_some(phone),
        }
    }

    /// Hands out `p-N` from `next` on, counting.
    fn ids(next: &mut u64) -> impl FnMut() -> CustomerId + '_ {
        move || {
            let id = person_id(*next);
            *next += 1;
            id
        }
    }

    fn person<'r>(r: &'r Resolution, source: &str, id: &str) -> &'r str {
        r.person_of[&(source.to_owned(), id.to_owned())].as_str()
    }

    fn previous(r: &Resolution) -> HashMap<RecordKey, CustomerId> {
        r.person_of
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn emails_match_trimmed_and_lower_cased_and_phones_as_digits_with_their_plus() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(normalize_email("not an address"), None);
        assert_eq!(normalize_email("@example.com"), None);
        assert_eq!(
            normalize_phone("+1 (555) 010-0100").as_deref(),
            Some("+15550100100")
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0000").as_deref(),
            Some("+442079460000")
        );
        assert_eq!(
            normalize_phone("555.010.0100").as_deref(),
            Some("5550100100"),
            "no country is guessed"
        );
        assert_eq!(normalize_phone("12-34"), None);
    }

    #[test]
    fn matching_is_transitive_across_emails_and_phones() {
        let records = [
            rec("shop", "42", "ann@example.com", ""),
            rec("crm", "901", "ANN@example.com", "+1 555 010 0100"),
            rec("news", "7", "", "+15550100100"),
            rec("news", "8", "bob@example.com", ""),
        ];
        let mut next = 1;
        let r = resolve(&records, BOTH, &HashMap::new(), ids(&mut next));
        assert_eq!(person(&r, "shop", "42"), person(&r, "news", "7"));
        assert_eq!(person(&r, "crm", "901"), person(&r, "shop", "42"));
        assert_ne!(person(&r, "news", "8"), person(&r, "shop", "42"));
        assert_eq!(r.members.len(), 2);

        // Without phone matching, the newsletter's record 7 stands alone.
        let mut next = 1;
        let r = resolve(&records, EMAIL, &HashMap::new(), ids(&mut next));
        assert_eq!(r.members.len(), 3);
        assert_ne!(person(&r, "news", "7"), person(&r, "shop", "42"));
    }

    #[test]
    fn a_record_joining_a_person_keeps_the_person_id() {
        let mut next = 1;
        let first = resolve(
            &[rec("shop", "42", "ann@example.com", "")],
            EMAIL,
            &HashMap::new(),
            ids(&mut next),
        );
        let ann = person(&first, "shop", "42").to_owned();
        let records = [
            rec("shop", "42", "ann@example.com", ""),
            rec("crm", "901", "ann@example.com", ""),
        ];
        let second = resolve(&records, EMAIL, &previous(&first), ids(&mut next));
        assert_eq!(person(&second, "crm", "901"), ann);
        assert_eq!(person(&second, "shop", "42"), ann);
        assert!(second.merged.is_empty() && second.split.is_empty());
        assert_eq!(next, 2, "no id was handed out");
    }

    #[test]
    fn in_a_merge_the_person_with_most_records_keeps_its_id_then_the_oldest() {
        let mut next = 1;
        let before = [
            rec("shop", "1", "ann@example.com", ""),
            rec("crm", "1", "ann@example.com", ""),
            rec("news", "1", "", "+15550100100"),
        ];
        let first = resolve(&before, BOTH, &HashMap::new(), ids(&mut next));
        let ann = person(&first, "shop", "1").to_owned();
        let phone = person(&first, "news", "1").to_owned();
        assert_ne!(ann, phone);
        // The CRM record now carries the phone too: the two persons are one.
        let after = [
            rec("shop", "1", "ann@example.com", ""),
            rec("crm", "1", "ann@example.com", "+15550100100"),
            rec("news", "1", "", "+15550100100"),
        ];
        let r = resolve(&after, BOTH, &previous(&first), ids(&mut next));
        assert_eq!(
            r.merged,
            vec![(CustomerId::new(phone), CustomerId::new(&ann))]
        );
        assert_eq!(person(&r, "news", "1"), ann);

        // One record each: the older id survives, whichever sorts first as text.
        let mut prev = HashMap::new();
        prev.insert(("a".to_owned(), "1".to_owned()), person_id(10));
        prev.insert(("b".to_owned(), "1".to_owned()), person_id(9));
        let two = [rec("a", "1", "x@y.z", ""), rec("b", "1", "x@y.z", "")];
        let r = resolve(&two, EMAIL, &prev, ids(&mut next));
        assert_eq!(r.merged, vec![(person_id(10), person_id(9))]);
    }

    #[test]
    fn a_broken_link_splits_and_the_larger_part_keeps_the_id() {
        let mut next = 1;
        let before = [
            rec("shop", "1", "ann@example.com", ""),
            rec("crm", "1", "ann@example.com", ""),
            rec("crm", "2", "ann@example.com", ""),
        ];
        let first = resolve(&before, EMAIL, &HashMap::new(), ids(&mut next));
        let ann = person(&first, "shop", "1").to_owned();
        // The shop's record changes its email: it leaves the two CRM records.
        let after = [
            rec("shop", "1", "ann@new.example", ""),
            rec("crm", "1", "ann@example.com", ""),
            rec("crm", "2", "ann@example.com", ""),
        ];
        let r = resolve(&after, EMAIL, &previous(&first), ids(&mut next));
        assert_eq!(
            person(&r, "crm", "1"),
            ann,
            "two records of three keep the id"
        );
        let new = person(&r, "shop", "1").to_owned();
        assert_ne!(new, ann);
        assert_eq!(
            r.split,
            vec![(CustomerId::new(&ann), vec![CustomerId::new(&new)])]
        );
        assert!(r.merged.is_empty());
    }

    fn customer(id: &str, email: Option<&str>, consent: bool) -> Customer {
        Customer {
            email: email.map(str::to_owned),
            accepts_email_marketing: consent,
            ..Customer::new(id)
        }
    }

    #[test]
    fn profiles_take_each_field_from_the_preferred_source_and_consent_from_all() {
        let shop = Customer {
            first_name: Some("Ann".to_owned()),
            tags: vec!["vip".to_owned()],
            created_at: Some(Timestamp::from_secs(200)),
            ..customer("42", Some("ann@example.com"), true)
        };
        let crm = Customer {
            first_name: Some("Annie".to_owned()),
            phone: Some("+15550100100".to_owned()),
            tags: vec!["newsletter".to_owned()],
            created_at: Some(Timestamp::from_secs(100)),
            ..customer("901", Some("ann@example.com"), false)
        };
        let prefer = ["shop".to_owned(), "crm".to_owned()];
        let p = merge(&person_id(1), &[("crm", &crm), ("shop", &shop)], &prefer);
        assert_eq!(p.customer.id.as_str(), "p-1");
        assert_eq!(p.customer.first_name.as_deref(), Some("Ann"));
        assert_eq!(p.customer.phone.as_deref(), Some("+15550100100"));
        assert_eq!(p.provenance["first_name"], "shop");
        assert_eq!(p.provenance["phone"], "crm");
        assert_eq!(p.customer.tags, ["newsletter", "vip"]);
        assert_eq!(p.customer.created_at, Some(Timestamp::from_secs(100)));
        assert!(
            !p.customer.accepts_email_marketing,
            "the CRM's opt-out wins"
        );
        assert_eq!(p.provenance["accepts_email_marketing"], "withheld by crm");
    }

    #[test]
    fn orders_count_for_the_person_of_their_record_and_only_from_order_sources() {
        let records = [
            rec("shop", "42", "ann@example.com", ""),
            rec("crm", "901", "ann@example.com", ""),
            rec("crm", "5", "cy@example.com", ""),
            rec("shop", "5", "dee@example.com", ""),
        ];
        let mut next = 1;
        let r = resolve(&records, EMAIL, &HashMap::new(), ids(&mut next));
        let ann = person(&r, "shop", "42");
        let all = Routes::new(&r, &[]);
        assert_eq!(
            all.order("crm", "901"),
            Route::Person(&CustomerId::new(ann))
        );
        assert_eq!(
            all.event("crm", "901"),
            Route::Person(&CustomerId::new(ann))
        );
        // An orders-only source names the shop's customer.
        assert_eq!(all.order("erp", "42"), Route::Person(&CustomerId::new(ann)));
        // Id 5 is two different persons: an outside source cannot say which.
        assert_eq!(all.order("erp", "5"), Route::Unknown);
        assert_eq!(all.order("shop", "404"), Route::Unknown);
        let shop_only = Routes::new(&r, &["shop".to_owned()]);
        assert_eq!(shop_only.order("crm", "901"), Route::NotCounted);
        assert_eq!(
            shop_only.event("crm", "901"),
            Route::Person(&CustomerId::new(ann)),
            "events count from every source"
        );
    }

    // ---- properties ----------------------------------------------------------------------

    /// A record of the generated world: source, id, email index, phone index.
    #[derive(Debug, Clone)]
    struct Gen {
        source: &'static str,
        id: String,
        email: Option<u8>,
        phone: Option<u8>,
        consent: bool,
        orders: Vec<(u8, bool)>,
    }

    const SOURCES: [&str; 3] = ["crm", "news", "shop"];

    fn world() -> impl Strategy<Value = Vec<Gen>> {
        prop::collection::vec(
            (
                0..3usize,
                0..12u8,
                prop::option::of(0..6u8),
                prop::option::of(0..6u8),
                any::<bool>(),
                prop::collection::vec((1..100u8, any::<bool>()), 0..3),
            ),
            0..24,
        )
        .prop_map(|v| {
            let mut seen = BTreeSet::new();
            v.into_iter()
                .filter_map(|(s, id, email, phone, consent, orders)| {
                    seen.insert((s, id)).then(|| Gen {
                        source: SOURCES[s],
                        id: id.to_string(),
                        email,
                        phone,
                        consent,
                        orders,
                    })
                })
                .collect()
        })
    }

    fn email_of(g: &Gen) -> Option<String> {
        // Written differently each time: matching must normalise.
        g.email.map(|e| {
            if g.id.len().is_multiple_of(2) {
                format!(" User{e}@Example.com")
            } else {
                format!("user{e}@example.com")
            }
        })
    }

    fn phone_of(g: &Gen) -> Option<String> {
        g.phone.map(|p| format!("+1 555 010 01{p:02}"))
    }

    fn refs<'a>(
        world: &'a [Gen],
        emails: &'a [Option<String>],
        phones: &'a [Option<String>],
    ) -> Vec<RecordRef<'a>> {
        world
            .iter()
            .enumerate()
            .map(|(i, g)| RecordRef {
                source: g.source,
                id: &g.id,
                email: emails[i].as_deref(),
                phone: phones[i].as_deref(),
            })
            .collect()
    }

    /// The naive partition: connected components by pairwise comparison of raw indices.
    fn naive_partition(world: &[Gen], on: MatchOn) -> BTreeSet<BTreeSet<RecordKey>> {
        let linked = |a: &Gen, b: &Gen| {
            (on.email && a.email.is_some() && a.email == b.email)
                || (on.phone && a.phone.is_some() && a.phone == b.phone)
        };
        let mut seen = vec![false; world.len()];
        let mut out = BTreeSet::new();
        for start in 0..world.len() {
            if seen[start] {
                continue;
            }
            let mut group = BTreeSet::new();
            let mut stack = vec![start];
            seen[start] = true;
            while let Some(i) = stack.pop() {
                group.insert((world[i].source.to_owned(), world[i].id.clone()));
                for j in 0..world.len() {
                    if !seen[j] && linked(&world[i], &world[j]) {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            out.insert(group);
        }
        out
    }

    fn partition(r: &Resolution) -> BTreeSet<BTreeSet<RecordKey>> {
        r.members
            .values()
            .map(|m| m.iter().cloned().collect())
            .collect()
    }

    fn on_of(phone: bool) -> MatchOn {
        MatchOn { email: true, phone }
    }

    proptest! {
        #[test]
        fn persons_are_the_connected_components_of_shared_emails_and_phones(
            world in world(), phone in any::<bool>()
        ) {
            let (emails, phones): (Vec<_>, Vec<_>) =
                world.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let mut next = 1;
            let r = resolve(&refs(&world, &emails, &phones), on_of(phone), &HashMap::new(), ids(&mut next));
            prop_assert_eq!(partition(&r), naive_partition(&world, on_of(phone)));
            prop_assert_eq!(r.person_of.len(), world.len());
        }

        #[test]
        fn resolution_does_not_depend_on_the_order_of_records(
            world in world(), phone in any::<bool>(), seed in any::<u64>(), earlier in world()
        ) {
            let (emails, phones): (Vec<_>, Vec<_>) =
                world.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let records = refs(&world, &emails, &phones);
            // Some history, so that merges and splits are in play.
            let (e2, p2): (Vec<_>, Vec<_>) =
                earlier.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let mut next = 1;
            let before = resolve(&refs(&earlier, &e2, &p2), on_of(phone), &HashMap::new(), ids(&mut next));
            let start = next;
            let mut shuffled = records.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let (mut a, mut b) = (start, start);
            let one = resolve(&records, on_of(phone), &previous(&before), ids(&mut a));
            let two = resolve(&shuffled, on_of(phone), &previous(&before), ids(&mut b));
            prop_assert_eq!(one, two);
        }

        #[test]
        fn resolving_again_with_its_own_ids_changes_nothing(world in world(), phone in any::<bool>()) {
            let (emails, phones): (Vec<_>, Vec<_>) =
                world.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let records = refs(&world, &emails, &phones);
            let mut next = 1;
            let first = resolve(&records, on_of(phone), &HashMap::new(), ids(&mut next));
            let handed = next;
            let again = resolve(&records, on_of(phone), &previous(&first), ids(&mut next));
            prop_assert_eq!(&again.person_of, &first.person_of);
            prop_assert!(again.merged.is_empty() && again.split.is_empty());
            prop_assert_eq!(next, handed, "no new id");
        }

        #[test]
        fn new_records_never_move_a_record_out_of_a_person_that_was_not_merged(
            world in world(), extra in world(), phone in any::<bool>()
        ) {
            let (emails, phones): (Vec<_>, Vec<_>) =
                world.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let mut next = 1;
            let first = resolve(&refs(&world, &emails, &phones), on_of(phone), &HashMap::new(), ids(&mut next));
            // The same records, and more (a source added, customers signed up).
            let mut all = world;
            for mut g in extra {
                g.id = format!("new-{}", g.id);
                all.push(g);
            }
            let (e2, p2): (Vec<_>, Vec<_>) = all.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let second = resolve(&refs(&all, &e2, &p2), on_of(phone), &previous(&first), ids(&mut next));
            let retired: BTreeSet<&CustomerId> = second.merged.iter().map(|(r, _)| r).collect();
            prop_assert!(second.split.is_empty(), "adding records cannot split anyone");
            for (key, was) in &first.person_of {
                let now = &second.person_of[key];
                prop_assert!(now == was || retired.contains(was), "{key:?}: {was} became {now}");
            }
        }

        #[test]
        fn segment_counts_over_persons_equal_a_hand_merged_reference(
            world in world(), phone in any::<bool>(), shop_orders_only in any::<bool>()
        ) {
            let on = on_of(phone);
            let (emails, phones): (Vec<_>, Vec<_>) =
                world.iter().map(|g| (email_of(g), phone_of(g))).unzip();
            let mut next = 1;
            let r = resolve(&refs(&world, &emails, &phones), on, &HashMap::new(), ids(&mut next));
            let order_sources: Vec<String> =
                if shop_orders_only { vec!["shop".to_owned()] } else { Vec::new() };
            let counts_orders = |s: &str| order_sources.is_empty() || order_sources.iter().any(|o| o == s);

            // The engine's path: profiles, then every order routed to its person.
            let records: Vec<(String, Customer)> = world
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    (g.source.to_owned(), customer(&g.id, emails[i].as_deref(), g.consent))
                })
                .collect();
            let as_of = AsOf::utc(Timestamp::from_secs(1_800_000_000));
            let mut builder = FeatureBuilder::new(as_of);
            for p in profiles(&r, &records, &[]) {
                builder.add_customer(&p.customer).unwrap();
            }
            let routes = Routes::new(&r, &order_sources);
            for g in &world {
                for (n, (whole, cancelled)) in g.orders.iter().enumerate() {
                    let order = Order {
                        id: format!("{}-{n}", g.id),
                        customer_id: CustomerId::new(&g.id),
                        created_at: Some(Timestamp::from_secs(1_700_000_000)),
                        total: Money::from_whole(i64::from(*whole)),
                        cancelled_at: cancelled.then(|| Timestamp::from_secs(1_700_000_001)),
                        item_count: 1,
                        ..Order::default()
                    };
                    if let Route::Person(p) = routes.order(g.source, &g.id) {
                        builder.add_order(p.as_str(), order.facts()).unwrap();
                    }
                }
            }
            let table = builder.finish();
            let defs = [
                SegmentDef::new("repeat", "orders_count >= 2"),
                SegmentDef::new("big", "total_spent > 120"),
                SegmentDef::new("reachable", "accepts_email_marketing"),
            ];
            let got: BTreeMap<String, usize> = SegmentSet::compile(&defs, &table)
                .unwrap()
                .evaluate()
                .into_iter()
                .map(|(name, rows)| (name, rows.count()))
                .collect();

            // The reference: components by hand, their orders summed by hand.
            let mut want: BTreeMap<String, usize> =
                ["big", "reachable", "repeat"].iter().map(|n| ((*n).to_owned(), 0)).collect();
            let by_key: HashMap<RecordKey, &Gen> = world
                .iter()
                .map(|g| ((g.source.to_owned(), g.id.clone()), g))
                .collect();
            for group in naive_partition(&world, on) {
                let members: Vec<&Gen> = group.iter().map(|k| by_key[k]).collect();
                let counted: Vec<u8> = members
                    .iter()
                    .filter(|g| counts_orders(g.source))
                    .flat_map(|g| g.orders.iter().filter(|o| !o.1).map(|o| o.0))
                    .collect();
                let spent: u32 = counted.iter().map(|&w| u32::from(w)).sum();
                *want.get_mut("repeat").unwrap() += usize::from(counted.len() >= 2);
                *want.get_mut("big").unwrap() += usize::from(spent > 120);
                *want.get_mut("reachable").unwrap() += usize::from(members.iter().all(|g| g.consent));
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn order_facts_are_what_the_reference_sums() {
        // The reference above sums whole totals of orders not cancelled: check that this is
        // what an order's facts carry, so the comparison means what it says.
        let o = Order {
            created_at: Some(Timestamp::from_secs(1)),
            total: Money::from_whole(7),
            item_count: 1,
            ..Order::default()
        };
        assert_eq!(
            o.facts(),
            Some(OrderFacts {
                created_at: Timestamp::from_secs(1),
                net_total: Money::from_whole(7),
                item_count: 1,
                refund: false,
            })
        );
    }
}
