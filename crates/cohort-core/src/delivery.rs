//! Delivery planning: what a campaign must push to its destination, given who is in its segments
//! now and what the destination last acknowledged.
//!
//! This is where consent is enforced and where exactly-once delivery is designed, so it is pure
//! and exhaustively tested:
//!
//! - **Consent is law.** A customer who may not be contacted (no consent, suppressed, no
//!   address) is never sent a message and never added to an audience; one already in an audience
//!   is removed, whatever the mode.
//! - **Idempotency keys come from acknowledged state only.** Every change a customer goes
//!   through gets the next number of their per-campaign sequence, and the key is built from that
//!   number. The state moves on only when the destination acknowledges, so a run that dies after
//!   pushing and before recording computes the *same* keys next time, and a destination that
//!   honours keys (every Cohort destination must) applies each change once.
//! - Audience keys also carry the payload's hash: if the data changed between the crash and the
//!   retry, the new payload is a new change and must not be swallowed as a duplicate. Message keys
//!   do not: an email is sent once per entry into the segment, whatever changed in its text.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{Customer, CustomerId, Event, EventKind};
use crate::time::Timestamp;

/// How a campaign treats its destination. The one definition the config, the plugin wire and
/// the store share; its JSON and config spelling is [`Mode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Add members and keep their data current; people who leave the segment stay.
    Upsert,
    /// Keep the audience equal to the segment: add, update and remove.
    Mirror,
    /// Send one message to each customer when they enter the segment.
    Send,
}

impl Mode {
    /// Every mode's name, as written in configs and JSON.
    pub const ALL: [&'static str; 3] = ["upsert", "mirror", "send"];

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Upsert => "upsert",
            Mode::Mirror => "mirror",
            Mode::Send => "send",
        }
    }

    /// The mode named `text`.
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "upsert" => Some(Mode::Upsert),
            "mirror" => Some(Mode::Mirror),
            "send" => Some(Mode::Send),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a customer may be contacted by a campaign, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eligibility {
    /// May be contacted.
    Eligible,
    /// Has not consented to marketing on this channel.
    NoConsent,
    /// On the workspace's suppression list (unsubscribed, bounced, complained).
    Suppressed,
    /// Has no address the channel can use (no email for an email campaign).
    NoAddress,
    /// No longer known to the store.
    Unknown,
}

/// Where a customer stands at the destination, as last acknowledged (stored as
/// [`Status::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the audience.
    Member,
    /// Removed from the audience, or (send mode) left the segment after being sent to.
    Removed,
    /// Sent the campaign's message during their current stay in the segment.
    Sent,
}

impl Status {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Member => "member",
            Status::Removed => "removed",
            Status::Sent => "sent",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "member" => Status::Member,
            "removed" => Status::Removed,
            "sent" => Status::Sent,
            _ => return None,
        })
    }
}

/// What the destination acknowledged last for one customer of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Where the customer stands.
    pub status: Status,
    /// Hash of the payload acknowledged last.
    pub payload_hash: String,
    /// Number of changes acknowledged so far: the next change gets `seq + 1`.
    pub seq: u64,
    /// An operation pushed after the last acknowledgement whose outcome was never recorded
    /// (the run died). It holds change number `seq + 1`.
    pub pending: Option<Pending>,
}

/// An operation that was pushed but whose outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What it did.
    pub action: Action,
    /// Its idempotency key.
    pub key: String,
    /// Hash of its payload.
    pub payload_hash: String,
}

impl Planned {
    /// The intent to record *before* pushing, so that a run that dies mid-push knows next time
    /// that this operation may have been applied.
    pub fn intent(&self, before: Option<&Acked>) -> Acked {
        let base = before.cloned().unwrap_or(Acked {
            status: Status::Removed,
            payload_hash: String::new(),
            seq: 0,
            pending: None,
        });
        Acked {
            seq: self.acked.seq - 1,
            pending: Some(Pending {
                action: self.action,
                key: self.key.clone(),
                payload_hash: self.acked.payload_hash.clone(),
            }),
            ..base
        }
    }
}

/// A member of the campaign's segments now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Who.
    pub customer: CustomerId,
    /// Hash of the payload rendered for them now.
    pub payload_hash: String,
}

/// What to do at the destination (its JSON spelling is [`Action::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add to the audience or update the customer's data there.
    Upsert,
    /// Remove from the audience.
    Remove,
    /// Send the message.
    Send,
}

impl Action {
    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upsert => "upsert",
            Action::Remove => "remove",
            Action::Send => "send",
        }
    }

    /// The action named `text`.
    pub fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "upsert" => Action::Upsert,
            "remove" => Action::Remove,
            "send" => Action::Send,
            _ => return None,
        })
    }
}

/// What the channel needs to know about a customer to decide whether they may be contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact<'a> {
    /// Email address, if any.
    pub email: Option<&'a str>,
    /// Phone number, if any.
    pub phone: Option<&'a str>,
    /// Whether they accepted marketing.
    pub consent: bool,
}

