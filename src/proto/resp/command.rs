//! Encoding commands: "A client sends the Redis server an array consisting of only bulk
//! strings."
//!
//! `SET k v` goes out as `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`. Every argument is
//! length-prefixed, so arguments are binary-safe: no quoting, no escaping. (Redis also
//! reads "inline commands", space-separated text lines, which are meant for telnet
//! sessions and are never sent here.)

use super::value::{blob, header, push_decimal};

/// Appends the command `args` (the name first) to `out` as an array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.reserve(command_len(args));
    header(out, b'*', args.len());
    for arg in args {
        blob(out, b'$', arg);
    }
}

/// The exact number of bytes [`encode_command`] appends for `args`, so that an output
/// budget can be checked before anything is written.
pub fn command_len(args: &[&[u8]]) -> usize {
    args.iter().fold(header_len(args.len()), |n, arg| {
        n.saturating_add(header_len(arg.len()))
            .saturating_add(arg.len())
            .saturating_add(2)
    })
}

/// The length of `<type><n>\r\n`.
fn header_len(n: usize) -> usize {
    let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
    1 + digits + 2
}

/// A command built argument by argument, for arguments that are not at hand as one slice
/// (numbers, computed keys). It holds the encoded arguments, so building copies each one
/// once.
///
/// ```
/// use pushwire::proto::resp::Command;
///
/// let cmd = Command::new("PUBLISH").arg("news").arg(b"hello");
/// assert_eq!(cmd.to_bytes(), b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
/// let expire = Command::new("EXPIRE").arg("k").arg_int(60);
/// assert_eq!(expire.to_bytes(), b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n60\r\n");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    args: usize,
    /// The encoded arguments, without the array header.
    body: Vec<u8>,
    /// Where the name's bytes sit in `body`.
    name: std::ops::Range<usize>,
}

impl Command {
    /// A command named `name` (`"GET"`, `"PUBLISH"`), no arguments yet.
    pub fn new(name: impl AsRef<[u8]>) -> Command {
        let name = name.as_ref();
        let start = header_len(name.len());
        let mut cmd = Command {
            args: 0,
            body: Vec::new(),
            name: start..start + name.len(),
        };
        cmd.push(name);
        cmd
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Command {
        self.push(arg);
        self
    }

    /// Adds an integer argument, in decimal.
    pub fn arg_int(self, n: i64) -> Command {
        self.arg(n.to_string())
    }

    /// Adds an argument in place.
    pub fn push(&mut self, arg: impl AsRef<[u8]>) {
        self.args += 1;
        blob(&mut self.body, b'$', arg.as_ref());
    }

    /// The number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.args
    }

    /// Never true: a command has at least its name.
    pub fn is_empty(&self) -> bool {
        self.args == 0
    }

    /// The exact number of bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        header_len(self.args) + self.body.len()
    }

    /// Appends the command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        header(out, b'*', self.args);
        out.extend_from_slice(&self.body);
    }

    /// The command as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The name (the first argument), for logs.
    pub fn name(&self) -> &[u8] {
        self.body.get(self.name.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Command {
    /// The name and the number of arguments only: arguments may be credentials (`AUTH`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command({} + {} args)",
            self.name().escape_ascii(),
            self.args.saturating_sub(1)
        )
    }
}

/// `n` in decimal, as bytes (for numeric arguments).
pub(crate) fn decimal(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    push_decimal(&mut out, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let table: &[(&[&[u8]], &[u8])] = &[
            (&[b"PING"], b"*1\r\n$4\r\nPING\r\n"),
            (
                &[b"SET", b"k", b"v"],
                b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
            ),
            // Binary-safe: CRLF and NUL inside an argument, the empty argument.
            (
                &[b"SET", b"a\r\nb", b"\0", b""],
                b"*4\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$1\r\n\0\r\n$0\r\n\r\n",
            ),
            (&[], b"*0\r\n"),
        ];
        for (args, bytes) in table {
            let mut out = b"before".to_vec();
            encode_command(&mut out, args);
            assert_eq!(&out[6..], *bytes);
            assert_eq!(command_len(args), bytes.len());
        }
    }

    #[test]
    fn lengths_of_every_digit_count() {
        for n in [0usize, 9, 10, 99, 100, 12345] {
            let arg = vec![b'x'; n];
            let mut out = Vec::new();
            encode_command(&mut out, &[b"SET", &arg]);
            assert_eq!(command_len(&[b"SET", &arg]), out.len(), "{n}");
            assert_eq!(header_len(n), 3 + n.to_string().len());
        }
        let args: Vec<&[u8]> = vec![b"x"; 1234];
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        assert!(out.starts_with(b"*1234\r\n$1\r\nx\r\n"));
        assert_eq!(command_len(&args), out.len());
    }

    #[test]
    fn the_builder_matches_the_slice_encoder() {
        let cmd = Command::new("SET")
            .arg("key")
            .arg(vec![0u8, 13, 10])
            .arg_int(-5);
        let mut direct = Vec::new();
        encode_command(&mut direct, &[b"SET", b"key", &[0, 13, 10], b"-5"]);
        assert_eq!(cmd.to_bytes(), direct);
        assert_eq!(cmd.encoded_len(), direct.len());
        assert_eq!((cmd.len(), cmd.is_empty()), (4, false));
        assert_eq!(cmd.name(), b"SET");
        let mut pushed = Command::new("SET");
        pushed.push("key");
        pushed.push(b"v");
        assert_eq!(pushed, Command::new("SET").arg("key").arg("v"));
        assert_eq!(decimal(42), b"42");
    }

    #[test]
    fn debug_hides_the_arguments() {
        let auth = Command::new("AUTH").arg("user").arg("hunter2");
        let shown = format!("{auth:?}");
        assert_eq!(shown, "Command(AUTH + 2 args)");
        assert!(!shown.contains("hunter2"));
    }
}
