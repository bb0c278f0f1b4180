//! Restoring after a restart, driven by the simulator of the engine tests.

use super::*;

const H: u64 = 3600;

fn failed_with(attempts: u32, error: &str) -> Outcome {
    Outcome::Failed {
        attempts,
        error: error.into(),
    }
}

impl Sim {
    fn restore(&mut self, id: u64, disabled: bool) -> Result<EndpointId, RestoreError> {
        let url = Url::parse("http://receiver.example/hook").unwrap();
        let secret = Secret::from_bytes(&[7; 32]).unwrap();
        let id = EndpointId::from_u64(id);
        self.engine.restore_endpoint(id, url, secret, disabled)?;
        Ok(id)
    }

    /// Restores a message enqueued at the simulation's start, due `due` after it.
    fn restore_msg(
        &mut self,
        endpoint: EndpointId,
        webhook_id: &str,
        attempts: u32,
        due: Duration,
    ) -> MessageId {
        self.restore_msg_len(endpoint, webhook_id, attempts, due, 2)
    }

    /// [`Sim::restore_msg`] with a body of `len` bytes.
    fn restore_msg_len(
        &mut self,
        endpoint: EndpointId,
        webhook_id: &str,
        attempts: u32,
        due: Duration,
        len: usize,
    ) -> MessageId {
        let msg = RestoredMessage {
            endpoint,
            webhook_id: webhook_id.into(),
            body: vec![b'x'; len].into(),
            attempts,
            next_attempt: self.t0 + due,
            enqueued: self.t0,
        };
        self.engine.restore_message(msg, self.now)
    }
}

#[test]
fn restored_retry_waits_for_its_time_then_continues_the_schedule() {
    let script = vec![
        status(500),
        status(500),
        status(500),
        status(500),
        status(200),
    ];
    let mut sim = Sim::scripted(EngineConfig::default(), script);
    let ep = sim.restore(4, false).unwrap();
    let m = sim.restore_msg(ep, "msg_old_9", 3, secs(2 * H));
    assert_eq!(sim.engine.stats().retrying, 1);
    assert_eq!(sim.engine.next_deadline(), Some(sim.t0 + secs(2 * H)));
    sim.run_for(secs(2 * H - 1));
    assert!(sim.started.is_empty(), "not attempted before its time");
    sim.run();
    // Attempt 4 at 2 h fails; the schedule's delay before attempt 5 is 2 h.
    let id: Rc<str> = "msg_old_9".into();
    assert_eq!(
        sim.attempts_of(m),
        vec![(secs(2 * H), 4, id.clone()), (secs(4 * H), 5, id)]
    );
    assert_eq!(sim.outcome(m), &delivered(5, 4 * H));
    assert_eq!(sim.outcomes.len(), 1);
}

#[test]
fn restored_messages_past_due_go_out_at_once_within_the_limit() {
    let config = EngineConfig {
        max_in_flight_per_endpoint: 1,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, Box::new(|_: &Started| (secs(1), status(200))));
    sim.now = sim.t0 + secs(H); // the restart happens an hour in
    let ep = sim.restore(1, false).unwrap();
    let late = sim.restore_msg(ep, "late", 2, secs(60));
    let fresh = sim.restore_msg(ep, "fresh", 0, Duration::ZERO);
    let soon = sim.restore_msg(ep, "soon", 0, secs(H + 10)); // never attempted, due later
    assert_eq!(sim.engine.stats().queued, 2);
    sim.run();
    let at = |m| {
        sim.attempts_of(m)
            .iter()
            .map(|a| (a.0, a.1))
            .collect::<Vec<_>>()
    };
    assert_eq!(at(late), vec![(secs(H), 3)], "at once, as attempt 3");
    assert_eq!(
        at(fresh),
        vec![(secs(H + 1), 1)],
        "after `late`: one at a time"
    );
    assert_eq!(at(soon), vec![(secs(H + 10), 1)]);
    assert_eq!(sim.max_running[&ep], 1);
    assert_eq!(sim.outcome(late), &delivered(3, H + 1));
    assert_eq!(sim.outcomes.len(), 3);
}

