//! WebSocket (RFC 6455): the opening handshake, frames, masking and the closing handshake.
//!
//! A WebSocket connection begins as an HTTP/1.1 request that asks to switch protocols.
//! Once the server agrees, both sides stop speaking HTTP and exchange *frames* on the same
//! TCP connection until one of them starts the *closing handshake*. The code is
//! [`crate::proto::ws`]; compression is on its own page, [`super::deflate`].
//!
//! # The opening handshake (RFC 6455 §4)
//!
//! The client sends a GET with `Upgrade: websocket`, `Connection: Upgrade`,
//! `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`: 16 random bytes in base64, a
//! fresh value per connection (§4.1). It may list subprotocols it speaks in
//! `Sec-WebSocket-Protocol`, most preferred first. The server checks those fields
//! (§4.2.1) with [`validate_request`](crate::proto::ws::validate_request):
//!
//! ```
//! use pushwire::proto::http1::{Limits, RequestReader};
//! use pushwire::proto::ws::validate_request;
//!
//! // The sample request of RFC 6455 §1.2.
//! let wire = b"GET /chat HTTP/1.1\r\n\
//!     Host: server.example.com\r\n\
//!     Upgrade: websocket\r\n\
//!     Connection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Origin: http://example.com\r\n\
//!     Sec-WebSocket-Protocol: chat, superchat\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let (_, req) = RequestReader::new().advance(wire, &Limits::default(), &mut Vec::new()).unwrap();
//! let req = req.unwrap();
//! let fields = req.headers.iter().map(|h| (h.name.as_str(), &h.value[..]));
//! let hs = validate_request(&req.method, fields).unwrap();
//! assert_eq!(hs.key, "dGhlIHNhbXBsZSBub25jZQ==");
//! assert_eq!(hs.protocols, ["chat", "superchat"]);
//! assert_eq!(hs.origin, Some("http://example.com"));
//!
//! // Another version: 426, and the answer must name the versions it speaks (§4.2.2, §4.4).
//! let old = [("Host", &b"a"[..]), ("Upgrade", b"websocket"), ("Connection", b"Upgrade"),
//!            ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", b"8")];
//! assert_eq!(validate_request("GET", old).unwrap_err().status, 426);
//! ```
//!
//! The server proves it understood the request by hashing the key (§4.2.2 step 5): it
//! appends the fixed GUID `258EAFA5-E914-47DA-95CA-C5AB0DC85B11` to the key *as text*,
//! takes the SHA-1 of that, and sends the base64 of the 20-byte digest as
//! `Sec-WebSocket-Accept`. Only a server that read the request as a WebSocket handshake
//! can send it, so the client knows it is not talking to one that ignored the upgrade. [`accept_key`](crate::proto::ws::accept_key)
//! gives the value of the RFC's example (§1.3), which the test also computes step by step:
//!
//! ```
//! use base64::Engine as _;
//! use sha1::{Digest, Sha1};
//! use pushwire::proto::ws::{accept_key, handshake::ACCEPT_GUID};
//!
//! let key = "dGhlIHNhbXBsZSBub25jZQ==";
//! assert_eq!(accept_key(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//!
//! let digest = Sha1::digest(format!("{key}{ACCEPT_GUID}"));
//! assert_eq!(digest[..4], [0xb3, 0x7a, 0x4f, 0x2c]);
//! assert_eq!(base64::engine::general_purpose::STANDARD.encode(digest), accept_key(key));
//! ```
//!
//! [`write_accept_response`](crate::proto::ws::write_accept_response) writes the whole
//! `101 Switching Protocols` answer (§4.2.2 step 5), here choosing the subprotocol `chat`.
//! After its empty line the connection carries frames:
//!
//! ```
//! use pushwire::proto::ws::write_accept_response;
//!
//! let mut out = Vec::new();
//! write_accept_response(&mut out, "dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), None, &[]);
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 101 Switching Protocols\r\n\
//!       Upgrade: websocket\r\n\
//!       Connection: Upgrade\r\n\
//!       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
//!       Sec-WebSocket-Protocol: chat\r\n\
//!       \r\n"
//! );
//! ```
//!
//! # Frames (RFC 6455 §5.2)
//!
//! A frame is a header of 2 to 14 bytes and a payload. The first two bytes are bit
//! fields, most significant bit first; lengths are big-endian ("network byte order").
//! [`encode_frame`](crate::proto::ws::encode_frame) writes a whole server frame, and
//! [`parse_header`](crate::proto::ws::parse_header) reads a header back:
//!
//! ```
//! use pushwire::proto::ws::{encode_frame, parse_header, FrameHeader, OpCode};
//!
//! let mut out = Vec::new();
//! encode_frame(&mut out, OpCode::Text, b"Hello");
//! assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]); // RFC 6455 §5.7
//!
//! let (header, len) = parse_header(&out).unwrap().unwrap();
//! assert_eq!(len, 2);
//! assert_eq!(header, FrameHeader { fin: true, rsv: 0, opcode: OpCode::Text, mask: None, payload_len: 5 });
//! assert_eq!(parse_header(&out[..1]), Ok(None)); // incomplete: more input needed
//! ```
//!
//! | offset | bytes | field | meaning | RFC 6455 |
//! |---|---|---|---|---|
//! | 0 | `81` | bit 7: FIN = 1 | the final fragment of its message | §5.2 |
//! |   |      | bits 6-4: RSV1-3 = 0 | no extension uses them here | §5.2 |
//! |   |      | bits 3-0: opcode = 1 | a text frame (UTF-8) | §5.2, §5.6 |
//! | 1 | `05` | bit 7: MASK = 0 | not masked (a server's frame) | §5.1, §5.3 |
//! |   |      | bits 6-0: payload length = 5 | 5 bytes follow | §5.2 |
//! | 2 | `48 65 6c 6c 6f` | payload | `Hello` | §5.6 |
//!
//! Opcodes: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong; the others are
//! reserved and fail the connection. The 7-bit length holds 0-125; 126 means "a 16-bit
//! length follows", 127 "a 64-bit length follows" (its top bit must be 0), and a sender
//! must use the shortest form that fits (§5.2).
//! [`write_header`](crate::proto::ws::write_header) always does:
//!
//! ```
//! use pushwire::proto::ws::{write_header, OpCode};
//!
//! let header = |len| { let mut out = Vec::new(); write_header(&mut out, true, OpCode::Binary, None, len); out };
//! assert_eq!(header(125), [0x82, 0x7d]);
//! assert_eq!(header(126), [0x82, 0x7e, 0x00, 0x7e]);
//! assert_eq!(header(256), [0x82, 0x7e, 0x01, 0x00]); // RFC 6455 §5.7
//! assert_eq!(header(65536), [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]); // RFC 6455 §5.7
//! ```
//!
//! A message may be split into *fragments* (§5.4): the first frame has the message's
//! opcode and FIN = 0, the following ones opcode 0 (continuation), and the last has
//! FIN = 1. Control frames (close, ping, pong) may come between fragments but are never
//! fragmented themselves and carry at most 125 bytes (§5.5). The receiving half,
//! [`Receiver`](crate::proto::ws::Receiver), joins fragments into one message; here it is
//! a client reading the RFC's fragmented `Hello` (§5.7) with a Ping in the middle:
//!
//! ```
//! use pushwire::proto::ws::{deflate::Codec, MaskKeys, Receiver, Sender, WsEvent, WsLimits};
//!
//! let mut wire = vec![0x01, 0x03, b'H', b'e', b'l']; // text, FIN = 0: "Hel"
//! wire.extend([0x89, 0x00]); // an empty Ping between the fragments
//! wire.extend([0x80, 0x02, b'l', b'o']); // continuation, FIN = 1: "lo"
//!
//! let mut rx = Receiver::client(WsLimits::default());
//! let mut tx = Sender::client(MaskKeys::new([7; 32]));
//! let (mut codec, mut out) = (Codec::new(), Vec::new());
//! let (mut at, mut events) = (0, Vec::new());
//! loop {
//!     let (used, event) = rx.read(&mut tx, &mut codec, &mut wire[at..], &mut out).unwrap();
//!     at += used;
//!     match event {
//!         Some(WsEvent::Text(text)) => events.push(format!("text {text}")),
//!         Some(WsEvent::Ping(_)) => events.push("ping".to_string()),
//!         Some(other) => panic!("{other:?}"),
//!         None if used == 0 => break,
//!         None => {}
//!     }
//! }
//! assert_eq!(events, ["ping", "text Hello"]);
//! // The protocol forces an answer to the Ping: a Pong, masked as every client frame.
//! assert_eq!(&out[..2], [0x8a, 0x80]);
//! ```
//!
//! # Masking (RFC 6455 §5.3)
//!
//! Every frame a client sends is *masked*, and no frame a server sends is (§5.1): the
//! MASK bit is set, a 4-byte masking key follows the length, and each payload byte `i`
//! is XORed with key byte `i mod 4`. The key must be unpredictable. Masking is not
//! encryption (the key is in the frame); it keeps a script in a browser from choosing the
//! bytes that cross the network, which could otherwise be made to look like HTTP to a
//! proxy in between and poison its cache (§10.3). A server fails the connection on an
//! unmasked client frame (§5.1).
//!
//! pushwire draws no random numbers in its core: a client's keys come from
//! [`MaskKeys`](crate::proto::ws::MaskKeys), seeded by the driver. With the fixed key of
//! the RFC's example, [`write_frame`](crate::proto::ws::frame::write_frame) gives §5.7's
//! masked `Hello`:
//!
//! ```
//! use pushwire::proto::ws::{apply_mask_bytewise, frame::write_frame, OpCode};
//!
//! let key = [0x37, 0xfa, 0x21, 0x3d];
//! let mut out = Vec::new();
//! write_frame(&mut out, 0, OpCode::Text, Some(key), b"Hello");
//! assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//!
//! // The XOR by hand, and masking again undoes it.
//! assert_eq!(b'H' ^ 0x37, 0x7f);
//! let mut payload = out[6..].to_vec();
//! apply_mask_bytewise(&mut payload, key, 0);
//! assert_eq!(payload, b"Hello");
//! ```
//!
//! | offset | bytes | field | meaning | RFC 6455 |
//! |---|---|---|---|---|
//! | 0 | `81` | FIN, RSV, opcode | final text frame | §5.2 |
//! | 1 | `85` | MASK = 1, length = 5 | masked, 5 bytes of payload | §5.2 |
//! | 2 | `37 fa 21 3d` | masking key | key bytes j = 0..3 | §5.2, §5.3 |
//! | 6 | `7f` | payload byte 0 | `48` (`H`) XOR key\[0\] `37` | §5.3 |
//! | 7 | `9f` | payload byte 1 | `65` (`e`) XOR key\[1\] `fa` | §5.3 |
//! | 8 | `4d` | payload byte 2 | `6c` (`l`) XOR key\[2\] `21` | §5.3 |
//! | 9 | `51` | payload byte 3 | `6c` (`l`) XOR key\[3\] `3d` | §5.3 |
//! | 10 | `58` | payload byte 4 | `6f` (`o`) XOR key\[0\] `37` (4 mod 4 = 0) | §5.3 |
//!
//! A server's [`Receiver`](crate::proto::ws::Receiver) unmasks in place; the same bytes
//! without the mask make it fail the connection with 1002 (protocol error), writing the
//! Close frame that says so:
//!
//! ```
//! use pushwire::proto::ws::{deflate::Codec, Receiver, Sender, WsEvent, WsLimits};
//!
//! let mut masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let (mut codec, mut out) = (Codec::new(), Vec::new());
//! let mut rx = Receiver::new(WsLimits::default());
//! let mut tx = Sender::default(); // a server's sending half
//! let (used, event) = rx.read(&mut tx, &mut codec, &mut masked, &mut out).unwrap();
//! assert_eq!((used, event), (11, Some(WsEvent::Text("Hello"))));
//!
//! let mut unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
//! let mut rx = Receiver::new(WsLimits::default());
//! let mut tx = Sender::default();
//! let err = rx.read(&mut tx, &mut codec, &mut unmasked, &mut out).unwrap_err();
//! assert_eq!(err.code, 1002);
//! assert_eq!(&out[..4], [0x88, 2 + err.reason.len() as u8, 0x03, 0xea]); // Close, 1002
//! ```
//!
//! # The closing handshake (RFC 6455 §5.5.1, §7)
//!
//! A Close frame (opcode 8) may carry a body: a 2-byte big-endian status code, then a
//! UTF-8 reason (§5.5.1). The side that sends one sends no data afterwards; the other side
//! answers with a Close of its own (echoing the code, usually), and then the TCP connection
//! is closed, by the server first where it can (§7.1.1). A peer that never got a Close
//! learns the code 1006 locally, and an empty Close is reported as 1005; neither is ever
//! sent (§7.4.1). [`write_close`](crate::proto::ws::write_close) writes a server's Close:
//!
//! ```
//! use pushwire::proto::ws::write_close;
//!
//! let mut out = Vec::new();
//! write_close(&mut out, Some(1000), "bye");
//! assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
//! ```
//!
//! | offset | bytes | field | meaning | RFC 6455 |
//! |---|---|---|---|---|
//! | 0 | `88` | FIN = 1, opcode = 8 | a Close frame (never fragmented) | §5.5, §5.5.1 |
//! | 1 | `05` | MASK = 0, length = 5 | 5 bytes of body | §5.2 |
//! | 2 | `03 e8` | status code | 1000, normal closure | §5.5.1, §7.4.1 |
//! | 4 | `62 79 65` | reason | `bye`, UTF-8 | §5.5.1 |
//!
//! The codes met most (§7.4.1): 1000 normal closure; 1001 going away (pushwire sends it
//! when the server stops); 1002 protocol error; 1003 a kind of data the endpoint does not
//! accept (the hub example sends it for binary messages); 1007 data inconsistent with its
//! type (text that is not UTF-8); 1008 policy violation (pushwire's slow-reader policy);
//! 1009 message too big; 1011 an unexpected condition on the server. See
//! [`close_code`](crate::proto::ws::close_code).
//!
//! Both directions of the handshake, on the server side. The client closes and the
//! receiving half writes the echo itself; or the server closes through its
//! [`Sender`](crate::proto::ws::Sender), ignores data that still arrives, and is done
//! when the client's Close comes back:
//!
//! ```
//! use pushwire::proto::ws::{deflate::Codec, frame::write_frame, OpCode, Receiver, Sender, WsEvent, WsLimits};
//!
//! let key = [1, 2, 3, 4];
//! let client_frame = |op, payload: &[u8]| { let mut f = Vec::new(); write_frame(&mut f, 0, op, Some(key), payload); f };
//! let mut codec = Codec::new();
//!
//! // The client starts: Close 1000. The server echoes it, unmasked, and the handshake is over.
//! let (mut rx, mut tx, mut out) = (Receiver::new(WsLimits::default()), Sender::default(), Vec::new());
//! let mut wire = client_frame(OpCode::Close, &[0x03, 0xe8]);
//! let (_, event) = rx.read(&mut tx, &mut codec, &mut wire, &mut out).unwrap();
//! assert_eq!(event, Some(WsEvent::Close { code: Some(1000), reason: "" }));
//! assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
//! assert!(tx.is_closed());
//!
//! // The server starts: Close 1001 (going away). A text frame still in flight is dropped.
//! let (mut rx, mut tx, mut out) = (Receiver::new(WsLimits::default()), Sender::default(), Vec::new());
//! assert!(tx.close(&mut out, 1001, ""));
//! assert_eq!(out, [0x88, 0x02, 0x03, 0xe9]);
//! assert!(!tx.send_text(&mut out, "too late", &mut codec)); // nothing after a Close
//! let mut wire = client_frame(OpCode::Text, b"late");
//! wire.extend(client_frame(OpCode::Close, &[0x03, 0xe9]));
//! let (mut at, mut last) = (0, None);
//! while let (used @ 1.., event) = rx.read(&mut tx, &mut codec, &mut wire[at..], &mut out).unwrap() {
//!     at += used;
//!     if let Some(WsEvent::Close { code, .. }) = event { last = code; }
//! }
//! assert_eq!(last, Some(1001));
//! assert_eq!(out.len(), 4); // no second Close: ours was the answer awaited
//! assert!(tx.is_closed());
//! ```
