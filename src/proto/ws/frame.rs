//! The base framing protocol: frame header parse and encode (RFC 6455 §5.2, §5.5).
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//!  | Masking-key (continued)       |          Payload Data         |
//!  +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! [`parse_header`] enforces what is wrong in any frame whatever the role of the endpoint and
//! the extensions in use: reserved opcodes, a 64-bit length with its top bit set, control
//! frames that are long or fragmented. The rules that depend on the role (client frames are
//! masked) or on extensions (the RSV bits) are checked by [`Connection`](super::Connection),
//! which sees [`FrameHeader::rsv`] and [`FrameHeader::mask`].
//!
//! Non-minimal length encodings (e.g. a length of 5 in the 16-bit form) are accepted when
//! parsing; [`write_header`] always writes the minimal one, as §5.2 requires of senders.

use super::close::{close_code, CloseError};

/// A frame's opcode (§5.2, §11.8). The reserved opcodes `0x3..=0x7` and `0xB..=0xF` have no
/// variant: [`parse_header`] rejects them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: the first frame of a text (UTF-8) message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: starts or answers the closing handshake.
    Close,
    /// `0x9`: asks for a Pong.
    Ping,
    /// `0xA`: answers a Ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// The opcode of a 4-bit value, or `None` for a reserved one.
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (§5.5) are those whose opcode has its top bit set: Close, Ping, Pong.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the low three bits (RSV1 = `0b100`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes (at most `2^63 - 1`).
    pub payload_len: u64,
}

/// The largest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

fn protocol_error(reason: &'static str) -> CloseError {
    CloseError {
        code: close_code::PROTOCOL_ERROR,
        reason,
    }
}

/// Parses the frame header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold the whole header yet (nothing is consumed;
/// call again with more), else the header and its length in bytes. The payload follows.
/// Errors carry close code 1002.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, CloseError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    // "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
    // Connection_." (§5.2)
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(protocol_error("reserved opcode"))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;

    let (payload_len, rest, mut used) = match len7 {
        126 => match rest.split_first_chunk::<2>() {
            Some((ext, rest)) => (u64::from(u16::from_be_bytes(*ext)), rest, 4),
            None => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((ext, rest)) => {
                let len = u64::from_be_bytes(*ext);
                // "the most significant bit MUST be 0" (§5.2)
                if len >> 63 != 0 {
                    return Err(protocol_error("64-bit payload length with its top bit set"));
                }
                (len, rest, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), rest, 2),
    };

    if opcode.is_control() {
        // "All control frames MUST have a payload length of 125 bytes or less and MUST NOT
        // be fragmented." (§5.5)
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(protocol_error("control frame payload over 125 bytes"));
        }
        if !fin {
            return Err(protocol_error("fragmented control frame"));
        }
    }

    let mask = if masked {
        match rest.first_chunk::<4>() {
            Some(key) => {
                used += 4;
                Some(*key)
            }
            None => return Ok(None),
        }
    } else {
        None
    };

    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, used)))
}

/// Appends a frame header with the minimal length encoding (§5.2: "the minimal number of
/// bytes MUST be used to encode the length"). RSV bits are zero. `len` must be below
/// `2^63`; larger values are clamped to it (no payload that large can exist in memory).
pub fn write_header(out: &mut Vec<u8>, fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) {
    write_header_rsv(out, fin, 0, opcode, mask, len);
}