#[test]
fn restored_disabled_endpoint_refuses() {
    let mut sim = Sim::scripted(EngineConfig::default(), vec![status(200)]);
    let ep = sim.restore(2, true).unwrap();
    assert!(sim.engine.endpoint(ep).unwrap().disabled);
    let old = sim.restore_msg(ep, "old", 3, secs(H));
    let new = sim.publish(ep, "new");
    sim.run();
    assert!(sim.started.is_empty());
    assert_eq!(sim.outcome(old), &failed_with(3, "endpoint disabled"));
    assert_eq!(sim.outcome(new), &failed_with(0, "endpoint disabled"));
    assert_eq!(sim.engine.stats().failed, 2);
}

#[test]
fn ids_after_restore() {
    let mut sim = Sim::scripted(EngineConfig::default(), vec![status(200)]);
    let five = sim.restore(5, false).unwrap();
    let three = sim.restore(3, true).unwrap();
    assert_eq!(
        sim.restore(5, true),
        Err(RestoreError::DuplicateEndpoint(five))
    );
    assert_eq!(sim.restore(0, false), Err(RestoreError::ZeroEndpointId));
    assert_eq!(
        RestoreError::DuplicateEndpoint(five).to_string(),
        "endpoint 5 is already registered"
    );
    assert_eq!(sim.engine.next_endpoint_id(), 6);
    // Endpoints 6..=9 were issued and removed before the restart.
    sim.engine.set_next_endpoint_id(10);
    sim.engine.set_next_endpoint_id(2); // never lowers the counter
    assert_eq!(sim.engine.next_endpoint_id(), 10);
    let new = sim.add();
    assert_eq!(new.as_u64(), 10);
    let listed: Vec<EndpointId> = sim.engine.endpoints().map(|(id, _)| id).collect();
    assert_eq!(listed, [three, five, new]);
    // Removing a restored endpoint does not free its id.
    assert!(sim.engine.remove_endpoint(five, sim.now));
    assert!(sim.add().as_u64() > 10);
}

#[test]
fn restored_messages_finish_once_on_exhaustion() {
    let mut sim = Sim::scripted(EngineConfig::default(), vec![status(500)]);
    let ep = sim.restore(1, false).unwrap();
    // The default schedule has 8 attempts: 7 made leaves one, 8 leave none.
    let last = sim.restore_msg(ep, "last", 7, secs(10));
    let none_left = sim.restore_msg(ep, "none_left", 8, secs(10));
    sim.run();
    let at: Vec<(Duration, u32)> = sim.attempts_of(last).iter().map(|a| (a.0, a.1)).collect();
    assert_eq!(at, vec![(secs(10), 8)]);
    assert_eq!(sim.outcome(last), &failed_with(8, "HTTP 500"));
    assert!(sim.attempts_of(none_left).is_empty());
    assert_eq!(
        sim.outcome(none_left),
        &failed_with(8, "retry schedule exhausted before the restart")
    );
    assert_eq!(sim.outcomes.len(), 2);
    assert_eq!(sim.engine.stats().failed, 2);
}

#[test]
fn restored_messages_finish_once_on_remove() {
    let mut sim = Sim::new(
        EngineConfig::default(),
        Box::new(|_: &Started| (secs(30), status(500))),
    );
    let ep = sim.restore(1, false).unwrap();
    let flying = sim.restore_msg(ep, "flying", 2, Duration::ZERO);
    let waiting = sim.restore_msg(ep, "waiting", 3, secs(H));
    sim.run_for(secs(10)); // `flying` is in flight
    assert!(sim.engine.remove_endpoint(ep, sim.now));
    sim.run();
    assert_eq!(sim.outcome(waiting), &failed_with(3, "endpoint removed"));
    assert_eq!(sim.outcome(flying), &failed_with(3, "endpoint removed"));
    assert_eq!(sim.outcomes.len(), 2);
    // A message restored for an endpoint that is gone fails at once.
    let orphan = sim.restore_msg(ep, "orphan", 1, secs(H));
    sim.run();
    assert_eq!(sim.outcome(orphan), &failed_with(1, "unknown endpoint"));
}

