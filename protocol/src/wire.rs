//! The versioned binary encoding shared by every wire message: one version byte, then the
//! postcard encoding of the body. postcard is deterministic for a given value, and [`decode`]
//! accepts only that one encoding, which makes the encoding usable as the input of
//! signatures and content ids.

use serde::{Serialize, de::DeserializeOwned};

/// Why bytes from the network are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message is empty")]
    Empty,
    #[error("message is {size} bytes; the limit for a {what} is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("unsupported {what} version {found}; this node speaks version {supported}")]
    UnsupportedVersion {
        what: &'static str,
        found: u8,
        supported: u8,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("malformed {what}: {trailing} bytes after the end of the message")]
    TrailingBytes { what: &'static str, trailing: usize },
    #[error("malformed {what}: not the canonical encoding of its contents")]
    NonCanonical { what: &'static str },
}

pub(crate) fn encode<T: Serialize>(version: u8, body: &T) -> Vec<u8> {
    let mut out = vec![version];
    let encoded = postcard::to_allocvec(body)
        .expect("postcard encoding of plain bytes, integers and strings into a Vec cannot fail");
    out.extend_from_slice(&encoded);
    out
}

pub(crate) fn decode<T: Serialize + DeserializeOwned>(
    what: &'static str,
    version: u8,
    limit: usize,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            size: bytes.len(),
            limit,
        });
    }
    let (&found, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if found != version {
        return Err(DecodeError::UnsupportedVersion {
            what,
            found,
            supported: version,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            trailing: rest.len(),
        });
    }
    // postcard also reads varints padded with redundant continuation bytes (`80 00` for 0).
    // Signatures cover the canonical encoding, so without this check one signed message
    // would verify in many encodings, and one manifest would have many ids.
    if encode(version, &value)[1..] != *body {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_encoding_decodes() {
        assert_eq!(decode::<u64>("test", 1, 16, &[1, 0]), Ok(0));
        assert_eq!(
            decode::<u64>("test", 1, 16, &[1, 0x80, 0]),
            Err(DecodeError::NonCanonical { what: "test" })
        );
        assert_eq!(
            decode::<(u32, String)>("test", 1, 16, &[1, 0xac, 0x82, 0, 1, b'x']),
            Err(DecodeError::NonCanonical { what: "test" })
        );
        assert_eq!(encode(1, &(300u32, "x")), [1, 0xac, 0x02, 1, b'x']);
    }
}
