//! The receiving side of a [`RedisConn`]: matching replies and pushes, deadlines, failure.

use std::time::Instant;

use log::{debug, trace};

use super::pubsub::{classify, Classified};
use super::{later, ConnError, Events, Expect, Failure, Phase, Push, RedisConn};
use crate::proto::resp::{Parser, Value};

/// The longest part of a Redis error message kept for [`ConnError::Handshake`].
const MAX_MESSAGE: usize = 512;

impl<T> RedisConn<T> {
    /// Bytes read from the socket. Returns the replies and pushes they completed, and the
    /// failure they caused, if any (a malformed reply, one that matches nothing asked for,
    /// a refused handshake).
    pub fn on_read(&mut self, data: &[u8], now: Instant) -> Events<T> {
        let mut events = Events::default();
        if self.phase == Phase::Closed || data.is_empty() {
            return events;
        }
        // Bytes arriving prove the connect completed.
        self.on_connected();
        self.last_heard = now;
        trace!("redis <- {} bytes", data.len());
        if self.rbuf.is_empty() {
            let used = self.consume(data, &mut events);
            if self.phase != Phase::Closed {
                self.rbuf.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.extend_from_slice(data);
            let used = self.consume(&buf, &mut events);
            if self.phase != Phase::Closed {
                buf.drain(..used);
                self.rbuf = buf;
            }
        }
        events
    }

    /// Parses every complete reply in `input`; returns the bytes consumed.
    fn consume(&mut self, input: &[u8], events: &mut Events<T>) -> usize {
        let mut at = 0;
        loop {
            let result = match self.parser.advance(&input[at..]) {
                Ok((used, value)) => {
                    at += used;
                    match value {
                        Some(value) => self.dispatch(value, events),
                        None => return at,
                    }
                }
                Err(e) => Err(ConnError::Protocol(e)),
            };
            if let Err(error) = result {
                events.failed = Some(self.fail(error));
                return at;
            }
        }
    }

    /// One complete top-level value: a push, a pub/sub message, or the answer to the
    /// oldest command in flight.
    fn dispatch(&mut self, value: Value, events: &mut Events<T>) -> Result<(), ConnError> {
        trace!("redis <- {}", value.kind());
        let value = match value {
            Value::Push(items) => return self.on_push(items, true, events),
            // RESP2 subscriber: once the commands sent before the first pub/sub command
            // are answered, every array is pub/sub.
            Value::Array(items) if self.subscriber && !self.head_is_command() => {
                return self.on_push(items, false, events)
            }
            value => value,
        };
        let Some(entry) = self.in_flight.pop_front() else {
            return Err(ConnError::OutOfStep("a reply with no command in flight"));
        };
        match entry.expect {
            Expect::Reply(tag) => events.replies.push((tag, value)),
            Expect::Setup(command) => self.on_setup_reply(command, value, events)?,
            // Any answer proves the connection alive.
            Expect::Ping => {}
            // Redis refused the whole command (`-NOPERM` for a channel the ACL user may
            // not use): no confirmation will come for any of its channels.
            Expect::Confirm { kind, channels } if value.as_error().is_some() => {
                let error = value.as_error().unwrap_or_default().to_vec();
                debug!(
                    "redis: {} refused: {}",
                    kind.command().escape_ascii(),
                    error.escape_ascii()
                );
                let channels: Vec<Vec<u8>> = channels.into();
                self.subs.refused(kind, &channels);
                events.pushes.push(Push::Refused {
                    command: kind.name(),
                    channels,
                    error,
                });
            }
            Expect::Confirm { .. } => {
                return Err(ConnError::OutOfStep(
                    "a reply where a subscription confirmation was due",
                ))
            }
        }
        Ok(())
    }

    /// The oldest entry in flight is a command answered by an ordinary reply.
    fn head_is_command(&self) -> bool {
        matches!(
            self.in_flight.front().map(|e| &e.expect),
            Some(Expect::Reply(_) | Expect::Setup(_))
        )
    }

    /// A RESP3 push (`real`), or an array on a RESP2 subscriber connection.
    fn on_push(
        &mut self,
        items: Vec<Value>,
        real: bool,
        events: &mut Events<T>,
    ) -> Result<(), ConnError> {
        // RESP2's `["pong", ""]` is the answer to PING on a subscribed connection; a RESP3
        // push is never one.
        match classify(items, !real)? {
            Classified::Message(push) => events.pushes.push(push),
            Classified::Confirm {
                kind,
                channel,
                count,
            } => {
                let matched = match self.in_flight.front_mut().map(|e| &mut e.expect) {
                    Some(Expect::Confirm { kind: k, channels })
                        if *k == kind && channels.front() == Some(&channel) =>
                    {
                        channels.pop_front();
                        channels.is_empty()
                    }
                    _ => {
                        return Err(ConnError::OutOfStep(
                            "a subscription confirmation that was not asked for",
                        ))
                    }
                };
                if matched {
                    self.in_flight.pop_front();
                }
                self.subs.confirmed(kind, &channel);
                let pattern = kind.pattern();
                events.pushes.push(match kind.subscribes() {
                    true => Push::Subscribed {
                        channel,
                        pattern,
                        count,
                    },
                    false => Push::Unsubscribed {
                        channel,
                        pattern,
                        count,
                    },
                });
            }
            Classified::Pong => match self.in_flight.front().map(|e| &e.expect) {
                Some(Expect::Ping) => {
                    self.in_flight.pop_front();
                }
                _ => return Err(ConnError::OutOfStep("a pong without a ping")),
            },
            Classified::Other(items) if real => events.pushes.push(Push::Other(items)),
            Classified::Other(_) => {
                return Err(ConnError::OutOfStep(
                    "an array that is not pub/sub on a subscriber connection",
                ))
            }
        }
        Ok(())
    }

    /// The answer to a handshake command: an error, or the expected reply.
    fn on_setup_reply(
        &mut self,
        command: &'static str,
        value: Value,
        events: &mut Events<T>,
    ) -> Result<(), ConnError> {
        if let Some(error) = value.as_error() {
            let shown = &error[..error.len().min(MAX_MESSAGE)];
            return Err(ConnError::Handshake {
                command,
                message: String::from_utf8_lossy(shown).into_owned(),
            });
        }
        let expected = match command {
            "HELLO" => matches!(value, Value::Map(_)),
            "PING" => value == Value::SimpleString(b"PONG".to_vec()),
            _ => value == Value::SimpleString(b"OK".to_vec()),
        };
        if !expected {
            return Err(ConnError::Handshake {
                command,
                message: format!("unexpected {} reply", value.kind()),
            });
        }
        self.setup_left = self.setup_left.saturating_sub(1);
        if self.setup_left == 0 && self.phase == Phase::Handshaking {
            debug!("redis: ready ({:?})", self.config.protocol);
            self.phase = Phase::Ready;
            self.connect_deadline = None;
            events.ready = true;
        }
        Ok(())
    }

    /// Redis closed the connection (a read returned 0).
    pub fn on_eof(&mut self) -> Option<Failure<T>> {
        (self.phase != Phase::Closed).then(|| self.fail(ConnError::Closed))
    }

    /// The socket failed (`error` says how: a refused connect, a reset).
    pub fn on_error(&mut self, error: String) -> Option<Failure<T>> {
        (self.phase != Phase::Closed).then(|| self.fail(ConnError::Io(error)))
    }

    /// Ends the connection at once (the server stops).
    pub fn abort(&mut self) -> Option<Failure<T>> {
        (self.phase != Phase::Closed).then(|| self.fail(ConnError::Aborted))
    }

    /// The nearest deadline: the connect timeout until ready, the reply timeout of the
    /// oldest command in flight, the keepalive of a quiet ready connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let reply = self
            .in_flight
            .front()
            .map(|e| later(e.since, self.config.reply_timeout));
        let keepalive = match (self.phase, self.config.keepalive) {
            (Phase::Ready, Some(after)) if self.in_flight.is_empty() => {
                Some(later(self.last_heard, after))
            }
            _ => None,
        };
        [self.connect_deadline, reply, keepalive]
            .into_iter()
            .flatten()
            .min()
    }