impl<'a> Contact<'a> {
    /// The contact facts of a customer record. Ad audiences take the same consent as email:
    /// the one marketing consent the canonical record carries for them.
    pub fn of(customer: &'a Customer) -> Contact<'a> {
        let present = |s: &'a Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty());
        Contact {
            email: present(&customer.email),
            phone: present(&customer.phone),
            consent: customer.accepts_email_marketing,
        }
    }
}

/// Whether a customer may be contacted by a campaign in `mode`. Consent is law: marketing goes
/// only to customers who accepted it, are not suppressed (`suppressed` is asked with the
/// lower-cased address) and have an address the channel can use: an email for a message, an
/// email or a phone for an audience.
pub fn eligibility(
    mode: Mode,
    contact: &Contact<'_>,
    suppressed: impl Fn(&str) -> bool,
) -> Eligibility {
    if !contact.consent {
        return Eligibility::NoConsent;
    }
    if contact.email.is_some_and(|e| suppressed(&e.to_lowercase())) {
        return Eligibility::Suppressed;
    }
    let has_address = match mode {
        Mode::Send => contact.email.is_some(),
        Mode::Upsert | Mode::Mirror => contact.email.is_some() || contact.phone.is_some(),
    };
    if has_address {
        Eligibility::Eligible
    } else {
        Eligibility::NoAddress
    }
}

/// Whether `event` puts its customer's address on the suppression list at the run's clock
/// `now`: an unsubscribe, once it has happened, suppresses the address for good, whatever the
/// customer's consent flag says later.
pub fn suppresses(event: &Event, now: Timestamp) -> bool {
    event.kind == EventKind::EmailUnsubscribe && event.occurred_at <= now
}

/// A stable hash of a rendered payload: FNV-1a over its JSON (object keys sorted, as
/// `serde_json` writes them). Audience keys carry it, so its value must never change between
/// releases: a new value would push every audience member again.
pub fn payload_hash(payload: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    crate::hash::fnv1a_hex(&bytes)
}

/// What a destination said about one pushed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or applied before, under the same key).
    Acknowledged,
    /// Refused for good: the change did not happen.
    Rejected,
    /// Still failing after the retries, or no outcome given: it may or may not have happened.
    Unknown,
}

/// The state an operation's outcome leaves a customer in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The change happened: record `op.acked` under the operation's key.
    Applied(Acked),
    /// It did not and never will: put back the state from before the push (its own key
    /// stays), so the next run plans the change again.
    Reverted(Acked),
    /// Unknown: the intent recorded before the push stays, so the next run pushes it again
    /// under the same key.
    Pending,
}

impl Planned {
    /// What `outcome` leaves the customer in; `before` is their state before this run.
    pub fn settle(&self, before: Option<&Acked>, outcome: Outcome) -> Settled {
        match outcome {
            Outcome::Acknowledged => Settled::Applied(self.acked.clone()),
            Outcome::Rejected => Settled::Reverted(match before {
                // An earlier unconfirmed push stays pending: it may still have happened.
                Some(a) => a.clone(),
                None => Acked {
                    pending: None,
                    ..self.intent(None)
                },
            }),
            Outcome::Unknown => Settled::Pending,
        }
    }
}

/// One operation to push, and the state to record once it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Who.
    pub customer: CustomerId,
    /// What.
    pub action: Action,
    /// Idempotency key, unique per change and stable across retries of that change.
    pub key: String,
    /// Why this operation exists.
    pub reason: Reason,
    /// The state to record when the destination acknowledges.
    pub acked: Acked,
}

/// Why an operation was planned: the summary counts these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Entered the segment.
    Entered,
    /// Still in the segment, with a different payload.
    Changed,
    /// Left the segment (mirror mode).
    Left,
    /// Lost eligibility (consent withdrawn, suppressed, address gone, deleted).
    Ineligible,
    /// Pushed by an earlier run that died before recording the outcome: pushed again under the
    /// same key, so it is applied once.
    Unconfirmed,
}

/// A change of recorded state that needs no push: a customer who was sent a message and left the
/// segment, so that entering it again sends again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUpdate {
    /// Who.
    pub customer: CustomerId,
    /// The state to record.
    pub acked: Acked,
}

/// Everything one campaign must do in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Operations to push, in customer order.
    pub ops: Vec<Planned>,
    /// State changes to record without pushing.
    pub local: Vec<LocalUpdate>,
    /// Members skipped because they may not be contacted, by reason.
    pub skipped: Skipped,
    /// Members whose acknowledged state is already current.
    pub unchanged: usize,
}

/// Members of the segment that were not contacted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// No marketing consent.
    pub no_consent: usize,
    /// Suppressed.
    pub suppressed: usize,
    /// No usable address.
    pub no_address: usize,
}

impl Skipped {
    /// All skipped members.
    pub fn total(&self) -> usize {
        self.no_consent + self.suppressed + self.no_address
    }

    fn count(&mut self, eligibility: Eligibility) {
        match eligibility {
            Eligibility::NoConsent => self.no_consent += 1,
            Eligibility::Suppressed => self.suppressed += 1,
            Eligibility::NoAddress | Eligibility::Unknown => self.no_address += 1,
            Eligibility::Eligible => {}
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} without consent, {} suppressed, {} without address",
            self.no_consent, self.suppressed, self.no_address
        )
    }
}

impl Acked {
    /// What to record when the destination refuses, late, a change it had acknowledged (an
    /// asynchronous import that failed, a request whose status came back with an error), so
    /// that the next plan makes the change again: an audience member is marked as holding no
    /// known payload (the upsert is planned again), a removal as a member (it is removed
    /// again). A message cannot be unsent: `None`, the refusal is only reported.
    pub fn undone_late(&self) -> Option<Acked> {
        let status = match self.status {
            Status::Member | Status::Removed => Status::Member,
            Status::Sent => return None,
        };
        Some(Acked {
            status,
            payload_hash: String::new(),
            pending: None,
            ..self.clone()
        })
    }
}

