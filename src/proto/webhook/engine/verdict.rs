//! How the result of one attempt is classified (the table in the engine's module docs).

use std::time::Duration;

use super::AttemptResult;

/// How a result is handled.
pub(super) enum Verdict {
    Delivered,
    Retry(String, Option<Duration>),
    Fail(String),
    Gone(String),
}

impl Verdict {
    pub(super) fn of(result: AttemptResult) -> Verdict {
        match result {
            AttemptResult::Status { code, retry_after } => match code {
                200..=299 => Verdict::Delivered,
                410 => Verdict::Gone("HTTP 410 Gone".into()),
                429 | 503 => Verdict::Retry(format!("HTTP {code}"), retry_after),
                300..=399 => {
                    Verdict::Retry(format!("HTTP {code} (redirects are not followed)"), None)
                }
                408 => Verdict::Retry(format!("HTTP {code}"), None),
                400..=499 => Verdict::Fail(format!("HTTP {code}")),
                _ => Verdict::Retry(format!("HTTP {code}"), None),
            },
            AttemptResult::Timeout => Verdict::Retry("timeout".into(), None),
            AttemptResult::ConnectFailed(e) => Verdict::Retry(format!("connect failed: {e}"), None),
            AttemptResult::Io(e) => Verdict::Retry(format!("I/O error: {e}"), None),
            AttemptResult::Refused(e) => Verdict::Fail(e),
        }
    }
}
