//! The request headers of tus 1.0 resumable uploads
//! (<https://tus.io/protocols/resumable-upload>) that carry values: `Upload-Length`,
//! `Upload-Offset` and `Upload-Metadata`. The node's upload routes call these; they live here,
//! without I/O, so that they can be tested and fuzzed without the node.

use base64::Engine;

/// Longest `Upload-Metadata` header accepted.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Why a tus header is refused. The messages are written for the client that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TusHeaderError {
    #[error("Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")]
    MetadataTooLong,
    #[error("Upload-Metadata key {0:?} is not printable ASCII")]
    BadMetadataKey(String),
    #[error("Upload-Metadata value of {0:?} is not base64")]
    MetadataValueNotBase64(String),
    #[error("Upload-Metadata value of {0:?} is not UTF-8")]
    MetadataValueNotUtf8(String),
    #[error("{header} is not a number")]
    NotANumber { header: &'static str },
}

/// Parses `Upload-Metadata`: comma-separated `key base64value` pairs (the value is optional),
/// in the order sent.
pub fn parse_metadata(text: &str) -> Result<Vec<(String, String)>, TusHeaderError> {
    if text.len() > MAX_METADATA_BYTES {
        return Err(TusHeaderError::MetadataTooLong);
    }
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, encoded) = match item.split_once(' ') {
            Some((key, encoded)) => (key, Some(encoded)),
            None => (item, None),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TusHeaderError::BadMetadataKey(key.to_string()));
        }
        let value = match encoded {
            Some(encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| TusHeaderError::MetadataValueNotBase64(key.to_string()))?;
                String::from_utf8(bytes)
                    .map_err(|_| TusHeaderError::MetadataValueNotUtf8(key.to_string()))?
            }
            None => String::new(),
        };
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// Parses `Upload-Length`: the upload's size in bytes.
pub fn parse_upload_length(value: &str) -> Result<u64, TusHeaderError> {
    non_negative_integer("Upload-Length", value)
}

/// Parses `Upload-Offset`: where the client says a `PATCH` body starts.
pub fn parse_upload_offset(value: &str) -> Result<u64, TusHeaderError> {
    non_negative_integer("Upload-Offset", value)
}

/// tus says "a non-negative integer": digits only, so no sign (`u64::from_str` takes `+5`).
fn non_negative_integer(header: &'static str, value: &str) -> Result<u64, TusHeaderError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TusHeaderError::NotANumber { header });
    }
    value
        .parse()
        .map_err(|_| TusHeaderError::NotANumber { header })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metadata_parses_and_rejects_garbage() {
        let pairs = parse_metadata("filename d29ybGQubXA0,is_confidential").expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("filename".into(), "world.mp4".into()),
                ("is_confidential".into(), String::new())
            ]
        );
        assert_eq!(parse_metadata(""), Ok(vec![]));
        assert_eq!(
            parse_metadata("title !!!notbase64"),
            Err(TusHeaderError::MetadataValueNotBase64("title".into()))
        );
        // "/w==" is the single byte 0xff.
        assert_eq!(
            parse_metadata("title /w=="),
            Err(TusHeaderError::MetadataValueNotUtf8("title".into()))
        );
        assert!(matches!(
            parse_metadata("tïtle dGl0bGU="),
            Err(TusHeaderError::BadMetadataKey(_))
        ));
        assert_eq!(
            parse_metadata(&"a".repeat(MAX_METADATA_BYTES + 1)),
            Err(TusHeaderError::MetadataTooLong)
        );
    }

    #[test]
    fn lengths_and_offsets_are_plain_decimal() {
        assert_eq!(parse_upload_length("0"), Ok(0));
        assert_eq!(parse_upload_offset("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "+5",
            "-1",
            " 5",
            "5 ",
            "0x10",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(
                parse_upload_length(bad),
                Err(TusHeaderError::NotANumber {
                    header: "Upload-Length"
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_upload_offset("x").map_err(|e| e.to_string()),
            Err("Upload-Offset is not a number".into())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(text in ".{0,300}") {
            let _ = parse_metadata(&text);
            let _ = parse_upload_length(&text);
        }
    }
}
