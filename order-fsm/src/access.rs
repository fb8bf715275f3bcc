//! Who may do what at an intake: API keys mapped to roles, each role a set of operations.
//!
//! Keys are stored hashed (`sha256:<hex>` of the key's bytes), never in clear, and a key is
//! never logged or echoed: what identifies a caller in logs and records is the key's *name*.
//! A key file has one key per line, `<name> <role> sha256:<hex>`, `#` for comments; a
//! [`KeyFile`] re-reads it when it changes (checked at most once a second), so a removed key
//! stops working without a restart.
//!
//! | role | may | listings show |
//! |---|---|---|
//! | `shop` | place orders, read the orders it placed | masked e-mail and address |
//! | `operator` | everything: place, read, list, watch, apply events, cancel | full records |
//! | `reader` | read, list, watch | masked e-mail and address |
//!
//! ```
//! use order_fsm::access::{hash_key, KeyRing, Operation, Role};
//!
//! let line = format!("backend shop {}", hash_key("s3cret-key"));
//! let keys = KeyRing::parse(&line).unwrap();
//! let caller = keys.check(Some("s3cret-key"), Operation::Place).unwrap();
//! assert_eq!((caller.name(), caller.role()), ("backend", Role::Shop));
//! assert!(keys.check(Some("s3cret-key"), Operation::Cancel).is_err());
//! assert!(keys.check(None, Operation::Get).is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// What a request asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Place one or more orders.
    Place,
    /// Read one order.
    Get,
    /// List orders (and the dashboard).
    List,
    /// Watch an order's changes.
    Watch,
    /// Apply an event to an order.
    ApplyEvent,
    /// Cancel an order.
    Cancel,
}

impl Operation {
    /// The operation's name, as logs and errors spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::ApplyEvent => "apply_event",
            Self::Cancel => "cancel",
        }
    }
}

/// A set of operations a key may perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A shop's backend: places orders and reads them.
    Shop,
    /// The shop's operators and tools: may do everything.
    Operator,
    /// Reports and dashboards: reads, lists and watches.
    Reader,
}

impl Role {
    /// Whether the role allows `operation`.
    pub fn allows(self, operation: Operation) -> bool {
        use Operation::*;
        match self {
            Self::Operator => true,
            Self::Shop => matches!(operation, Place | Get),
            Self::Reader => matches!(operation, Get | List | Watch),
        }
    }

    /// Whether listings show this role customers' e-mail and shipping address in full
    /// (operators only; others see [`mask_personal_data`]'s form).
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Self::Operator)
    }

    /// The role's name in key files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shop => "shop",
            Self::Operator => "operator",
            Self::Reader => "reader",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shop" => Ok(Self::Shop),
            "operator" => Ok(Self::Operator),
            "reader" => Ok(Self::Reader),
            other => Err(format!("unknown role `{other}` (shop, operator or reader)")),
        }
    }
}

/// An authenticated caller: the name of its key and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    name: Arc<str>,
    role: Role,
}

impl Identity {
    /// The key's name (what records and logs name the caller by).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this caller may read `order`: a shop key only the orders it placed (the
    /// order's `placed_by_actor` is its name), other roles every order.
    pub fn may_read(&self, order: &crate::OrderState) -> bool {
        self.role != Role::Shop || order.placed_by_actor.as_deref() == Some(&*self.name)
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// No key was presented (`UNAUTHENTICATED` / 401).
    #[error("an API key is required")]
    Missing,
    /// The key is not known (`UNAUTHENTICATED` / 401). The key is not repeated.
    #[error("the API key is not valid")]
    Unknown,
    /// The key's role does not allow the operation (`PERMISSION_DENIED` / 403).
    #[error("role `{}` may not {}", .role.name(), .operation.name())]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// What it asked for.
        operation: Operation,
    },
}

impl AccessError {
    /// Whether the caller is not authenticated (as opposed to not allowed).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Missing | Self::Unknown)
    }
}

