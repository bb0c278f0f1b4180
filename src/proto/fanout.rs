//! Encode once, share everywhere: the bytes one published event becomes on each transport,
//! and the replays and pages that resuming subscribers get.
//!
//! A [`Broadcast`] is made per publish. Each transport's bytes are encoded the first time
//! a subscriber of that transport asks ([`Broadcast::bytes_for`]) and then shared (an
//! `Rc<[u8]>`, queued by reference in every connection's [`OutQueue`](super::out::OutQueue)).
//! Parked long polls get a page per distinct cursor ([`Broadcast::page_for`]), also encoded
//! once and shared.
//!
//! Wire formats:
//! * WebSocket: one unmasked text frame (RFC 6455 §5.2, §5.6) whose payload is
//!   `{"id":N,"event":null|"name","data":"..."}`; a resume with lost events starts with
//!   `{"gap":true,"oldest":N}`. To subscribers that negotiated permessage-deflate without
//!   context takeover the same payload goes compressed (RSV1 set, RFC 7692 §7.2.1), made
//!   once per window size with the loop's shared compressor ([`WsFrames`]); payloads under
//!   [`MIN_COMPRESSED`] bytes go plain to everyone.
//! * SSE (WHATWG HTML §9.2.4): `id: N`, `event: name`, one `data:` line per line, a blank
//!   line; in one chunk (RFC 9112 §7.1) on HTTP/1.1 streams. A resume with lost events
//!   starts with `event: gap` whose data is the oldest kept id.
//! * Long poll: `{"events":[...],"next":M,"gap":false}`.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;

use super::http1::{self, Response};
use super::topic::{Page, TopicEvent, Topics};
use super::ws::deflate::{Codec, MIN_COMPRESSED};
use super::ws::{self, OpCode};
use super::{json, sse};

/// Which shared encoding of a broadcast a connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket: one text frame.
    WebSocket,
    /// A WebSocket with permessage-deflate and no context takeover: one compressed text
    /// frame, from a compressor with this window (bits).
    WsDeflate(u8),
    /// An SSE stream on HTTP/1.1: the event in one chunk.
    SseChunked,
    /// An SSE stream on HTTP/1.0: the event as it is.
    SsePlain,
    /// Neither (plain HTTP, a parked poll): broadcasts do not go here.
    None,
}

/// Room kept in front of a WebSocket payload for its frame header (at most 10 bytes for
/// an unmasked server frame).
const WS_HEADER_ROOM: usize = 10;

/// Writes `payload_writer`'s bytes as one text frame, building the payload only once: it
/// is written after room for the header, which is filled in when its length is known.
fn text_frame(hint: usize, write_payload: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
    frame_with_rsv(hint, 0, write_payload)
}

/// [`text_frame`] with RSV bits.
fn frame_with_rsv(hint: usize, rsv: u8, write_payload: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
    let mut v = Vec::with_capacity(hint + WS_HEADER_ROOM);
    v.resize(WS_HEADER_ROOM, 0);
    write_payload(&mut v);
    let len = v.len() - WS_HEADER_ROOM;
    let mut head = Vec::with_capacity(WS_HEADER_ROOM);
    ws::frame::write_header_rsv(&mut head, true, rsv, OpCode::Text, None, len as u64);
    let start = WS_HEADER_ROOM - head.len();
    v[start..WS_HEADER_ROOM].copy_from_slice(&head);
    Rc::from(&v[start..])
}

/// One text frame carrying `text`, for a message sent to many WebSockets.
pub fn text_message_frame(text: &str) -> Rc<[u8]> {
    text_frame(text.len(), |v| v.extend_from_slice(text.as_bytes()))
}

/// The text frame carrying one topic event to WebSocket subscribers.
pub fn ws_event_frame(ev: &TopicEvent) -> Rc<[u8]> {
    text_frame(ev.data.len() + 48, |v| json::write_event(v, ev))
}

