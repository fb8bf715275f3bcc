//! Purchase data sets in the original CSV layout: product, price, payment gateway, card
//! brand, bank, region, shipping address, customer e-mail.

use std::io::{Read, Write};

use order_fsm::{Money, Purchase};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One CSV row, in the original systems' column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Product name.
    pub product: String,
    /// Price as a decimal (`"1299.90"`).
    pub price: Money,
    /// Payment gateway.
    pub payment_gateway: String,
    /// Card brand.
    pub card_brand: String,
    /// Bank.
    pub bank: String,
    /// Shipping region.
    pub region: String,
    /// Shipping address.
    pub shipping_address: String,
    /// Customer e-mail.
    pub customer_email: String,
}

impl From<Row> for Purchase {
    fn from(r: Row) -> Self {
        let mut purchase = Purchase::new(r.product, r.price);
        purchase.payment_gateway = r.payment_gateway;
        purchase.card_brand = r.card_brand;
        purchase.bank = r.bank;
        purchase.region = r.region;
        purchase.shipping_address = r.shipping_address;
        purchase.customer_email = r.customer_email;
        purchase
    }
}

const PRODUCTS: &[(&str, i64)] = &[
    ("Notebook 14\"", 549_990),
    ("Smartphone 128 GB", 299_990),
    ("Wireless earbuds", 39_990),
    ("Mechanical keyboard", 8_990),
    ("27\" monitor", 189_990),
    ("Coffee maker", 45_500),
    ("Running shoes", 64_990),
    ("Backpack", 24_990),
    ("Desk lamp", 12_490),
    ("Board game", 19_990),
];
const GATEWAYS: &[&str] = &["Webpay", "MercadoPago", "PayPal", "Flow", "Khipu"];
const BRANDS: &[&str] = &["Visa", "Mastercard", "American Express", "Redcompra"];
const BANKS: &[&str] = &[
    "Banco Estado",
    "Banco de Chile",
    "Santander",
    "BCI",
    "Scotiabank",
    "Itaú",
];
const REGIONS: &[&str] = &[
    "Metropolitana",
    "Valparaíso",
    "Biobío",
    "Araucanía",
    "Los Lagos",
    "Antofagasta",
    "Coquimbo",
    "Maule",
];
const STREETS: &[&str] = &[
    "Av. Brasil",
    "Los Carrera",
    "O'Higgins",
    "Prat",
    "Errázuriz",
    "Colón",
];

/// `count` purchases drawn from a seeded generator: the same seed gives the same data set.
/// E-mail addresses are in the reserved `example.com` domain.
pub fn generate(count: usize, seed: u64) -> Vec<Row> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let (product, price) = PRODUCTS[rng.gen_range(0..PRODUCTS.len())];
            Row {
                product: product.to_owned(),
                price: Money::from_minor_units(price),
                payment_gateway: pick(&mut rng, GATEWAYS),
                card_brand: pick(&mut rng, BRANDS),
                bank: pick(&mut rng, BANKS),
                region: pick(&mut rng, REGIONS),
                shipping_address: format!(
                    "{} {}",
                    pick(&mut rng, STREETS),
                    rng.gen_range(1..4_000)
                ),
                customer_email: format!("customer{i}@example.com"),
            }
        })
        .collect()
}

fn pick(rng: &mut SmallRng, items: &[&str]) -> String {
    items[rng.gen_range(0..items.len())].to_owned()
}

/// Writes rows as CSV with a header line.
///
/// # Errors
/// I/O or encoding errors.
pub fn write_csv(rows: &[Row], out: impl Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads rows from CSV with a header line; a malformed row is an error naming its line.
///
/// # Errors
/// I/O errors and malformed rows.
pub fn read_csv(input: impl Read) -> Result<Vec<Row>, csv::Error> {
    csv::Reader::from_reader(input).deserialize().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn csv_of(rows: &[Row]) -> Vec<u8> {
        let mut out = Vec::new();
        write_csv(rows, &mut out).unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A hostile CSV file (arbitrary bytes, or a valid one with bytes changed or cut)
        /// reads as rows or as an error naming what is wrong; it never panics, and every row
        /// it yields is a purchase that validates or is refused with a named field.
        #[test]
        fn hostile_csv_reads_or_is_refused(
            noise in prop::collection::vec(any::<u8>(), 0..1024),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
            cut in any::<prop::sample::Index>(),
            from_valid in any::<bool>(),
        ) {
            let bytes = if from_valid {
                let mut bytes = csv_of(&generate(5, 3));
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep);
                bytes
            } else {
                noise
            };
            match read_csv(bytes.as_slice()) {
                Ok(rows) => {
                    for row in rows {
                        match Purchase::from(row).validate() {
                            Ok(()) | Err(order_fsm::Error::InvalidField { .. }) => {}
                            Err(other) => prop_assert!(false, "untyped refusal {other:?}"),
                        }
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn generated_rows_are_valid_and_survive_a_csv_round_trip() {
        let rows = generate(200, 7);
        assert_eq!(rows, generate(200, 7), "same seed, same data");
        assert_ne!(rows, generate(200, 8));
        for row in &rows {
            Purchase::from(row.clone()).validate().unwrap();
        }
        let mut buf = Vec::new();
        write_csv(&rows, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.starts_with(
            "product,price,payment_gateway,card_brand,bank,region,shipping_address,customer_email\n"
        ));
        assert_eq!(read_csv(buf.as_slice()).unwrap(), rows);
    }

    #[test]
    fn a_malformed_row_is_an_error() {
        let csv = "product,price,payment_gateway,card_brand,bank,region,shipping_address,customer_email\n\
                   Lamp,not-a-price,Webpay,Visa,BCI,Maule,Prat 1,a@example.com\n";
        assert!(read_csv(csv.as_bytes()).is_err());
    }
}
