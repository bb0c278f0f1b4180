//! permessage-deflate (RFC 7692): compressed WebSocket messages.
//!
//! A WebSocket *extension* changes what frames carry; it is agreed on in the opening
//! handshake ([`super::websocket`]) through `Sec-WebSocket-Extensions` (RFC 6455 §9.1).
//! permessage-deflate compresses each message's payload with DEFLATE (RFC 1951), the
//! algorithm of gzip and zlib, and marks compressed messages with the RSV1 bit. The code is
//! [`crate::proto::ws::extensions`] (negotiation) and [`crate::proto::ws::deflate`]
//! (compression).
//!
//! # Negotiation (RFC 7692 §5, §7.1)
//!
//! The client offers the extension, with parameters; the server picks one offer it can
//! honour and answers with the parameters it accepted (or answers without the field, and
//! no extension is used). The parameters:
//!
//! | parameter | meaning | RFC 7692 |
//! |---|---|---|
//! | `server_no_context_takeover` | the server starts every message with an empty window | §7.1.1.1 |
//! | `client_no_context_takeover` | the client does the same | §7.1.1.2 |
//! | `server_max_window_bits=N` | the server's LZ77 window is at most 2^N bytes (8-15) | §7.1.2.1 |
//! | `client_max_window_bits[=N]` | offered without a value: the client can use a smaller window if told; answered with N: it must | §7.1.2.2 |
//!
//! "Context takeover" means a compressor keeps its window from one message to the next,
//! so a message can refer back to text of earlier ones: better compression, at the cost of
//! memory held per connection for its whole life. pushwire declines it by default, so one
//! compressor serves every connection, one message at a time. That is what
//! [`negotiate`](crate::proto::ws::extensions::negotiate) says in its answer:
//!
//! ```
//! use pushwire::proto::ws::extensions::{negotiate, ServerPolicy};
//!
//! // What browsers offer.
//! let offer = "permessage-deflate; client_max_window_bits";
//! let agreed = negotiate(offer, ServerPolicy::default()).unwrap();
//! assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
//! assert_eq!((agreed.server_window_bits, agreed.client_window_bits), (15, 15));
//!
//! // A server that keeps contexts accepts the offer as it is.
//! let agreed = negotiate(offer, ServerPolicy { context_takeover: true }).unwrap();
//! assert_eq!(agreed.response(), "permessage-deflate");
//!
//! // A window of 2^8 bytes cannot be made by zlib: pushwire declines such an offer.
//! assert_eq!(negotiate("permessage-deflate; server_max_window_bits=8", ServerPolicy::default()), None);
//! ```
//!
//! # Compressing a message (RFC 7692 §7.2.1)
//!
//! The sender compresses the whole message as raw DEFLATE data (no zlib or gzip wrapper),
//! then *flushes*: it ends the data on a byte boundary with an empty, non-final "stored"
//! block, whose last four bytes are always `00 00 ff ff`. Those four bytes are removed
//! before sending, and the receiver appends them again before inflating (§7.2.2). The
//! crate's [`Deflater`](crate::proto::ws::deflate::Deflater) gives exactly the bytes of the
//! RFC's example (§7.2.3.1):
//!
//! ```
//! use pushwire::proto::ws::deflate::{Deflater, Inflater, LEVEL};
//!
//! let mut deflater = Deflater::new(15, LEVEL, false); // 2^15-byte window, no takeover
//! let mut payload = Vec::new();
//! deflater.compress(b"Hello", &mut payload);
//! assert_eq!(payload, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
//!
//! // The block header, in the low bits of the first byte (RFC 1951 §3.2.3).
//! assert_eq!(payload[0] & 1, 0); // BFINAL = 0: not the last block of the stream
//! assert_eq!((payload[0] >> 1) & 3, 1); // BTYPE = 01: fixed Huffman codes
//!
//! // The receiver appends 00 00 ff ff and inflates.
//! let mut message = Vec::new();
//! Inflater::new(15, false).inflate(&payload, 1 << 20, &mut message).unwrap();
//! assert_eq!(message, b"Hello");
//! ```
//!
//! DEFLATE packs bits starting from the least significant bit of each byte, and Huffman
//! codes are written most significant bit first (RFC 1951 §3.1.1). With the fixed codes
//! (RFC 1951 §3.2.6) the letters of `Hello` are 8-bit codes (`0x30` plus the byte value)
//! and the end of a block is seven zero bits, so the 56 bits of the payload are:
//!
//! | bits | field | value | meaning |
//! |---|---|---|---|
//! | 0 | BFINAL | 0 | more blocks follow |
//! | 1-2 | BTYPE | 01 | fixed Huffman codes |
//! | 3-42 | five literal codes | `H` `e` `l` `l` `o` | the text, 8 bits per letter |
//! | 43-49 | code 256 | 0000000 | end of this block |
//! | 50 | BFINAL | 0 | the flush's empty block: not final either |
//! | 51-52 | BTYPE | 00 | stored (uncompressed) block |
//! | 53-55 | padding | 000 | up to the byte boundary (RFC 1951 §3.2.4) |
//! | (removed) | LEN, NLEN | `00 00 ff ff` | zero bytes stored, and its complement (§7.2.1 removes them) |
//!
//! With context takeover the second `Hello` is a back-reference into the first, and
//! shorter (the §7.2.3.2 example); without it every `Hello` gives the same seven bytes. An
//! empty message is sent as the single byte `00`, the first byte of an empty stored block
//! once its `00 00 ff ff` is gone, as §7.2.3.6 shows for a fragment with no data:
//!
//! ```
//! use pushwire::proto::ws::deflate::{Deflater, LEVEL};
//!
//! let mut keeps = Deflater::new(15, LEVEL, true);
//! let (mut first, mut second) = (Vec::new(), Vec::new());
//! keeps.compress(b"Hello", &mut first);
//! keeps.compress(b"Hello", &mut second);
//! assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
//!
//! let mut resets = Deflater::new(15, LEVEL, false);
//! let (mut a, mut b, mut empty) = (Vec::new(), Vec::new(), Vec::new());
//! resets.compress(b"Hello", &mut a);
//! resets.compress(b"Hello", &mut b);
//! resets.compress(b"", &mut empty);
//! assert_eq!((a, b, empty), (first, vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], vec![0x00]));
//! ```
//!
//! (DEFLATE allows many encodings of the same text. These bytes are the ones zlib makes
//! at pushwire's level, [`LEVEL`](crate::proto::ws::deflate::LEVEL); at another level the
//! takeover example may differ and still be valid.)
//!
//! # The frame (RFC 7692 §6)
//!
//! RSV1 set on the first frame of a message means "this message is compressed"; it is
//! never set on continuation frames or control frames (§6.1). A sender may leave any
//! message uncompressed by leaving RSV1 clear. The §7.2.3.1 frame, written with
//! [`write_frame`](crate::proto::ws::frame::write_frame):
//!
//! ```
//! use pushwire::proto::ws::{frame::write_frame, sender::RSV1, OpCode};
//!
//! let mut out = Vec::new();
//! write_frame(&mut out, RSV1, OpCode::Text, None, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
//! assert_eq!(out, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
//! ```
//!
//! | offset | bytes | field | meaning | reference |
//! |---|---|---|---|---|
//! | 0 | `c1` | FIN = 1, RSV1 = 1, opcode = 1 | a whole text message, compressed | RFC 6455 §5.2; RFC 7692 §6 |
//! | 1 | `07` | MASK = 0, length = 7 | 7 bytes of compressed payload (the frame length counts compressed bytes) | RFC 6455 §5.2 |
//! | 2 | `f2 48 cd c9 c9 07 00` | payload | DEFLATE data without its `00 00 ff ff` | RFC 7692 §7.2.1 |
//!
//! pushwire's [`Sender`](crate::proto::ws::Sender) compresses only messages of at least
//! [`MIN_COMPRESSED`](crate::proto::ws::deflate::MIN_COMPRESSED) bytes (below that,
//! compression saves next to nothing and costs time) and, without takeover, only when the
//! result is smaller. Its [`Receiver`](crate::proto::ws::Receiver) inflates what arrives,
//! here a client's masked frame:
//!
//! ```
//! use pushwire::proto::ws::deflate::Codec;
//! use pushwire::proto::ws::{frame::write_frame, sender::RSV1, OpCode, Receiver, Sender, WsEvent, WsLimits};
//!
//! let mut codec = Codec::new();
//! let mut out = Vec::new();
//! let mut server = Sender::default().with_deflate(15, false);
//! server.send_text(&mut out, "Hello", &mut codec); // short: sent as it is
//! assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! out.clear();
//! server.send_text(&mut out, &"Hello, ".repeat(40), &mut codec); // 280 bytes
//! assert_eq!(out[0], 0xc1); // RSV1: compressed
//! assert!(out.len() < 40);
//!
//! let mut wire = Vec::new();
//! write_frame(&mut wire, RSV1, OpCode::Text, Some([1, 2, 3, 4]), &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
//! let mut rx = Receiver::new(WsLimits::default()).with_deflate(false, 15);
//! let mut tx = Sender::default().with_deflate(15, false);
//! let (_, event) = rx.read(&mut tx, &mut codec, &mut wire, &mut Vec::new()).unwrap();
//! assert_eq!(event, Some(WsEvent::Text("Hello")));
//! ```
//!
//! A few compressed bytes can inflate to gigabytes. The receiver counts what it inflates
//! against the connection's message limit while it inflates, and fails the connection with
//! 1009 (message too big) as soon as the limit is passed; data that is not valid DEFLATE
//! fails it with 1007. See [`crate::proto::ws::deflate`] for the details, and
//! `benches/DEFLATE-FIGURES.md` in the repository for the measured threshold.