/// `purchase` with its customer's e-mail and shipping address masked: the e-mail keeps its
/// first character and its domain (`a***@example.com`), the address its first three
/// characters (`1 P***`).
///
/// ```
/// let mut purchase = order_fsm::Purchase::example();
/// purchase.customer_email = "alice@example.com".into();
/// let masked = order_fsm::access::mask_personal_data(&purchase);
/// assert_eq!(masked.customer_email, "a***@example.com");
/// assert!(!masked.shipping_address.contains(&purchase.shipping_address[3..]));
/// ```
pub fn mask_personal_data(purchase: &crate::Purchase) -> crate::Purchase {
    let keep = |text: &str, chars: usize| text.chars().take(chars).collect::<String>();
    let email = match purchase.customer_email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", keep(local, 1)),
        None => "***".to_owned(),
    };
    crate::Purchase {
        customer_email: email,
        shipping_address: format!("{}***", keep(&purchase.shipping_address, 3)),
        ..purchase.clone()
    }
}

/// `sha256:<hex>` of `key`: the form a key file stores.
pub fn hash_key(key: &str) -> String {
    use std::fmt::Write;
    let mut text = String::from("sha256:");
    for byte in digest(key) {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The SHA-256 of `key`'s bytes: what a lookup compares, with no text built per request.
fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The digest a `sha256:<64 hex digits>` hash stands for.
fn parse_hash(hash: &str) -> Option<[u8; 32]> {
    let hex = hash
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Keys by their hash.
#[derive(Clone, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Identity>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.by_hash.len())
            .finish()
    }
}

impl KeyRing {
    /// The keys of a key file's text (`<name> <role> sha256:<hex>` per line).
    ///
    /// # Errors
    /// The first malformed line, by number (its content is not repeated: it may hold a key).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}", number + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(bad("expected `<name> <role> sha256:<hex>`"));
            };
            let role: Role = role.parse().map_err(|e: String| bad(&e))?;
            let digest = parse_hash(hash)
                .ok_or_else(|| bad("the key must be given as sha256:<64 hex digits>"))?;
            let identity = Identity {
                name: name.into(),
                role,
            };
            by_hash.insert(digest, identity);
        }
        Ok(Self { by_hash })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The caller presenting `key`, if it may perform `operation`.
    ///
    /// # Errors
    /// [`AccessError`]: no key, an unknown key, or a role that does not allow it.
    pub fn check(&self, key: Option<&str>, operation: Operation) -> Result<Identity, AccessError> {
        let key = key.filter(|k| !k.is_empty()).ok_or(AccessError::Missing)?;
        let identity = self.by_hash.get(&digest(key)).ok_or(AccessError::Unknown)?;
        if !identity.role.allows(operation) {
            return Err(AccessError::Forbidden {
                role: identity.role,
                operation,
            });
        }
        Ok(identity.clone())
    }
}

/// How often a [`KeyFile`] looks at its file's modification time.
pub const KEY_FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A key file, re-read when it changes (or a fixed set of keys, [`KeyFile::fixed`]).
#[derive(Debug)]
pub struct KeyFile {
    path: Option<PathBuf>,
    state: Mutex<KeyFileState>,
}

