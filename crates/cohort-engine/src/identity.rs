//! One person across sources, at run time: reads the records and the links the last run left,
//! resolves them with the core's rules (`cohort_core::identity`), and says what to save.
//!
//! The resolution is pure; this module only gathers its inputs and turns its result into the
//! store's [`IdentityUpdate`]. Saving is the caller's, so a dry run and `campaign preview`
//! resolve exactly as a run would and change nothing.
//!
//! The first run with `[identity]` has no links yet. It seeds them with each record's own id:
//! a customer known as `42` before stays `42` (its memberships and destination state carry
//! over), records that turn out to be one person merge into the one holding most of them, and
//! only persons never seen get `p-N` ids.

use std::collections::{BTreeSet, HashMap, HashSet};

use cohort_config::Identity;
use cohort_core::identity::{self as core, MatchOn, Profile, RecordKey, RecordRef, Resolution};
use cohort_core::{Customer, CustomerId};
use cohort_store::{IdentityUpdate, WorkspaceStore};

use crate::error::Result;

/// A workspace's records resolved into persons.
#[derive(Debug)]
pub struct People {
    /// Which records are which person.
    pub resolution: Resolution,
    /// Each person's merged profile, in person order.
    pub profiles: Vec<Profile>,
    /// The live records, as `(source, record)`, sorted by source and id.
    pub records: Vec<(String, Customer)>,
    /// What the store must learn to give the same ids next run.
    pub update: IdentityUpdate,
    /// The sources whose orders count (empty: every source's).
    pub order_sources: Vec<String>,
}

impl People {
    /// The person a reference names: a person id, or a record as `SOURCE:ID`.
    pub fn person(&self, reference: &str) -> Option<&CustomerId> {
        if let Some((id, _)) = self.resolution.members.get_key_value(reference) {
            return Some(id);
        }
        let (source, id) = reference.split_once(':')?;
        self.resolution
            .person_of
            .get(&(source.to_owned(), id.to_owned()))
    }

    /// The records that make `person` up, as `(source, record)`.
    pub fn records_of(&self, person: &CustomerId) -> Vec<&(String, Customer)> {
        let Some(keys) = self.resolution.members.get(person) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|(source, id)| {
                self.records
                    .binary_search_by(|(s, c)| (s.as_str(), c.id.as_str()).cmp(&(source, id)))
                    .ok()
                    .map(|i| &self.records[i])
            })
            .collect()
    }

    /// Every address of each person other than their profile's: a suppression of any of them
    /// holds for the person.
    pub fn other_emails(&self) -> HashMap<CustomerId, Vec<String>> {
        let mut out: HashMap<CustomerId, Vec<String>> = HashMap::new();
        for profile in &self.profiles {
            let main = profile
                .customer
                .email
                .as_deref()
                .and_then(core::normalize_email);
            let others: BTreeSet<String> = self
                .records_of(&profile.customer.id)
                .into_iter()
                .filter_map(|(_, c)| c.email.as_deref().and_then(core::normalize_email))
                .filter(|e| Some(e) != main.as_ref())
                .collect();
            if !others.is_empty() {
                out.insert(profile.customer.id.clone(), others.into_iter().collect());
            }
        }
        out
    }
}

/// Reads the workspace's live customer records and resolves them into persons under
/// `config`, keeping the ids the last run gave.
pub async fn resolve(ws: &WorkspaceStore, config: &Identity) -> Result<People> {
    let mut records: Vec<(String, Customer)> = Vec::new();
    ws.for_each_customer_by_source(|source, c| records.push((source.to_owned(), c)))
        .await?;
    records.sort_by(|a, b| (a.0.as_str(), a.1.id.as_str()).cmp(&(b.0.as_str(), b.1.id.as_str())));
    records.dedup_by(|a, b| a.0 == b.0 && a.1.id == b.1.id);
    let stored = ws.identity().await?;
    let first_run = stored.next.is_none();
    let previous: HashMap<RecordKey, CustomerId> = if first_run {
        records
            .iter()
            .map(|(s, c)| ((s.clone(), c.id.as_str().to_owned()), c.id.clone()))
            .collect()
    } else {
        stored
            .links
            .iter()
            .map(|(k, p)| (k.clone(), CustomerId::new(p.as_str())))
            .collect()
    };
    let (resolution, next) = resolve_records(&records, config, &previous, stored.next.unwrap_or(1));
    let update = update_of(&resolution, &stored.links, first_run, next);
    let profiles = core::profiles(&resolution, &records, &config.prefer);
    Ok(People {
        resolution,
        profiles,
        records,
        update,
        order_sources: config.order_sources.clone().unwrap_or_default(),
    })
}

