//! What an order buys: the purchase record and exact money.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest accepted text field, in characters (`shipping_address` allows twice this).
pub const MAX_FIELD_CHARS: usize = 256;

/// An exact amount of money in minor units (cents), never a float.
///
/// Serialises as a decimal string with two places (`"1299.90"`), and parses from one (or from
/// an integer) so that JSON producers in other languages do not lose precision.
///
/// ```
/// use order_fsm::Money;
/// let price: Money = "1299.9".parse().unwrap();
/// assert_eq!(price.minor_units(), 129_990);
/// assert_eq!(price.to_string(), "1299.90");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// An amount of minor units (cents).
    pub const fn from_minor_units(cents: i64) -> Self {
        Self(cents)
    }

    /// The amount in minor units (cents).
    pub const fn minor_units(&self) -> i64 {
        self.0
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(&self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::invalid_field("price", "is not a decimal amount with at most 2 places");
        let s = s.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || frac.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<2}").parse().map_err(|_| bad())?
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac))
            .ok_or_else(bad)?;
        Ok(Money(if negative { -cents } else { cents }))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts a decimal string (`"12.30"`), an integer of whole units (`12`), or a float
    /// whose shortest decimal form has at most two places (what CSV readers infer from
    /// `12.3`); anything finer is rejected rather than rounded.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl serde::de::Visitor<'_> for MoneyVisitor {
            type Value = Money;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount with at most two places")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                v.checked_mul(100)
                    .map(Money)
                    .ok_or_else(|| E::custom("price out of range"))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom("price out of range"))
                    .and_then(|v| self.visit_i64(v))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                // Rust prints the shortest text that reads back as the same float.
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(MoneyVisitor)
    }
}

/// What the customer bought: the purchase record of the original systems' CSV data sets
/// (product, price, payment gateway, card brand, bank, region, address, e-mail) plus an
/// optional quantity and category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Purchase {
    /// Product name, non-empty.
    pub product: String,
    /// Unit price, not negative.
    pub price: Money,
    /// Payment gateway (e.g. a card processor's name).
    pub payment_gateway: String,
    /// Card brand.
    pub card_brand: String,
    /// Issuing bank.
    pub bank: String,
    /// Shipping region.
    pub region: String,
    /// Shipping address.
    pub shipping_address: String,
    /// The customer's e-mail address, where notifications go.
    pub customer_email: String,
    /// Number of units, at least 1 when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Product category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl Purchase {
    /// A purchase of `product` at `price`; every other field empty (set them, they are
    /// public), and [`Purchase::validate`] tells what is still missing.
    ///
    /// ```
    /// use order_fsm::{Money, Purchase};
    /// let mut purchase = Purchase::new("Laptop", Money::from_minor_units(129_990));
    /// purchase.customer_email = "buyer@example.com".into();
    /// assert_eq!(purchase.product, "Laptop");
    /// ```
    pub fn new(product: impl Into<String>, price: Money) -> Self {
        Self {
            product: product.into(),
            price,
            payment_gateway: String::new(),
            card_brand: String::new(),
            bank: String::new(),
            region: String::new(),
            shipping_address: String::new(),
            customer_email: String::new(),
            quantity: None,
            category: None,
        }
    }

    /// Checks every field and returns the first problem as [`Error::InvalidField`] naming it.
    ///
    /// ```
    /// # use order_fsm::{Purchase, Money, Error};
    /// let mut p = Purchase::example();
    /// p.customer_email = "not-an-address".into();
    /// match p.validate() {
    ///     Err(Error::InvalidField { field, .. }) => assert_eq!(field, "customer_email"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        check_text("product", &self.product, true, MAX_FIELD_CHARS)?;
        if self.price.is_negative() {
            return Err(Error::invalid_field("price", "is negative"));
        }
        check_text(
            "payment_gateway",
            &self.payment_gateway,
            false,
            MAX_FIELD_CHARS,
        )?;
        check_text("card_brand", &self.card_brand, false, MAX_FIELD_CHARS)?;
        check_text("bank", &self.bank, false, MAX_FIELD_CHARS)?;
        check_text("region", &self.region, false, MAX_FIELD_CHARS)?;
        check_text(
            "shipping_address",
            &self.shipping_address,
            false,
            2 * MAX_FIELD_CHARS,
        )?;
        check_text(
            "customer_email",
            &self.customer_email,
            true,
            MAX_FIELD_CHARS,
        )?;
        if !looks_like_email(&self.customer_email) {
            return Err(Error::invalid_field(
                "customer_email",
                "is not an e-mail address (local@domain.tld)",
            ));
        }
        if self.quantity == Some(0) {
            return Err(Error::invalid_field("quantity", "must be at least 1"));
        }
        if let Some(category) = &self.category {
            check_text("category", category, false, MAX_FIELD_CHARS)?;
        }
        Ok(())
    }

    /// A valid purchase with made-up values, for examples and tests.
    pub fn example() -> Self {
        Self {
            product: "Mechanical keyboard".into(),
            price: Money::from_minor_units(8_990),
            payment_gateway: "Webpay".into(),
            card_brand: "Visa".into(),
            bank: "Banco Estado".into(),
            region: "Valparaíso".into(),
            shipping_address: "Av. Brasil 2950, Valparaíso".into(),
            customer_email: "customer@example.com".into(),
            quantity: Some(1),
            category: Some("electronics".into()),
        }
    }
}

