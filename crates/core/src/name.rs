//! Host names as Kracauer routes on them: the one place that says what a valid name is.
//!
//! Both peekers (TLS SNI, HTTP `Host`) and the route table go through [`HostName::parse`],
//! so a name is normalised the same way wherever it comes from: ASCII letters, digits,
//! `-` and `_` only (LDH plus underscore, which real deployments use), labels of 1 to 63
//! bytes, at most 253 bytes in all, lower-cased, one trailing dot removed.

use core::fmt;

/// Longest name in bytes, without a trailing dot (RFC 1035 §2.3.4 in text form).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label in bytes (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A validated, lower-cased host name without a trailing dot.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(Box<str>);

/// Why bytes are not a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("a label is empty (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("a label is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    #[error("byte 0x{0:02x} is not allowed in a host name (letters, digits, '-', '_' and '.' are)")]
    BadByte(u8),
}

impl HostName {
    /// Validates and normalises `bytes` as a host name.
    pub fn parse(bytes: &[u8]) -> Result<Self, NameError> {
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for label in bytes.split(|&b| b == b'.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
            if let Some(&bad) = label
                .iter()
                .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                return Err(NameError::BadByte(bad));
            }
        }
        // Every byte is ASCII, checked above, so this conversion cannot fail.
        let lower: String = bytes
            .iter()
            .map(|&b| char::from(b.to_ascii_lowercase()))
            .collect();
        Ok(Self(lower.into_boxed_str()))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels from the right: `a.b.example` gives `example`, `b`, `a`.
    pub fn labels_rev(&self) -> impl Iterator<Item = &str> {
        self.0.rsplit('.')
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName({:?})", &*self.0)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_lowercased_and_loses_one_trailing_dot() {
        assert_eq!(
            HostName::parse(b"WWW.Example.COM.").unwrap().as_str(),
            "www.example.com"
        );
    }

    #[test]
    fn underscore_and_hyphen_are_allowed() {
        assert_eq!(
            HostName::parse(b"_acme-x.a-b.example").unwrap().as_str(),
            "_acme-x.a-b.example"
        );
    }

    #[test]
    fn empty_and_lone_dot_are_empty() {
        assert_eq!(HostName::parse(b""), Err(NameError::Empty));
        assert_eq!(HostName::parse(b"."), Err(NameError::Empty));
    }

    #[test]
    fn double_dot_and_leading_dot_are_empty_labels() {
        assert_eq!(HostName::parse(b"a..example"), Err(NameError::EmptyLabel));
        assert_eq!(HostName::parse(b".example"), Err(NameError::EmptyLabel));
        assert_eq!(HostName::parse(b"example.."), Err(NameError::EmptyLabel));
    }

    #[test]
    fn label_of_64_bytes_is_too_long_and_63_is_fine() {
        let ok = format!("{}.example", "a".repeat(63));
        assert!(HostName::parse(ok.as_bytes()).is_ok());
        let bad = format!("{}.example", "a".repeat(64));
        assert_eq!(
            HostName::parse(bad.as_bytes()),
            Err(NameError::LabelTooLong)
        );
    }

    #[test]
    fn name_of_254_bytes_is_too_long_and_253_is_fine() {
        let label = "a".repeat(49);
        let ok = [label.as_str(); 5].join(".") + ".abcd";
        assert_eq!(ok.len(), 254);
        assert_eq!(HostName::parse(ok.as_bytes()), Err(NameError::TooLong));
        assert!(HostName::parse(&ok.as_bytes()[1..]).is_ok());
    }

    #[test]
    fn non_ldh_bytes_are_refused_by_value() {
        assert_eq!(
            HostName::parse(b"a b.example"),
            Err(NameError::BadByte(b' '))
        );
        assert_eq!(
            HostName::parse("é.example".as_bytes()),
            Err(NameError::BadByte(0xc3))
        );
        assert_eq!(HostName::parse(b"a\0.example"), Err(NameError::BadByte(0)));
        assert_eq!(
            HostName::parse(b"[2001:db8::1]"),
            Err(NameError::BadByte(b'['))
        );
    }

    #[test]
    fn labels_come_from_the_right() {
        let n = HostName::parse(b"a.b.example").unwrap();
        assert_eq!(n.labels_rev().collect::<Vec<_>>(), ["example", "b", "a"]);
    }
}