/// Plans a full resync (`cohort run --resync`): like [`plan`], and every eligible member the
/// destination is believed to hold already is pushed again too, under the next key of their
/// sequence, so that a destination that replaces audiences wholesale receives every member.
pub fn plan_resync(
    mode: Mode,
    key_prefix: &str,
    wanted: &[Wanted],
    acked: &[(CustomerId, Acked)],
    eligibility: impl Fn(&CustomerId) -> Eligibility,
) -> Plan {
    if mode == Mode::Send {
        return plan(mode, key_prefix, wanted, acked, eligibility);
    }
    // An eligible member held with the payload wanted now is planned as a change: the same
    // payload under a new key (the hash marker never matches a real one). Anyone else is
    // planned as usual.
    let wanted_now: std::collections::HashSet<&CustomerId> =
        wanted.iter().map(|w| &w.customer).collect();
    let forgotten: Vec<(CustomerId, Acked)> = acked
        .iter()
        .map(|(id, a)| {
            let held = a.status == Status::Member
                && a.pending.is_none()
                && wanted_now.contains(id)
                && eligibility(id) == Eligibility::Eligible;
            let a = if held {
                Acked {
                    payload_hash: "~resync".to_owned(),
                    ..a.clone()
                }
            } else {
                a.clone()
            };
            (id.clone(), a)
        })
        .collect();
    plan(mode, key_prefix, wanted, &forgotten, &eligibility)
}

/// Plans one campaign.
///
/// - `key_prefix` scopes keys (workspace and campaign), so two campaigns never share one.
/// - `wanted`: the members of the campaign's segments now, sorted by customer, unique.
/// - `acked`: the acknowledged state, sorted by customer, unique.
/// - `eligibility`: whether any customer (member or not) may be contacted on this channel.
pub fn plan(
    mode: Mode,
    key_prefix: &str,
    wanted: &[Wanted],
    acked: &[(CustomerId, Acked)],
    eligibility: impl Fn(&CustomerId) -> Eligibility,
) -> Plan {
    debug_assert!(wanted.windows(2).all(|w| w[0].customer < w[1].customer));
    debug_assert!(acked.windows(2).all(|w| w[0].0 < w[1].0));
    let mut plan = Plan::default();
    let (mut i, mut j) = (0, 0);
    loop {
        let (now, before) = match (wanted.get(i), acked.get(j)) {
            (None, None) => break,
            (Some(w), Some(entry)) if w.customer == entry.0 => (Some(w), Some(entry)),
            (Some(w), Some(entry)) if w.customer > entry.0 => (None, Some(entry)),
            (Some(w), _) => (Some(w), None),
            (None, entry) => (None, entry),
        };
        i += usize::from(now.is_some());
        j += usize::from(before.is_some());
        let customer = match (now, before) {
            (Some(w), _) => &w.customer,
            (None, Some((id, _))) => id,
            (None, None) => unreachable!("one side always advances"),
        };
        step(
            &mut plan,
            mode,
            key_prefix,
            customer,
            now,
            before.map(|(_, a)| a),
            &eligibility,
        );
    }
    plan
}

/// What one customer needs, decided from the state they are (or may be) in.
enum Decision {
    /// Nothing: the destination already has what it should.
    Nothing,
    /// Nothing, because the customer may not be contacted (counted in [`Plan::skipped`]).
    Skipped,
    /// Push an operation that leads to `status` with `hash`.
    Push(Action, Reason, Status, String),
    /// Record `status` without pushing.
    Local(Status),
}

fn decide(
    mode: Mode,
    customer: &CustomerId,
    now: Option<&Wanted>,
    state: Option<(Status, &str)>,
    eligibility: &impl Fn(&CustomerId) -> Eligibility,
    skipped: &mut Skipped,
) -> Decision {
    let in_audience = matches!(state, Some((Status::Member, _)));
    let previous_hash = || state.map(|(_, h)| h.to_owned()).unwrap_or_default();
    let remove = |reason| Decision::Push(Action::Remove, reason, Status::Removed, previous_hash());
    match (mode, now) {
        (Mode::Upsert | Mode::Mirror, Some(w)) => match eligibility(customer) {
            Eligibility::Eligible => match state {
                Some((Status::Member, hash)) if hash == w.payload_hash => Decision::Nothing,
                Some((Status::Member, _)) => Decision::Push(
                    Action::Upsert,
                    Reason::Changed,
                    Status::Member,
                    w.payload_hash.clone(),
                ),
                _ => Decision::Push(
                    Action::Upsert,
                    Reason::Entered,
                    Status::Member,
                    w.payload_hash.clone(),
                ),
            },
            not => {
                skipped.count(not);
                if in_audience {
                    remove(Reason::Ineligible)
                } else {
                    Decision::Skipped
                }
            }
        },
        (Mode::Upsert | Mode::Mirror, None) if in_audience => {
            if eligibility(customer) != Eligibility::Eligible {
                remove(Reason::Ineligible)
            } else if mode == Mode::Mirror {
                remove(Reason::Left)
            } else {
                Decision::Nothing
            }
        }
        (Mode::Upsert | Mode::Mirror, None) => Decision::Nothing,
        (Mode::Send, Some(w)) => match state {
            Some((Status::Sent, _)) => Decision::Nothing,
            _ => match eligibility(customer) {
                Eligibility::Eligible => Decision::Push(
                    Action::Send,
                    Reason::Entered,
                    Status::Sent,
                    w.payload_hash.clone(),
                ),
                not => {
                    skipped.count(not);
                    Decision::Skipped
                }
            },
        },
        (Mode::Send, None) => match state {
            Some((Status::Sent, _)) => Decision::Local(Status::Removed),
            _ => Decision::Nothing,
        },
    }
}

/// The status an acknowledged `action` leads to.
fn status_after(action: Action) -> Status {
    match action {
        Action::Upsert => Status::Member,
        Action::Remove => Status::Removed,
        Action::Send => Status::Sent,
    }
}