fn check_text(field: &'static str, value: &str, required: bool, max: usize) -> Result<(), Error> {
    if required && value.trim().is_empty() {
        return Err(Error::invalid_field(field, "is empty"));
    }
    // A string has at most as many characters as bytes: count only when it may be too long.
    if value.len() > max && value.chars().count() > max {
        return Err(Error::invalid_field(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    let has_control = if value.is_ascii() {
        value.bytes().any(|b| b.is_ascii_control())
    } else {
        value.chars().any(char::is_control)
    };
    if has_control {
        return Err(Error::invalid_field(field, "contains control characters"));
    }
    Ok(())
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.contains(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_and_prints_exactly() {
        for (text, cents) in [
            ("0", 0),
            ("12", 1200),
            ("12.3", 1230),
            ("12.34", 1234),
            ("-0.05", -5),
        ] {
            let m: Money = text.parse().unwrap();
            assert_eq!(m.minor_units(), cents, "{text}");
        }
        assert_eq!(Money::from_minor_units(-5).to_string(), "-0.05");
        for bad in [
            "",
            "1.234",
            "abc",
            "1.2.3",
            ".5",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn money_round_trips_through_json_as_a_string() {
        let json = serde_json::to_string(&Money::from_minor_units(129_990)).unwrap();
        assert_eq!(json, "\"1299.90\"");
        assert_eq!(
            serde_json::from_str::<Money>("\"1299.90\"")
                .unwrap()
                .minor_units(),
            129_990
        );
        assert_eq!(
            serde_json::from_str::<Money>("15").unwrap().minor_units(),
            1_500
        );
    }

    #[test]
    fn validation_names_the_field() {
        type Mutation = Box<dyn Fn(&mut Purchase)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("product", Box::new(|p| p.product = "  ".into())),
            ("price", Box::new(|p| p.price = Money::from_minor_units(-1))),
            (
                "customer_email",
                Box::new(|p| p.customer_email = "a@b".into()),
            ),
            (
                "customer_email",
                Box::new(|p| p.customer_email = "a b@c.d".into()),
            ),
            (
                "bank",
                Box::new(|p| p.bank = "x".repeat(MAX_FIELD_CHARS + 1)),
            ),
            ("quantity", Box::new(|p| p.quantity = Some(0))),
            ("region", Box::new(|p| p.region = "a\u{0}b".into())),
        ];
        for (field, mutate) in cases {
            let mut p = Purchase::example();
            mutate(&mut p);
            match p.validate() {
                Err(Error::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: unexpected {other:?}"),
            }
        }
        Purchase::example().validate().unwrap();
    }
}
