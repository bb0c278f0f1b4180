//! permessage-deflate's compression of one message, pure (RFC 7692 §7.2).
//!
//! # On the wire
//!
//! A compressed message is sent with RSV1 set on its first frame; its payload is the raw
//! DEFLATE (RFC 1951) data of the whole message, flushed to a byte boundary with an empty
//! stored block, whose last four bytes `00 00 ff ff` are then removed (§7.2.1). The
//! receiver appends them again and inflates (§7.2.2). Without context takeover each message
//! starts from an empty window, so one [`Deflater`] and one [`Inflater`] serve any number
//! of connections, one message at a time.
//!
//! Inflating counts its output against a limit while it inflates: a small payload that
//! would grow past the message limit stops with [`InflateError::TooBig`] (close 1009) after
//! at most the limit and one byte of output, never allocating more. A stream that
//! is not DEFLATE is [`InflateError::Corrupt`] (close 1007).
//!
//! [`Codec`] is the loop's one compressor per window size and one decompressor, made on
//! first use: what every connection without context takeover shares. [`MIN_COMPRESSED`]
//! is the size below which a message goes out uncompressed (measured, see its docs).

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What §7.2.1 removes from the end of a compressed message, and §7.2.2 adds back.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output made per inflate step.
const STEP: usize = 16 * 1024;

/// Compresses messages with a window of `2^bits` bytes.
pub struct Deflater {
    c: Compress,
    level: u32,
    takeover: bool,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("level", &self.level)
            .field("takeover", &self.takeover)
            .finish()
    }
}

impl Deflater {
    /// A compressor with a window of `window_bits` (9-15, clamped) at `level` (0-9), keeping
    /// its context between messages when `takeover`.
    pub fn new(window_bits: u8, level: u32, takeover: bool) -> Deflater {
        let (bits, level) = (window_bits.clamp(9, 15), level.min(9));
        Deflater {
            c: Compress::new_with_window_bits(Compression::new(level), false, bits),
            level,
            takeover,
        }
    }

    /// Compresses the next messages at `level` (0-9). Between messages (the stream is
    /// flushed) this cannot fail; if zlib refused, the old level stays.
    pub fn set_level(&mut self, level: u32) {
        let level = level.min(9);
        if level != self.level && self.c.set_level(Compression::new(level)).is_ok() {
            self.level = level;
        }
    }

    /// Appends the compressed payload of `message` to `out` (§7.2.1).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = message;
        loop {
            // Room for the worst case of what is left (stored blocks cost 5 bytes each).
            out.reserve(input.len() + input.len() / 64 + 64);
            let before = self.c.total_in();
            // A sync flush cannot fail on a valid stream; a failure leaves what was made.
            if self
                .c
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let used = (self.c.total_in() - before) as usize;
            input = &input[used..];
            // Done when all input is in and the flush's empty block is out.
            if input.is_empty() && out.len() > start + 4 && out.ends_with(&TAIL) {
                break;
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // An empty message: one empty stored block's first byte (§7.2.3.6).
            out.push(0x00);
        }
        if !self.takeover {
            self.c.reset();
        }
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (close 1009).
    TooBig,
    /// It is not DEFLATE data (close 1007).
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InflateError::TooBig => "the message inflates past the message limit",
            InflateError::Corrupt => "the compressed message is not valid DEFLATE data",
        })
    }
}

/// Inflates messages made with a window of up to `2^bits` bytes.
pub struct Inflater {
    d: Decompress,
    takeover: bool,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("takeover", &self.takeover)
            .finish()
    }
}

impl Inflater {
    /// A decompressor for windows of `window_bits` (9-15, clamped), keeping its context
    /// between messages when `takeover`.
    pub fn new(window_bits: u8, takeover: bool) -> Inflater {
        Inflater {
            d: Decompress::new_with_window_bits(false, window_bits.clamp(9, 15)),
            takeover,
        }
    }