fn key(prefix: &str, customer: &CustomerId, seq: u64, action: Action, hash: &str) -> String {
    let customer = customer.as_str();
    match action {
        Action::Send => format!("{prefix}/{customer}/{seq}-send"),
        Action::Upsert | Action::Remove => format!(
            "{prefix}/{customer}/{seq}-{action}-{short}",
            action = action.as_str(),
            short = &hash[..hash.len().min(12)],
        ),
    }
}

fn step(
    plan: &mut Plan,
    mode: Mode,
    prefix: &str,
    customer: &CustomerId,
    now: Option<&Wanted>,
    before: Option<&Acked>,
    eligibility: &impl Fn(&CustomerId) -> Eligibility,
) {
    // An operation pushed by a run that died before recording its outcome may or may not have
    // been applied. Decide from the state it would have led to: if that state is what we want,
    // push it again under its own key (applied at most once); otherwise plan the change from
    // there, which supersedes it.
    let pending = before.and_then(|a| a.pending.as_ref());
    let seq = before.map_or(0, |a| a.seq) + u64::from(pending.is_some());
    let state = match (pending, before) {
        (Some(p), _) => Some((status_after(p.action), p.payload_hash.as_str())),
        (None, Some(a)) => Some((a.status, a.payload_hash.as_str())),
        (None, None) => None,
    };
    match decide(mode, customer, now, state, eligibility, &mut plan.skipped) {
        decision @ (Decision::Nothing | Decision::Skipped) => match pending {
            // Consent is checked again before a retry: a message or an audience add that may
            // never have arrived is not delivered to someone who may no longer be contacted.
            // Forgetting the intent keeps its number, so should they become eligible again the
            // same key is pushed and a destination that did apply it will not apply it twice.
            Some(p)
                if p.action != Action::Remove && eligibility(customer) != Eligibility::Eligible =>
            {
                if now.is_some() && matches!(decision, Decision::Nothing) {
                    plan.skipped.count(eligibility(customer));
                }
                if let Some(a) = before {
                    plan.local.push(LocalUpdate {
                        customer: customer.clone(),
                        acked: Acked {
                            pending: None,
                            ..a.clone()
                        },
                    });
                }
            }
            Some(p) => plan.ops.push(Planned {
                customer: customer.clone(),
                action: p.action,
                key: p.key.clone(),
                reason: Reason::Unconfirmed,
                acked: Acked {
                    status: status_after(p.action),
                    payload_hash: p.payload_hash.clone(),
                    seq,
                    pending: None,
                },
            }),
            None if now.is_some() && matches!(decision, Decision::Nothing) => plan.unchanged += 1,
            None => {}
        },
        Decision::Push(action, reason, status, hash) => plan.ops.push(Planned {
            customer: customer.clone(),
            action,
            key: key(prefix, customer, seq + 1, action, &hash),
            reason,
            acked: Acked {
                status,
                payload_hash: hash,
                seq: seq + 1,
                pending: None,
            },
        }),
        Decision::Local(status) => plan.local.push(LocalUpdate {
            customer: customer.clone(),
            acked: Acked {
                status,
                payload_hash: state.map(|(_, h)| h.to_owned()).unwrap_or_default(),
                seq,
                pending: None,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn id(n: u32) -> CustomerId {
        CustomerId::new(n.to_string())
    }

    fn wanted(members: &[(u32, &str)]) -> Vec<Wanted> {
        members
            .iter()
            .map(|(n, h)| Wanted {
                customer: id(*n),
                payload_hash: (*h).to_owned(),
            })
            .collect()
    }

    fn everyone_eligible(_: &CustomerId) -> Eligibility {
        Eligibility::Eligible
    }

    /// Records state as the engine does: the intent of every operation before pushing, then
    /// what each outcome settles to (`Planned::settle`), then local updates.
    fn commit_outcomes(
        state: &mut BTreeMap<CustomerId, Acked>,
        plan: &Plan,
        outcome: impl Fn(&Planned) -> Outcome,
    ) {
        for op in &plan.ops {
            let before = state.get(&op.customer).cloned();
            state.insert(op.customer.clone(), op.intent(before.as_ref()));
            match op.settle(before.as_ref(), outcome(op)) {
                Settled::Applied(a) | Settled::Reverted(a) => {
                    state.insert(op.customer.clone(), a);
                }
                Settled::Pending => {}
            }
        }
        for l in &plan.local {
            state.insert(l.customer.clone(), l.acked.clone());
        }
    }

    /// [`commit_outcomes`] where the keys in `acked_keys` were acknowledged and the outcome of
    /// the others is unknown.
    fn commit(state: &mut BTreeMap<CustomerId, Acked>, plan: &Plan, acked_keys: &BTreeSet<String>) {
        commit_outcomes(state, plan, |op| {
            if acked_keys.contains(&op.key) {
                Outcome::Acknowledged
            } else {
                Outcome::Unknown
            }
        });
    }

    fn sorted(state: &BTreeMap<CustomerId, Acked>) -> Vec<(CustomerId, Acked)> {
        state.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn contact(
        email: Option<&'static str>,
        phone: Option<&'static str>,
        consent: bool,
    ) -> Contact<'static> {
        Contact {
            email,
            phone,
            consent,
        }
    }

    #[test]
    fn consent_comes_before_everything_and_suppression_before_the_address() {
        let nobody_suppressed = |_: &str| false;
        for mode in [Mode::Send, Mode::Upsert, Mode::Mirror] {
            assert_eq!(
                eligibility(
                    mode,
                    &contact(Some("a@x.com"), None, false),
                    nobody_suppressed
                ),
                Eligibility::NoConsent
            );
            assert_eq!(
                eligibility(mode, &contact(Some("A@X.com"), None, true), |e| e
                    == "a@x.com"),
                Eligibility::Suppressed,
                "suppression is matched on the lower-cased address"
            );
            assert_eq!(
                eligibility(mode, &contact(None, None, true), nobody_suppressed),
                Eligibility::NoAddress
            );
        }
    }

    #[test]
    fn a_phone_is_an_address_for_an_audience_but_not_for_an_email() {
        let phone_only = contact(None, Some("+15550100"), true);
        assert_eq!(
            eligibility(Mode::Send, &phone_only, |_| false),
            Eligibility::NoAddress
        );
        assert_eq!(
            eligibility(Mode::Mirror, &phone_only, |_| false),
            Eligibility::Eligible
        );
    }

    #[test]
    fn blank_addresses_are_no_addresses() {
        let mut c = Customer::new("1");
        c.email = Some("  ".to_owned());
        c.accepts_email_marketing = true;
        assert_eq!(
            eligibility(Mode::Send, &Contact::of(&c), |_| false),
            Eligibility::NoAddress
        );
    }

    #[test]
    fn an_unsubscribe_suppresses_only_once_it_has_happened() {
        let at = Timestamp::parse("2024-05-01").unwrap();
        let event = Event {
            id: None,
            customer_id: id(1),
            kind: EventKind::EmailUnsubscribe,
            occurred_at: at,
            properties: Default::default(),
        };
        assert!(suppresses(&event, at));
        assert!(!suppresses(&event, Timestamp::parse("2024-04-30").unwrap()));
        let open = Event {
            kind: EventKind::EmailOpen,
            ..event
        };
        assert!(!suppresses(&open, at));
    }

    #[test]
    fn the_payload_hash_is_stable_across_releases() {
        // Stored in keys: this value must never change.
        let payload = serde_json::json!({"b": "2", "a": "1"});
        assert_eq!(payload_hash(&payload), "be9380e87280e5d5");
    }

    #[test]
    fn a_rejected_push_puts_back_the_state_before_it_and_an_unknown_one_stays_pending() {
        let before = Acked {
            status: Status::Member,
            payload_hash: "old".into(),
            seq: 2,
            pending: None,
        };
        let p = plan(
            Mode::Mirror,
            "p",
            &wanted(&[(1, "new")]),
            &[(id(1), before.clone())],
            everyone_eligible,
        );
        let op = &p.ops[0];
        assert_eq!(
            op.settle(Some(&before), Outcome::Acknowledged),
            Settled::Applied(op.acked.clone())
        );
        assert_eq!(
            op.settle(Some(&before), Outcome::Rejected),
            Settled::Reverted(before.clone())
        );
        assert_eq!(op.settle(Some(&before), Outcome::Unknown), Settled::Pending);
        // A customer never acknowledged before is put back to "not in the audience".
        let first = plan(
            Mode::Mirror,
            "p",
            &wanted(&[(2, "h")]),
            &[],
            everyone_eligible,
        );
        match first.ops[0].settle(None, Outcome::Rejected) {
            Settled::Reverted(a) => {
                assert_eq!(a.status, Status::Removed);
                assert_eq!(a.pending, None);
                assert_eq!(a.seq, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_run_adds_every_eligible_member_and_second_run_does_nothing() {
        let members = wanted(&[(1, "a"), (2, "b")]);
        let first = plan(Mode::Mirror, "w/c", &members, &[], everyone_eligible);
        assert_eq!(first.ops.len(), 2);
        assert!(first.ops.iter().all(|o| o.action == Action::Upsert));
        assert_eq!(first.ops[0].key, "w/c/1/1-upsert-a");
        let mut state = BTreeMap::new();
        let keys = first.ops.iter().map(|o| o.key.clone()).collect();
        commit(&mut state, &first, &keys);
        let second = plan(
            Mode::Mirror,
            "w/c",
            &members,
            &sorted(&state),
            everyone_eligible,
        );
        assert!(second.ops.is_empty());
        assert_eq!(second.unchanged, 2);
    }

    #[test]
    fn mirror_mode_removes_customers_who_left_the_segment_and_upsert_mode_keeps_them() {
        let state = vec![(
            id(7),
            Acked {
                status: Status::Member,
                payload_hash: "h".into(),
                seq: 1,
                pending: None,
            },
        )];
        let mirror = plan(Mode::Mirror, "p", &[], &state, everyone_eligible);
        assert_eq!(mirror.ops.len(), 1);
        assert_eq!(mirror.ops[0].action, Action::Remove);
        assert_eq!(mirror.ops[0].reason, Reason::Left);
        assert_eq!(mirror.ops[0].key, "p/7/2-remove-h");
        let upsert = plan(Mode::Upsert, "p", &[], &state, everyone_eligible);
        assert!(upsert.ops.is_empty());
    }

    #[test]
    fn customers_without_consent_are_removed_from_audiences_in_every_mode() {
        let state = vec![
            (
                id(1),
                Acked {
                    status: Status::Member,
                    payload_hash: "h".into(),
                    seq: 3,
                    pending: None,
                },
            ),
            (
                id(2),
                Acked {
                    status: Status::Member,
                    payload_hash: "h".into(),
                    seq: 1,
                    pending: None,
                },
            ),
        ];
        // Customer 1 is still in the segment, customer 2 left it; both withdrew consent.
        let members = wanted(&[(1, "h")]);
        for mode in [Mode::Upsert, Mode::Mirror] {
            let p = plan(mode, "p", &members, &state, |_| Eligibility::NoConsent);
            let removed: Vec<&str> = p
                .ops
                .iter()
                .filter(|o| o.action == Action::Remove)
                .map(|o| o.customer.as_str())
                .collect();
            assert_eq!(removed, ["1", "2"], "{mode:?}");
            assert!(p.ops.iter().all(|o| o.reason == Reason::Ineligible));
            assert_eq!(p.skipped.no_consent, 1);
        }
    }

    #[test]
    fn ineligible_members_are_never_sent_a_message() {
        let members = wanted(&[(1, "m"), (2, "m"), (3, "m"), (4, "m")]);
        let p = plan(Mode::Send, "p", &members, &[], |c| match c.as_str() {
            "1" => Eligibility::NoConsent,
            "2" => Eligibility::Suppressed,
            "3" => Eligibility::NoAddress,
            _ => Eligibility::Eligible,
        });
        assert_eq!(p.ops.len(), 1);
        assert_eq!(p.ops[0].customer, id(4));
        assert_eq!(p.unchanged, 0, "skipped is not unchanged");
        assert_eq!(
            p.skipped,
            Skipped {
                no_consent: 1,
                suppressed: 1,
                no_address: 1
            }
        );
    }

    #[test]
    fn a_message_goes_once_per_entry_into_the_segment() {
        let mut state = BTreeMap::new();
        let mut sends = Vec::new();
        // In, in with new text, out, in again.
        for members in [
            wanted(&[(1, "v1")]),
            wanted(&[(1, "v2")]),
            vec![],
            wanted(&[(1, "v3")]),
        ] {
            let p = plan(
                Mode::Send,
                "p",
                &members,
                &sorted(&state),
                everyone_eligible,
            );
            sends.extend(p.ops.iter().map(|o| o.key.clone()));
            let keys = p.ops.iter().map(|o| o.key.clone()).collect();
            commit(&mut state, &p, &keys);
        }
        assert_eq!(sends, ["p/1/1-send", "p/1/2-send"]);
    }

    #[test]
    fn an_unacknowledged_push_is_planned_again_with_the_same_key() {
        let members = wanted(&[(1, "a"), (2, "b")]);
        let first = plan(Mode::Send, "p", &members, &[], everyone_eligible);
        let mut state = BTreeMap::new();
        // Only customer 1's send was acknowledged before the run died.
        let acked: BTreeSet<String> = [first.ops[0].key.clone()].into();
        commit(&mut state, &first, &acked);
        let retry = plan(
            Mode::Send,
            "p",
            &members,
            &sorted(&state),
            everyone_eligible,
        );
        assert_eq!(retry.ops.len(), 1);
        assert_eq!(retry.ops[0].key, first.ops[1].key);
    }

    #[test]
    fn an_operation_whose_outcome_was_lost_is_pushed_again_under_its_key() {
        let members = wanted(&[(1, "a")]);
        let first = plan(Mode::Mirror, "p", &members, &[], everyone_eligible);
        let mut state = BTreeMap::new();
        commit(&mut state, &first, &BTreeSet::new());
        let retry = plan(
            Mode::Mirror,
            "p",
            &members,
            &sorted(&state),
            everyone_eligible,
        );
        assert_eq!(retry.ops.len(), 1);
        assert_eq!(retry.ops[0].key, first.ops[0].key);
        assert_eq!(retry.ops[0].reason, Reason::Unconfirmed);
        let keys = retry.ops.iter().map(|o| o.key.clone()).collect();
        commit(&mut state, &retry, &keys);
        assert!(
            plan(
                Mode::Mirror,
                "p",
                &members,
                &sorted(&state),
                everyone_eligible
            )
            .ops
            .is_empty()
        );
        // The customer left while the outcome was unknown: they may be in the audience, so
        // they are removed under a new key.
        let mut lost = BTreeMap::new();
        commit(&mut lost, &first, &BTreeSet::new());
        let left = plan(Mode::Mirror, "p", &[], &sorted(&lost), everyone_eligible);
        assert_eq!(left.ops.len(), 1);
        assert_eq!(left.ops[0].action, Action::Remove);
        assert_eq!(left.ops[0].key, "p/1/2-remove-a");
    }

    #[test]
    fn a_removal_whose_outcome_was_lost_is_pushed_again_even_without_consent() {
        let state = vec![(
            id(1),
            Acked {
                status: Status::Member,
                payload_hash: "h".into(),
                seq: 1,
                pending: Some(Pending {
                    action: Action::Remove,
                    key: "p/1/2-remove-h".into(),
                    payload_hash: "h".into(),
                }),
            },
        )];
        let p = plan(Mode::Mirror, "p", &wanted(&[(1, "h")]), &state, |_| {
            Eligibility::NoConsent
        });
        assert_eq!(p.ops.len(), 1);
        assert_eq!(p.ops[0].key, "p/1/2-remove-h");
        assert_eq!(p.ops[0].reason, Reason::Unconfirmed);
        assert_eq!(p.unchanged, 0);
    }

    #[test]
    fn a_payload_that_changed_during_the_retry_is_a_new_audience_change() {
        let first = plan(
            Mode::Upsert,
            "p",
            &wanted(&[(1, "aaa")]),
            &[],
            everyone_eligible,
        );
        let retry = plan(
            Mode::Upsert,
            "p",
            &wanted(&[(1, "bbb")]),
            &[],
            everyone_eligible,
        );
        assert_ne!(first.ops[0].key, retry.ops[0].key);
    }

    #[derive(Debug, Clone)]
    struct Round {
        members: BTreeMap<u32, u8>,
        ineligible: BTreeSet<u32>,
        /// Operations acknowledged, by index modulo the number planned; `None` = all.
        acked: Option<Vec<usize>>,
        /// Operations refused for good, by index modulo the number planned (an operation both
        /// acknowledged and refused counts as acknowledged).
        rejected: Vec<usize>,
        /// Whether operations that were neither acknowledged nor refused reached the
        /// destination anyway (their outcome was lost).
        lost_were_applied: bool,
    }

    fn round() -> impl Strategy<Value = Round> {
        (
            prop::collection::btree_map(0u32..12, 0u8..3, 0..10),
            prop::collection::btree_set(0u32..12, 0..4),
            prop::option::of(prop::collection::vec(0usize..16, 0..6)),
            prop::collection::vec(0usize..16, 0..3),
            any::<bool>(),
        )
            .prop_map(
                |(members, ineligible, acked, rejected, lost_were_applied)| Round {
                    members,
                    ineligible,
                    acked,
                    rejected,
                    lost_were_applied,
                },
            )
    }

    /// What a destination that honours idempotency keys holds after applying operations.
    #[derive(Debug, Default)]
    struct Destination {
        applied: HashMap<String, (CustomerId, Action)>,
        audience: BTreeMap<CustomerId, String>,
        messages: Vec<CustomerId>,
    }

    impl Destination {
        fn apply(&mut self, op: &Planned) {
            if self.applied.contains_key(&op.key) {
                return;
            }
            self.applied
                .insert(op.key.clone(), (op.customer.clone(), op.action));
            match op.action {
                Action::Upsert => {
                    self.audience
                        .insert(op.customer.clone(), op.acked.payload_hash.clone());
                }
                Action::Remove => {
                    self.audience.remove(&op.customer);
                }
                Action::Send => self.messages.push(op.customer.clone()),
            }
        }
    }

    /// Pushes a plan: the destination applies the acknowledged operations, never the refused
    /// ones, and the others too when the round says their outcome was lost rather than never
    /// sent. Returns each operation's outcome, by key.
    fn deliver(
        p: &Plan,
        r: &Round,
        dest: &mut Destination,
    ) -> Result<HashMap<String, Outcome>, TestCaseError> {
        let pick = |i: &usize| p.ops[i % p.ops.len()].key.clone();
        let acked: BTreeSet<String> = match &r.acked {
            None => p.ops.iter().map(|o| o.key.clone()).collect(),
            Some(picks) if !p.ops.is_empty() => picks.iter().map(pick).collect(),
            Some(_) => BTreeSet::new(),
        };
        let rejected: BTreeSet<String> = if p.ops.is_empty() {
            BTreeSet::new()
        } else {
            r.rejected
                .iter()
                .map(pick)
                .filter(|k| !acked.contains(k))
                .collect()
        };
        let mut outcomes = HashMap::new();
        for op in &p.ops {
            if let Some((c, a)) = dest.applied.get(&op.key) {
                prop_assert_eq!(
                    (c, *a),
                    (&op.customer, op.action),
                    "key reused for another change"
                );
            }
            let outcome = if acked.contains(&op.key) {
                Outcome::Acknowledged
            } else if rejected.contains(&op.key) && !dest.applied.contains_key(&op.key) {
                // A destination refuses only what it has not applied before under that key.
                Outcome::Rejected
            } else {
                Outcome::Unknown
            };
            if outcome == Outcome::Acknowledged
                || (outcome == Outcome::Unknown && r.lost_were_applied)
            {
                dest.apply(op);
            }
            outcomes.insert(op.key.clone(), outcome);
        }
        Ok(outcomes)
    }

    proptest! {
        /// Whatever the sequence of segment changes and lost acknowledgements, once a run
        /// completes the audience is exactly the eligible members (mirror), no ineligible
        /// customer is ever in it, and no key is applied for two different changes.
        #[test]
        fn mirror_converges_to_the_eligible_members(rounds in prop::collection::vec(round(), 1..8)) {
            let mut state = BTreeMap::new();
            let mut dest = Destination::default();
            let mut last = rounds[0].clone();
            for r in rounds.iter().chain(std::iter::once(&Round { acked: None, ..rounds[rounds.len() - 1].clone() })) {
                let members: Vec<Wanted> = r.members.iter().map(|(n, h)| Wanted { customer: id(*n), payload_hash: format!("h{h}") }).collect();
                let elig = |c: &CustomerId| {
                    let n: u32 = c.as_str().parse().unwrap();
                    if r.ineligible.contains(&n) { Eligibility::NoConsent } else { Eligibility::Eligible }
                };
                let p = plan(Mode::Mirror, "p", &members, &sorted(&state), elig);
                for op in &p.ops {
                    prop_assert!(op.action == Action::Remove || elig(&op.customer) == Eligibility::Eligible);
                }
                let outcomes = deliver(&p, r, &mut dest)?;
                commit_outcomes(&mut state, &p, |op| outcomes[&op.key]);
                last = r.clone();
            }
            let expected: BTreeMap<CustomerId, String> = last.members.iter()
                .filter(|(n, _)| !last.ineligible.contains(n))
                .map(|(n, h)| (id(*n), format!("h{h}")))
                .collect();
            prop_assert_eq!(&dest.audience, &expected);
        }

        /// A send campaign never messages an ineligible customer, and messages a customer at
        /// most once per entry into the segment even when acknowledgements are lost.
        #[test]
        fn send_mode_messages_once_per_entry(rounds in prop::collection::vec(round(), 1..8)) {
            let mut state = BTreeMap::new();
            let mut dest = Destination::default();
            let mut entries: BTreeMap<CustomerId, usize> = BTreeMap::new();
            let mut was_in: BTreeSet<u32> = BTreeSet::new();
            for r in &rounds {
                for n in r.members.keys() {
                    if !was_in.contains(n) {
                        *entries.entry(id(*n)).or_default() += 1;
                    }
                }
                was_in = r.members.keys().copied().collect();
                let members: Vec<Wanted> = r.members.iter().map(|(n, h)| Wanted { customer: id(*n), payload_hash: format!("h{h}") }).collect();
                let elig = |c: &CustomerId| {
                    let n: u32 = c.as_str().parse().unwrap();
                    if r.ineligible.contains(&n) { Eligibility::Suppressed } else { Eligibility::Eligible }
                };
                let p = plan(Mode::Send, "p", &members, &sorted(&state), elig);
                for op in &p.ops {
                    prop_assert_eq!(op.action, Action::Send);
                    prop_assert_eq!(elig(&op.customer), Eligibility::Eligible);
                }
                let outcomes = deliver(&p, r, &mut dest)?;
                commit_outcomes(&mut state, &p, |op| outcomes[&op.key]);
            }
            let mut sent: BTreeMap<CustomerId, usize> = BTreeMap::new();
            for c in &dest.messages {
                *sent.entry(c.clone()).or_default() += 1;
            }
            for (c, n) in sent {
                prop_assert!(n <= entries[&c], "customer {} messaged {} times for {} entries", c.as_str(), n, entries[&c]);
            }
        }
    }

    proptest! {
        /// Consent is law, whatever the record looks like: only a consenting customer, not
        /// suppressed, with an address the mode can use, is eligible; and the reason given for
        /// anyone else is the first rule they break.
        #[test]
        fn only_consenting_unsuppressed_customers_with_a_usable_address_are_eligible(
            email in prop::option::of("[ ]{0,2}|[a-zA-Z]{1,4}@[a-z]{1,3}\\.com"),
            phone in prop::option::of("[ ]{0,2}|\\+?[0-9]{3,6}"),
            consent in any::<bool>(),
            suppressed in any::<bool>(),
            mode in prop::sample::select(vec![Mode::Send, Mode::Upsert, Mode::Mirror]),
        ) {
            let mut c = Customer::new("1");
            c.email = email.clone();
            c.phone = phone.clone();
            c.accepts_email_marketing = consent;
            let contact = Contact::of(&c);
            let asked = std::cell::RefCell::new(None);
            let got = eligibility(mode, &contact, |e| {
                *asked.borrow_mut() = Some(e.to_owned());
                suppressed
            });
            if let Some(a) = asked.into_inner() {
                prop_assert_eq!(&a, &a.to_lowercase(), "suppression is asked lower-cased");
            }
            let has_email = email.as_deref().is_some_and(|e| !e.trim().is_empty());
            let has_phone = phone.as_deref().is_some_and(|p| !p.trim().is_empty());
            let usable = match mode {
                Mode::Send => has_email,
                Mode::Upsert | Mode::Mirror => has_email || has_phone,
            };
            let want = if !consent {
                Eligibility::NoConsent
            } else if suppressed && has_email {
                Eligibility::Suppressed
            } else if !usable {
                Eligibility::NoAddress
            } else {
                Eligibility::Eligible
            };
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_resync_pushes_every_eligible_member_again_under_new_keys() {
        let members = wanted(&[(1, "a"), (2, "b")]);
        let first = plan(Mode::Mirror, "p", &members, &[], everyone_eligible);
        let mut state = BTreeMap::new();
        let keys = first.ops.iter().map(|o| o.key.clone()).collect();
        commit(&mut state, &first, &keys);
        let resync = plan_resync(Mode::Mirror, "p", &members, &sorted(&state), |c| {
            if c.as_str() == "2" {
                Eligibility::NoConsent
            } else {
                Eligibility::Eligible
            }
        });
        let ops: Vec<(&str, Action, &str)> = resync
            .ops
            .iter()
            .map(|o| (o.customer.as_str(), o.action, o.key.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("1", Action::Upsert, "p/1/2-upsert-a"),
                ("2", Action::Remove, "p/2/2-remove-b")
            ]
        );
        assert_eq!(
            resync.ops[0].acked.payload_hash, "a",
            "the real payload is recorded"
        );
    }

    #[test]
    fn a_late_refusal_makes_the_next_plan_push_the_change_again() {
        let members = wanted(&[(1, "a")]);
        let first = plan(Mode::Mirror, "p", &members, &[], everyone_eligible);
        let mut state = BTreeMap::new();
        let keys = first.ops.iter().map(|o| o.key.clone()).collect();
        commit(&mut state, &first, &keys);
        let undone = state[&id(1)]
            .undone_late()
            .expect("an audience change can be undone");
        state.insert(id(1), undone);
        let again = plan(
            Mode::Mirror,
            "p",
            &members,
            &sorted(&state),
            everyone_eligible,
        );
        assert_eq!(again.ops.len(), 1);
        assert_eq!(again.ops[0].action, Action::Upsert);
        assert_eq!(again.ops[0].key, "p/1/2-upsert-a");
        // A refused removal is removed again.
        let removed = Acked {
            status: Status::Removed,
            payload_hash: "a".into(),
            seq: 2,
            pending: None,
        };
        let back = removed.undone_late().unwrap();
        let p = plan(Mode::Mirror, "p", &[], &[(id(1), back)], everyone_eligible);
        assert_eq!(p.ops[0].action, Action::Remove);
        let sent = Acked {
            status: Status::Sent,
            ..removed
        };
        assert_eq!(sent.undone_late(), None, "a message cannot be unsent");
    }
}
