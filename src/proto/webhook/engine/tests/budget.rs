//! The byte budgets ("Byte budgets" in the engine's module docs), with fake time.

use super::*;

fn queue_full(attempts: u32) -> Outcome {
    Outcome::Failed {
        attempts,
        error: "queue full".into(),
    }
}

/// Every attempt takes 1 s and is answered 200.
fn one_second_ok() -> Responder {
    Box::new(|_: &Started| (secs(1), status(200)))
}

/// A deterministic pseudo-random sequence.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

fn bytes_of(sim: &Sim, ep: EndpointId) -> usize {
    sim.engine.endpoint(ep).unwrap().queued_bytes
}

#[test]
fn past_the_endpoint_budget_its_oldest_pending_message_fails() {
    let config = EngineConfig {
        max_in_flight_per_endpoint: 1,
        max_queue_bytes_per_endpoint: 10,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, one_second_ok());
    let ep = sim.add();
    let a = sim.publish_len(ep, "a", 4);
    sim.drain(); // a in flight: it still counts
    assert_eq!(sim.engine.stats().queued_bytes, 4);
    let b = sim.publish_len(ep, "b", 4);
    assert_eq!(bytes_of(&sim, ep), 8);
    let c = sim.publish_len(ep, "c", 4); // 12 > 10: b, the oldest pending, goes
    assert_eq!(bytes_of(&sim, ep), 8);
    let d = sim.publish_len(ep, "d", 3); // 11 > 10: c goes
    assert_eq!(bytes_of(&sim, ep), 7);
    // Larger than the budget on its own: it fails alone, d stays.
    let big = sim.publish_len(ep, "big", 11);
    assert_eq!(bytes_of(&sim, ep), 7);
    assert_eq!(sim.engine.stats().queued_bytes, 7);
    sim.drain();
    for m in [b, c, big] {
        assert_eq!(sim.outcome(m), &queue_full(0), "{m}");
        assert_eq!(sim.outcomes[&m].3, secs(0), "{m} failed at once");
    }
    sim.run();
    assert_eq!(sim.outcome(a), &delivered(1, 1));
    assert_eq!(sim.outcome(d), &delivered(1, 2));
    assert_eq!(sim.outcomes.len(), 5);
    let st = sim.engine.stats();
    assert_eq!((st.delivered, st.failed, st.queued_bytes), (2, 3, 0));
    assert_eq!(bytes_of(&sim, ep), 0);
}

#[test]
fn past_the_total_budget_the_oldest_pending_message_of_any_endpoint_fails() {
    let config = EngineConfig {
        max_in_flight_per_endpoint: 1,
        max_queue_bytes_per_endpoint: 100,
        max_queue_bytes_total: 10,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, one_second_ok());
    let (e1, e2) = (sim.add(), sim.add());
    let a = sim.publish_len(e1, "a", 3);
    sim.drain(); // a in flight
    let c = sim.publish_len(e1, "c", 3); // waits behind a
    let b = sim.publish_len(e2, "b", 3);
    sim.drain(); // b in flight
    assert_eq!(sim.engine.stats().queued_bytes, 9);
    // 12 > 10: the oldest pending message overall is e1's c, not one of e2's.
    let d = sim.publish_len(e2, "d", 3);
    assert_eq!(sim.engine.stats().queued_bytes, 9);
    assert_eq!((bytes_of(&sim, e1), bytes_of(&sim, e2)), (3, 6));
    sim.run();
    assert_eq!(sim.outcome(c), &queue_full(0));
    assert_eq!(sim.outcomes[&c].3, secs(0));
    assert_eq!(sim.outcome(a), &delivered(1, 1));
    assert_eq!(sim.outcome(b), &delivered(1, 1));
    assert_eq!(sim.outcome(d), &delivered(1, 2));
    assert_eq!(sim.engine.stats().queued_bytes, 0);
    // A body larger than the total budget (but within the endpoint's) fails alone.
    let huge = sim.publish_len(e1, "huge", 11);
    sim.drain();
    assert_eq!(sim.outcome(huge), &queue_full(0));
    assert!(sim.started.iter().all(|s| s.message != huge));
}

#[test]
fn a_body_shared_by_several_endpoints_counts_once_for_each() {
    let config = EngineConfig {
        max_queue_bytes_total: 12,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, one_second_ok());
    let eps: Vec<EndpointId> = (0..3).map(|_| sim.add()).collect();
    let body: Rc<[u8]> = Rc::from(&b"12345"[..]);
    let ms: Vec<MessageId> = eps
        .iter()
        .map(|ep| (sim.engine).enqueue(*ep, "shared".into(), body.clone(), sim.now))
        .collect();
    // 3 x 5 = 15 > 12: the first endpoint's message (the oldest) goes.
    assert_eq!(sim.engine.stats().queued_bytes, 10);
    assert_eq!(
        Rc::strong_count(&body),
        3,
        "one copy, held twice by the engine"
    );
    sim.run();
    assert_eq!(sim.outcome(ms[0]), &queue_full(0));
    assert_eq!(sim.outcome(ms[1]), &delivered(1, 1));
    assert_eq!(sim.outcome(ms[2]), &delivered(1, 1));
    assert_eq!(Rc::strong_count(&body), 1);
}

