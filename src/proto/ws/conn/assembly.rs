//! The state of a message in progress (RFC 6455 §5.4 fragments, a frame's payload arriving
//! over several reads): what [`Receiver`](super::Receiver) keeps only while there is one.

use super::{Kind, Streaming};
use crate::proto::ws::utf8::Utf8Validator;

/// A message (or a discarded frame) in progress: boxed, and only while there is one, so an
/// idle connection's receiver is a few words.
#[derive(Debug, Default)]
pub(super) struct Assembly {
    /// The data frame being streamed, if any.
    pub(super) frame: Option<Streaming>,
    /// The type of the fragmented message being assembled, if any.
    pub(super) message: Option<Kind>,
    /// The message being assembled is compressed.
    pub(super) compressed: bool,
    /// UTF-8 state of the text message being assembled.
    pub(super) utf8: Utf8Validator,
    /// Every byte of `data` went through `utf8`, which ended complete.
    pub(super) validated: bool,
    /// The message being assembled.
    pub(super) data: Vec<u8>,
}

impl Assembly {
    /// The assembled text message: checked once, as it arrived, when it came uncompressed;
    /// inflated text is checked here.
    pub(super) fn text(&self) -> Option<&str> {
        if self.validated {
            Some(crate::proto::ws::utf8::validated(&self.data, &self.utf8))
        } else {
            std::str::from_utf8(&self.data).ok()
        }
    }
}