/// One text message's WebSocket frames: the plain one and the compressed one per window
/// size, each made the first time a subscriber needs it, then shared.
#[derive(Debug, Default)]
pub struct WsFrames {
    plain: Option<Rc<[u8]>>,
    deflated: [Option<Rc<[u8]>>; 7],
}

impl WsFrames {
    /// Frames of a message whose plain frame is `plain`.
    pub fn new(plain: Rc<[u8]>) -> Self {
        WsFrames {
            plain: Some(plain),
            ..Default::default()
        }
    }

    /// The frame for a subscriber of `transport` (`None` unless it is a WebSocket);
    /// `make_plain` makes the plain frame if it is not made yet.
    pub fn get(
        &mut self,
        transport: Transport,
        codec: &mut Codec,
        make_plain: impl FnOnce() -> Rc<[u8]>,
    ) -> Option<Rc<[u8]>> {
        let bits = match transport {
            Transport::WebSocket => None,
            Transport::WsDeflate(bits) => Some(bits.clamp(9, 15)),
            _ => return None,
        };
        let plain = self.plain.get_or_insert_with(make_plain);
        let Some(bits) = bits else {
            return Some(Rc::clone(plain));
        };
        let slot = &mut self.deflated[usize::from(bits - 9)];
        if let Some(frame) = slot {
            return Some(Rc::clone(frame));
        }
        // The plain frame is whole and unmasked: its header parses.
        let start = match ws::parse_header(plain) {
            Ok(Some((_, n))) => n,
            _ => return Some(Rc::clone(plain)),
        };
        let payload = &plain[start..];
        let frame = if payload.len() < MIN_COMPRESSED {
            Rc::clone(plain)
        } else {
            let packed = codec.compress_broadcast(bits, payload);
            let frame = if packed.len() < payload.len() {
                frame_with_rsv(packed.len(), ws::sender::RSV1, |v| {
                    v.extend_from_slice(packed)
                })
            } else {
                Rc::clone(plain)
            };
            codec.trim();
            frame
        };
        *slot = Some(Rc::clone(&frame));
        Some(frame)
    }
}

/// One SSE event, chunk-framed when the stream is chunked (once per publish, so the
/// plain chunk writer is used rather than a cleverer one).
pub fn sse_event_bytes(ev: &TopicEvent, chunked: bool) -> Rc<[u8]> {
    let mut text = Vec::with_capacity(ev.data.len() + 40);
    sse::write_topic_event(&mut text, ev);
    if !chunked {
        return text.into();
    }
    let mut framed = Vec::with_capacity(text.len() + 12);
    http1::write_chunk(&mut framed, &text);
    framed.into()
}

/// The replay a WebSocket subscriber resuming after a cursor gets: the gap notice when
/// events were lost, then one message per kept event, each handed to `send` (which frames
/// it for the connection, compressed when it negotiated permessage-deflate).
pub fn ws_replay(page: &Page, mut send: impl FnMut(&[u8])) {
    if page.gap {
        let mut text = Vec::with_capacity(32);
        json::write_gap(&mut text, page.oldest);
        send(&text);
    }
    let mut text = Vec::new();
    for ev in &page.events {
        text.clear();
        json::write_event(&mut text, ev);
        send(&text);
    }
}

/// The first bytes of an SSE stream: `retry:` when configured, then (resuming) the gap
/// event and the kept events after the cursor.
pub fn sse_first(retry: Option<u64>, page: Option<&Page>, out: &mut Vec<u8>) {
    if let Some(ms) = retry {
        sse::write_retry(out, ms);
    }
    if let Some(page) = page {
        sse_replay(page, out);
    }
}

/// A page of an SSE replay: the gap event when events were lost before it, then its
/// events. (A replay is one page, or several when the history holds a jump to a new id
/// range: a page never spans one.)
pub fn sse_replay(page: &Page, out: &mut Vec<u8>) {
    if page.gap {
        sse::write_gap(out, page.oldest);
    }
    for ev in &page.events {
        sse::write_topic_event(out, ev);
    }
}

