//! Which of a campaign's batches may be in flight together.
//!
//! A destination that takes several pushes at once (`capabilities.concurrent_pushes`) is handed
//! the next batch while earlier ones are still out. Its connections are then busy while the
//! host records one push's outcomes and hands over the next, and while the last requests of a
//! push drain, instead of idle.
//!
//! Batches still start in the order they were planned, and two orders hold whatever the depth:
//! - a replace session's batches go one at a time: the destination treats the one marked
//!   `last` as the end of the audience, so none may still be out when it arrives;
//! - removals finish before upserts start: when two persons merge whose records share an
//!   address, the retired one leaves the audience and the survivor is pushed again, and the
//!   survivor's upsert must land last or the removal would take the shared address away.
//!
//! So each batch has a [`Lane`], and a batch starts only when the [`Window`] has a place for
//! its lane: nothing is in flight, or only batches of its lane, fewer than the lane allows.

use cohort_core::delivery::Action;

/// What kind of batch this is, as far as overlapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A batch of a replace session: alone, in order.
    Session,
    /// Removals only: may overlap other removals.
    Removals,
    /// Upserts or messages only: may overlap each other.
    Changes,
    /// The batch where removals end and upserts begin: alone.
    Boundary,
}

impl Lane {
    /// The lane of a batch of these actions, `session` when it belongs to a replace session.
    pub(crate) fn of(session: bool, actions: impl IntoIterator<Item = Action>) -> Lane {
        if session {
            return Lane::Session;
        }
        let (mut removes, mut changes) = (false, false);
        for action in actions {
            match action {
                Action::Remove => removes = true,
                Action::Upsert | Action::Send => changes = true,
            }
        }
        match (removes, changes) {
            (true, true) => Lane::Boundary,
            (true, false) => Lane::Removals,
            _ => Lane::Changes,
        }
    }

    /// How many batches of this lane may be in flight at once, of `depth`.
    fn width(self, depth: usize) -> usize {
        match self {
            Lane::Session | Lane::Boundary => 1,
            Lane::Removals | Lane::Changes => depth.max(1),
        }
    }
}

/// The batches in flight: how many, and of which lane.
#[derive(Debug)]
pub(crate) struct Window {
    depth: usize,
    lane: Option<Lane>,
    flying: usize,
}

impl Window {
    /// A window of `depth` pushes (the plugin's `concurrent_pushes`; 0 counts as 1).
    pub(crate) fn new(depth: usize) -> Window {
        Window {
            depth: depth.max(1),
            lane: None,
            flying: 0,
        }
    }

    /// Whether a batch of `lane` may start now.
    pub(crate) fn has_room(&self, lane: Lane) -> bool {
        self.flying == 0 || (self.lane == Some(lane) && self.flying < lane.width(self.depth))
    }

    /// Records that a batch of `lane` started (after [`has_room`](Self::has_room) said so).
    pub(crate) fn start(&mut self, lane: Lane) {
        debug_assert!(
            self.has_room(lane),
            "{lane:?} started without room: {self:?}"
        );
        self.lane = Some(lane);
        self.flying += 1;
    }

    /// Records that a batch finished (landed or failed).
    pub(crate) fn finish(&mut self) {
        self.flying = self.flying.saturating_sub(1);
        if self.flying == 0 {
            self.lane = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_batch_of_removals_and_upserts_is_the_boundary_and_a_session_batch_is_a_session() {
        use Action::*;
        assert_eq!(Lane::of(false, [Remove, Remove]), Lane::Removals);
        assert_eq!(Lane::of(false, [Upsert, Send]), Lane::Changes);
        assert_eq!(Lane::of(false, [Remove, Upsert]), Lane::Boundary);
        assert_eq!(Lane::of(true, [Upsert]), Lane::Session);
        assert_eq!(Lane::of(false, []), Lane::Changes);
    }

    #[test]
    fn batches_of_one_lane_overlap_up_to_the_depth() {
        let mut w = Window::new(2);
        w.start(Lane::Changes);
        assert!(w.has_room(Lane::Changes));
        w.start(Lane::Changes);
        assert!(!w.has_room(Lane::Changes), "the depth is 2");
        w.finish();
        assert!(w.has_room(Lane::Changes));
    }

    #[test]
    fn upserts_wait_until_every_removal_has_landed() {
        let mut w = Window::new(4);
        w.start(Lane::Removals);
        w.start(Lane::Removals);
        assert!(!w.has_room(Lane::Changes));
        assert!(!w.has_room(Lane::Boundary));
        w.finish();
        assert!(!w.has_room(Lane::Changes), "one removal batch is still out");
        w.finish();
        assert!(w.has_room(Lane::Changes));
    }

    #[test]
    fn a_session_batch_never_shares_the_window() {
        let mut w = Window::new(4);
        w.start(Lane::Session);
        assert!(!w.has_room(Lane::Session));
        assert!(!w.has_room(Lane::Changes));
        w.finish();
        assert!(w.has_room(Lane::Session));
    }

    #[test]
    fn a_depth_of_zero_pushes_one_batch_at_a_time() {
        let mut w = Window::new(0);
        w.start(Lane::Changes);
        assert!(!w.has_room(Lane::Changes));
    }

    fn lane() -> impl Strategy<Value = Lane> {
        prop_oneof![
            Just(Lane::Session),
            Just(Lane::Removals),
            Just(Lane::Changes),
            Just(Lane::Boundary),
        ]
    }

    proptest! {
        /// Batches started in order as the window allows, finished in any order: never more
        /// than the depth out, nothing out beside a session or boundary batch, never two lanes
        /// out at once, and every batch starts.
        #[test]
        fn the_window_keeps_its_orders_whatever_order_pushes_finish_in(
            lanes in prop::collection::vec(lane(), 0..40),
            depth in 0usize..5,
            picks in prop::collection::vec(any::<prop::sample::Index>(), 80),
        ) {
            let mut w = Window::new(depth);
            let mut out: Vec<Lane> = Vec::new();
            let mut next = 0;
            let mut picks = picks.into_iter().cycle();
            while next < lanes.len() || !out.is_empty() {
                while next < lanes.len() && w.has_room(lanes[next]) {
                    w.start(lanes[next]);
                    out.push(lanes[next]);
                    next += 1;
                }
                prop_assert!(!out.is_empty(), "stuck before batch {next}");
                prop_assert!(out.len() <= depth.max(1));
                prop_assert_eq!(w.flying, out.len());
                prop_assert!(out.iter().all(|l| *l == out[0]), "two lanes out: {:?}", out);
                if matches!(out[0], Lane::Session | Lane::Boundary) {
                    prop_assert_eq!(out.len(), 1);
                }
                let done = picks.next().map_or(0, |p| p.index(out.len()));
                out.remove(done);
                w.finish();
            }
        }
    }
}
