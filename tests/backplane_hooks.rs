//! Webhooks across hubs sharing one Redis: a registration made on one hub is every hub's,
//! each message is delivered once, and the messages of a hub killed with SIGKILL are
//! delivered by another after the claim timeout, with the same `webhook-id`. A real
//! `redis-server` (Debian package) runs on a free loopback port in its own directory; the
//! receiver is a small HTTP server in this test.

#[path = "util/redis.rs"]
mod redis_server;
mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redis_server::RedisServer as Redis;
use util::{get, post, start_hub, Proc};

/// What the receiver saw: per `webhook-id`, the attempts answered 503 and 200.
#[derive(Default)]
struct Seen {
    refused: HashMap<String, u32>,
    delivered: HashMap<String, u32>,
}

/// An HTTP receiver answering 503 while `refuse` is set, 200 otherwise.
fn receiver(refuse: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (refuse, seen) = (refuse.clone(), seen.clone());
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut id) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "webhook-id" => id = v.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let no = refuse.load(Ordering::SeqCst);
                    {
                        let mut seen = seen.lock().unwrap();
                        let map = if no {
                            &mut seen.refused
                        } else {
                            &mut seen.delivered
                        };
                        *map.entry(id).or_default() += 1;
                    }
                    let status = if no { "503 Busy" } else { "200 OK" };
                    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A hub on `redis`, returned once both its Redis links are up (`/stats` says
/// `"ready":true`): before that, publishes and registrations are answered 503.
fn hub(redis: &Redis) -> Proc {
    let node = start_hub(&[
        "--redis",
        &redis.url(),
        "--webhook-allow-private",
        "--redis-claim-timeout",
        "2",
        "--webhook-schedule",
        "0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
    ]);
    wait_for("the hub's redis links", Duration::from_secs(10), || {
        get(node.addr, "/stats")
            .text()
            .contains("\"redis\":{\"ready\":true")
    });
    node
}

/// Publishes `data` on `node`, expecting 201.
fn publish(node: &Proc, data: &str) {
    let r = post(node.addr, "/topics/hooked", data);
    assert_eq!(r.status, 201, "publish: {}", r.text());
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_message_is_delivered_once_across_hubs_even_when_one_is_killed() {
    let redis = Redis::start();
    let refuse = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let to = receiver(refuse.clone(), seen.clone());
    let mut nodes = vec![hub(&redis), hub(&redis), hub(&redis)];

    // Registered on node 1, listed by node 3 (announced through Redis).
    let url = format!("url=http://{to}/in");
    let r = post(nodes[0].addr, "/topics/hooked/webhooks", &url);
    assert_eq!(r.status, 201, "{}", r.text());
    wait_for("the registration on node 3", Duration::from_secs(5), || {
        get(nodes[2].addr, "/topics/hooked/webhooks")
            .text()
            .contains(&to.to_string())
    });

    // 30 publishes across the nodes while the receiver refuses: the nodes hold them.
    for i in 0..30 {
        publish(&nodes[i % 3], &format!("first {i}"));
    }
    wait_for("every message attempted", Duration::from_secs(10), || {
        seen.lock().unwrap().refused.len() == 30
    });
    // Node 2 dies holding its share; the others take it over after the claim timeout.
    let killed = nodes.remove(1);
    drop(killed); // SIGKILL
    thread::sleep(Duration::from_millis(300));
    refuse.store(false, Ordering::SeqCst);
    wait_for("30 deliveries", Duration::from_secs(20), || {
        seen.lock().unwrap().delivered.len() == 30
    });

    // A node started again joins in; 15 more publishes, the receiver answering.
    nodes.push(hub(&redis));
    for i in 0..15 {
        publish(&nodes[i % 3], &format!("second {i}"));
    }
    wait_for("45 deliveries", Duration::from_secs(20), || {
        seen.lock().unwrap().delivered.len() == 45
    });
    thread::sleep(Duration::from_millis(2500)); // a claim period: no late duplicate
    let seen = seen.lock().unwrap();
    let twice: Vec<_> = seen.delivered.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    // The first 30 kept the webhook-id they were first attempted with, whoever delivered.
    let mut refused: Vec<_> = seen.refused.keys().collect();
    refused.sort();
    let mut first: Vec<_> = seen
        .delivered
        .keys()
        .filter(|k| seen.refused.contains_key(*k))
        .collect();
    first.sort();
    assert_eq!(first, refused, "the same webhook-ids after the takeover");
    // Every outbox entry is acknowledged and gone.
    let len = redis.int(&["XLEN", "pushwire:hooks:out"]);
    assert_eq!(len, 0, "outbox left: {len}");
}

#[test]
fn registrations_and_removals_reach_every_hub_and_redis_down_answers_503() {
    let redis = Redis::start();
    let (a, b) = (hub(&redis), hub(&redis));
    let r = post(a.addr, "/topics/t2/webhooks", "url=http://127.0.0.1:9/x");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = json_str(&r.text(), "id").expect("id");
    wait_for("listed on b", Duration::from_secs(5), || {
        get(b.addr, "/topics/t2/webhooks").text().contains(&id)
    });
    let del = util::request(
        b.addr,
        &format!("DELETE /topics/t2/webhooks/{id} HTTP/1.1\r\nHost: t\r\n\r\n"),
    );
    assert_eq!(del.status, 204);
    wait_for("gone from a", Duration::from_secs(5), || {
        !get(a.addr, "/topics/t2/webhooks").text().contains(&id)
    });
    assert_eq!(redis.int(&["HLEN", "pushwire:hooks"]), 0);
    drop(redis);
    wait_for("a 503 registration", Duration::from_secs(5), || {
        post(a.addr, "/topics/t2/webhooks", "url=http://127.0.0.1:9/y").status == 503
    });
}

#[test]
fn registrations_are_written_again_when_redis_loses_its_data() {
    let mut redis = Redis::start();
    let refuse = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let to = receiver(refuse, seen.clone());
    let (a, b) = (hub(&redis), hub(&redis));
    let r = post(
        a.addr,
        "/topics/hooked/webhooks",
        &format!("url=http://{to}/in"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    publish(&b, "before");
    wait_for("the first delivery", Duration::from_secs(10), || {
        seen.lock().unwrap().delivered.len() == 1
    });
    redis.kill();
    redis.restart();
    // Both hubs reconnect, see the new epoch, and write their registrations again.
    wait_for(
        "the registration back in redis",
        Duration::from_secs(15),
        || redis.int(&["HLEN", "pushwire:hooks"]) == 1,
    );
    wait_for(
        "a publish after the restart",
        Duration::from_secs(10),
        || post(b.addr, "/topics/hooked", "after").status == 201,
    );
    wait_for(
        "the delivery after the restart",
        Duration::from_secs(10),
        || seen.lock().unwrap().delivered.len() == 2,
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.delivered.values().all(|n| *n == 1),
        "{:?}",
        seen.delivered
    );
}

/// The string after `"key":"` in a JSON text (ids and secrets have no escapes).
fn json_str(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let at = text.find(&pat)? + pat.len();
    Some(text[at..].split('"').next()?.to_owned())
}
