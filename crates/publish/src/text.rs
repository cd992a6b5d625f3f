//! Open data holds arbitrary text; markup (HTML, the Atom feed's XML) does not allow every
//! character. What the renderers print goes through here first, then through their escaping.

/// A character HTML and XML text must not contain: controls other than tab and newlines, and
/// the non-characters U+FFFE and U+FFFF.
pub(crate) fn unprintable(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// `text` without its [`unprintable`] characters.
pub(crate) fn printable(text: &str) -> String {
    text.chars().filter(|c| !unprintable(*c)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_what_markup_forbids_is_dropped() {
        assert_eq!(
            super::printable("a\u{7}b\u{1b}[1mc\u{FFFE}d\u{85}e\tf\ng\rh é ✓"),
            "ab[1mcde\tf\ng\rh é ✓"
        );
    }
}