/// The header fields of an SSE stream's answer.
pub const SSE_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
];

/// The head of a long-poll answer (its body is a shared page); made once, so answering a
/// poll allocates nothing for its header fields.
pub fn poll_head() -> &'static Response {
    static HEAD: LazyLock<Response> = LazyLock::new(|| {
        Response::new(200)
            .header("Content-Type", "application/json")
            .header("Cache-Control", "no-store")
    });
    &HEAD
}

/// A long-poll page body.
pub fn page_body(page: &Page) -> Rc<[u8]> {
    let mut body =
        Vec::with_capacity(64 + page.events.iter().map(|e| e.data.len() + 40).sum::<usize>());
    json::write_page(&mut body, page);
    body.into()
}

/// The empty page a long poll whose timeout passed gets.
pub fn empty_page(since: u64) -> Rc<[u8]> {
    page_body(&Page {
        events: Vec::new(),
        gap: false,
        next: since,
        oldest: 0,
        more: false,
    })
}

/// One long-poll page shared by every poll parked on the same cursor: its body and, made
/// on first use, the whole answer (head and body) for the common case of an HTTP/1.1
/// keep-alive GET, so most parked polls are answered with one shared chunk.
#[derive(Debug, Clone)]
pub struct SharedPage {
    /// The JSON body.
    pub body: Rc<[u8]>,
    /// Events in it.
    pub events: usize,
    /// Head and body of the HTTP/1.1 keep-alive answer, once one was made.
    pub whole: Option<Rc<[u8]>>,
}

/// The encodings of one published event, made lazily, each once.
#[derive(Debug)]
pub struct Broadcast {
    event: Rc<TopicEvent>,
    ws: WsFrames,
    sse_chunked: Option<Rc<[u8]>>,
    sse_plain: Option<Rc<[u8]>>,
    /// Long-poll pages by cursor.
    pages: HashMap<u64, SharedPage>,
}

impl Broadcast {
    /// The encodings of `event` (none made yet).
    pub fn new(event: Rc<TopicEvent>) -> Self {
        Broadcast {
            event,
            ws: WsFrames::default(),
            sse_chunked: None,
            sse_plain: None,
            pages: HashMap::new(),
        }
    }

    /// The event.
    pub fn event(&self) -> &Rc<TopicEvent> {
        &self.event
    }

    /// The bytes for a subscriber of `transport` (`None` for [`Transport::None`]);
    /// `codec` compresses the event for permessage-deflate subscribers.
    pub fn bytes_for(&mut self, transport: Transport, codec: &mut Codec) -> Option<Rc<[u8]>> {
        let ev = &self.event;
        let slot = match transport {
            Transport::WebSocket | Transport::WsDeflate(_) => {
                return self.ws.get(transport, codec, || ws_event_frame(ev))
            }
            Transport::SseChunked => self
                .sse_chunked
                .get_or_insert_with(|| sse_event_bytes(ev, true)),
            Transport::SsePlain => self
                .sse_plain
                .get_or_insert_with(|| sse_event_bytes(ev, false)),
            Transport::None => return None,
        };
        Some(Rc::clone(slot))
    }

