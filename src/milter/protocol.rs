//! The part of the milter protocol (version 6, as Postfix speaks it) this milter needs: packets
//! are a 4-byte big-endian length, a command byte and its data. Written here rather than taken
//! from a crate: the Rust milter libraries are GPL, modobox is MIT.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Commands the MTA sends.
pub const OPTNEG: u8 = b'O';
pub const MACRO: u8 = b'D';
pub const MAIL: u8 = b'M';
pub const HEADER: u8 = b'L';
pub const EOH: u8 = b'N';
pub const ABORT: u8 = b'A';
pub const QUIT: u8 = b'Q';
pub const QUIT_NC: u8 = b'K';
pub const CONNECT: u8 = b'C';
pub const HELO: u8 = b'H';
pub const RCPT: u8 = b'R';
pub const BODY: u8 = b'B';
pub const BODYEOB: u8 = b'E';

/// Replies.
pub const CONTINUE: u8 = b'c';
pub const ACCEPT: u8 = b'a';
pub const REPLYCODE: u8 = b'y';
pub const INSHEADER: u8 = b'i';
pub const CHGHEADER: u8 = b'm';

/// Actions a milter may take: add (or insert) headers, change or delete them.
pub const ACTION_ADD_HEADERS: u32 = 0x01;
pub const ACTION_CHANGE_HEADERS: u32 = 0x10;
/// Protocol flag: header values keep their leading space (exact DKIM canonicalisation).
pub const HEADER_LEADING_SPACE: u32 = 0x0010_0000;
/// Protocol flags: no unknown commands, no DATA step.
pub const NO_UNKNOWN: u32 = 0x100;
pub const NO_DATA: u32 = 0x200;

/// Protocol steps this milter asks the MTA to leave out: connect, HELO, RCPT, body, unknown
/// commands and DATA (only MAIL's macros and the headers matter).
const SKIP: u32 = 0x01 | 0x02 | 0x08 | 0x10 | 0x100 | 0x200;

/// The largest packet accepted: a header may be folded over many lines, but Postfix's own
/// header_size_limit is 100 KiB.
const MAX_PACKET: usize = 256 * 1024;

#[derive(Debug)]
pub struct Packet {
    pub command: u8,
    pub data: Vec<u8>,
}

/// The next packet, or None when the MTA closed the connection.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Packet>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("milter packet of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let command = buf[0];
    buf.remove(0);
    Ok(Some(Packet { command, data: buf }))
}

/// One packet: length, command, data (also what the health probe sends).
pub fn frame(command: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    out.extend_from_slice(data);
    out
}

pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    command: u8,
    data: &[u8],
) -> std::io::Result<()> {
    w.write_all(&frame(command, data)).await?;
    w.flush().await
}

/// The answer to the MTA's option negotiation: protocol version 6 (or the MTA's, if lower), no
/// message changes, and only the steps this milter reads.
pub fn negotiate_reply(offer: &[u8]) -> Vec<u8> {
    negotiate(offer, 0, SKIP)
}

/// The MTA's offer read back: the version (at most 6), the actions asked for and the protocol
/// flags, each limited to what the MTA offered.
pub fn negotiate(offer: &[u8], actions: u32, flags: u32) -> Vec<u8> {
    let field = |i: usize| {
        offer
            .get(i * 4..i * 4 + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let version = field(0).min(6);
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(actions & field(1)).to_be_bytes());
    out.extend_from_slice(&(flags & field(2)).to_be_bytes());
    out
}

/// Whether a negotiation reply (ours) kept a protocol flag.
pub fn negotiated(reply: &[u8], flag: u32) -> bool {
    reply
        .get(8..12)
        .is_some_and(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & flag != 0)
}

/// An INSHEADER or CHGHEADER packet's data: index, name, value (empty value: delete).
pub fn header_change(index: u32, name: &str, value: &str) -> Vec<u8> {
    let mut out = index.to_be_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    out
}

/// NUL-terminated strings of a packet's data.
pub fn strings(data: &[u8]) -> Vec<String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    data.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A MACRO packet's macros: its first byte names the step they belong to.
pub fn macros(data: &[u8]) -> Vec<(String, String)> {
    let fields = strings(data.get(1..).unwrap_or_default());
    fields
        .chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

/// A REPLYCODE packet's data: "550 5.7.1 text", NUL-terminated, on one line.
pub fn reply_code(code: &str, text: &str) -> Vec<u8> {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() || c == '%' { ' ' } else { c })
        .take(900)
        .collect();
    let mut out = format!("{code} {text}").into_bytes();
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_the_mta_version_and_what_it_offers() {
        let mut offer = Vec::new();
        for v in [6u32, 0x1ff, 0x1fffff] {
            offer.extend_from_slice(&v.to_be_bytes());
        }
        let r = negotiate_reply(&offer);
        assert_eq!(&r[0..4], &6u32.to_be_bytes());
        assert_eq!(&r[4..8], &0u32.to_be_bytes());
        assert_eq!(u32::from_be_bytes([r[8], r[9], r[10], r[11]]), SKIP);
        let mut old = Vec::new();
        for v in [2u32, 0x1f, 0x7f] {
            old.extend_from_slice(&v.to_be_bytes());
        }
        let r = negotiate_reply(&old);
        assert_eq!(&r[0..4], &2u32.to_be_bytes());
        assert_eq!(u32::from_be_bytes([r[8], r[9], r[10], r[11]]), SKIP & 0x7f);
    }

    #[test]
    fn macros_and_replies_are_decoded_and_sanitised() {
        let m = macros(b"M{auth_authen}\0alice@example.test\0i\0ABC123\0");
        assert_eq!(
            m,
            vec![
                (
                    "{auth_authen}".to_string(),
                    "alice@example.test".to_string()
                ),
                ("i".into(), "ABC123".into())
            ]
        );
        assert_eq!(
            reply_code("550", "5.7.1 a\r\nb%s"),
            b"550 5.7.1 a  b s\0".to_vec()
        );
    }
}
