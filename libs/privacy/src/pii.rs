//! [`Pii<T>`]: personal data that cannot be printed or serialized by accident.

use std::fmt;

use serde::Deserialize;

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
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Pii<T>(T);

impl<T> Pii<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The personal data itself. Named loudly so every use stands out in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Takes the personal data out of its wrapper; from here on nothing redacts it.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pii([redacted])")
    }
}

impl<T> fmt::Display for Pii<T> {
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