    /// The long-poll page for a client parked after `since` on `topic` (at most `batch`
    /// events), encoded once per distinct cursor.
    pub fn page_for(
        &mut self,
        topics: &Topics,
        topic: &str,
        since: u64,
        batch: usize,
    ) -> &mut SharedPage {
        self.pages.entry(since).or_insert_with(|| {
            let page = topics.read_after(topic, since, batch);
            SharedPage {
                body: page_body(&page),
                events: page.events.len(),
                whole: None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, data: &str) -> TopicEvent {
        TopicEvent {
            id,
            event: None,
            data: data.into(),
            json: false,
            published_ms: 0,
        }
    }

    #[test]
    fn ws_frame_matches_the_plain_encoder() {
        for len in [0usize, 1, 80, 125, 126, 1000, 70_000] {
            let e = ev(7, &"x".repeat(len));
            let mut json_text = Vec::new();
            json::write_event(&mut json_text, &e);
            let mut want = Vec::new();
            ws::encode_frame(&mut want, OpCode::Text, &json_text);
            assert_eq!(&*ws_event_frame(&e), &want[..], "len {len}");
        }
    }

    #[test]
    fn sse_event_bytes_exactly() {
        let e = ev(9, "yyy");
        assert_eq!(&*sse_event_bytes(&e, false), b"id: 9\ndata: yyy\n\n");
        // 17 bytes of event in one chunk (RFC 9112 §7.1): size in hex, CRLF, data, CRLF.
        assert_eq!(
            &*sse_event_bytes(&e, true),
            b"11\r\nid: 9\ndata: yyy\n\n\r\n"
        );
        let big = sse_event_bytes(&ev(9, &"y".repeat(70_000)), true);
        assert!(big.starts_with(b"1117E\r\nid: 9\ndata: y") && big.ends_with(b"y\n\n\r\n"));
    }

    #[test]
    fn pages_are_encoded_once_per_cursor() {
        let mut topics = Topics::new(Default::default());
        let first = topics.publish("t", None, "a", 1).unwrap();
        let second = topics.publish("t", None, "b", 1).unwrap();
        let mut b = Broadcast::new(second);
        let p1 = b.page_for(&topics, "t", first.id, 100).clone();
        let p2 = b.page_for(&topics, "t", first.id, 100).clone();
        assert!(Rc::ptr_eq(&p1.body, &p2.body));
        assert_eq!(p1.events, 1);
        let p0 = b.page_for(&topics, "t", first.id - 1, 100).clone();
        assert_eq!(p0.events, 2);
        assert!(!Rc::ptr_eq(&p0.body, &p1.body));
        let c = &mut Codec::new();
        assert!(Rc::ptr_eq(
            &b.bytes_for(Transport::WebSocket, c).unwrap(),
            &b.bytes_for(Transport::WebSocket, c).unwrap()
        ));
    }

    #[test]
    fn compressed_frames_are_made_once_per_window_and_inflate_back() {
        let c = &mut Codec::new();
        let json = format!(r#"{{"sym":"EURUSD","px":"{}"}}"#, "1.0842 ".repeat(30));
        let e = ev(3, &json);
        let mut b = Broadcast::new(Rc::new(e.clone()));
        let plain = b.bytes_for(Transport::WebSocket, c).unwrap();
        let z15 = b.bytes_for(Transport::WsDeflate(15), c).unwrap();
        let z9 = b.bytes_for(Transport::WsDeflate(9), c).unwrap();
        assert!(Rc::ptr_eq(
            &z15,
            &b.bytes_for(Transport::WsDeflate(15), c).unwrap()
        ));
        assert!(!Rc::ptr_eq(&z15, &z9));
        assert_eq!(z15[0], 0xC1, "FIN, RSV1, text");
        assert!(z15.len() < plain.len() / 3, "{} {}", z15.len(), plain.len());
        // What a client inflates is the plain frame's payload.
        let (_, n) = ws::parse_header(&z15).unwrap().unwrap();
        let mut out = Vec::new();
        ws::deflate::Inflater::new(15, false)
            .inflate(&z15[n..], 1 << 20, &mut out)
            .unwrap();
        let (_, m) = ws::parse_header(&plain).unwrap().unwrap();
        assert_eq!(out, &plain[m..]);
        // A small event goes plain to deflate subscribers too.
        let mut small = Broadcast::new(Rc::new(ev(4, "x")));
        let p = small.bytes_for(Transport::WebSocket, c).unwrap();
        assert!(Rc::ptr_eq(
            &p,
            &small.bytes_for(Transport::WsDeflate(15), c).unwrap()
        ));
    }
}
