//! [`Pii<T>`]: personal data that cannot be printed or serialized by accident.

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroize;

/// A personal data value (email, name, address...). Its `Debug` prints `Pii([redacted])` and
/// its `Display` prints `[redacted]`, so a value that reaches a log line, a trace field or an
/// error message by mistake does not leak.
///
/// It deserializes transparently (a request body's `"email": "a@b.c"` parses straight into a
/// `Pii<String>`), but it deliberately does not implement `Serialize`: an event payload or a
/// log record that holds a `Pii` field does not compile.
///
/// ```compile_fail
/// fn serializable<T: serde::Serialize>() {}
/// serializable::<comptoir_privacy::Pii<String>>();
/// ```
///
/// Its memory is wiped when it is dropped ([`Zeroize`]): decrypted personal data does not
/// linger in freed heap pages for a core dump or a memory disclosure to find.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Pii<T: Zeroize>(T);

impl<T: Zeroize> Pii<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The personal data itself. Named loudly so every use stands out in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Takes the personal data out of its wrapper; from here on nothing redacts it, and
    /// nothing wipes it.
    pub fn into_inner(mut self) -> T
    where
        T: Default,
    {
        std::mem::take(&mut self.0)
    }
}

impl<T: Zeroize> Drop for Pii<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pii([redacted])")
    }
}

impl<T: Zeroize> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deserializes_transparently_from_a_request_body() {
        #[derive(Debug, Deserialize)]
        struct SignUp {
            email: Pii<String>,
        }
        let body: SignUp = serde_json::from_str(r#"{"email":"ada@example.com"}"#)
            .expect("a JSON string parses into Pii<String>");
        assert_eq!(body.email.expose(), "ada@example.com");
        assert_eq!(format!("{body:?}"), "SignUp { email: Pii([redacted]) }");
    }

    #[test]
    fn into_inner_and_equality() {
        let a = Pii::new(String::from("x"));
        assert_eq!(a.clone(), Pii::new(String::from("x")));
        assert_ne!(a, Pii::new(String::from("y")));
        assert_eq!(a.into_inner(), "x");
    }

    /// Records being wiped, to see the drop do it.
    #[derive(Default)]
    struct Probe(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Zeroize for Probe {
        fn zeroize(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn personal_data_is_wiped_when_dropped() {
        let wiped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pii = Pii::new(Probe(std::sync::Arc::clone(&wiped)));
        assert!(!wiped.load(std::sync::atomic::Ordering::SeqCst));
        drop(pii);
        assert!(
            wiped.load(std::sync::atomic::Ordering::SeqCst),
            "Pii's drop wipes its value"
        );
        // A String is wiped in place, before its buffer goes back to the allocator.
        let mut text = String::from("ada@example.com");
        text.zeroize();
        assert!(text.is_empty());
    }

    proptest! {
        #[test]
        fn debug_and_display_never_show_the_value(value in any::<String>()) {
            let pii = Pii::new(value);
            prop_assert_eq!(format!("{pii:?}"), "Pii([redacted])");
            prop_assert_eq!(format!("{pii:#?}"), "Pii([redacted])");
            prop_assert_eq!(format!("{pii}"), "[redacted]");
            prop_assert_eq!(format!("{pii:>40}"), "[redacted]");
        }
    }
}
