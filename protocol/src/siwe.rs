//! Sign-In with Ethereum (EIP-4361): parsing a message and checking it against what this
//! node expects, at a given time. Signature checks need the chain (contract wallets) and
//! live in the node; nonce bookkeeping is the node's too.
//!
//! ```text
//! ${domain} wants you to sign in with your Ethereum account:
//! ${address}
//!
//! ${statement}            (optional line, followed by an empty line)
//!
//! URI: ${uri}
//! Version: 1
//! Chain ID: ${chain-id}
//! Nonce: ${nonce}
//! Issued At: ${RFC 3339 time}
//! Expiration Time: ...    (optional)
//! Not Before: ...         (optional)
//! Request ID: ...         (optional)
//! Resources:              (optional, followed by "- URI" lines)
//! ```

use alloy_primitives::Address;

/// Longest message accepted; real ones are a few hundred bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// How far in the future `Issued At` may be, for clock skew.
pub const MAX_SKEW_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    pub scheme: Option<String>,
    pub domain: String,
    pub address: Address,
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: u64,
    pub nonce: String,
    /// Seconds since the Unix epoch.
    pub issued_at: i64,
    pub expiration_time: Option<i64>,
    pub not_before: Option<i64>,
    pub request_id: Option<String>,
    pub resources: Vec<String>,
}

/// Why a sign-in message is refused. Each has its own stable code for API answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SiweError {
    #[error("malformed sign-in message: {0}")]
    Malformed(String),
    #[error("the message is for domain {found:?}; this node is {expected:?}")]
    WrongDomain { expected: String, found: String },
    #[error("the message URI {found:?} is not on this node's origin {expected:?}")]
    WrongUri { expected: String, found: String },
    #[error("unsupported message version {0:?}; only version 1 exists")]
    WrongVersion(String),
    #[error("chain id {0} is not one this node checks ownership on")]
    WrongChain(u64),
    #[error("the message expired")]
    Expired,
    #[error("the message is not valid yet (Not Before)")]
    NotYetValid,
    #[error("the message was issued in the future; check the clock")]
    IssuedInFuture,
}

impl SiweError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_message",
            Self::WrongDomain { .. } => "wrong_domain",
            Self::WrongUri { .. } => "wrong_uri",
            Self::WrongVersion(_) => "wrong_version",
            Self::WrongChain(_) => "wrong_chain",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
        }
    }
}

/// What the node expects of a message.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// `host[:port]` of the node's public origin.
    pub domain: &'a str,
    /// The public origin, `scheme://host[:port]`.
    pub origin: &'a str,
    pub chain_ids: &'a [u64],
}

const HEADER_SUFFIX: &str = " wants you to sign in with your Ethereum account:";