/// The pure part of [`resolve`]: groups `records`, handing out `p-N` ids from `next` and
/// skipping any id an earlier person still holds. Returns the resolution and the next number.
fn resolve_records(
    records: &[(String, Customer)],
    config: &Identity,
    previous: &HashMap<RecordKey, CustomerId>,
    mut next: u64,
) -> (Resolution, u64) {
    let refs: Vec<RecordRef<'_>> = records
        .iter()
        .map(|(source, c)| RecordRef {
            source,
            id: c.id.as_str(),
            email: c.email.as_deref(),
            phone: c.phone.as_deref(),
        })
        .collect();
    let on = MatchOn {
        email: config.match_email,
        phone: config.match_phone,
    };
    let taken: HashSet<&CustomerId> = previous.values().collect();
    let resolution = core::resolve(&refs, on, previous, || {
        loop {
            let id = core::person_id(next);
            next += 1;
            if !taken.contains(&id) {
                break id;
            }
        }
    });
    (resolution, next)
}

/// What the store must change to hold `resolution`, given the links it holds.
fn update_of(
    resolution: &Resolution,
    links: &HashMap<RecordKey, String>,
    first_run: bool,
    next: u64,
) -> IdentityUpdate {
    let set = resolution
        .person_of
        .iter()
        .filter(|(key, person)| {
            first_run || links.get(*key).map(String::as_str) != Some(person.as_str())
        })
        .map(|(key, person)| (key.clone(), person.as_str().to_owned()))
        .collect();
    let mut unset: Vec<RecordKey> = links
        .keys()
        .filter(|key| !resolution.person_of.contains_key(*key))
        .cloned()
        .collect();
    unset.sort();
    IdentityUpdate {
        set,
        unset,
        next,
        merged: resolution
            .merged
            .iter()
            .map(|(retired, survivor)| (retired.as_str().to_owned(), survivor.as_str().to_owned()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_config::Location;

    fn config() -> Identity {
        Identity {
            match_email: true,
            match_phone: true,
            prefer: vec!["shop".to_owned(), "crm".to_owned()],
            order_sources: None,
            at: Location {
                file: std::path::Path::new("cohort.toml").into(),
                line: 1,
                column: 1,
            },
        }
    }

    fn record(source: &str, id: &str, email: &str) -> (String, Customer) {
        let mut c = Customer::new(id);
        c.email = Some(email.to_owned());
        (source.to_owned(), c)
    }

    fn seeded(records: &[(String, Customer)]) -> HashMap<RecordKey, CustomerId> {
        records
            .iter()
            .map(|(s, c)| ((s.clone(), c.id.as_str().to_owned()), c.id.clone()))
            .collect()
    }

    #[test]
    fn a_first_run_keeps_every_record_id_as_its_persons_id() {
        let records = vec![
            record("shop", "1", "ann@example.com"),
            record("shop", "2", "bob@example.com"),
        ];
        let (resolution, next) = resolve_records(&records, &config(), &seeded(&records), 1);
        let ids: Vec<&str> = resolution.members.keys().map(CustomerId::as_str).collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(next, 1, "no new id was needed");
    }

    #[test]
    fn records_of_one_person_merge_into_one_kept_id_on_the_first_run() {
        let records = vec![
            record("crm", "901", " Ann@Example.com "),
            record("shop", "1", "ann@example.com"),
        ];
        let (resolution, _) = resolve_records(&records, &config(), &seeded(&records), 1);
        assert_eq!(resolution.members.len(), 1);
        let update = update_of(&resolution, &HashMap::new(), true, 1);
        assert_eq!(update.merged.len(), 1, "{update:?}");
        assert_eq!(
            update.set.len(),
            2,
            "both records are linked on a first run"
        );
    }

    #[test]
    fn new_ids_skip_ids_that_earlier_persons_hold() {
        let records = vec![
            record("shop", "p-1", "ann@example.com"),
            record("shop", "x", "bob@example.com"),
        ];
        let mut previous = HashMap::new();
        previous.insert(
            ("shop".to_owned(), "p-1".to_owned()),
            CustomerId::new("p-1"),
        );
        let (resolution, next) = resolve_records(&records, &config(), &previous, 1);
        let ids: Vec<&str> = resolution.members.keys().map(CustomerId::as_str).collect();
        assert_eq!(ids, ["p-1", "p-2"]);
        assert_eq!(next, 3);
    }

    #[test]
    fn an_unchanged_resolution_updates_nothing_and_a_gone_record_is_unlinked() {
        let records = vec![record("shop", "1", "ann@example.com")];
        let (resolution, next) = resolve_records(&records, &config(), &seeded(&records), 1);
        let mut links = HashMap::new();
        links.insert(("shop".to_owned(), "1".to_owned()), "1".to_owned());
        assert!(update_of(&resolution, &links, false, next).is_empty());
        links.insert(("crm".to_owned(), "9".to_owned()), "p-4".to_owned());
        let update = update_of(&resolution, &links, false, next);
        assert_eq!(update.unset, [("crm".to_owned(), "9".to_owned())]);
        assert!(update.set.is_empty());
    }
}
