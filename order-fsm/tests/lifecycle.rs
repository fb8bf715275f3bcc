//! The engine over the ecommerce lifecycle, as given/when/then scenarios
//! (`order_fsm::testing::Scenario`).

use order_fsm::testing::{Scenario, STEP_MICROS};
use order_fsm::{Error, Event, Lifecycle};

fn ecommerce() -> Scenario {
    Scenario::new(Lifecycle::ecommerce())
}

#[test]
fn the_happy_path_counts_versions_and_time_in_each_state() {
    let then = ecommerce()
        .given(&[])
        .when("prepare")
        .then_state("preparing")
        .then_version(2)
        .and_when("ship")
        .then_state("shipped")
        .then_version(3)
        .and_when("deliver")
        .then_state("delivered")
        .then_version(4)
        .and_when("complete")
        .then_state("completed")
        .then_version(5)
        .then_terminal();
    let t = then.outcome().as_ref().unwrap();
    assert_eq!(t.in_previous_state_micros, STEP_MICROS);
    let done = then.and();
    assert_eq!(done.order().history.len(), 4);
    done.when("cancel")
        .then_error_matches(|e| matches!(e, Error::Terminal { state: "completed" }))
        .then_error("order is in terminal state `completed` and accepts no event");
}

#[test]
fn an_illegal_event_is_refused_naming_the_state_and_the_event() {
    ecommerce()
        .given(&["prepare"])
        .when("complete")
        .then_error("illegal transition: event `complete` is not allowed in state `preparing`")
        .and_when("ship")
        .then_state("shipped");
    ecommerce()
        .given(&["prepare", "ship"])
        .when("cancel")
        .then_error("illegal transition: event `cancel` is not allowed in state `shipped`");
}

#[test]
fn a_redelivered_event_is_a_duplicate_not_a_second_transition() {
    let given = ecommerce().given(&["prepare"]);
    let first = given.order().history[0].event_id;
    given
        .when_with("prepare", |e| Event::identified(first, e.kind, e.at))
        .then_error_matches(|e| matches!(e, Error::Duplicate { event_id } if *event_id == first))
        .and_when("ship")
        .then_version(3);
}

#[test]
fn stale_versions_and_missing_reasons_are_rejected() {
    ecommerce()
        .given(&[])
        .when_with("prepare", |e| e.with_expected_version(7))
        .then_error_matches(|e| {
            matches!(
                e,
                Error::StaleVersion {
                    expected: 7,
                    actual: 1
                }
            )
        })
        .and_when("fail")
        .then_error_matches(|e| {
            matches!(
                e,
                Error::InvalidField {
                    field: "reason",
                    ..
                }
            )
        })
        .and_when_with("fail", |e| e.with_reason("payment declined"))
        .then_state("failed")
        .then_terminal();
}

#[test]
#[should_panic(expected = "has no event `teleport`")]
fn a_scenario_with_an_unknown_event_fails_loudly() {
    let _ = ecommerce().given(&["teleport"]);
}

#[test]
#[should_panic(expected = "given event `complete` was refused")]
fn a_scenario_whose_given_events_are_refused_fails_loudly() {
    let _ = ecommerce().given(&["complete"]);
}

#[test]
#[should_panic(expected = "expected a move to `shipped`")]
fn a_wrong_expectation_fails() {
    let _ = ecommerce().given(&[]).when("ship").then_state("shipped");
}