#[test]
fn restored_queue_over_the_limit_drops_the_oldest() {
    let config = EngineConfig {
        max_queue: 2,
        ..EngineConfig::default()
    };
    let mut sim = Sim::scripted(config, vec![status(200)]);
    let ep = sim.restore(1, false).unwrap();
    let ms: Vec<MessageId> = (0..4)
        .map(|i| sim.restore_msg(ep, &format!("m{i}"), i, secs(60)))
        .collect();
    sim.run();
    assert_eq!(sim.outcome(ms[0]), &failed_with(0, "queue full"));
    assert_eq!(sim.outcome(ms[1]), &failed_with(1, "queue full"));
    assert_eq!(sim.outcome(ms[2]), &delivered(3, 60));
    assert_eq!(sim.outcome(ms[3]), &delivered(4, 60));
    assert_eq!(sim.outcomes.len(), 4);
}

#[test]
fn restored_messages_respect_the_byte_budgets() {
    let config = EngineConfig {
        max_queue_bytes_per_endpoint: 10,
        max_queue_bytes_total: 15,
        ..EngineConfig::default()
    };
    let mut sim = Sim::scripted(config, vec![status(200)]);
    let (e1, e2) = (
        sim.restore(1, false).unwrap(),
        sim.restore(2, false).unwrap(),
    );
    // In publish order, each 4 bytes: e1 holds m0, m1, then m2 makes 12 > 10 and m0 (e1's
    // oldest) goes; e2's m3 makes 12, its m4 16 > 15 and m1 (the oldest of all) goes.
    let ms: Vec<MessageId> = [(e1, 0), (e1, 1), (e1, 0), (e2, 2), (e2, 0)]
        .iter()
        .enumerate()
        .map(|(i, &(ep, attempts))| {
            sim.restore_msg_len(ep, &format!("m{i}"), attempts, secs(60), 4)
        })
        .collect();
    assert_eq!(sim.engine.stats().queued_bytes, 12);
    assert_eq!(sim.engine.endpoint(e1).unwrap().queued_bytes, 4);
    // Larger than the endpoint's budget: it fails alone.
    let big = sim.restore_msg_len(e2, "big", 0, secs(60), 11);
    assert_eq!(sim.engine.stats().queued_bytes, 12);
    sim.run();
    assert_eq!(sim.outcome(ms[0]), &failed_with(0, "queue full"));
    assert_eq!(sim.outcome(ms[1]), &failed_with(1, "queue full"));
    assert_eq!(sim.outcome(big), &failed_with(0, "queue full"));
    assert_eq!(sim.outcome(ms[2]), &delivered(1, 60));
    assert_eq!(sim.outcome(ms[3]), &delivered(3, 60));
    assert_eq!(sim.outcome(ms[4]), &delivered(1, 60));
    assert_eq!(sim.outcomes.len(), 6);
    assert_eq!(sim.engine.stats().queued_bytes, 0);
}

#[test]
fn unix_times_to_instants() {
    let now = Instant::now();
    let ms = 1_700_000_000_000;
    assert_eq!(
        instant_from_unix_ms(ms + 7_200_000, now, ms),
        now + secs(2 * H)
    );
    assert_eq!(instant_from_unix_ms(ms, now, ms), now);
    // A wall clock gone back cannot park a message for longer than any schedule could.
    let far = instant_from_unix_ms(ms + 400 * 24 * 3_600_000, now, ms);
    assert_eq!(far, now + crate::proto::webhook::schedule::MAX_DELAY);
    // The past: as far back as `Instant` goes, else `now` (due at once).
    let behind = instant_from_unix_ms(ms - 1, now, ms);
    assert!(behind <= now && now - behind <= Duration::from_millis(1));
    assert!(
        instant_from_unix_ms(0, now, u64::MAX) <= now,
        "no panic either way"
    );
}
