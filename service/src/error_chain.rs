//! An error and its sources on one line, for logs and status fields.

use std::{error::Error, fmt};

/// Displays an error followed by each of its sources, `": "` apart, so the kernel's `EPERM`
/// under "loading file_open" reaches the reader. Errors in Seawall keep their source instead of
/// printing it in their own message; this is where the chain is spelled out.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading file_open")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_source_is_printed_once_in_order() {
        let e = Outer(std::io::Error::other("Operation not permitted"));
        let text = ErrorChain(&e).to_string();
        assert!(text.starts_with("loading file_open: "), "{text}");
        assert_eq!(text.matches("not permitted").count(), 1, "{text}");
    }
}
