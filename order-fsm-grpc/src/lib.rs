//! The grpc adapter of order-fsm. Not implemented yet: see the project's issue tracker.