    /// Appends the message inflated from `payload` (the tail added back, §7.2.2) to `out`,
    /// at most `limit` bytes of it.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let result = self.run(payload, limit, out);
        if result.is_err() || !self.takeover {
            self.d.reset(false);
        }
        result
    }

    fn run(&mut self, payload: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
        let start = out.len();
        let mut buf = [0u8; STEP];
        for part in [payload, &TAIL[..]] {
            let mut input = part;
            loop {
                let made = out.len() - start;
                if made > limit {
                    return Err(InflateError::TooBig);
                }
                // At most one byte past the limit is made: enough to tell it is passed.
                let room = STEP.min(limit - made + 1);
                let (in_before, out_before) = (self.d.total_in(), self.d.total_out());
                let status = self
                    .d
                    .decompress(input, &mut buf[..room], FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let used = (self.d.total_in() - in_before) as usize;
                let produced = (self.d.total_out() - out_before) as usize;
                out.extend_from_slice(&buf[..produced]);
                input = &input[used..];
                if status == Status::StreamEnd {
                    // A final block (BFINAL, §7.2.3.4): whatever follows starts anew.
                    self.d.reset(false);
                    if input.is_empty() {
                        break;
                    }
                    continue;
                }
                if input.is_empty() && produced < room {
                    break;
                }
                if used == 0 && produced == 0 {
                    if input.is_empty() {
                        break;
                    }
                    return Err(InflateError::Corrupt);
                }
            }
        }
        if out.len() - start > limit {
            return Err(InflateError::TooBig);
        }
        Ok(())
    }
}

/// Messages shorter than this are sent uncompressed (RSV1 clear, which permessage-deflate
/// allows per message, RFC 7692 §6). Measured (`cargo bench -p pushwire-benches --bench deflate_threshold`,
/// `benches/DEFLATE-FIGURES.md`) on pushwire's event JSON and bare JSON: at 64 bytes the
/// raw DEFLATE output saves 0-3 bytes for 6-7 µs of compression (writing the frame plain
/// costs 10-20 ns); every kind of message saves at least 10% only from 128 bytes, 20% from
/// 192.
pub const MIN_COMPRESSED: usize = 128;

/// The default level of broadcasts, compressed once for every subscriber: zlib's default
/// trade-off (6). On 1 KiB of event JSON level 1 is about 3x faster and 28% bigger.
pub const LEVEL: u32 = 6;

/// The default level of a message to one connection through the shared compressors (an
/// echo, a direct send): compressed for that connection alone, so speed wins (level 1:
/// 4.3 µs for 1 KiB of quote JSON against 10 µs at 6, 243 bytes against 193; a message that
/// does not shrink goes plain).
pub const DIRECT_LEVEL: u32 = 1;

/// The loop's shared compressors (one per window size, 9-15 bits) and decompressor, each
/// made on first use: the permessage-deflate state of every connection without context
/// takeover. zlib-rs's compressor at 15 bits takes about 371 KiB, its decompressor about
/// 47 KiB (measured: `cargo bench -p pushwire-benches --bench idle_conns -- --deflate`); a loop that never
/// compresses pays nothing. Broadcasts are compressed at one level, messages to one
/// connection at another (the same compressors, their level set per message).
#[derive(Debug)]
pub struct Codec {
    /// The compression level of broadcasts (0-9).
    level: u32,
    /// The compression level of messages to one connection (0-9).
    direct_level: u32,
    deflaters: [Option<Box<Deflater>>; 7],
    inflater: Option<Box<Inflater>>,
    /// Where one message is compressed before it is framed.
    scratch: Vec<u8>,
}

/// The scratch buffer is given back after a message bigger than this.
const SCRATCH_KEEP: usize = 256 * 1024;

impl Default for Codec {
    fn default() -> Self {
        Codec::with_levels(LEVEL, DIRECT_LEVEL)
    }
}

impl Codec {
    /// A codec with nothing made yet, at [`LEVEL`] and [`DIRECT_LEVEL`].
    pub fn new() -> Codec {
        Codec::default()
    }

    /// A codec compressing broadcasts at `level` and messages to one connection at
    /// `direct_level` (0-9, clamped).
    pub fn with_levels(level: u32, direct_level: u32) -> Codec {
        Codec {
            level: level.min(9),
            direct_level: direct_level.min(9),
            deflaters: Default::default(),
            inflater: None,
            scratch: Vec::new(),
        }
    }

    /// The level of messages to one connection through the shared compressors.
    pub fn direct_level(&self) -> u32 {
        self.direct_level
    }

    /// The level of broadcasts, and of a connection's own compressor (context takeover):
    /// what such a compressor made must be sent even when it grew, and zlib-rs's level 1
    /// (its "quick" strategy, static Huffman codes) grows incompressible data by about 5%,
    /// where 2 and above fall back to stored blocks (+0.03%).
    pub fn level(&self) -> u32 {
        self.level
    }

    /// `message` compressed at `level` with the shared compressor for `window_bits`, in
    /// the scratch buffer.
    fn shared(&mut self, window_bits: u8, level: u32, message: &[u8]) -> &[u8] {
        let bits = window_bits.clamp(9, 15);
        let d = self.deflaters[usize::from(bits - 9)]
            .get_or_insert_with(|| Box::new(Deflater::new(bits, level, false)));
        d.set_level(level);
        self.scratch.clear();
        d.compress(message, &mut self.scratch);
        &self.scratch
    }

