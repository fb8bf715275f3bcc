//! Conversions between the wire messages and the core types.

use order_fsm::{Error as CoreError, Lifecycle, OrderState, Purchase, TransitionRecord};

use crate::proto;

/// A wire purchase as a core purchase (not yet validated). A bad price names `price`.
pub(crate) fn purchase_from_proto(p: proto::Purchase) -> Result<Purchase, CoreError> {
    let mut purchase = Purchase::new(p.product, p.price.parse()?);
    purchase.payment_gateway = p.payment_gateway;
    purchase.card_brand = p.card_brand;
    purchase.bank = p.bank;
    purchase.region = p.region;
    purchase.shipping_address = p.shipping_address;
    purchase.customer_email = p.customer_email;
    purchase.quantity = p.quantity;
    purchase.category = p.category;
    Ok(purchase)
}

/// The wire form of a purchase (price as a decimal string), as the client sends it.
impl From<&Purchase> for proto::Purchase {
    fn from(p: &Purchase) -> Self {
        Self {
            product: p.product.clone(),
            price: p.price.to_string(),
            payment_gateway: p.payment_gateway.clone(),
            card_brand: p.card_brand.clone(),
            bank: p.bank.clone(),
            region: p.region.clone(),
            shipping_address: p.shipping_address.clone(),
            customer_email: p.customer_email.clone(),
            quantity: p.quantity,
            category: p.category.clone(),
        }
    }
}

pub(crate) fn record_to_proto(r: &TransitionRecord) -> proto::Transition {
    proto::Transition {
        version: r.version,
        from_status: r.from.as_ref().map(|s| s.to_string()),
        to_status: r.to.to_string(),
        event: r.event.to_string(),
        event_id: r.event_id.to_string(),
        at_micros: r.at.as_micros(),
        in_previous_state_micros: r.in_previous_state_micros,
        terminal: r.terminal,
        reason: r.reason.clone(),
        actor: r.actor.clone(),
    }
}

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
            .map(record_to_proto)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::{Engine, OrderId, Timestamp};

    #[test]
    fn purchases_round_trip_and_bad_prices_name_the_field() {
        let p = Purchase::example();
        assert_eq!(purchase_from_proto(proto::Purchase::from(&p)).unwrap(), p);
        let mut wire = proto::Purchase::from(&p);
        wire.price = "12.345".into();
        match purchase_from_proto(wire) {
            Err(CoreError::InvalidField { field, .. }) => assert_eq!(field, "price"),
            other => panic!("unexpected {other:?}"),
        }
    }

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