impl SiweMessage {
    /// Parses the EIP-4361 text form.
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        let bad = |msg: &str| SiweError::Malformed(msg.to_string());
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(bad("longer than 4096 bytes"));
        }
        let mut lines = text.split('\n');
        let header = lines.next().ok_or_else(|| bad("empty"))?;
        let authority = header.strip_suffix(HEADER_SUFFIX).ok_or_else(|| {
            bad("the first line must end with \"wants you to sign in with your Ethereum account:\"")
        })?;
        let (scheme, domain) = match authority.split_once("://") {
            Some((s, d)) => (Some(s.to_string()), d.to_string()),
            None => (None, authority.to_string()),
        };
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(bad("the domain is empty or has spaces"));
        }
        let address_line = lines.next().ok_or_else(|| bad("no address line"))?;
        let address = parse_address(address_line)?;
        if lines.next() != Some("") {
            return Err(bad("an empty line must follow the address"));
        }
        let mut statement = None;
        let mut line = lines
            .next()
            .ok_or_else(|| bad("the message ends after the address"))?;
        if !line.is_empty() {
            if line.starts_with("URI: ") {
                return Err(bad("an empty line must precede URI"));
            }
            statement = Some(line.to_string());
            if lines.next() != Some("") {
                return Err(bad("an empty line must follow the statement"));
            }
        }
        line = lines.next().ok_or_else(|| bad("no URI line"))?;
        let uri = field(line, "URI")?;
        let version = field(lines.next().unwrap_or(""), "Version")?;
        let chain_id = field(lines.next().unwrap_or(""), "Chain ID")?
            .parse::<u64>()
            .map_err(|_| bad("Chain ID is not a number"))?;
        let nonce = field(lines.next().unwrap_or(""), "Nonce")?;
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("the nonce must be at least 8 letters and digits"));
        }
        let issued_at = parse_time(&field(lines.next().unwrap_or(""), "Issued At")?)?;
        let mut message = SiweMessage {
            scheme,
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time: None,
            not_before: None,
            request_id: None,
            resources: Vec::new(),
        };
        let rest: Vec<&str> = lines.collect();
        let mut i = 0;
        let take =
            |name: &str, rest: &[&str], i: &mut usize| -> Result<Option<String>, SiweError> {
                match rest
                    .get(*i)
                    .and_then(|l| l.strip_prefix(&format!("{name}: ")))
                {
                    Some(v) => {
                        *i += 1;
                        Ok(Some(v.to_string()))
                    }
                    None => Ok(None),
                }
            };
        if let Some(v) = take("Expiration Time", &rest, &mut i)? {
            message.expiration_time = Some(parse_time(&v)?);
        }
        if let Some(v) = take("Not Before", &rest, &mut i)? {
            message.not_before = Some(parse_time(&v)?);
        }
        message.request_id = take("Request ID", &rest, &mut i)?;
        if rest.get(i) == Some(&"Resources:") {
            i += 1;
            while let Some(resource) = rest.get(i).and_then(|l| l.strip_prefix("- ")) {
                message.resources.push(resource.to_string());
                i += 1;
            }
        }
        // A single trailing newline is tolerated; anything else is not part of EIP-4361.
        match &rest[i..] {
            [] | [""] => Ok(message),
            [other, ..] => Err(bad(&format!("unexpected line {other:?}"))),
        }
    }

    /// Checks domain, URI, version, chain and validity window at time `now`.
    pub fn check(&self, expect: &Expectations<'_>, now: i64) -> Result<(), SiweError> {
        if self.domain != expect.domain {
            return Err(SiweError::WrongDomain {
                expected: expect.domain.to_string(),
                found: self.domain.clone(),
            });
        }
        let on_origin = self
            .uri
            .strip_prefix(expect.origin)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !on_origin {
            return Err(SiweError::WrongUri {
                expected: expect.origin.to_string(),
                found: self.uri.clone(),
            });
        }
        if self.version != "1" {
            return Err(SiweError::WrongVersion(self.version.clone()));
        }
        if !expect.chain_ids.contains(&self.chain_id) {
            return Err(SiweError::WrongChain(self.chain_id));
        }
        if self.issued_at > now + MAX_SKEW_SECS {
            return Err(SiweError::IssuedInFuture);
        }
        if self.expiration_time.is_some_and(|t| now >= t) {
            return Err(SiweError::Expired);
        }
        if self.not_before.is_some_and(|t| now < t) {
            return Err(SiweError::NotYetValid);
        }
        Ok(())
    }

    /// The EIP-4361 text form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(scheme) = &self.scheme {
            out.push_str(scheme);
            out.push_str("://");
        }
        out.push_str(&self.domain);
        out.push_str(HEADER_SUFFIX);
        out.push('\n');
        out.push_str(&self.address.to_checksum(None));
        out.push_str("\n\n");
        if let Some(statement) = &self.statement {
            out.push_str(statement);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&format!(
            "URI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri,
            self.version,
            self.chain_id,
            self.nonce,
            format_time(self.issued_at)
        ));
        if let Some(t) = self.expiration_time {
            out.push_str(&format!("\nExpiration Time: {}", format_time(t)));
        }
        if let Some(t) = self.not_before {
            out.push_str(&format!("\nNot Before: {}", format_time(t)));
        }
        if let Some(id) = &self.request_id {
            out.push_str(&format!("\nRequest ID: {id}"));
        }
        if !self.resources.is_empty() {
            out.push_str("\nResources:");
            for r in &self.resources {
                out.push_str(&format!("\n- {r}"));
            }
        }
        out
    }
}

fn field(line: &str, name: &str) -> Result<String, SiweError> {
    line.strip_prefix(&format!("{name}: "))
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            SiweError::Malformed(format!("expected a \"{name}: \" line, found {line:?}"))
        })
}

/// EIP-4361 wants an EIP-55 checksummed address.
fn parse_address(text: &str) -> Result<Address, SiweError> {
    Address::parse_checksummed(text, None)
        .map_err(|_| SiweError::Malformed(format!("{text:?} is not an EIP-55 checksummed address")))
}

/// The instants RFC 3339 can write in UTC, `0000-01-01T00:00:00Z` to `9999-12-31T23:59:59Z`,
/// in Unix seconds.
const EARLIEST_TIME: i64 = -62_167_219_200;
const LATEST_TIME: i64 = 253_402_300_799;