#[derive(Debug)]
struct KeyFileState {
    keys: Arc<KeyRing>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl KeyFile {
    /// Reads the key file at `path`.
    ///
    /// # Errors
    /// An unreadable file, or its first malformed line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref().to_path_buf();
        let (keys, modified) = Self::read(&path)?;
        Ok(Self {
            path: Some(path),
            state: Mutex::new(KeyFileState {
                keys: Arc::new(keys),
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// Fixed keys, not read from a file (a program's own, generated key, say).
    pub fn fixed(keys: KeyRing) -> Self {
        Self {
            path: None,
            state: Mutex::new(KeyFileState {
                keys: Arc::new(keys),
                modified: None,
                checked: Instant::now(),
            }),
        }
    }

    fn read(path: &Path) -> Result<(KeyRing, Option<SystemTime>), String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        let keys = KeyRing::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((keys, modified))
    }

    /// The current keys: re-read if the file changed since the last look (at most once per
    /// [`KEY_FILE_CHECK_EVERY`]). A file that became unreadable or malformed keeps the
    /// previous keys and logs why.
    pub fn keys(&self) -> Arc<KeyRing> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            return Arc::clone(&state.keys);
        };
        if state.checked.elapsed() >= KEY_FILE_CHECK_EVERY {
            state.checked = Instant::now();
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != state.modified {
                match Self::read(path) {
                    Ok((keys, modified)) => {
                        tracing::info!(keys = keys.len(), path = %path.display(), "key file re-read");
                        state.keys = Arc::new(keys);
                        state.modified = modified;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "key file not re-read; keeping the old keys")
                    }
                }
            }
        }
        Arc::clone(&state.keys)
    }

    /// [`KeyRing::check`] against the current keys.
    ///
    /// # Errors
    /// See [`KeyRing::check`].
    pub fn check(&self, key: Option<&str>, operation: Operation) -> Result<Identity, AccessError> {
        self.keys().check(key, operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_its_operations_only() {
        use Operation::*;
        let all = [Place, Get, List, Watch, ApplyEvent, Cancel];
        let allowed = |role: Role| all.iter().filter(|&&op| role.allows(op)).count();
        assert_eq!(allowed(Role::Operator), 6);
        assert!(Role::Shop.allows(Place) && Role::Shop.allows(Get));
        assert!(!Role::Shop.allows(Cancel) && !Role::Shop.allows(List));
        assert!(Role::Reader.allows(List) && Role::Reader.allows(Watch));
        assert!(!Role::Reader.allows(Place) && !Role::Reader.allows(ApplyEvent));
    }

    #[test]
    fn a_shop_reads_only_the_orders_it_placed() {
        let keys = KeyRing::parse(&format!(
            "backend shop {}\nreports reader {}",
            hash_key("s"),
            hash_key("r")
        ))
        .unwrap();
        let shop = keys.check(Some("s"), Operation::Get).unwrap();
        let reader = keys.check(Some("r"), Operation::Get).unwrap();
        let engine = crate::Engine::new(std::sync::Arc::new(crate::Lifecycle::ecommerce()));
        let mut order = engine.place(
            crate::OrderId::random(),
            crate::Purchase::example().into(),
            crate::Timestamp::from_micros(1),
        );
        assert!(
            !shop.may_read(&order) && reader.may_read(&order),
            "placed by nobody"
        );
        order.placed_by_actor = Some("backend".into());
        assert!(shop.may_read(&order));
        order.placed_by_actor = Some("other-shop".into());
        assert!(!shop.may_read(&order) && reader.may_read(&order));
    }

    #[test]
    fn malformed_lines_are_refused_by_number_without_their_content() {
        let err = KeyRing::parse("# keys\nops operator sha256:abc\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(!err.contains("abc"));
        let err = KeyRing::parse(&format!("x admin {}", hash_key("k"))).unwrap_err();
        assert!(err.contains("unknown role `admin`"), "{err}");
        assert!(KeyRing::parse("a b").is_err());
    }

    #[test]
    fn unknown_and_missing_keys_are_unauthenticated_and_say_nothing_of_the_key() {
        let keys = KeyRing::parse(&format!("r reader {}", hash_key("right"))).unwrap();
        let wrong = keys.check(Some("wrong-key"), Operation::Get).unwrap_err();
        assert!(wrong.is_unauthenticated());
        assert!(!wrong.to_string().contains("wrong-key"));
        assert_eq!(
            keys.check(Some(""), Operation::Get),
            Err(AccessError::Missing)
        );
        let denied = keys.check(Some("right"), Operation::Cancel).unwrap_err();
        assert!(!denied.is_unauthenticated());
        assert_eq!(denied.to_string(), "role `reader` may not cancel");
    }

    #[test]
    fn a_key_file_change_takes_effect_without_a_restart() {
        let dir = std::env::temp_dir().join(format!("order-fsm-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("a shop {}\n", hash_key("one"))).unwrap();
        let file = KeyFile::open(&path).unwrap();
        assert!(file.check(Some("one"), Operation::Place).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, format!("b shop {}\n", hash_key("two"))).unwrap();
        // A modification time in the past would be unchanged on coarse clocks: set one.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        std::thread::sleep(KEY_FILE_CHECK_EVERY + Duration::from_millis(50));
        assert_eq!(
            file.check(Some("one"), Operation::Place),
            Err(AccessError::Unknown)
        );
        assert!(file.check(Some("two"), Operation::Place).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
