//! Who may do what: a token per class of route, and the origins browsers may call from.
//!
//! * **Tokens** (`--publish-token`, `--subscribe-token`, `--admin-token`): a class whose
//!   token is set answers 401 (`WWW-Authenticate: Bearer`) without a token and 403 with a
//!   wrong one. The token comes from `Authorization: Bearer`, or `?token=` for
//!   `EventSource` and browser WebSockets, which cannot set headers.
//! * **Origins** (`--allow-origin`, repeatable, or `*`): a request with an `Origin` that
//!   is neither the hub's own (`http://` + its `Host`) nor allowed gets 403, reads and
//!   writes alike; so a page on another site cannot publish with a form post, nor read
//!   with `fetch`. An allowed origin gets `Access-Control-Allow-Origin` and `Vary: Origin`
//!   on every answer, and preflight `OPTIONS` requests are answered. Requests without
//!   `Origin` (curl, servers) are not browsers' and pass.

use pushwire::proto::auth::{check_token, Access};
use pushwire::{Reply, Request, Response};

/// What a route does, for the token it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `/healthz`, the page, the built-in receiver (it checks signatures): no token.
    Open,
    /// `POST /topics/{t}` (and WebSocket clients' messages).
    Publish,
    /// `/events`, `/sse`, `/poll`, `/ws`.
    Subscribe,
    /// Webhook registration, listing and deletion, `/stats`.
    Admin,
}

/// Which origins browsers may call the hub from.
#[derive(Clone, Debug, Default)]
pub enum Origins {
    /// Only the hub's own pages.
    #[default]
    Same,
    /// These, and the hub's own.
    Listed(Vec<String>),
    /// Any.
    Any,
}

/// The origin of a request, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` field: not a browser's cross-origin request.
    Absent,
    /// The hub's own origin.
    Same,
    /// Allowed: answer with `Access-Control-Allow-Origin: <this>`.
    Allowed(String),
    /// Another site's.
    Refused,
}

/// The hub's access policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub publish: Option<String>,
    pub subscribe: Option<String>,
    pub admin: Option<String>,
    pub origins: Origins,
}

impl Policy {
    /// Whether any token is set.
    pub fn any_token(&self) -> bool {
        self.publish.is_some() || self.subscribe.is_some() || self.admin.is_some()
    }

    /// Adds an `--allow-origin` value.
    pub fn allow_origin(&mut self, origin: String) {
        self.origins = match std::mem::take(&mut self.origins) {
            _ if origin == "*" => Origins::Any,
            Origins::Any => Origins::Any,
            Origins::Same => Origins::Listed(vec![origin]),
            Origins::Listed(mut l) => {
                l.push(origin);
                Origins::Listed(l)
            }
        };
    }

    /// Judges the request's `Origin`.
    pub fn origin(&self, req: &Request) -> OriginCheck {
        let Some(origin) = req.header_str("origin") else {
            return OriginCheck::Absent;
        };
        let own = req
            .header_str("host")
            .is_some_and(|host| origin.eq_ignore_ascii_case(&format!("http://{host}")));
        if own {
            return OriginCheck::Same;
        }
        match &self.origins {
            Origins::Any => OriginCheck::Allowed("*".into()),
            Origins::Listed(l) if l.iter().any(|o| o == origin) => {
                OriginCheck::Allowed(origin.to_owned())
            }
            _ => OriginCheck::Refused,
        }
    }

    /// The token `class` needs, if any.
    fn token(&self, class: Class) -> Option<&str> {
        match class {
            Class::Open => None,
            Class::Publish => self.publish.as_deref(),
            Class::Subscribe => self.subscribe.as_deref(),
            Class::Admin => self.admin.as_deref(),
        }
    }

    /// Whether `req` may use a route of `class`: `Err` holds the 401 or 403 answer.
    pub fn authorize(&self, class: Class, req: &Request) -> Result<(), Response> {
        match check_token(req, self.token(class)) {
            Access::Allowed => Ok(()),
            Access::Missing => {
                Err(Response::text(401, "a token is required\n")
                    .header("WWW-Authenticate", "Bearer"))
            }
            Access::Wrong => Err(Response::text(403, "wrong token\n")),
        }
    }

    /// Whether routes of `class` need a token.
    pub fn requires(&self, class: Class) -> bool {
        self.token(class).is_some()
    }

    /// Whether `req` carries the token of `class` (or none is needed).
    pub fn allows(&self, class: Class, req: &Request) -> bool {
        check_token(req, self.token(class)) == Access::Allowed
    }
}

/// The CORS header fields for an allowed origin (none otherwise).
pub fn cors_headers(check: &OriginCheck) -> Vec<(String, String)> {
    match check {
        OriginCheck::Allowed(o) => vec![
            ("Access-Control-Allow-Origin".into(), o.clone()),
            ("Vary".into(), "Origin".into()),
        ],
        _ => Vec::new(),
    }
}

/// The answer to a preflight `OPTIONS` request (Fetch standard, CORS protocol).
pub fn preflight(check: &OriginCheck) -> Reply {
    match check {
        OriginCheck::Refused => Response::text(403, "origin not allowed\n").into(),
        _ => {
            let mut resp = Response::new(204)
                .header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Last-Event-ID",
                )
                .header("Access-Control-Max-Age", "600");
            for (n, v) in cors_headers(check) {
                resp = resp.header(n, v);
            }
            resp.into()
        }
    }
}

/// Adds `headers` to a reply that has header fields of its own.
pub fn with_headers(reply: Reply, headers: &[(String, String)]) -> Reply {
    if headers.is_empty() {
        return reply;
    }
    match reply {
        Reply::Response(mut r) => {
            for (n, v) in headers {
                r = r.header(n.as_str(), v.as_str());
            }
            Reply::Response(r)
        }
        Reply::Sse(mut s) => {
            for (n, v) in headers {
                s = s.header(n.as_str(), v.as_str());
            }
            Reply::Sse(s)
        }
        Reply::Park(mut p) => {
            for (n, v) in headers {
                p = p.header(n.as_str(), v.as_str());
            }
            Reply::Park(p)
        }
        Reply::Events(mut q) => {
            for (n, v) in headers {
                q = q.header(n.as_str(), v.as_str());
            }
            Reply::Events(q)
        }
        other => other,
    }
}
