//! HTTP byte ranges (RFC 9110 section 14): parsing a `Range` header against a known size.
//!
//! Only single ranges are served; a multi-range request is answered with the whole body,
//! which RFC 9110 allows (a server may ignore `Range`).

use std::ops::Range;

/// What to send for a request with an optional `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeReply {
    /// No usable range: send everything with 200.
    Full,
    /// Send these bytes with 206.
    Partial(Range<u64>),
    /// The range cannot be satisfied: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Why a `Range` header is refused outright.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    #[error("Range header must start with 'bytes='")]
    NotBytes,
    #[error("Range header is malformed: {0:?}")]
    Malformed(String),
}

/// Longest `Range` header looked at; real players send a few dozen bytes.
const MAX_HEADER_LEN: usize = 256;

/// Resolves `header` (the value of `Range`, if any) against a body of `size` bytes.
///
/// Syntactically invalid headers are errors (answered with 400 by the gateway, so a client
/// learns of its bug); ranges that are valid but lie outside the body are
/// [`RangeReply::Unsatisfiable`].
pub fn resolve(header: Option<&str>, size: u64) -> Result<RangeReply, RangeError> {
    let Some(header) = header else {
        return Ok(RangeReply::Full);
    };
    if header.len() > MAX_HEADER_LEN {
        return Err(RangeError::Malformed(format!(
            "{} bytes long, more than {MAX_HEADER_LEN}",
            header.len()
        )));
    }
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::NotBytes)?;
    if spec.contains(',') {
        // Validate every part, then ignore the request for several ranges.
        for part in spec.split(',') {
            parse_one(part.trim())?;
        }
        return Ok(RangeReply::Full);
    }
    Ok(match parse_one(spec.trim())? {
        Spec::From(start) if start < size => RangeReply::Partial(start..size),
        Spec::FromTo(start, end) if start < size => {
            RangeReply::Partial(start..end.saturating_add(1).min(size))
        }
        Spec::Suffix(len) if len > 0 && size > 0 => {
            RangeReply::Partial(size.saturating_sub(len)..size)
        }
        _ => RangeReply::Unsatisfiable,
    })
}

enum Spec {
    From(u64),
    FromTo(u64, u64),
    Suffix(u64),
}

fn parse_one(part: &str) -> Result<Spec, RangeError> {
    let malformed = || RangeError::Malformed(part.to_string());
    let (start, end) = part.split_once('-').ok_or_else(malformed)?;
    let number = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse().map_err(|_| malformed())
    };
    match (start.is_empty(), end.is_empty()) {
        (true, true) => Err(malformed()),
        (true, false) => Ok(Spec::Suffix(number(end)?)),
        (false, true) => Ok(Spec::From(number(start)?)),
        (false, false) => {
            let (s, e) = (number(start)?, number(end)?);
            if e < s {
                return Err(malformed());
            }
            Ok(Spec::FromTo(s, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_forms() {
        assert_eq!(resolve(None, 10), Ok(RangeReply::Full));
        assert_eq!(
            resolve(Some("bytes=0-4"), 10),
            Ok(RangeReply::Partial(0..5))
        );
        assert_eq!(
            resolve(Some("bytes=5-"), 10),
            Ok(RangeReply::Partial(5..10))
        );
        assert_eq!(
            resolve(Some("bytes=-3"), 10),
            Ok(RangeReply::Partial(7..10))
        );
        assert_eq!(
            resolve(Some("bytes=-30"), 10),
            Ok(RangeReply::Partial(0..10))
        );
        assert_eq!(
            resolve(Some("bytes=8-100"), 10),
            Ok(RangeReply::Partial(8..10))
        );
        assert_eq!(resolve(Some("bytes=0-1,4-5"), 10), Ok(RangeReply::Full));
    }

    #[test]
    fn unsatisfiable_and_malformed() {
        assert_eq!(
            resolve(Some("bytes=10-"), 10),
            Ok(RangeReply::Unsatisfiable)
        );
        assert_eq!(resolve(Some("bytes=-0"), 10), Ok(RangeReply::Unsatisfiable));
        assert_eq!(resolve(Some("bytes=0-0"), 0), Ok(RangeReply::Unsatisfiable));
        assert_eq!(resolve(Some("items=0-1"), 10), Err(RangeError::NotBytes));
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-2,x",
        ] {
            assert!(resolve(Some(bad), 10).is_err(), "{bad} should be refused");
        }
        let overflow = format!("bytes=0-{}", "9".repeat(40));
        assert!(resolve(Some(&overflow), 10).is_err());
    }

    proptest! {
        #[test]
        fn partial_ranges_lie_inside_the_body(header in "bytes=[0-9]{0,6}-[0-9]{0,6}", size in 0u64..2_000_000) {
            if let Ok(RangeReply::Partial(r)) = resolve(Some(&header), size) {
                prop_assert!(r.start < r.end && r.end <= size);
            }
        }

        #[test]
        fn never_panics(header in ".{0,300}", size in any::<u64>()) {
            let _ = resolve(Some(&header), size);
        }
    }
}