/// [`write_header`] with RSV bits (`rsv` as in [`FrameHeader::rsv`]; permessage-deflate
/// sets RSV1, `0b100`, on the first frame of a compressed message, RFC 7692 §6).
pub fn write_header_rsv(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: u64,
) {
    let b0 = if fin { 0x80 } else { 0 } | (rsv & 0x7) << 4 | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if len <= 125 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.min(i64::MAX as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a whole server-to-client frame: FIN set, unmasked ("A server MUST NOT mask any
/// frames that it sends to the client", §5.1), `payload` as is.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    log::trace!("ws send {:?} len {}", opcode, payload.len());
    out.reserve(payload.len() + 10);
    write_header(out, true, opcode, None, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends a whole frame (FIN set) with `rsv` bits, masked with `mask` when given (a
/// client's frame, §5.3: the payload is copied, then masked in place in `out`).
pub fn write_frame(
    out: &mut Vec<u8>,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    log::trace!(
        "ws send {:?} rsv={rsv:#b} len {} masked={}",
        opcode,
        payload.len(),
        mask.is_some()
    );
    out.reserve(payload.len() + MAX_HEADER_LEN);
    write_header_rsv(out, true, rsv, opcode, mask, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        super::mask::apply_mask(&mut out[start..], key, 0);
    }
}

/// The body of a Close frame (§5.5.1): nothing for `None`, else the code and `reason` cut
/// to fit 125 bytes on a char boundary. Returns the buffer and the length used.
pub fn close_body(code: Option<u16>, reason: &str) -> ([u8; MAX_CONTROL_PAYLOAD], usize) {
    let mut body = [0u8; MAX_CONTROL_PAYLOAD];
    let len = match code {
        None => 0,
        Some(code) => {
            let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            body[..2].copy_from_slice(&code.to_be_bytes());
            body[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
            2 + cut
        }
    };
    (body, len)
}

/// Appends a Close frame (server side, unmasked): no body for `None`, else the code and
/// `reason` cut to fit 125 bytes on a char boundary.
pub fn write_close(out: &mut Vec<u8>, code: Option<u16>, reason: &str) {
    let (body, len) = close_body(code, reason);
    encode_frame(out, OpCode::Close, &body[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Parses `bytes` whole, then checks that every strict prefix of the header needs more.
    fn parse_all_ways(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, CloseError> {
        let whole = parse_header(bytes);
        if let Ok(Some((_, used))) = whole {
            for cut in 0..used {
                assert_eq!(
                    parse_header(&bytes[..cut]),
                    Ok(None),
                    "cut {cut} of {bytes:02x?}"
                );
            }
        }
        whole
    }

    #[test]
    fn rfc_5_7_examples() {
        let cases: &[(&[u8], FrameHeader, usize)] = &[
            // A single-frame unmasked text message "Hello".
            (
                &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                hdr(true, OpCode::Text, None, 5),
                2,
            ),
            // A single-frame masked text message "Hello".
            (
                &[
                    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                hdr(true, OpCode::Text, Some(KEY), 5),
                6,
            ),
            // A fragmented unmasked text message: "Hel", then "lo".
            (
                &[0x01, 0x03, 0x48, 0x65, 0x6c],
                hdr(false, OpCode::Text, None, 3),
                2,
            ),
            (
                &[0x80, 0x02, 0x6c, 0x6f],
                hdr(true, OpCode::Continuation, None, 2),
                2,
            ),
            // Unmasked Ping "Hello" and masked Pong "Hello".
            (
                &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                hdr(true, OpCode::Ping, None, 5),
                2,
            ),
            (
                &[
                    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                hdr(true, OpCode::Pong, Some(KEY), 5),
                6,
            ),
            // 256 bytes binary message in a single unmasked frame.
            (
                &[0x82, 0x7E, 0x01, 0x00],
                hdr(true, OpCode::Binary, None, 256),
                4,
            ),
            // 64KiB binary message in a single unmasked frame.
            (
                &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
                hdr(true, OpCode::Binary, None, 65536),
                10,
            ),
        ];
        for (bytes, want, used) in cases {
            assert_eq!(
                parse_all_ways(bytes),
                Ok(Some((*want, *used))),
                "{bytes:02x?}"
            );
            // And writing the header back gives the same bytes.
            let mut out = Vec::new();
            write_header(&mut out, want.fin, want.opcode, want.mask, want.payload_len);
            assert_eq!(&out[..], &bytes[..*used]);
        }
    }

    #[test]
    fn header_fields() {
        // RSV bits are reported, not judged here.
        let (h, _) = parse_header(&[0xF1, 0x80, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(
            (h.rsv, h.opcode, h.mask),
            (0b111, OpCode::Text, Some([1, 2, 3, 4]))
        );
        let (h, _) = parse_header(&[0xC2, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
        // Non-minimal encodings are accepted.
        let (h, used) = parse_header(&[0x82, 0x7E, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!((h.payload_len, used), (5, 4));
        let (h, used) = parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, used), (5, 10));
        // The largest legal 64-bit length.
        let (h, _) = parse_header(&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            .unwrap()
            .unwrap();
        assert_eq!(h.payload_len, i64::MAX as u64);
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x83, 0x80], "reserved opcode"),
            (&[0x87, 0x80], "reserved opcode"),
            (&[0x8B, 0x80], "reserved opcode"),
            (&[0x8F, 0x80], "reserved opcode"),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                "64-bit payload length with its top bit set",
            ),
            (
                &[0x89, 0xFE, 0x00, 0x7E],
                "control frame payload over 125 bytes",
            ),
            (&[0x09, 0x80], "fragmented control frame"),
            (&[0x0A, 0x80], "fragmented control frame"),
            (&[0x08, 0x80], "fragmented control frame"),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                parse_header(bytes),
                Err(CloseError { code: 1002, reason }),
                "{bytes:02x?}"
            );
        }
        // A control frame with a non-minimal encoding of 125 is still 125 bytes: fine.
        assert!(matches!(
            parse_header(&[0x88, 0xFE, 0x00, 0x7D, 1, 2, 3, 4]),
            Ok(Some(_))
        ));
        // A reserved opcode is reported from the first two bytes already.
        assert!(parse_header(&[0x83, 0xFF]).is_err());
        assert_eq!(parse_header(&[0x83]), Ok(None));
    }

    #[test]
    fn minimal_length_encoding() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x82, 0x00]),
            (125, &[0x82, 0x7D]),
            (126, &[0x82, 0x7E, 0x00, 0x7E]),
            (65535, &[0x82, 0x7E, 0xFF, 0xFF]),
            (65536, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
            (
                u64::MAX,
                &[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
        ];
        for (len, want) in cases {
            let mut out = Vec::new();
            write_header(&mut out, true, OpCode::Binary, None, *len);
            assert_eq!(&out[..], *want, "len {len}");
        }
        let mut out = Vec::new();
        write_header(&mut out, false, OpCode::Continuation, Some(KEY), 3);
        assert_eq!(out, [0x00, 0x83, 0x37, 0xfa, 0x21, 0x3d]);
    }

    #[test]
    fn encode_frame_is_fin_unmasked() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(&mut out, OpCode::Pong, b"");
        assert_eq!(out, [0x8A, 0x00]);
        out.clear();
        encode_frame(&mut out, OpCode::Binary, &[7; 256]);
        assert_eq!(&out[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(out.len(), 260);
    }

    #[test]
    fn opcodes_round_trip() {
        for bits in 0..16u8 {
            match OpCode::from_u8(bits) {
                Some(op) => assert_eq!(op.as_u8(), bits),
                None => assert!((3..=7).contains(&bits) || bits >= 0xB),
            }
        }
        assert!(OpCode::Ping.is_control() && !OpCode::Continuation.is_control());
    }
}