#[test]
fn a_waiting_retry_keeps_its_bytes_and_can_be_the_one_to_go() {
    let config = EngineConfig {
        max_in_flight_per_endpoint: 1,
        max_queue_bytes_per_endpoint: 8,
        ..EngineConfig::default()
    };
    let responder = Box::new(|s: &Started| {
        let code = if &*s.webhook_id == "a" { 500 } else { 200 };
        (secs(1), status(code))
    });
    let mut sim = Sim::new(config, responder);
    let ep = sim.add();
    let a = sim.publish_len(ep, "a", 4);
    sim.drain();
    let b = sim.publish_len(ep, "b", 4); // 8: a in flight and b ready, exactly the budget
    sim.run_for(secs(1)); // a failed: it waits until 6 s; b is in flight
    let st = sim.engine.stats();
    assert_eq!((st.retrying, st.in_flight, st.queued_bytes), (1, 1, 8));
    assert_eq!(sim.engine.next_deadline(), Some(sim.t0 + secs(6)));
    let c = sim.publish_len(ep, "c", 1); // 9 > 8: a, the oldest pending, goes
    assert_eq!(
        sim.engine.next_deadline(),
        None,
        "its retry timer went with it"
    );
    assert_eq!(sim.engine.stats().queued_bytes, 5);
    sim.run();
    assert_eq!(sim.outcome(a), &queue_full(1));
    assert_eq!(sim.outcomes[&a].3, secs(1));
    assert_eq!(sim.outcome(b), &delivered(1, 2));
    assert_eq!(sim.outcome(c), &delivered(1, 2));
    assert_eq!(sim.started.len(), 3, "a was not attempted again");
}

#[test]
fn removing_an_endpoint_frees_its_pending_bytes_at_once_and_in_flight_ones_at_their_end() {
    let config = EngineConfig {
        max_in_flight_per_endpoint: 1,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, one_second_ok());
    let ep = sim.add();
    let a = sim.publish_len(ep, "a", 4);
    sim.drain();
    sim.publish_len(ep, "b", 6);
    assert_eq!(sim.engine.stats().queued_bytes, 10);
    sim.engine.remove_endpoint(ep, sim.now);
    assert_eq!(
        sim.engine.stats().queued_bytes,
        4,
        "a's attempt still holds its body"
    );
    sim.run();
    assert_eq!(sim.outcome(a), &delivered(1, 1));
    assert_eq!(sim.engine.stats().queued_bytes, 0);
}

#[test]
fn budgets_hold_under_a_flaky_fleet() {
    let mut rng = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut draw = xorshift(0x2545_F491_4F6C_DD1D);
    let config = EngineConfig {
        max_queue_bytes_per_endpoint: 20_000,
        max_queue_bytes_total: 50_000,
        pause_after_failures: 3,
        probe_interval: secs(2),
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(
        config,
        Box::new(move |s: &Started| {
            let r = rng();
            let latency = Duration::from_millis(r % 3000);
            let result = match (r >> 20) % 6 {
                0 | 1 => status(200),
                2 => status(500),
                3 => AttemptResult::Timeout,
                4 if s.number > 2 => status(404),
                _ => status(503),
            };
            (latency, result)
        }),
    );
    let eps: Vec<EndpointId> = (0..5).map(|_| sim.add()).collect();
    let mut msgs = Vec::new();
    for i in 0..2000 {
        let ep = eps[(draw() % 5) as usize];
        let len = 1 + (draw() % 3000) as usize;
        msgs.push(sim.publish_len(ep, &format!("m{i}"), len));
        if i % 7 == 0 {
            // check_invariants runs after every drain, budgets included
            sim.run_for(sim.elapsed() + Duration::from_millis(300));
        }
    }
    sim.run();
    assert_eq!(sim.outcomes.len(), msgs.len(), "one outcome each");
    let full = (sim.outcomes.values())
        .filter(|o| matches!(&o.2, Outcome::Failed { error, .. } if error == "queue full"))
        .count();
    assert!(full > 100, "the budgets were reached: {full}");
    let st = sim.engine.stats();
    assert_eq!(st.delivered + st.failed, msgs.len() as u64);
    assert_eq!(st.queued_bytes, 0);
}