    /// `message` for one connection, compressed at the direct level with the shared
    /// compressor for `window_bits`, in the scratch buffer (call [`trim`](Self::trim) when
    /// done with it).
    pub fn compress(&mut self, window_bits: u8, message: &[u8]) -> &[u8] {
        self.shared(window_bits, self.direct_level, message)
    }

    /// `message` for every subscriber of a broadcast, compressed at the broadcast level.
    pub fn compress_broadcast(&mut self, window_bits: u8, message: &[u8]) -> &[u8] {
        self.shared(window_bits, self.level, message)
    }

    /// `message` compressed with a connection's own compressor, in the scratch buffer.
    pub fn compress_with(&mut self, own: &mut Deflater, message: &[u8]) -> &[u8] {
        self.scratch.clear();
        own.compress(message, &mut self.scratch);
        &self.scratch
    }

    /// Gives back the scratch buffer's memory after a large message.
    pub fn trim(&mut self) {
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// The shared decompressor (a 15-bit window inflates any smaller one).
    pub fn inflater(&mut self) -> &mut Inflater {
        self.inflater
            .get_or_insert_with(|| Box::new(Inflater::new(15, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn inflate(payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflater::new(15, false)
            .inflate(payload, 1 << 20, &mut out)
            .map(|()| out)
    }

    #[test]
    fn rfc7692_examples_inflate() {
        // §7.2.3.1: "Hello" compressed.
        assert_eq!(inflate(HELLO).unwrap(), b"Hello");
        // §7.2.3.3: one stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&stored).unwrap(), b"Hello");
        // §7.2.3.4: a final block, then the tail.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&last).unwrap(), b"Hello");
        // §7.2.3.5: two blocks.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate(&two).unwrap(), b"Hello");
        // §7.2.3.6: an empty message.
        assert_eq!(inflate(&[0x00]).unwrap(), b"");
    }

    #[test]
    fn rfc7692_examples_deflate() {
        let mut d = Deflater::new(15, 6, false);
        let mut out = Vec::new();
        d.compress(b"Hello", &mut out);
        assert_eq!(out, HELLO, "§7.2.3.1");
        // Without context takeover the second "Hello" is the same bytes.
        out.clear();
        d.compress(b"Hello", &mut out);
        assert_eq!(out, HELLO);
        // §7.2.3.2: with context takeover the second refers back to the first.
        let mut keep = Deflater::new(15, 6, true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keep.compress(b"Hello", &mut a);
        keep.compress(b"Hello", &mut b);
        assert_eq!(a, HELLO);
        assert_eq!(b, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut inf = Inflater::new(15, true);
        let mut got = Vec::new();
        inf.inflate(&a, 100, &mut got).unwrap();
        inf.inflate(&b, 100, &mut got).unwrap();
        assert_eq!(got, b"HelloHello");
        // An empty message (§7.2.3.6).
        out.clear();
        d.compress(b"", &mut out);
        assert_eq!(out, [0x00]);
    }

    #[test]
    fn every_window_round_trips() {
        let text: Vec<u8> = (0..200_000u32)
            .map(|i| b"{\"id\":1234,\"data\":\"hello\"} "[(i % 27) as usize])
            .collect();
        for bits in 9..=15 {
            let mut out = Vec::new();
            Deflater::new(bits, 6, false).compress(&text, &mut out);
            assert!(out.len() < text.len() / 10, "{bits}: {}", out.len());
            let mut back = Vec::new();
            Inflater::new(bits, false)
                .inflate(&out, text.len(), &mut back)
                .unwrap();
            assert_eq!(back, text, "{bits}");
        }
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        // 10 MB of zeros compress to about 10 KB.
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        Deflater::new(15, 9, false).compress(&zeros, &mut bomb);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        let mut inf = Inflater::new(15, false);
        assert_eq!(
            inf.inflate(&bomb, 64 * 1024, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.len() <= 64 * 1024 + 1, "{}", out.len());
        // The inflater is usable again after the refusal.
        out.clear();
        inf.inflate(HELLO, 5, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        assert_eq!(inf.inflate(HELLO, 4, &mut out), Err(InflateError::TooBig));
    }

    #[test]
    fn garbage_is_corrupt() {
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff]),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(&[0x07, 0x00]), Err(InflateError::Corrupt));
        // A stored block whose length check fails.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0x00, 0x00, b'H']),
            Err(InflateError::Corrupt)
        );
    }
}