/// RFC 3339 date-time (`2026-11-27T10:00:00Z`, `...00.123+02:00`) to Unix seconds.
///
/// Only instants that [`format_time`] can write back are accepted: with an offset or a leap
/// second, a time in the year 0000 or 9999 can name an instant outside the four-digit years.
pub fn parse_time(text: &str) -> Result<i64, SiweError> {
    let bad = || SiweError::Malformed(format!("{text:?} is not an RFC 3339 time"));
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, SiweError> {
        let s = text.get(range).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return Err(bad());
            }
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            sign * (h * 3600 + m * 60)
        }
    };
    let unix =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    if !(EARLIEST_TIME..=LATEST_TIME).contains(&unix) {
        return Err(bad());
    }
    Ok(unix)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's days-from-civil algorithms (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ADDR: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    fn sample() -> String {
        format!(
            "127.0.0.1:7700 wants you to sign in with your Ethereum account:\n{ADDR}\n\nWatch gated videos.\n\n\
             URI: http://127.0.0.1:7700/watch\nVersion: 1\nChain ID: 31337\nNonce: abcd1234efgh\n\
             Issued At: 2026-11-27T10:00:00Z\nExpiration Time: 2026-11-27T10:10:00.5+00:00"
        )
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            domain: "127.0.0.1:7700",
            origin: "http://127.0.0.1:7700",
            chain_ids: &[31337],
        }
    }

    #[test]
    fn parses_checks_and_round_trips() {
        let m = SiweMessage::parse(&sample()).expect("valid");
        assert_eq!(m.chain_id, 31337);
        assert_eq!(m.statement.as_deref(), Some("Watch gated videos."));
        let now = parse_time("2026-11-27T10:05:00Z").expect("time");
        m.check(&expect(), now).expect("passes");
        assert_eq!(
            SiweMessage::parse(&m.to_text()).expect("reparse"),
            SiweMessage {
                expiration_time: m.expiration_time,
                ..m.clone()
            }
        );
        assert_eq!(m.check(&expect(), now + 600), Err(SiweError::Expired));
    }

    #[test]
    fn each_mismatch_has_its_own_error() {
        let m = SiweMessage::parse(&sample()).expect("valid");
        let now = m.issued_at;
        let other = Expectations {
            domain: "evil.example",
            ..expect()
        };
        assert_eq!(
            m.check(&other, now).map_err(|e| e.code()),
            Err("wrong_domain")
        );
        let chains = Expectations {
            chain_ids: &[1],
            ..expect()
        };
        assert_eq!(
            m.check(&chains, now).map_err(|e| e.code()),
            Err("wrong_chain")
        );
        let mut wrong_uri = m.clone();
        wrong_uri.uri = "http://127.0.0.1:77001/x".into();
        assert_eq!(
            wrong_uri.check(&expect(), now).map_err(|e| e.code()),
            Err("wrong_uri")
        );
        let mut future = m.clone();
        future.issued_at = now + 3600;
        assert_eq!(
            future.check(&expect(), now).map_err(|e| e.code()),
            Err("issued_in_future")
        );
        let mut early = m;
        early.not_before = Some(now + 10);
        assert_eq!(
            early.check(&expect(), now).map_err(|e| e.code()),
            Err("not_yet_valid")
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            String::new(),
            "hello".into(),
            sample().replace(ADDR, &ADDR.to_lowercase().replace("0x", "0X")),
            sample().replace("Nonce: abcd1234efgh", "Nonce: short"),
            sample().replace("Issued At: 2026-11-27T10:00:00Z", "Issued At: yesterday"),
            sample().replace("Chain ID: 31337", "Chain ID: lots"),
            format!("{}\nExtra: line", sample()),
        ] {
            assert!(
                matches!(SiweMessage::parse(&bad), Err(SiweError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2000-03-01T01:00:00+01:00"), Ok(951868800));
        assert_eq!(format_time(951868800), "2000-03-01T00:00:00Z");
    }

    /// Found by the `siwe_message` fuzz target (from its edge-of-range seeds): times that an
    /// offset or a leap second puts outside the years 0000 to 9999 parsed, but formatted as
    /// text nothing parses (`-001-12-31T23:00:00Z`, `10000-01-01T00:00:00Z`).
    #[test]
    fn times_outside_four_digit_years_are_refused() {
        for edge in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let time = parse_time(edge).expect("an edge of the range");
            assert_eq!(format_time(time), edge);
        }
        for outside in [
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:60Z",
            "9999-12-31T23:00:00-01:00",
        ] {
            assert!(
                matches!(parse_time(outside), Err(SiweError::Malformed(_))),
                "{outside}"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,600}") {
            let _ = SiweMessage::parse(&text);
        }

        #[test]
        fn time_round_trips(t in -10_000_000_000i64..10_000_000_000) {
            prop_assert_eq!(parse_time(&format_time(t)), Ok(t));
        }
    }
}
