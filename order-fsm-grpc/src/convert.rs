//! Conversions between the wire messages and the core types. The messages' own conversions
//! (`Purchase::try_from`, `transition_of`) live in `order-fsm-proto`; an order's view needs
//! the lifecycle, so it is here.

use order_fsm::{Lifecycle, OrderState, TransitionRecord};
use order_fsm_proto::transition_of;

use crate::proto;

pub(crate) fn order_to_proto(lifecycle: &Lifecycle, order: &OrderState) -> proto::Order {
    proto::Order {
        order_id: order.id.to_string(),
        purchase: Some(proto::Purchase::from(&*order.purchase)),
        status: lifecycle.state_name(order.status).to_owned(),
        version: order.version,
        terminal: lifecycle.is_terminal(order.status),
        created_at_micros: order.created_at.as_micros(),
        updated_at_micros: order.updated_at.as_micros(),
        history: TransitionRecord::all_of(lifecycle, order)
            .iter()
            .map(transition_of)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::{Engine, OrderId, Purchase, Timestamp};

    #[test]
    fn orders_carry_their_history_placement_first() {
        let engine = Engine::new(Lifecycle::ecommerce());
        let order = engine.place(
            OrderId::from_u128(7),
            Purchase::example().into(),
            Timestamp::from_micros(10),
        );
        let wire = order_to_proto(engine.lifecycle(), &order);
        assert_eq!(wire.status, "processing");
        assert_eq!(wire.history.len(), 1);
        assert_eq!(wire.history[0].event, "place");
        assert_eq!(wire.history[0].from_status, None);
    }
}
