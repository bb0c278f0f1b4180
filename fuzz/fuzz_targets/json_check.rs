//! JSON checker: arbitrary bytes never panic, a refusal's position is within the input,
//! and an accepted text stays accepted inside an array, as an object member and with
//! whitespace around it (what the encoders do with a JSON event's data); the first byte
//! picks a small depth limit so the limit is within reach.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::json::{check_with, Cause, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&d, text)) = data.split_first() else {
        return;
    };
    let lim = Limits {
        max_depth: usize::from(d % 8),
        max_bytes: usize::MAX,
    };
    match check_with(text, lim) {
        Err(e) => {
            assert!(e.at <= text.len(), "{e:?}");
            let _ = e.to_string();
        }
        Ok(()) => {
            let deeper = Limits {
                max_depth: lim.max_depth + 1,
                ..lim
            };
            let wrapped = [b"[".as_slice(), text, b"]"].concat();
            assert_eq!(check_with(&wrapped, deeper), Ok(()));
            let member = [b"{\"d\":".as_slice(), text, b"}"].concat();
            assert_eq!(check_with(&member, deeper), Ok(()));
            let spaced = [b" \n".as_slice(), text, b"\t\r"].concat();
            assert_eq!(check_with(&spaced, lim), Ok(()));
            // Two values are never one.
            let twice = [text, b" ", text].concat();
            assert!(check_with(&twice, lim).is_err());
            // One level less refuses a text that reaches the limit, never anything else.
            if lim.max_depth > 0 {
                let less = Limits {
                    max_depth: lim.max_depth - 1,
                    ..lim
                };
                if let Err(e) = check_with(text, less) {
                    assert_eq!(e.cause, Cause::TooDeep(lim.max_depth - 1));
                }
            }
        }
    }
});