    /// Acts on the deadline if it has passed at `now`: fails the connection, or queues the
    /// keepalive `PING` (then [`wants_write`](Self::wants_write) is true).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Failure<T>> {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return None;
        }
        if self.connect_deadline.is_some_and(|at| now >= at) {
            return Some(self.fail(ConnError::ConnectTimeout));
        }
        let oldest = self.in_flight.front().map(|e| e.since);
        if oldest.is_some_and(|since| now >= later(since, self.config.reply_timeout)) {
            return Some(self.fail(ConnError::ReplyTimeout));
        }
        if self.in_flight.is_empty() && self.phase == Phase::Ready {
            trace!("redis -> PING (keepalive)");
            super::encode_command(&mut self.out, &[b"PING"]);
            self.in_flight.push_back(super::InFlight {
                expect: Expect::Ping,
                since: now,
            });
        }
        None
    }

    /// Closes the connection: every caller's command in flight comes back.
    fn fail(&mut self, error: ConnError) -> Failure<T> {
        debug!(
            "redis: connection failed: {error} ({} in flight)",
            self.in_flight.len()
        );
        let tags = std::mem::take(&mut self.in_flight)
            .into_iter()
            .filter_map(|e| match e.expect {
                Expect::Reply(tag) => Some(tag),
                _ => None,
            })
            .collect();
        self.phase = Phase::Closed;
        self.out = Vec::new();
        self.written = 0;
        self.rbuf = Vec::new();
        self.parser = Parser::new(self.config.limits);
        self.subs.clear();
        self.connect_deadline = None;
        Failure { error, tags }
    }
}
