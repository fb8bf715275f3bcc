//! Handles of [`Lifecycle::ecommerce`](crate::Lifecycle::ecommerce)'s states and events, valid only for that lifecycle.

use crate::{EventKind, StateId};

/// Procesando.
pub const PROCESSING: StateId = StateId(0);
/// Preparación.
pub const PREPARING: StateId = StateId(1);
/// Enviado.
pub const SHIPPED: StateId = StateId(2);
/// Entregado.
pub const DELIVERED: StateId = StateId(3);
/// Finalizado (terminal).
pub const COMPLETED: StateId = StateId(4);
/// Cancelado (terminal).
pub const CANCELLED: StateId = StateId(5);
/// Fallido (terminal).
pub const FAILED: StateId = StateId(6);

/// processing → preparing.
pub const PREPARE: EventKind = EventKind(0);
/// preparing → shipped.
pub const SHIP: EventKind = EventKind(1);
/// shipped → delivered.
pub const DELIVER: EventKind = EventKind(2);
/// delivered → completed.
pub const COMPLETE: EventKind = EventKind(3);
/// processing | preparing → cancelled.
pub const CANCEL: EventKind = EventKind(4);
/// any non-terminal → failed (needs a reason).
pub const FAIL: EventKind = EventKind(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lifecycle;

    #[test]
    fn handles_match_the_names() {
        let l = Lifecycle::ecommerce();
        let states = [
            PROCESSING, PREPARING, SHIPPED, DELIVERED, COMPLETED, CANCELLED, FAILED,
        ];
        let names = [
            "processing",
            "preparing",
            "shipped",
            "delivered",
            "completed",
            "cancelled",
            "failed",
        ];
        for (s, n) in states.iter().zip(names) {
            assert_eq!(l.state(n), Some(*s));
        }
        let events = [PREPARE, SHIP, DELIVER, COMPLETE, CANCEL, FAIL];
        let names = ["prepare", "ship", "deliver", "complete", "cancel", "fail"];
        for (e, n) in events.iter().zip(names) {
            assert_eq!(l.event(n), Some(*e));
        }
    }
}
