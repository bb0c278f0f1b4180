//! `Sec-WebSocket-Extensions` parsing and the permessage-deflate negotiation on arbitrary
//! input: nothing panics; every answer the server would give to an offer passes the
//! check a client makes of it against that offer, with the same windows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::ws::extensions::{
    check_response, negotiate, parse, DeflateParams, ServerPolicy, PERMESSAGE_DEFLATE,
};

fuzz_target!(|input: &[u8]| {
    let Ok(field) = std::str::from_utf8(input) else {
        return;
    };
    let policy = ServerPolicy {
        context_takeover: input.first().is_some_and(|b| b & 1 == 1),
    };
    let _ = negotiate(field, policy);
    let _ = check_response(field, &DeflateParams::default());
    let Ok(exts) = parse(field) else { return };
    for e in exts {
        if !e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            continue;
        }
        let Ok(offer) = DeflateParams::from_params(&e.params) else {
            continue;
        };
        // The offer alone, as a client would send it.
        let mut one = String::from(PERMESSAGE_DEFLATE);
        for (k, v) in &e.params {
            one.push_str("; ");
            one.push_str(k);
            if let Some(v) = v {
                one.push('=');
                one.push_str(v);
            }
        }
        let Some(agreed) = negotiate(&one, policy) else {
            continue;
        };
        let checked = check_response(&agreed.response(), &offer);
        let back = checked.unwrap_or_else(|e| panic!("{one:?} -> {:?}: {e}", agreed.response()));
        let back = back.expect("an extension");
        assert_eq!(back.server_window_bits, agreed.server_window_bits);
        assert_eq!(back.client_window_bits, agreed.client_window_bits);
        assert_eq!(back.server_no_context_takeover, agreed.server_no_context_takeover);
        assert_eq!(back.client_no_context_takeover, agreed.client_no_context_takeover);
    }
});
